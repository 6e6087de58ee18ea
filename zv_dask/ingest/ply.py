"""PLY point clouds (plyfile): the vertex element's scalar properties as columns.

A binary PLY whose first element is ``vertex`` without list properties is read by row
range straight from the file (bounded memory); any other PLY (ASCII, or vertices after
another element) is parsed whole by plyfile in one task.  Faces are not read here
(:func:`zv_dask.ingest.meshes.parse_ply_mesh` reads meshes): :func:`read_header` reports
them so the caller can warn or pick the mesh reader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zv_dask.errors import InputFileError, MissingDependencyError
from zv_dask.ingest.files import open_binary

INSTALL = "pip install 'zv_dask[mesh]' (plyfile)"


def _plyfile():
    try:
        import plyfile
    except ImportError:
        raise MissingDependencyError(f"reading PLY needs plyfile; {INSTALL}") from None
    return plyfile


@dataclass(frozen=True)
class PlyFile:
    """What one PLY header says; small and picklable."""

    path: str
    vertex_count: int
    columns: tuple            # ((name, numpy dtype str), ...) of scalar vertex properties
    skipped: tuple            # list properties of the vertex element (not read)
    other_elements: tuple     # ((name, count), ...), e.g. (("face", 12),)
    data_offset: int | None   # where vertex rows start when they can be read by range
    row_dtype: str | None     # numpy dtype descr (JSON) of one binary vertex row
    fmt: str                  # ascii, binary_little_endian, binary_big_endian


def read_header(path: str, storage_options=None) -> PlyFile:
    """The header of a PLY file (no vertex read); raises
    :class:`~zv_dask.errors.InputFileError` for a file that is not a PLY with a
    ``vertex`` element or that is shorter than its header says."""
    import json

    plyfile = _plyfile()
    try:
        with open_binary(path, storage_options) as f:
            head = plyfile.PlyData._parse_header(f)
            offset = f.tell()
            size = f.seek(0, 2)
    except (plyfile.PlyParseError, ValueError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path} is not a readable PLY file ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); check the file") from None
    names = [e.name for e in head.elements]
    if "vertex" not in names:
        raise InputFileError(f"{path} is a PLY without a 'vertex' element (it has "
                             f"{', '.join(names) or 'none'}); nothing to read as points")
    vertex = head["vertex"]
    scalar = [p for p in vertex.properties if not isinstance(p, plyfile.PlyListProperty)]
    lists = tuple(p.name for p in vertex.properties if isinstance(p, plyfile.PlyListProperty))
    fmt = "ascii" if head.text else ("binary_little_endian" if head.byte_order == "<"
                                     else "binary_big_endian")
    columns = tuple((p.name, np.dtype(p.val_dtype).name) for p in scalar)
    ranged = not head.text and names[0] == "vertex" and not lists
    row = vertex.dtype(head.byte_order) if ranged else None
    if ranged and size < offset + vertex.count * row.itemsize:
        raise InputFileError(f"{path} is truncated: its header lists {vertex.count} "
                             f"vertices ({offset + vertex.count * row.itemsize} bytes with the "
                             f"header) but the file holds {size} bytes; re-export the file")
    return PlyFile(path=path, vertex_count=int(vertex.count), columns=columns, skipped=lists,
                   other_elements=tuple((e.name, int(e.count)) for e in head.elements
                                        if e.name != "vertex"),
                   data_offset=offset if ranged else None,
                   row_dtype=json.dumps(row.descr) if ranged else None, fmt=fmt)


def row_ranges(info: PlyFile, rows_per_partition=None) -> list:
    """``(start, stop)`` vertex ranges (pure): one for the whole file unless it can be
    read by range and ``rows_per_partition`` is given.

    Examples
    --------
    >>> f = PlyFile("a.ply", 10, (), (), (), 100, "[]", "binary_little_endian")
    >>> row_ranges(f, 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    n = info.vertex_count
    if info.data_offset is None or not rows_per_partition or n == 0:
        return [(0, n)]
    step = max(int(rows_per_partition), 1)
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def empty_frame(columns):
    """The zero-row frame of the partitions: the vertex properties in file order."""
    import pandas as pd

    return pd.DataFrame({n: np.zeros(0, np.dtype(t)) for n, t in columns})


class PlyRangeReader:
    """Reads vertex rows of one file in a task: ``reader((info, start, stop))``;
    ``columns=`` (dask's column projection) limits the output."""

    def __init__(self, columns, storage_options=None):
        self.columns = tuple(columns)
        self.storage_options = storage_options

    def __dask_tokenize__(self):
        return ("PlyRangeReader", self.columns, sorted((self.storage_options or {}).items()))

    def __call__(self, part, columns=None):
        import json

        import pandas as pd

        info, start, stop = part
        if info.data_offset is not None:
            row = np.dtype([tuple(d) for d in json.loads(info.row_dtype)])
            with open_binary(info.path, self.storage_options) as f:
                f.seek(info.data_offset + start * row.itemsize)
                buf = f.read((stop - start) * row.itemsize)
            if len(buf) != (stop - start) * row.itemsize:
                raise InputFileError(f"{info.path} is truncated: vertices {start}..{stop} "
                                     "do not fit in the file; re-export it")
            rows = np.frombuffer(buf, row)
        else:
            plyfile = _plyfile()
            try:
                with open_binary(info.path, self.storage_options) as f:
                    rows = plyfile.PlyData.read(f, mmap=False)["vertex"].data[start:stop]
            except (plyfile.PlyParseError, ValueError, EOFError, OSError) as exc:
                raise InputFileError(
                    f"{info.path}: vertices do not parse ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:200]}); the file may be damaged") from None
        dtypes = dict(self.columns)
        keep = self.columns if columns is None else [(n, dtypes[n]) for n in columns
                                                     if n in dtypes]
        return pd.DataFrame({n: np.asarray(rows[n]).astype(t) for n, t in keep})
