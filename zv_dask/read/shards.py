"""Cells of sharded arrays: each shard object read once, its inner chunks decoded here.

For every shard a read touches: the whole object in one read when at least
:data:`WHOLE_FRACTION` of its cells are wanted, else its index (one suffix or prefix
range) and then the wanted inner chunks, neighbours closer than :data:`RANGE_GAP`
bytes fetched as one range.  All shards of all arrays of one call go out in at most
three concurrent batches (whole objects, indexes, data ranges).  The index layout and
checks are :mod:`zv_dask.format.shards`; inner chunks are ``vlen-bytes`` plus byte
codecs, decoded like unsharded cells (:func:`zv_dask.format.frames.decode_byte_codecs`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import wait
from contextlib import closing

import numpy as np

from zv_dask.errors import ChunkDecodeError, ChunkMissingError, StoreReadError
from zv_dask.format import frames
from zv_dask.format import shards as S
from zv_dask.io.location import BlobRefused, cell_key

#: read a shard whole when at least this share of its cells is wanted
WHOLE_FRACTION = 0.5
#: wanted inner chunks less than this many bytes apart are fetched as one range
RANGE_GAP = 1 << 16
#: decode whole shards on the IO pool (outside dask tasks, remote stores)
DECODE_ON_POOL = True
#: decoded shard indexes kept per process (by open and object): tasks reading a few
#: cells of a shard each (one chunk per partition) read its index once, not per task
INDEX_CACHE_BYTES = 16 << 20
_INDEXES: OrderedDict = OrderedDict()  # (open's cache key, object) -> (n_inner, 2) pairs
_INDEX_LOCK = threading.Lock()
_INDEX_SIZE = [0]


def _cached_index(key):
    with _INDEX_LOCK:
        got = _INDEXES.get(key)
        if got is not None:
            _INDEXES.move_to_end(key)
        return got


def _keep_index(key, pairs) -> None:
    with _INDEX_LOCK:
        if key not in _INDEXES:
            _INDEXES[key] = pairs
            _INDEX_SIZE[0] += pairs.nbytes
        while _INDEX_SIZE[0] > INDEX_CACHE_BYTES and _INDEXES:
            _INDEX_SIZE[0] -= _INDEXES.popitem(last=False)[1].nbytes


def drop_indexes(open_id: str) -> None:
    """Forget the shard indexes cached for one open (``ZVStore.close``)."""
    with _INDEX_LOCK:
        for key in [k for k in _INDEXES if k[0][1] == open_id]:
            _INDEX_SIZE[0] -= _INDEXES.pop(key).nbytes


class _Shard:
    """One shard object of one array a call needs: its key and the wanted cells."""

    __slots__ = ("array", "rel", "cells", "entries", "whole", "data", "pairs")

    def __init__(self, array, rel, cells, entries, whole):
        self.array, self.rel, self.cells, self.entries = array, rel, cells, entries
        self.whole = whole
        # the whole object (a memoryview) or its fetched ranges [(start, end, bytes)]
        self.data = self.pairs = None


def fetch_sharded(reader, arrays, coords, bounds: dict, in_task: bool = False) -> dict:
    """``{(array.path, coord): payload}`` of sharded ``arrays`` at ``coords`` (the
    caller's :meth:`LevelReader.fetch`); ``bounds[path]`` bounds a decoded cell."""
    if not len(coords) or not arrays:
        return {}
    lv = reader.level.level
    shards = []
    for a in arrays:
        shards += _plan(a, lv, coords)
    cache = reader.location.cache_key()
    out = {}

    def decode(s):
        bound = bounds.get(s.array.path)
        for coord, entry in zip(s.cells, s.entries):
            out[(s.array.path, coord)] = _inner(reader, s, coord, entry, bound)

    # each whole shard decoded as it arrives, while the others are still being read;
    # outside a dask task (which runs beside others already) on the IO pool's threads
    # too, the decompressors releasing the GIL
    whole = [s for s in shards if s.whole]
    pool = (reader.location._executor() if DECODE_ON_POOL and not in_task
            and not reader.location._local and len(whole) > 1 else None)
    decoding = []
    try:
        with closing(_read_whole(reader, whole, bounds, in_task, cache)) as arrived:
            for s in arrived:
                if pool is None:
                    decode(s)
                else:
                    decoding.append(pool.submit(decode, s))
    except BaseException:
        for f in decoding:  # a read failed: the decodes not yet started are dropped
            f.cancel()
        wait(decoding)
        raise
    for f in decoding:  # the first failure in arrival order
        f.result()
    ranged = [s for s in shards if not s.whole]
    _read_ranged(reader, ranged, in_task, cache)
    for s in ranged:
        decode(s)
    return out


def _plan(a, lv: int, coords) -> list:
    lay = a.shards
    idx = np.asarray(coords, np.int64).reshape(len(coords), a.rank) - np.asarray(a.origin)
    sidx, entry = S.locate(idx, lay)
    keys, inv = np.unique(sidx, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    shape = np.asarray(lay.shard_shape, np.int64)
    cap = np.prod(np.minimum(shape, np.asarray(a.shape, np.int64) - keys * shape), axis=1)
    counts = np.bincount(inv, minlength=len(keys))
    order = np.argsort(inv, kind="stable")
    splits = np.cumsum(counts)[:-1]
    out = []
    origin = np.asarray(a.origin, np.int64)
    for k, (key, rows) in enumerate(zip(keys, np.split(order, splits))):
        rel = cell_key(a, lv, tuple((key + origin).tolist()))
        out.append(_Shard(a, rel, [coords[i] for i in rows.tolist()], entry[rows].tolist(),
                          bool(counts[k] >= WHOLE_FRACTION * cap[k])))
    return out


def _err(reader, cls, s: _Shard, msg: str, coord=None, entry=None):
    where = f"shard object {s.rel!r}"
    if entry is not None:
        where += f", inner chunk {entry} of {s.array.shards.n_inner}"
    return reader._err(cls, f"{where}: {msg}", array=s.array.path,
                       chunk=coord if coord is not None else s.cells[0])


def _named(reader, exc: StoreReadError, shards: list):
    s = next((s for s in shards if s.rel == getattr(exc, "key", None)), None)
    if s is None:
        return reader._err(StoreReadError, exc.message)
    return _err(reader, StoreReadError, s, exc.message)


def _missing(reader, s: _Shard):
    return _err(reader, ChunkMissingError, s, "the chunks are listed in nonempty_chunks but "
                "their shard object is missing from the store; the store is incomplete or "
                "was modified while being read")


def _index(reader, s: _Shard, raw, size):
    try:
        return S.decode_index(raw, s.array.shards, size)
    except S.ShardProblem as exc:
        raise _corrupt(reader, s, exc) from None


def _corrupt(reader, s: _Shard, exc: S.ShardProblem):
    coord = None
    if exc.inner is not None and exc.inner in s.entries:
        coord = s.cells[s.entries.index(exc.inner)]
    return _err(reader, ChunkDecodeError, s, f"{exc}; the shard is damaged: rewrite it "
                "(or restore the store) and open the store again", coord, exc.inner)


def _read_whole(reader, shards: list, bounds: dict, in_task: bool, cache):
    """Yield each shard of ``shards`` read whole, its index checked, as it arrives."""
    if not shards:
        return
    limits = []
    for s in shards:
        b = bounds.get(s.array.path)
        lay = s.array.shards
        if b is None:
            limits.append(None)
        else:  # every cell's framing, all the level's rows, compression's worst case
            total = b + 8 * lay.n_inner
            limits.append(total + total // 64 + 4096 * lay.n_inner + lay.index_nbytes)
    got = reader.location.iter_many([s.rel for s in shards], limits, in_task=in_task)
    try:  # closed at the end or on an error: the reads still under way are cancelled
        while True:
            try:
                i, raw = next(got)
            except StopIteration:
                return
            except StoreReadError as exc:
                raise _named(reader, exc, shards) from None
            s = shards[i]
            if raw is None:
                raise _missing(reader, s)
            if isinstance(raw, BlobRefused):
                raise _err(reader, ChunkDecodeError, s, f"{raw.reason}; the shard is corrupt "
                           "or its level's vertex_count is wrong")
            try:
                index = S.split_index(raw, s.array.shards)
            except S.ShardProblem as exc:
                raise _corrupt(reader, s, exc) from None
            s.pairs = _index(reader, s, index, len(raw))
            s.data = memoryview(raw).cast("B")
            _keep_index((cache, s.rel), s.pairs)
            yield s
    finally:
        got.close()


def _read_ranged(reader, shards: list, in_task: bool, cache) -> None:
    if not shards:
        return
    loc = reader.location
    for s in shards:
        s.pairs = _cached_index((cache, s.rel))
    todo = [s for s in shards if s.pairs is None]
    ranges = [S.index_range(s.array.shards) for s in todo]
    try:
        got = loc.get_ranges([s.rel for s in todo], [r[0] for r in ranges],
                             [r[1] for r in ranges], in_task)
    except StoreReadError as exc:
        raise _named(reader, exc, shards) from None
    for s, raw in zip(todo, got):
        if raw is None:
            raise _missing(reader, s)
        if isinstance(raw, BlobRefused):
            raise _err(reader, ChunkDecodeError, s, f"{raw.reason}; the shard is corrupt")
        s.pairs = _index(reader, s, raw, None)
        _keep_index((cache, s.rel), s.pairs)
    rels, starts, ends, owners = [], [], [], []
    for s in shards:
        want = [e for e in s.entries if s.pairs[e, 0] != S.EMPTY]
        if not want:
            continue
        lo = s.pairs[want, 0].astype(np.int64)
        hi = lo + s.pairs[want, 1].astype(np.int64)
        merged, _ = S.merge_ranges(lo, hi, RANGE_GAP)
        for a, b in merged:
            rels.append(s.rel)
            starts.append(a)
            ends.append(b)
            owners.append(s)
    try:
        data = loc.get_ranges(rels, starts, ends, in_task)
    except StoreReadError as exc:
        raise _named(reader, exc, shards) from None
    pieces: dict = {}
    for s, a, b, raw in zip(owners, starts, ends, data):
        if raw is None:
            raise _missing(reader, s)
        pieces.setdefault(id(s), []).append((a, b, raw))
    for s in shards:
        s.data = pieces.get(id(s), [])


def _inner(reader, s: _Shard, coord, entry: int, bound):
    """The payload of one wanted cell: its inner chunk's bytes, decoded."""
    off, nbytes = (int(v) for v in s.pairs[entry])
    if off == int(S.EMPTY):
        raise _err(reader, ChunkMissingError, s, "the chunk is listed in nonempty_chunks but "
                   "its shard's index has no entry for it; the store is incomplete or was "
                   "modified while being read", coord, entry)
    blob = _slice(s, off, nbytes)
    if blob is None:
        raise _err(reader, ChunkDecodeError, s, f"the index places the inner chunk at bytes "
                   f"{off}..{off + nbytes}, past the end of the object: the shard is "
                   "truncated; rewrite it (or restore the store)", coord, entry)
    try:
        if s.array.shards.inner_codecs:
            blob = frames.decode_byte_codecs(blob, s.array.shards.inner_codecs, bound)
        return frames.strip_vlen_frame(blob)
    except frames.DecodeProblem as exc:
        raise _err(reader, ChunkDecodeError, s, f"{exc}; the inner chunk is corrupt", coord,
                   entry) from None


def _slice(s: _Shard, off: int, nbytes: int):
    if isinstance(s.data, memoryview):
        return s.data[off:off + nbytes] if off + nbytes <= len(s.data) else None
    for a, b, raw in s.data:
        if a <= off and off + nbytes <= b:
            if off + nbytes - a > len(raw):
                return None  # the range came back short: the object ends earlier
            return memoryview(raw).cast("B")[off - a:off + nbytes - a]
    return None  # pragma: no cover - every wanted entry was requested
