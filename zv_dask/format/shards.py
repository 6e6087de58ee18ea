"""The zarr v3 ``sharding_indexed`` codec of a vlen grid array, decoded by hand.

Pure: no IO, no zarr.  A sharded grid array stores ``shard_shape`` cells per object
(``<array>/c/I/J/K``, ``I = i // shard_shape[0]``); the object is the inner chunks'
encoded bytes followed (or preceded) by an index of one ``(offset, nbytes)`` uint64
pair per inner chunk in C order (both ``2**64 - 1``: empty) and, with the ``crc32c``
index codec, a little-endian CRC32C of the pairs.  :func:`parse_sharding` accepts the
layouts zv_dask decodes itself (inner chunks of one cell, ``vlen-bytes`` plus
byte-to-byte codecs, a ``bytes``-little-endian index with or without ``crc32c``);
anything else returns ``None`` and the array is read through zarr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from zv_dask.format.frames import DecodeProblem
from zv_dask.format.values import DIRECT_BYTES_CODECS

EMPTY = np.uint64(2**64 - 1)  # offset and nbytes of an inner chunk that is not stored
_PAIR = 16
_CRC = 4


class ShardProblem(DecodeProblem):
    """A shard object or its index does not decode; ``inner`` is the index entry at
    fault (C order inside the shard) when one is."""

    def __init__(self, message: str, inner: int | None = None):
        super().__init__(message)
        self.inner = inner


@dataclass(frozen=True)
class ShardLayout:
    """How one array's shard objects are laid out.

    Examples
    --------
    >>> lay = ShardLayout((2, 2), (("zstd", {}),), index_at_end=True, index_crc=True)
    >>> lay.n_inner, lay.index_nbytes
    (4, 68)
    """

    shard_shape: tuple  # cells per shard object along each axis
    inner_codecs: tuple  # byte codecs after vlen-bytes, as ((name, configuration), ...)
    index_at_end: bool
    index_crc: bool

    @property
    def n_inner(self) -> int:
        return math.prod(self.shard_shape)

    @property
    def index_nbytes(self) -> int:
        return _PAIR * self.n_inner + (_CRC if self.index_crc else 0)


def parse_sharding(grid: tuple, codecs: tuple) -> ShardLayout | None:
    """The :class:`ShardLayout` of a vlen array with chunk grid ``grid`` and parsed
    ``codecs`` (``((name, configuration), ...)``), or ``None`` when the array is not
    sharded or is sharded in a way zv_dask leaves to zarr.

    Examples
    --------
    >>> conf = {"chunk_shape": [1, 1], "codecs": [{"name": "vlen-bytes"}],
    ...         "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
    ...                          {"name": "crc32c"}], "index_location": "end"}
    >>> parse_sharding((4, 4), (("sharding_indexed", conf),)).shard_shape
    (4, 4)
    >>> parse_sharding((1, 1), (("vlen-bytes", {}),)) is None
    True
    """
    if len(codecs) != 1 or codecs[0][0] != "sharding_indexed":
        return None
    conf = codecs[0][1]
    inner_shape = conf.get("chunk_shape")
    if not isinstance(inner_shape, list) or len(inner_shape) != len(grid) \
            or any(v != 1 for v in inner_shape):
        return None  # several cells per inner chunk: a vlen array of many items
    inner = [_name_conf(c) for c in conf.get("codecs") or []]
    if not inner or inner[0] is None or inner[0][0] != "vlen-bytes" \
            or any(c is None or c[0] not in DIRECT_BYTES_CODECS for c in inner[1:]):
        return None
    index = [_name_conf(c) for c in conf.get("index_codecs", [{"name": "bytes"}])]
    if not index or index[0] is None or index[0][0] != "bytes" \
            or index[0][1].get("endian", "little") != "little":
        return None
    rest = index[1:]
    if rest and (len(rest) != 1 or rest[0] is None or rest[0][0] != "crc32c"):
        return None
    where = conf.get("index_location", "end")
    if where not in ("start", "end"):
        return None
    return ShardLayout(tuple(int(g) for g in grid), tuple(inner[1:]), where == "end",
                       bool(rest))


def _name_conf(c):
    if isinstance(c, str):
        return c, {}
    if not isinstance(c, dict) or not isinstance(c.get("name"), str):
        return None
    conf = c.get("configuration") or {}
    return (c["name"], dict(conf)) if isinstance(conf, dict) else None


def locate(idx: np.ndarray, layout: ShardLayout) -> tuple[np.ndarray, np.ndarray]:
    """(shard index (K, rank), inner entry (K,)) of grid indices ``idx`` (K, rank).

    Examples
    --------
    >>> lay = ShardLayout((2, 2), (), True, True)
    >>> s, e = locate(np.array([[3, 2], [0, 1]]), lay)
    >>> s.tolist(), e.tolist()
    ([[1, 1], [0, 0]], [2, 1])
    """
    idx = np.asarray(idx, np.int64).reshape(-1, len(layout.shard_shape))
    shape = np.asarray(layout.shard_shape, np.int64)
    inner = np.ravel_multi_index(tuple((idx % shape).T), layout.shard_shape) \
        if len(idx) else np.zeros(0, np.int64)
    return idx // shape, np.asarray(inner, np.int64)


def index_range(layout: ShardLayout) -> tuple[int, int | None]:
    """``(start, end)`` of the index in a shard object, as a ranged read takes them:
    ``(-n, None)`` (the last ``n`` bytes) or ``(0, n)``."""
    n = layout.index_nbytes
    return (-n, None) if layout.index_at_end else (0, n)


def split_index(raw, layout: ShardLayout):
    """The index bytes of a whole shard object ``raw``."""
    mv = memoryview(raw).cast("B")
    n = layout.index_nbytes
    if len(mv) < n:
        raise ShardProblem(f"the shard object holds {len(mv)} bytes, less than its "
                           f"{n}-byte index: it is truncated")
    return mv[len(mv) - n:] if layout.index_at_end else mv[:n]


def decode_index(raw, layout: ShardLayout, object_size: int | None = None) -> np.ndarray:
    """A shard index -> ``(n_inner, 2)`` uint64 ``(offset, nbytes)`` pairs, checked.

    The CRC32C (when the layout has one) must match; an entry must be empty in both
    fields or in neither, and a stored chunk must lie inside the object (when its
    size is known) and outside the index.

    Examples
    --------
    >>> lay = ShardLayout((2,), (), index_at_end=True, index_crc=False)
    >>> pairs = np.array([[0, 5], [2**64 - 1, 2**64 - 1]], "<u8")
    >>> decode_index(pairs.tobytes(), lay, object_size=37)[:, 1].tolist()
    [5, 18446744073709551615]
    """
    mv = memoryview(raw).cast("B")
    n = layout.index_nbytes
    if len(mv) != n:
        raise ShardProblem(f"the shard index holds {len(mv)} bytes, not {n}: the object "
                           "is truncated")
    body = mv[:_PAIR * layout.n_inner]
    if layout.index_crc:
        want = int.from_bytes(mv[-_CRC:], "little")
        got = crc32c(body)
        if got != want:
            raise ShardProblem(f"the shard index checksum is wrong (crc32c {got:#010x}, "
                               f"stored {want:#010x}): the index is corrupt")
    pairs = np.frombuffer(body, "<u8").reshape(layout.n_inner, 2)
    empty = pairs == EMPTY
    half = empty[:, 0] != empty[:, 1]
    if half.any():
        raise ShardProblem("an index entry is empty in one field only: the index is "
                           "corrupt", int(np.flatnonzero(half)[0]))
    stored = ~empty[:, 0]
    off = pairs[:, 0].astype(np.float64)  # no uint64 overflow in the sums below
    end = off + pairs[:, 1].astype(np.float64)
    if object_size is not None:
        data_lo = 0 if layout.index_at_end else n
        data_hi = object_size - n if layout.index_at_end else object_size
        bad = stored & ((off < data_lo) | (end > data_hi))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ShardProblem(f"the index places the inner chunk at bytes {int(pairs[i, 0])}"
                               f"..{int(pairs[i, 0]) + int(pairs[i, 1])}, outside the "
                               f"{object_size}-byte object's data: the object is truncated "
                               "or its index corrupt", i)
    return pairs


def merge_ranges(starts: np.ndarray, ends: np.ndarray, gap: int) -> tuple[list, np.ndarray]:
    """Byte ranges merged where the hole between neighbours is below ``gap`` bytes:
    ``([(start, end), ...] of the merged reads, which merged read serves each input)``.

    Examples
    --------
    >>> merge_ranges(np.array([0, 10, 500]), np.array([8, 20, 600]), gap=16)
    ([(0, 20), (500, 600)], array([0, 0, 1]))
    """
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    order = np.argsort(starts, kind="stable")
    out: list = []
    which = np.empty(len(starts), np.int64)
    for i in order.tolist():
        s, e = int(starts[i]), int(ends[i])
        if out and s - out[-1][1] < gap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
        which[i] = len(out) - 1
    return [tuple(r) for r in out], which


def crc32c(data) -> int:
    """CRC32C (Castagnoli) of ``data``, as zarr's ``crc32c`` codec computes it."""
    import google_crc32c

    return int(google_crc32c.value(bytes(data)))
