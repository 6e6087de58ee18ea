"""Dask DataFrames of foreign point-cloud files: ``read_las`` and ``read_ply``.

Headers are read here, at build time; every partition is one ``(file, start, stop)``
range read in a task by a reader from :mod:`zv_dask.ingest`.  What the headers say
(scales, offsets, CRS, files) rides on the frame's ``attrs`` (:func:`source_attributes`).
"""

from __future__ import annotations

import warnings

from zv_dask.errors import InputFileError, ZVWarning
from zv_dask.ingest import las as L
from zv_dask.ingest import ply as P
from zv_dask.ingest.files import expand_paths

SOURCE_KEY = "zv_dask_source"  # the attrs key, and the store's root attribute convert writes
DEFAULT_POINTS_PER_PARTITION = 1_000_000


def _same_columns(files, what: str, hint: str):
    """The first file's header, once every file has its columns."""
    first = files[0]
    for f in files[1:]:
        if f.columns != first.columns:
            raise InputFileError(f"{f.path} has {what} {[c for c, _ in f.columns]} but "
                                 f"{first.path} has {[c for c, _ in first.columns]}; {hint}")
    return first


def _frame(reader, parts, meta, label, source: dict):
    """One partition per ``(file, start, stop)`` part; the headers' facts on ``attrs``."""
    import dask.dataframe as dd

    meta.attrs[SOURCE_KEY] = source
    return dd.from_map(reader, parts, meta=meta, label=label, enforce_metadata=False)


def source_attributes(df) -> dict | None:
    """What the files' headers said about a frame from :func:`read_las` or
    :func:`read_ply` (``None`` for other frames): ``format``, ``files`` (per file: path,
    point count and, for LAS, ``scales``, ``offsets``, ``crs``) and ``float32_exact``
    (whether float32 positions keep every coordinate at the file's scale).

    Examples
    --------
    >>> import pandas as pd
    >>> source_attributes(pd.DataFrame({"x": [1.0]})) is None
    True
    """
    meta = getattr(df, "_meta", df)
    return getattr(meta, "attrs", {}).get(SOURCE_KEY)


def read_las(paths, points_per_partition=DEFAULT_POINTS_PER_PARTITION, storage_options=None):
    """Read LAS/LAZ files into a dask DataFrame, one partition per point range.

    Only the headers are read now; each task reads its range (LAZ: from the start of
    a LAZ chunk, ranges being whole chunks).  Columns: ``x, y, z`` as float64
    (``X * scale + offset``, exact at the file's scale), then the standard dimensions
    the point format has, with their LAS dtypes: ``intensity`` (uint16),
    ``return_number``, ``number_of_returns``, ``classification``, ``user_data``
    (uint8), ``point_source_id`` (uint16), ``gps_time`` (float64), ``red, green, blue``
    (uint16).  :func:`source_attributes` gives the scales, offsets and CRS per file and
    whether float32 can hold the coordinates (``zv-dask convert`` then stores float64).

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Files, globs (``"tiles/*.laz"``) or fsspec URLs; tiles must share their
        dimensions (point formats with the same standard dimensions).
    points_per_partition : int or None, default 1,000,000
        Points per task (rounded up to whole LAZ chunks); ``None``: one per file.
    storage_options : dict, optional
        fsspec options of remote ``paths`` (``s3://...``).

    Returns
    -------
    dask.dataframe.DataFrame

    Raises
    ------
    InputFileError
        A file that is not LAS/LAZ, is truncated, or tiles with different dimensions.
    MissingDependencyError
        laspy is missing, or lazrs for a LAZ file.

    Examples
    --------
    >>> import os, tempfile, laspy, numpy as np, zv_dask
    >>> header = laspy.LasHeader(point_format=1, version="1.2")
    >>> header.scales, header.offsets = [0.01] * 3, [500000.0, 4e6, 0.0]
    >>> las = laspy.LasData(header, laspy.ScaleAwarePointRecord.zeros(2, header=header))
    >>> las.x, las.y = np.array([500000.5, 500001.25]), np.array([4e6, 4e6 + 2])
    >>> path = os.path.join(tempfile.mkdtemp(), "tile.las")
    >>> las.write(path)
    >>> df = zv_dask.read_las(path)
    >>> df.x.compute().tolist(), zv_dask.source_attributes(df)["float32_exact"]
    ([500000.5, 500001.25], False)
    """
    files = [L.read_header(p, storage_options)
             for p in expand_paths(paths, "LAS/LAZ file", storage_options)]
    first = _same_columns(files, "dimensions", "convert tiles of one point format together")
    parts = [(f.path, a, b) for f in files for a, b in L.point_ranges(f, points_per_partition)]
    source = {"format": "las", "point_count": sum(f.point_count for f in files),
              "files": [f.describe() for f in files],
              "float32_exact": all(L.float32_holds(f) for f in files)}
    return _frame(L.LasRangeReader(first.columns, storage_options), parts,
                  L.empty_frame(first.columns), "read-las", source)


def read_ply(paths, rows_per_partition=DEFAULT_POINTS_PER_PARTITION, storage_options=None):
    """Read the vertices of PLY files into a dask DataFrame.

    Every scalar property of the ``vertex`` element is a column with its PLY type
    (``x, y, z`` float32 or float64, ``red, green, blue`` uint8, ``nx ...``).  A binary
    PLY whose first element is ``vertex`` is read by row range; an ASCII PLY in one
    task per file.  Faces are not read here (:func:`~zv_dask.read_ply_mesh` reads a
    mesh): a PLY with a non-empty ``face`` (or other) element warns with
    :class:`~zv_dask.errors.ZVWarning` and gives its vertices; list properties of
    vertices are skipped with the same warning.

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Files, globs or fsspec URLs; all with the same vertex properties.
    rows_per_partition : int or None, default 1,000,000
        Vertices per task for range-readable files; ``None``: one task per file.
    storage_options : dict, optional
        fsspec options of remote ``paths``.

    Returns
    -------
    dask.dataframe.DataFrame

    Raises
    ------
    InputFileError
        A file that is not PLY, has no vertices, is truncated, or files whose vertex
        properties differ.

    Examples
    --------
    >>> import os, tempfile, numpy as np, plyfile, zv_dask
    >>> v = np.array([(0.5, 1.0, 2.0, 255, 0, 10)], dtype=[("x", "f4"), ("y", "f4"),
    ...              ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    >>> path = os.path.join(tempfile.mkdtemp(), "cloud.ply")
    >>> plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(path)
    >>> df = zv_dask.read_ply(path).compute()
    >>> df.columns.tolist(), str(df.red.dtype)
    (['x', 'y', 'z', 'red', 'green', 'blue'], 'uint8')
    """
    files = [P.read_header(p, storage_options)
             for p in expand_paths(paths, "PLY file", storage_options)]
    first = _same_columns(files, "vertex properties", "convert files with the same properties")
    for f in files:
        ignored = [f"{n} ({c})" for n, c in f.other_elements if c] + list(f.skipped)
        if ignored:
            warnings.warn(ZVWarning(
                f"{f.path}: reading its {f.vertex_count} vertices as points; "
                f"{', '.join(ignored)} not read (read_ply_mesh reads the mesh)"),
                stacklevel=2)
    parts = [(f, a, b) for f in files for a, b in P.row_ranges(f, rows_per_partition)]
    axes = [t for n, t in first.columns if n in ("x", "y", "z")]
    source = {"format": "ply", "point_count": sum(f.vertex_count for f in files),
              "files": [{"path": f.path, "point_count": f.vertex_count, "format": f.fmt}
                        for f in files],
              "float32_exact": all(t != "float64" for t in axes)}
    return _frame(P.PlyRangeReader(first.columns, storage_options), parts,
                  P.empty_frame(first.columns), "read-ply", source)
