"""Tractograms (TRK, TCK with nibabel; TRX with trx-python): offset indexes at build
time, streamline ranges in tasks.

TRK and TCK are indexed by one sequential pass over the file's bytes with numpy (TRK:
the point count of every streamline, hopping from record to record; TCK: the NaN rows
that end streamlines), never by loading streamlines through nibabel.  A task then
reads its byte range and returns vertex rows ``x, y, z, object_id, <per-point data>``
in RAS+ mm, the values ``nibabel.streamlines.load(...).streamlines`` gives (float32;
TRK's voxmm -> RAS+ affine applied with nibabel's own ``apply_affine``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from zv_dask.errors import InputFileError, MissingDependencyError
from zv_dask.ingest.files import open_binary

INSTALL = "pip install 'zv_dask[tractography]' (nibabel and trx-python)"
WINDOW_WORDS = 4 << 20  # 16 MiB read at a time while indexing


def nibabel_streamlines():
    try:
        import nibabel.streamlines as ns
    except ImportError:
        raise MissingDependencyError(f"reading TRK/TCK needs nibabel; {INSTALL}") from None
    return ns


def _file_size(f) -> int:
    return f.seek(0, 2)


def _brief(exc) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


# --------------------------------------------------------------------------- TRK


@dataclass(frozen=True)
class TrkFile:
    """What a TRK file's header and offset index say; small and picklable."""

    path: str
    endian: str              # "<" or ">"
    data_offset: int
    scalars_per_point: int
    properties_per_streamline: int
    point_columns: tuple     # ((column, index into the scalars), ...)
    property_columns: tuple  # ((column, index into the properties), ...)
    affine: tuple            # voxmm -> RAS+ (float32, 4x4 nested), what nibabel applies
    header: dict             # JSON-able header facts
    counts: np.ndarray       # points per streamline
    record_starts: np.ndarray  # byte position of each streamline's count word
    properties: np.ndarray   # (streamlines, properties) float32

    @property
    def streamline_count(self) -> int:
        return len(self.counts)

    def describe(self) -> dict:
        return {"path": self.path, "streamline_count": self.streamline_count,
                "point_count": int(self.counts.sum()), **self.header}

    def part(self, first: int, stop: int) -> "TrkFile":
        """This file's index cut to streamlines ``first..stop`` (what a task needs)."""
        return replace(self, counts=self.counts[first:stop],
                       record_starts=self.record_starts[first:stop],
                       properties=self.properties[:0], header={})


def _named_slices(names, total: int, default: str) -> list:
    """nibabel's names of TRK scalars/properties as ``(column, index)`` pairs: a name
    of ``n > 1`` values gives ``name_0 ... name_{n-1}``, what is left ``default``."""
    from nibabel.streamlines.trk import decode_value_from_name

    out, at = [], 0
    for raw in names:
        name, n = decode_value_from_name(raw)
        if n == 0:
            continue
        out += [(name, at)] if n == 1 else [(f"{name}_{j}", at + j) for j in range(n)]
        at += n
    if at < total:
        out += ([(default, at)] if total - at == 1
                else [(f"{default}_{j}", at + j) for j in range(total - at)])
    return out


class _Words:
    """int32 words of a file read through a moving window (bounded memory); ``ints``
    is the window as native Python-int memory for fast scalar reads."""

    def __init__(self, f, offset: int, dtype):
        self.f, self.offset, self.dtype = f, offset, np.dtype(dtype)
        self.start, self.size = 0, 0
        self.buf, self.ints = np.zeros(0, self.dtype), memoryview(b"").cast("i")

    def load(self, w: int, m: int) -> None:
        self.f.seek(self.offset + 4 * w)
        raw = self.f.read(4 * max(m, WINDOW_WORDS))
        self.buf = np.frombuffer(raw[:len(raw) // 4 * 4], self.dtype)
        native = self.buf.astype(np.int32)  # native byte order, a copy
        self.start, self.size, self.ints = w, len(native), memoryview(native).cast("B").cast("i")

    def get(self, w: int, m: int) -> np.ndarray:
        if not (self.start <= w and w + m <= self.start + self.size):
            self.load(w, m)
        return self.buf[w - self.start:w - self.start + m]


def read_trk_header(path: str, storage_options=None) -> TrkFile:
    """Header and offset index of a TRK file (one pass over the count words).

    Raises :class:`~zv_dask.errors.InputFileError` for a file that is not TRK or is
    truncated (naming the streamline and byte position)."""
    ns = nibabel_streamlines()
    from nibabel.streamlines.trk import TrkFile as NibTrk, get_affine_trackvis_to_rasmm

    try:
        with open_binary(path, storage_options) as f:
            hdr = NibTrk._read_header(f)
            size = _file_size(f)
            index = _scan_trk(f, hdr, size, path)
    except (ns.tractogram_file.HeaderError, ValueError, OSError, KeyError) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"{path} is not a readable TRK file ({_brief(exc)}); check "
                             "the file") from None
    S, P = int(hdr["nb_scalars_per_point"]), int(hdr["nb_properties_per_streamline"])
    affine = get_affine_trackvis_to_rasmm(hdr)
    facts = {"voxel_to_rasmm": np.asarray(hdr["voxel_to_rasmm"], float).tolist(),
             "voxmm_to_rasmm": np.asarray(affine, float).tolist(),
             "dimensions": [int(v) for v in hdr["dimensions"]],
             "voxel_sizes": [float(v) for v in hdr["voxel_sizes"]],
             "voxel_order": hdr["voxel_order"].decode("latin1"),
             "version": int(hdr["version"])}
    return TrkFile(path=path, endian=hdr["endianness"], data_offset=int(hdr["_offset_data"]),
                   scalars_per_point=S, properties_per_streamline=P,
                   point_columns=tuple(_named_slices(hdr["scalar_name"] if S else [], S,
                                                     "scalars")),
                   property_columns=tuple(_named_slices(hdr["property_name"] if P else [],
                                                        P, "properties")),
                   affine=tuple(map(tuple, np.asarray(affine, np.float32).tolist())),
                   header=facts, counts=index[0], record_starts=index[1],
                   properties=index[2])


def _scan_trk(f, hdr, size: int, path: str) -> tuple:
    """``(counts, record byte starts, properties)``: hop from count word to count word."""
    i4 = np.dtype(hdr["endianness"] + "i4")
    offset = int(hdr["_offset_data"])
    k = 3 + int(hdr["nb_scalars_per_point"])
    P = int(hdr["nb_properties_per_streamline"])
    total = (size - offset) // 4
    listed = int(hdr["nb_streamlines"])
    limit = listed if listed > 0 else None
    words = _Words(f, offset, i4)
    counts, starts, props = [], [], []
    w = 0
    while limit is None or len(counts) < limit:
        if w >= total:
            if limit is not None or offset + 4 * w < size:
                raise InputFileError(
                    f"{path} is truncated: its header lists {listed} streamlines but the "
                    f"file ends (byte {size}) after streamline {len(counts) - 1}; re-export "
                    "or re-copy the file")
            break
        j = w - words.start
        if not 0 <= j < words.size:
            words.load(w, 1)
            j = 0
        n = words.ints[j]
        end = w + 1 + n * k + P
        if n < 0 or end > total:
            raise InputFileError(
                f"{path} is truncated or damaged: streamline {len(counts)} at byte "
                f"{offset + 4 * w} declares {n} points ({4 * (end - w)} bytes) but the file "
                f"ends at byte {size}; re-export or re-copy the file")
        if P:
            props.append(words.get(end - P, P).view(hdr["endianness"] + "f4").copy())
        counts.append(n)
        starts.append(offset + 4 * w)
        w = end
    properties = (np.stack(props).astype(np.float32) if props
                  else np.zeros((len(counts), P), np.float32))
    return np.asarray(counts, np.int64), np.asarray(starts, np.int64), properties


def streamline_ranges(count: int, per_partition=None) -> list:
    """``(first, stop)`` streamline ranges of one file (pure).

    Examples
    --------
    >>> streamline_ranges(250, 100)
    [(0, 100), (100, 200), (200, 250)]
    """
    if not per_partition or count == 0:
        return [(0, count)]
    step = max(int(per_partition), 1)
    return [(a, min(a + step, count)) for a in range(0, count, step)]


def _apply_nibabel_affine(affine, pts: np.ndarray) -> np.ndarray:
    """What ``Tractogram.to_world`` does to float32 points (identity: nothing)."""
    from nibabel.affines import apply_affine

    aff = np.asarray(affine, np.float32)
    if np.all(aff == np.eye(4)):
        return pts
    return apply_affine(aff, pts, inplace=True)


def vertex_frame(pts, ids, attributes: dict):
    import pandas as pd

    data = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "object_id": ids}
    data.update(attributes)
    return pd.DataFrame(data)


def empty_vertices(columns, dtype="float32"):
    """Zero-row vertex frame: x, y, z, object_id, then ``columns`` ((name, dtype), ...)."""
    return vertex_frame(np.zeros((0, 3), dtype), np.zeros(0, np.int64),
                        {n: np.zeros(0, t) for n, t in columns})


class TrkRangeReader:
    """Reads the streamlines of ``info`` (a :meth:`TrkFile.part`) in a task:
    ``reader((info, first_object_id))``."""

    def __init__(self, storage_options=None):
        self.storage_options = storage_options

    def __dask_tokenize__(self):
        return ("TrkRangeReader", sorted((self.storage_options or {}).items()))

    def __call__(self, part):
        info, first = part
        counts, stop = info.counts, first + info.streamline_count
        if not len(counts):
            return empty_vertices([(n, "float32") for n, _ in info.point_columns])
        k, P = 3 + info.scalars_per_point, info.properties_per_streamline
        a = int(info.record_starts[0])
        b = a + 4 * int((1 + counts * k + P).sum())
        try:
            with open_binary(info.path, self.storage_options) as f:
                f.seek(a)
                raw = f.read(b - a)
        except OSError as exc:
            raise InputFileError(f"{info.path}: streamlines {first}..{stop} (bytes {a}..{b}) "
                                 f"do not read ({_brief(exc)})") from None
        if len(raw) != b - a:
            raise InputFileError(f"{info.path} is truncated: streamlines {first}..{stop} need "
                                 f"bytes {a}..{b}, the file ends at byte {a + len(raw)}; "
                                 "re-copy the file")
        words = np.frombuffer(raw, info.endian + "i4")
        rec = 1 + counts * k + P
        starts = np.cumsum(rec) - rec
        if not np.array_equal(words[starts], counts):
            raise InputFileError(f"{info.path} changed since it was indexed (streamlines "
                                 f"{first}..{stop}); read it again")
        keep = np.ones(len(words), bool)  # every word but counts and properties
        keep[starts] = False
        for j in range(P):
            keep[starts + rec - P + j] = False
        values = words.view(info.endian + "f4")[keep].reshape(-1, k)
        pts = np.ascontiguousarray(values[:, :3], dtype=np.float32)
        pts = _apply_nibabel_affine(info.affine, pts)
        ids = np.repeat(np.arange(first, stop, dtype=np.int64), counts)
        attrs = {n: values[:, 3 + j].astype(np.float32) for n, j in info.point_columns}
        return vertex_frame(pts, ids, attrs)


# --------------------------------------------------------------------------- TCK


@dataclass(frozen=True)
class TckFile:
    """A TCK file's header and offset index (rows of float triplets)."""

    path: str
    dtype: str                # e.g. "<f4"
    data_offset: int
    starts: np.ndarray        # first row of each streamline
    stops: np.ndarray         # its delimiter row (exclusive end)
    header: dict

    @property
    def streamline_count(self) -> int:
        return len(self.starts)

    def describe(self) -> dict:
        return {"path": self.path, "streamline_count": self.streamline_count,
                "point_count": int((self.stops - self.starts).sum()), **self.header}

    def part(self, first: int, stop: int) -> "TckFile":
        """This file's index cut to streamlines ``first..stop``."""
        return replace(self, starts=self.starts[first:stop], stops=self.stops[first:stop],
                       header={})


def read_tck_header(path: str, storage_options=None) -> TckFile:
    """Header and offset index of a TCK file: the all-NaN rows ending streamlines,
    found with numpy over windows of the data; the file must end with one
    ``inf inf inf`` row (as nibabel requires)."""
    ns = nibabel_streamlines()
    from nibabel.streamlines.tck import TckFile as NibTck

    try:
        with open_binary(path, storage_options) as f:
            hdr = NibTck._read_header(f)
            size = _file_size(f)
            dtype = np.dtype(hdr["_dtype"])
            offset = int(hdr["_offset_data"])
            starts, stops = _scan_tck(f, dtype, offset, size, path)
    except (ValueError, OSError, KeyError, ns.tractogram_file.HeaderError,
            ns.tractogram_file.DataError) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"{path} is not a readable TCK file ({_brief(exc)}); check "
                             "the file") from None
    facts = {k: str(v) for k, v in hdr.items()
             if not k.startswith("_") and k not in ("voxel_to_rasmm",)}
    return TckFile(path=path, dtype=dtype.str, data_offset=offset, starts=starts,
                   stops=stops, header={"datatype": dtype.str, "fields": facts})


def _scan_tck(f, dtype, offset: int, size: int, path: str) -> tuple:
    row_bytes = 3 * dtype.itemsize
    if (size - offset) % row_bytes:
        raise InputFileError(f"{path} is damaged: its data ({size - offset} bytes from byte "
                             f"{offset}) are not whole {row_bytes}-byte triplets; re-export "
                             "the file")
    rows = (size - offset) // row_bytes
    step = max(WINDOW_WORDS // 3, 1)
    delims, last = [], None
    f.seek(offset)
    for a in range(0, rows, step):
        block = np.frombuffer(f.read(min(step, rows - a) * row_bytes), dtype).reshape(-1, 3)
        delims.append(np.flatnonzero(np.isnan(block).all(axis=1)) + a)
        last = block[-1]
    d = np.concatenate(delims) if delims else np.zeros(0, np.int64)
    # nibabel's rule: after the last delimiter comes exactly one 'inf inf inf' row
    ends_well = last is not None and bool(np.isinf(last).all()) and (
        d[-1] == rows - 2 if len(d) else rows == 1)
    if not ends_well:
        where = (f"after streamline {len(d) - 1} (byte {offset + (int(d[-1]) + 1) * row_bytes})"
                 if len(d) else "(no streamline delimiter found)")
        raise InputFileError(f"{path} is a bad TCK file: no single end-of-file marker "
                             f"'inf inf inf' {where}; the file may be truncated: re-export it")
    starts = np.concatenate([[0], d[:-1] + 1]).astype(np.int64) if len(d) else d
    keep = d > starts  # nibabel skips empty streamlines (two delimiters in a row)
    return starts[keep], d[keep].astype(np.int64)


class TckRangeReader:
    """Reads the streamlines of ``info`` (a :meth:`TckFile.part`):
    ``reader((info, first_object_id))``; values cast to float32 as nibabel does."""

    def __init__(self, storage_options=None):
        self.storage_options = storage_options

    def __dask_tokenize__(self):
        return ("TckRangeReader", sorted((self.storage_options or {}).items()))

    def __call__(self, part):
        info, first = part
        stop = first + info.streamline_count
        if first == stop:
            return empty_vertices([])
        dtype = np.dtype(info.dtype)
        row_bytes = 3 * dtype.itemsize
        r0, r1 = int(info.starts[0]), int(info.stops[-1])
        a, b = info.data_offset + r0 * row_bytes, info.data_offset + r1 * row_bytes
        with open_binary(info.path, self.storage_options) as f:
            f.seek(a)
            raw = f.read(b - a)
        if len(raw) != b - a:
            raise InputFileError(f"{info.path} is truncated: streamlines {first}..{stop} need "
                                 f"bytes {a}..{b}, the file ends at byte {a + len(raw)}")
        rows = np.frombuffer(raw, dtype).astype("<f4").reshape(-1, 3)
        starts, counts = info.starts - r0, info.stops - info.starts
        T = int(counts.sum())
        row = np.repeat(starts, counts) + np.arange(T) - np.repeat(np.cumsum(counts) - counts,
                                                                   counts)
        pts = np.ascontiguousarray(rows[row], dtype=np.float32)
        ids = np.repeat(np.arange(first, stop, dtype=np.int64), counts)
        return vertex_frame(pts, ids, {})
