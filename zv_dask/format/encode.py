"""numpy -> bytes of one cell, the inverse of :mod:`zv_dask.format.decode`.  Pure: no IO.

Layouts are the reference writer's (checked byte for byte in the tests): a cell file
is zarr's one-item ``vlen-bytes`` frame around the payload, optionally zstd-compressed;
fragment indexes are ``fragment_index_v1`` blobs of ranges; cross-level link cells are
ragged blobs with one group of ``(M, 2)`` int64 rows.
"""

from __future__ import annotations

import struct

import numpy as np

FRAGMENT_MAGIC = 0x5A564647
_HEADER = struct.Struct("<IHHII")

ZSTD_CODEC = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}
VLEN_CODEC = {"name": "vlen-bytes", "configuration": {}}


def codecs_for(compressor) -> list:
    """The codec list of a grid array for a ``compressor`` option (None or ``"zstd"``)."""
    if compressor is None:
        return [dict(VLEN_CODEC)]
    if compressor == "zstd":
        return [dict(VLEN_CODEC), {"name": "zstd", "configuration": dict(ZSTD_CODEC["configuration"])}]
    raise ValueError(f"compressor {compressor!r} is not supported (use None or 'zstd')")


def frame(payload, compressor=None) -> bytes:
    """A cell file: ``uint32 1, uint32 nbytes, payload`` (then the byte codecs)."""
    payload = bytes(payload)
    raw = struct.pack("<II", 1, len(payload)) + payload
    if compressor == "zstd":
        import numcodecs

        raw = bytes(numcodecs.Zstd(level=0, checksum=False).encode(raw))
    elif compressor is not None:
        raise ValueError(f"compressor {compressor!r} is not supported")
    return raw


def rows_payload(values: np.ndarray, dtype) -> bytes:
    """Rows as little-endian C-order bytes of ``dtype`` (positions, attributes, links)."""
    return np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def fragment_index(counts) -> bytes:
    """A ``fragment_index_v1`` blob whose fragments are ranges tiling ``[0, sum(counts))``."""
    counts = np.asarray(counts, np.int64)
    f = len(counts)
    out = [_HEADER.pack(FRAGMENT_MAGIC, 1, 0, f, f)]
    if f == 0:
        return out[0]
    nbytes = (f + 7) // 8
    bitmap = np.zeros(((nbytes + 7) // 8) * 8, np.uint8)
    bitmap[: f // 8] = 0xFF
    if f % 8:
        bitmap[f // 8] = (1 << (f % 8)) - 1
    starts = np.cumsum(counts) - counts
    out.append(bitmap.tobytes())
    out.append(np.stack([starts, counts], axis=1).astype("<i8").tobytes())
    out.append(np.zeros(1, "<u4").tobytes())  # csr offsets of zero explicit fragments
    return b"".join(out)


def ragged_links(rows: np.ndarray) -> bytes:
    """A cross-cell link cell: ``int64 K=1, int64 offset 0``, then the int64 rows."""
    rows = np.ascontiguousarray(rows, dtype="<i8")
    return np.array([1, 0], "<i8").tobytes() + rows.tobytes()


def offsets_segment(offset) -> str:
    """Array name of a link offset, e.g. ``(0, 1, -1)`` -> ``"0.+1.-1"``."""
    return ".".join("0" if o == 0 else f"{int(o):+d}" for o in offset)


def cell_key(coord) -> str:
    """Dotted absolute coordinate as listed in ``nonempty_chunks``."""
    return ".".join(str(int(c)) for c in coord)


def cell_path(array: str, coord, origin) -> str:
    """``<array>/c/<i>/<j>/...`` with zarr indices (coordinate minus grid origin)."""
    return f"{array}/c/" + "/".join(str(int(c) - int(o)) for c, o in zip(coord, origin))


def category_codes(values, categories, code_dtype, fill_code):
    """Codes of ``values`` in ``categories`` (missing -> ``fill_code``)."""
    import pandas as pd

    codes = pd.Categorical(values, categories=list(categories)).codes.astype(np.int64)
    if fill_code is not None:
        codes[codes < 0] = fill_code
    elif (codes < 0).any():
        raise ValueError("a value is not among the categories")
    return codes.astype(code_dtype)
