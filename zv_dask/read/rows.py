"""Rows of every vertex chunk of a compressed or sharded level, from headers only.

A vertex chunk decodes to zarr's 8-byte ``vlen-bytes`` frame plus ``rows x D`` values,
so its decoded size gives its rows.  That size is read without decoding anything:

- sharded, no inner compression: the ``nbytes`` of each inner chunk in the shard
  index (one index range per shard object, nothing else);
- sharded with ``zstd`` or ``blosc`` inner chunks: the index, then the first
  :data:`HEADER` bytes of each inner chunk (the zstd frame header records the
  content size, blosc's header the decompressed size);
- unsharded ``zstd``/``blosc`` chunks: the first :data:`HEADER` bytes of each chunk.

Locally every header is one ``pread``.  Remotely the header ranges of one shard
object are merged like the ranges of a read (``read.shards.RANGE_GAP``): small inner
chunks then cost about one GET per shard object; unsharded chunks cost one small
ranged GET each.  A chunk whose header does not tell (gzip, a zstd frame without a
content size, several codecs, a damaged index) is ``-1``: its callers read and count
it as before.
"""

from __future__ import annotations

import numpy as np

from zv_dask.errors import StoreReadError
from zv_dask.format import frames
from zv_dask.format import shards as S
from zv_dask.io.location import cell_key
from zv_dask.read.shards import RANGE_GAP

#: bytes read from the start of a compressed chunk: a zstd frame header is at most 18
HEADER = 32
_SIZED = ("zstd", "blosc")  # codecs whose header records the decoded size


def countable(arr) -> bool:
    """Whether :func:`vertex_rows` can count the rows of vertex array ``arr``."""
    if (arr.encoding or "raw") != "raw":
        return False
    if arr.access == "bytes_codecs":
        return len(arr.byte_codecs) == 1 and arr.byte_codecs[0][0] in _SIZED
    if arr.access == "sharded":
        codecs = arr.shards.inner_codecs
        return not codecs or (len(codecs) == 1 and codecs[0][0] in _SIZED)
    return False


def vertex_rows(location, lm, ndim: int) -> np.ndarray:
    """Rows of every non-empty cell of level ``lm`` (presence order; -1 unknown).

    Raises :class:`StoreReadError` (naming the level and array) when the store fails
    past its retries; missing objects are ``-1``.
    """
    arr = lm.vertices
    coords = lm.presence.coords()
    sizes = np.full(len(coords), -1, np.int64)
    if not len(coords) or not countable(arr):
        return sizes
    try:
        if arr.access == "sharded":
            _shard_sizes(location, arr, lm.level, coords, sizes)
        else:
            rels = [cell_key(arr, lm.level, c) for c in coords.tolist()]
            heads = location.get_ranges(rels, [0] * len(rels), [HEADER] * len(rels))
            name = arr.byte_codecs[0][0]
            for i, h in enumerate(heads):
                if h is not None:
                    sizes[i] = _declared(name, h)
    except StoreReadError as exc:
        raise StoreReadError(exc.message, store=location.url, level=lm.level,
                             array=arr.path) from None
    row = ndim * arr.dtype.itemsize
    good = (sizes >= 8) & ((sizes - 8) % row == 0)
    return np.where(good, (sizes - 8) // row, -1)


def _declared(name: str, head) -> int:
    got = frames.declared_size(name, head)
    return -1 if got is None else int(got)


def _shard_sizes(location, arr, level: int, coords: np.ndarray, sizes: np.ndarray) -> None:
    lay = arr.shards
    origin = np.asarray(arr.origin, np.int64)
    sidx, entry = S.locate(coords - origin, lay)
    keys, inv = np.unique(sidx, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    rels = [cell_key(arr, level, tuple((k + origin).tolist())) for k in keys]
    lo, hi = S.index_range(lay)
    raws = location.get_ranges(rels, [lo] * len(rels), [hi] * len(rels))
    pairs = []
    for raw in raws:
        try:
            pairs.append(None if raw is None else S.decode_index(raw, lay))
        except S.ShardProblem:
            pairs.append(None)  # the read names the damage; here the rows are unknown
    name = lay.inner_codecs[0][0] if lay.inner_codecs else None
    want: dict = {}  # shard -> [(cell, offset, nbytes)] of its stored inner chunks
    for i, (s, e) in enumerate(zip(inv.tolist(), entry.tolist())):
        p = pairs[s]
        if p is None or p[e, 0] == S.EMPTY:
            continue
        off, nb = int(p[e, 0]), int(p[e, 1])
        if name is None:
            sizes[i] = nb
        else:
            want.setdefault(s, []).append((i, off, nb))
    if not want:
        return
    gap = 0 if location._local else RANGE_GAP
    r_rels, r_lo, r_hi, served = [], [], [], []
    for s, mine in sorted(want.items()):
        starts = np.array([w[1] for w in mine], np.int64)
        ends = starts + np.minimum([w[2] for w in mine], HEADER)
        merged, which = S.merge_ranges(starts, ends, gap)
        base = len(r_rels)
        for a, b in merged:
            r_rels.append(rels[s])
            r_lo.append(a)
            r_hi.append(b)
        served += [(w, base + int(k)) for w, k in zip(mine, which.tolist())]
    got = location.get_ranges(r_rels, r_lo, r_hi)
    for (i, off, nb), k in served:
        raw = got[k]
        if raw is None:
            continue
        head = memoryview(raw).cast("B")[off - r_lo[k]:off - r_lo[k] + min(nb, HEADER)]
        sizes[i] = _declared(name, head)
