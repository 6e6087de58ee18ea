"""Tractograms as :class:`~zv_dask.ingest.source.ObjectSource` streamlines:
``read_trk``, ``read_tck`` and ``read_trx``.

Headers and offset indexes are read here, at build time; every partition is one
``(file, first streamline, stop)`` range read in a task by a reader from
:mod:`zv_dask.ingest.tractography` / :mod:`zv_dask.ingest.trx`.  Objects are numbered
across the files in order; each object's ``file_index`` is an object attribute.
"""

from __future__ import annotations

import numpy as np

from zv_dask.errors import InputFileError
from zv_dask.ingest import tractography as T
from zv_dask.ingest.files import expand_paths
from zv_dask.ingest.source import ObjectSource

DEFAULT_STREAMLINES_PER_PARTITION = 10_000


def _source(fmt, files, reader, meta, per_partition, object_columns, label, extra=None):
    """The ObjectSource of indexed ``files``: partitions, object attributes, facts."""
    import dask.dataframe as dd
    import pandas as pd

    parts, tables, first = [], [], 0
    for index, f in enumerate(files):
        for a, b in T.streamline_ranges(f.streamline_count, per_partition):
            parts.append((f.part(a, b), first + a))
        counts = _counts(f)
        table = pd.DataFrame(object_columns(f), index=pd.RangeIndex(first, first + len(counts),
                                                                   name="object_id"))
        table["file_index"] = np.int32(index)
        tables.append(table[counts > 0])  # an empty streamline has no vertices to own
        first += f.streamline_count
    vertices = dd.from_map(reader, parts, meta=meta, label=label, enforce_metadata=False)
    facts = {"format": fmt, "streamline_count": first,
             "point_count": int(sum(int(_counts(f).sum()) for f in files)),
             "files": [f.describe() for f in files], **(extra or {})}
    table = pd.concat(tables)
    table.index = table.index.astype(np.int64)
    return ObjectSource("streamline", vertices, object_attributes=table, source=facts)


def _counts(f) -> np.ndarray:
    if hasattr(f, "counts"):
        return f.counts
    if hasattr(f, "stops"):
        return f.stops - f.starts
    return np.diff(f.offsets)


def _same(files, key, what):
    first = files[0]
    for f in files[1:]:
        if key(f) != key(first):
            raise InputFileError(f"{f.path} has {what} {list(key(f))} but {first.path} has "
                                 f"{list(key(first))}; convert files with the same {what} "
                                 "together")


def read_trk(paths, streamlines_per_partition=DEFAULT_STREAMLINES_PER_PARTITION,
             storage_options=None) -> ObjectSource:
    """Read TrackVis TRK files as streamlines, one partition per streamline range.

    Only the headers and the files' offset index (the point count of every streamline,
    one pass over the count words) are read now; each task reads the bytes of its
    streamlines.  Positions are RAS+ mm, float32, the values
    ``nibabel.streamlines.load(path).streamlines`` gives: the stored voxmm points
    through the header's voxmm -> RAS+ affine, applied by nibabel's ``apply_affine``.

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Files, globs or fsspec URLs; all with the same scalars and properties.
    streamlines_per_partition : int or None, default 10,000
        Streamlines per task; ``None``: one task per file.
    storage_options : dict, optional
        fsspec options of remote ``paths``.

    Returns
    -------
    ObjectSource
        ``geometry="streamline"``; vertices ``x, y, z, object_id`` and one float32
        column per TRK scalar (nibabel's ``data_per_point`` names; ``name_0 ...``
        for a name of several values, merged by ``to_zv`` into one ``(N, C)``
        attribute); object attributes: the TRK properties (``data_per_streamline``)
        and ``file_index``; ``source``: per file the header's ``voxel_to_rasmm``,
        the applied ``voxmm_to_rasmm``, ``dimensions``, ``voxel_sizes``,
        ``voxel_order`` and the streamline and point counts.

    Raises
    ------
    InputFileError
        A file that is not TRK, is truncated (naming the streamline and byte), or
        files with different scalars/properties.
    MissingDependencyError
        nibabel is missing (``pip install 'zv_dask[tractography]'``).

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib, zv_dask
    >>> lines = [np.array([[0, 0, 0], [1, 2, 3.5]], "f4"), np.array([[5, 5, 5.]], "f4")]
    >>> path = os.path.join(tempfile.mkdtemp(), "t.trk")
    >>> tg = nib.streamlines.Tractogram(lines, affine_to_rasmm=np.eye(4))
    >>> nib.streamlines.save(tg, path)
    >>> src = zv_dask.read_trk(path)
    >>> src.vertices.compute()[["x", "z", "object_id"]].to_numpy().tolist()
    [[0.0, 0.0, 0.0], [1.0, 3.5, 0.0], [5.0, 5.0, 1.0]]
    """
    files = [T.read_trk_header(p, storage_options)
             for p in expand_paths(paths, "TRK file", storage_options)]
    _same(files, lambda f: [c for c, _ in f.point_columns], "scalars")
    _same(files, lambda f: [c for c, _ in f.property_columns], "properties")
    meta = T.empty_vertices([(c, "float32") for c, _ in files[0].point_columns])
    return _source("trk", files, T.TrkRangeReader(storage_options), meta,
                   streamlines_per_partition,
                   lambda f: {c: f.properties[:, j] for c, j in f.property_columns},
                   "read-trk", {"float32_exact": True})


def read_tck(paths, streamlines_per_partition=DEFAULT_STREAMLINES_PER_PARTITION,
             storage_options=None) -> ObjectSource:
    """Read MRtrix TCK files as streamlines, one partition per streamline range.

    The offset index (where every streamline starts and its NaN delimiter row) is
    found now with numpy over the file's float triplets; each task reads its byte
    range.  Positions are RAS+ mm as stored, cast to float32 as nibabel does (TCK has
    no per-point data of its own).

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Files, globs or fsspec URLs.
    streamlines_per_partition : int or None, default 10,000
        Streamlines per task; ``None``: one task per file.
    storage_options : dict, optional
        fsspec options of remote ``paths``.

    Returns
    -------
    ObjectSource
        ``geometry="streamline"``: vertices ``x, y, z, object_id``; object attribute
        ``file_index``; ``source``: per file its header fields and counts.

    Raises
    ------
    InputFileError
        Not a TCK file, or a bad one: data not whole triplets, or no single
        ``inf inf inf`` end marker after the last delimiter (naming the byte).
    MissingDependencyError
        nibabel is missing.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib, zv_dask
    >>> lines = [np.array([[0, 0, 0], [1, 2, 3.5]], "f4"), np.array([[5, 5, 5.]], "f4")]
    >>> path = os.path.join(tempfile.mkdtemp(), "t.tck")
    >>> nib.streamlines.save(nib.streamlines.Tractogram(lines, affine_to_rasmm=np.eye(4)),
    ...                      path)
    >>> zv_dask.read_tck(path).vertices.compute().object_id.tolist()
    [0, 0, 1]
    """
    files = [T.read_tck_header(p, storage_options)
             for p in expand_paths(paths, "TCK file", storage_options)]
    return _source("tck", files, T.TckRangeReader(storage_options), T.empty_vertices([]),
                   streamlines_per_partition, lambda f: {}, "read-tck",
                   {"float32_exact": True})


def read_trx(paths, streamlines_per_partition=DEFAULT_STREAMLINES_PER_PARTITION
             ) -> ObjectSource:
    """Read TRX files (trx-python, memory-mapped) as streamlines.

    The header, offsets and data per streamline are read now; each task memory-maps
    the file and copies its streamlines' positions and data per vertex.  A zip whose
    members are compressed is extracted by trx-python in every task: store TRX
    uncompressed (or as a directory) for large files.

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Local TRX files (zip) or directories, or globs.
    streamlines_per_partition : int or None, default 10,000
        Streamlines per task; ``None``: one task per file.

    Returns
    -------
    ObjectSource
        ``geometry="streamline"``; vertices ``x, y, z`` (RAS+ mm, float32, or float64
        when stored so), ``object_id`` and the dpv columns (``name_0 ...`` for a dpv of
        several values) with their dtypes (float16 as float32); object attributes: the
        dps and ``file_index``; ``source``: per file ``voxel_to_rasmm``,
        ``dimensions``, group names and counts.

    Raises
    ------
    InputFileError
        Not a TRX file, or files with different dpv/dps.
    MissingDependencyError
        trx-python is missing.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib, zv_dask
    >>> from trx.trx_file_memmap import TrxFile, save
    >>> lines = [np.array([[0, 0, 0], [1, 2, 3.5]], "f4"), np.array([[5, 5, 5.]], "f4")]
    >>> tg = nib.streamlines.Tractogram(lines, affine_to_rasmm=np.eye(4))
    >>> trx = TrxFile.from_tractogram(tg, reference=nib.Nifti1Image(np.zeros((10, 10, 10),
    ...                               "u1"), np.eye(4)))
    >>> path = os.path.join(tempfile.mkdtemp(), "t.trx")
    >>> save(trx, path); trx.close()
    >>> zv_dask.read_trx(path).vertices.compute().x.tolist()
    [0.0, 1.0, 5.0]
    """
    from zv_dask.ingest import trx as X

    files = [X.read_trx_header(p) for p in expand_paths(paths, "TRX file")]
    _same(files, lambda f: [c for c, _ in f.vertex_columns], "data per vertex")
    _same(files, lambda f: list(f.properties.columns), "data per streamline")
    first = files[0]
    meta = T.empty_vertices(first.vertex_columns, first.position_dtype)
    exact = all(np.dtype(f.position_dtype).itemsize <= 4 for f in files)
    return _source("trx", files, X.TrxRangeReader(), meta, streamlines_per_partition,
                   lambda f: {c: f.properties[c].to_numpy() for c in f.properties.columns},
                   "read-trx", {"float32_exact": exact})
