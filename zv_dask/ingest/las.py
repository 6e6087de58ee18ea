"""LAS/LAZ point clouds (laspy, lazrs for LAZ): headers at build time, point ranges in
tasks.

Coordinates are ``X * scale + offset`` in float64, exact at the file's scale; the
header tells whether float32 could hold them too (:func:`float32_holds`).  Standard
dimensions become columns with their LAS dtypes (bit fields as uint8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zv_dask.errors import InputFileError, MissingDependencyError
from zv_dask.ingest.files import open_binary

#: the dimensions kept as columns, in this order, when the point format has them
STANDARD_DIMENSIONS = ("intensity", "return_number", "number_of_returns", "classification",
                       "user_data", "point_source_id", "gps_time", "red", "green", "blue")
LAZ_VLR_RECORD = 22204  # the laszip VLR: its chunk size aligns partitions to LAZ chunks
VARIABLE_CHUNKS = 2**32 - 1
INSTALL = "pip install 'zv_dask[las]' (laspy and lazrs)"


def _laspy():
    try:
        import laspy
    except ImportError:
        raise MissingDependencyError(f"reading LAS/LAZ needs laspy; {INSTALL}") from None
    return laspy


@dataclass(frozen=True)
class LasFile:
    """What one file's header says; small and picklable."""

    path: str
    point_count: int
    scales: tuple
    offsets: tuple
    mins: tuple
    maxs: tuple
    point_format: int
    version: str
    compressed: bool
    laz_chunk_size: int | None
    columns: tuple          # ((name, numpy dtype str), ...) after x, y, z
    crs: dict | None

    def describe(self) -> dict:
        """JSON-able record of the file (stored in the store's root attributes)."""
        return {"path": self.path, "point_count": self.point_count,
                "scales": list(self.scales), "offsets": list(self.offsets),
                "point_format": self.point_format, "version": self.version, "crs": self.crs}


def _crs(header) -> dict | None:
    """The CRS VLR as ``{"wkt": ...}`` or ``{"epsg": n}`` (no pyproj needed)."""
    for vlr in list(header.vlrs) + list(getattr(header, "evlrs", None) or []):
        if vlr.record_id == 2112 and hasattr(vlr, "string"):
            return {"wkt": vlr.string.rstrip("\0")}
    for vlr in header.vlrs:
        if vlr.record_id == 34735 and hasattr(vlr, "geo_keys"):
            for key in vlr.geo_keys:  # ProjectedCSTypeGeoKey, then GeographicTypeGeoKey
                if key.id in (3072, 2048) and 0 < key.value_offset < 32767:
                    return {"epsg": int(key.value_offset)}
    return None


def _column_dtype(dim) -> str:
    return "uint8" if dim.dtype is None else np.dtype(dim.dtype).name


def read_header(path: str, storage_options=None) -> LasFile:
    """The header of a LAS/LAZ file (points untouched).

    Raises :class:`~zv_dask.errors.InputFileError` for a file that is not LAS or whose
    points do not all fit in it, :class:`~zv_dask.errors.MissingDependencyError` for a
    LAZ without a LAZ backend (lazrs).
    """
    laspy = _laspy()
    try:
        with open_binary(path, storage_options) as f:
            header = laspy.LasHeader.read_from(f)
            size = f.seek(0, 2)
    except (laspy.errors.LaspyException, ValueError, EOFError, OSError) as exc:
        raise InputFileError(f"{path} is not a readable LAS/LAZ file ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); check the file") from None
    compressed = bool(header.are_points_compressed)
    chunk = None
    if compressed:
        if not laspy.LazBackend.detect_available():
            raise MissingDependencyError(f"{path} is LAZ (compressed) and no LAZ backend is "
                                         f"installed; pip install lazrs (or {INSTALL})")
        import lazrs

        vlr = [v for v in header.vlrs if v.record_id == LAZ_VLR_RECORD]
        chunk = int(lazrs.LazVlr(vlr[0].record_data).chunk_size()) if vlr else None
    else:
        need = header.offset_to_point_data + header.point_count * header.point_format.size
        if size < need:
            raise InputFileError(
                f"{path} is truncated: its header lists {header.point_count} points "
                f"({need} bytes with the header) but the file holds {size} bytes; "
                "re-export or re-copy the file")
    dims = {d.name: d for d in header.point_format.dimensions}
    columns = tuple((n, _column_dtype(dims[n])) for n in STANDARD_DIMENSIONS if n in dims)
    return LasFile(path=path, point_count=int(header.point_count),
                   scales=tuple(float(s) for s in header.scales),
                   offsets=tuple(float(o) for o in header.offsets),
                   mins=tuple(float(v) for v in header.mins),
                   maxs=tuple(float(v) for v in header.maxs),
                   point_format=int(header.point_format.id), version=str(header.version),
                   compressed=compressed, laz_chunk_size=chunk, columns=columns,
                   crs=_crs(header))


def point_ranges(info: LasFile, points_per_partition=None) -> list:
    """``(start, stop)`` point ranges of one file (pure): the whole file when
    ``points_per_partition`` is None, else runs of that many points, rounded up to a
    whole number of LAZ chunks so a task never decompresses a chunk another task reads.

    Examples
    --------
    >>> f = LasFile("a.laz", 120_000, (0.01,) * 3, (0.0,) * 3, (0,) * 3, (1,) * 3, 3,
    ...             "1.2", True, 50_000, (), None)
    >>> point_ranges(f, 60_000)
    [(0, 100000), (100000, 120000)]
    """
    n = info.point_count
    if not points_per_partition or n == 0:
        return [(0, n)]
    step = max(int(points_per_partition), 1)
    chunk = info.laz_chunk_size
    if info.compressed and chunk and chunk != VARIABLE_CHUNKS:
        step = -(-step // chunk) * chunk
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def float32_holds(info: LasFile) -> bool:
    """Can float32 hold every coordinate of the file at its scale?  True when the
    float32 spacing at the largest ``|x|`` is at most half the scale on every axis, so
    ``round((x32 - offset) / scale)`` gives back the integer X.

    Examples
    --------
    >>> utm = LasFile("t.las", 1, (0.01,) * 3, (500000.0, 4e6, 0.0), (500000.0, 4e6, 0.0),
    ...               (501000.0, 4.001e6, 100.0), 3, "1.2", False, None, (), None)
    >>> float32_holds(utm)
    False
    """
    for s, lo, hi in zip(info.scales, info.mins, info.maxs):
        top = np.float32(max(abs(lo), abs(hi)) * (1 + 1e-6))
        if not np.isfinite(top) or float(np.spacing(top)) > s / 2:
            return False
    return True


def empty_frame(columns):
    """The zero-row frame of the partitions (x, y, z float64, then the dimensions)."""
    import pandas as pd

    data = {a: np.zeros(0, np.float64) for a in ("x", "y", "z")}
    data.update({n: np.zeros(0, np.dtype(t)) for n, t in columns})
    return pd.DataFrame(data)


def _read_errors(laspy) -> tuple:
    """What a damaged or truncated file raises (lazrs has its own error type)."""
    out = (laspy.errors.LaspyException, ValueError, EOFError, OSError)
    try:
        import lazrs

        return out + (lazrs.LazrsError,)
    except ImportError:
        return out


# the LAZ layers (point formats 6-10) each column needs; others are not decompressed
_LAYERS = {"z": "Z", "intensity": "INTENSITY", "classification": "CLASSIFICATION",
           "user_data": "USER_DATA", "point_source_id": "POINT_SOURCE_ID",
           "gps_time": "GPS_TIME", "red": "RGB", "green": "RGB", "blue": "RGB"}


def decompression_selection(laspy, columns):
    """The LAZ layers ``columns`` need (x, y and the returns are always decoded)."""
    sel = laspy.DecompressionSelection.XY_RETURNS_CHANNEL
    for c in columns:
        if c in _LAYERS:
            sel |= getattr(laspy.DecompressionSelection, _LAYERS[c])
    return sel


class LasRangeReader:
    """Reads one point range of a file in a task: ``reader((path, start, stop))``.

    ``columns=`` (dask's column projection) limits the output, and for LAZ point
    formats 6-10 what is decompressed: a pass over the axes decodes only x, y, z."""

    def __init__(self, columns, storage_options=None):
        self.columns = tuple(columns)
        self.storage_options = storage_options

    def __dask_tokenize__(self):
        return ("LasRangeReader", self.columns, sorted((self.storage_options or {}).items()))

    def __call__(self, part, columns=None):
        import pandas as pd

        laspy = _laspy()
        path, start, stop = part
        wanted = ["x", "y", "z"] + [n for n, _ in self.columns]
        if columns is not None:  # in the order asked
            known = set(wanted)
            wanted = [c for c in columns if c in known]
        try:
            with laspy.LasReader(open_binary(path, self.storage_options),
                                 decompression_selection=decompression_selection(
                                     laspy, wanted)) as reader:
                if start:
                    reader.seek(start)
                points = reader.read_points(stop - start)
                h = reader.header
        except _read_errors(laspy) as exc:
            raise InputFileError(
                f"{path}: points {start}..{stop} do not read ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}); the file may be truncated or damaged"
            ) from None
        if len(points) != stop - start:
            raise InputFileError(f"{path} is truncated: points {start}..{stop} were "
                                 f"expected, {len(points)} read; re-export the file")
        dtypes, data = dict(self.columns), {}
        axes = {a: (raw, float(s), float(o))
                for a, raw, s, o in zip("xyz", ("X", "Y", "Z"), h.scales, h.offsets)}
        for name in wanted:
            if name in axes:
                raw, s, o = axes[name]
                data[name] = np.asarray(points[raw]).astype(np.float64) * s + o
            else:
                data[name] = np.asarray(points[name]).astype(dtypes[name], copy=False)
        return pd.DataFrame(data)
