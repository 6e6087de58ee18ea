"""Object-level arrays of one level (``object_index/*``): rows read through zarr, and
the fragment -> object owner table decoded once per process and level.

:class:`ObjectArrays` is mixed into :class:`~zv_dask.read.level.LevelReader`, whose
location, level metadata, ``_err`` and ``_retry`` it uses.
"""

from __future__ import annotations

import threading

import numpy as np

from zv_dask.errors import (ArrayNotFoundError, ChunkDecodeError, StoreReadError,
                            UnsupportedFormatError)
from zv_dask.format import decode as dec
from zv_dask.format import owners
from zv_dask.format.metadata import DIRECT_BYTES_CODECS, ArrayMeta
from zv_dask.io.location import BlobRefused, cell_key

_OWNER_TABLES: dict = {}  # (store token, open id, level) -> OwnerTable, per process
_OWNER_LOCKS: dict = {}
_OWNER_LOCK = threading.Lock()
_OWNER_CACHE_SIZE = 16
_DECODED = [0]  # manifest rows decoded in this process (see manifests_decoded)


def manifests_decoded() -> int:
    """How many manifest rows this process has decoded so far (owner tables and
    :meth:`ObjectArrays.manifests`): what a box query with the owner column keeps to
    the selected objects."""
    return _DECODED[0]


def _count_decoded(n: int) -> None:
    with _OWNER_LOCK:
        _DECODED[0] += int(n)


class ObjectArrays:
    """Reads of a level's object-level arrays (a mixin of ``LevelReader``)."""

    def owner_table(self) -> dec.OwnerTable:
        """The level's fragment -> object table; decoded once per process and level
        (inside a task, so building a collection reads nothing)."""
        key = self.location.cache_key() + (self.level.level,)
        with _OWNER_LOCK:
            lock = _OWNER_LOCKS.setdefault(key, threading.Lock())
        with lock:  # one decode even when many threads ask at once
            table = _OWNER_TABLES.get(key)
            if table is None:
                table = self._decode_owner_table()
                with _OWNER_LOCK:
                    _OWNER_TABLES[key] = table
                    while len(_OWNER_TABLES) > _OWNER_CACHE_SIZE:
                        _OWNER_TABLES.pop(next(iter(_OWNER_TABLES)))
            return table

    def _decode_owner_table(self) -> dec.OwnerTable:
        lm = self.level
        oi = lm.object_index
        if oi is None:
            raise self._err(UnsupportedFormatError, "this level has no object index",
                            array="object_index")
        blobs = self.read_rows(oi.manifests)
        if oi.object_ids is not None:
            ids = self.read_rows(oi.object_ids).astype(np.int64, copy=False)
        else:
            ids = np.arange(oi.num_objects, dtype=np.int64)
        if len(ids) != len(blobs):
            raise self._err(ChunkDecodeError, f"object_ids has {len(ids)} rows but manifests "
                            f"has {len(blobs)}", array="object_index/object_ids")
        _count_decoded(len(blobs))
        try:
            return dec.OwnerTable.from_manifests(
                blobs, ids, oi.sid_ndim, lm.presence.shape, lm.presence.origin,
                self._max_fragments())
        except dec.DecodeProblem as exc:
            raise self._err(ChunkDecodeError, f"{exc}; the manifest is corrupt",
                            array="object_index/manifests") from None

    def read_rows(self, arr: ArrayMeta, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of an object-level array (any codecs).

        Read chunk by chunk, each under the location's retry policy, so a failure
        names the chunk (``(k,)``: rows ``k*L`` to ``(k+1)*L``).  1-D arrays of
        ``vlen-bytes`` or little-endian ``bytes`` and byte codecs are fetched in one
        batch and decoded here; anything else goes through zarr."""
        n = int(arr.shape[0]) if arr.shape else 0
        start, stop = max(0, int(start)), n if stop is None else min(int(stop), n)
        step = _row_chunk_length(arr)
        ks = list(range(start // step, -(-stop // step))) if stop > start else []
        direct = _direct_layout(arr)
        if direct is not None:
            chunks = self._direct_chunks(arr, direct, ks)
            parts = [c[max(start - k * step, 0):stop - k * step] for k, c in zip(ks, chunks)]
            if not parts:
                return np.zeros(0, object if direct[0] == "vlen" else direct[2])
            return parts[0] if len(parts) == 1 else np.concatenate(parts)
        a = self.location.zarr_array(arr, self.level.level)
        parts = []
        for k in range(start // step, -(-stop // step) if stop > start else start // step):
            lo, hi = max(start, k * step), min(stop, (k + 1) * step)
            parts.append(self._retry(lambda lo=lo, hi=hi: np.asarray(a[lo:hi]), arr.path, (k,)))
        if not parts:
            return np.asarray(a[0:0])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def object_ids(self) -> np.ndarray:
        """The object id of every object-index row (``arange`` for layout v1)."""
        oi = self._object_index()
        if oi.object_ids is None:
            return np.arange(oi.num_objects, dtype=np.int64)
        return self.read_rows(oi.object_ids).astype(np.int64, copy=False)

    def manifests(self, rows: np.ndarray) -> list:
        """Decoded manifests ``[(coords (M, sid), fragments (M,)), ...]`` of index rows."""
        oi = self._object_index()
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return []
        with _OWNER_LOCK:  # decoded already, with the level's owner table
            table = _OWNER_TABLES.get(self.location.cache_key() + (self.level.level,))
        kept = table.manifests(rows) if table is not None else None
        if kept is not None:
            return kept
        uniq, inv = np.unique(rows, return_inverse=True)
        step = _row_chunk_length(oi.manifests)
        got = np.empty(len(uniq), dtype=object)
        chunk_of = uniq // step
        ks = np.unique(chunk_of).tolist()
        direct = _direct_layout(oi.manifests)
        if direct is not None:  # one batch, decoded here
            for k, chunk in zip(ks, self._direct_chunks(oi.manifests, direct, ks)):
                sel = np.flatnonzero(chunk_of == k)
                got[sel] = chunk[uniq[sel] - k * step]
            ks = []
        a = self.location.zarr_array(oi.manifests, self.level.level) if ks else None
        for k in ks:  # through zarr, one chunk at a time: errors name it
            sel = np.flatnonzero(chunk_of == k)
            lo, hi = k * step, min((k + 1) * step, a.shape[0])
            if len(sel) * 2 > hi - lo:  # most rows of the chunk: one slice
                def part(lo=lo, hi=hi, sel=sel):
                    return np.asarray(a[lo:hi], dtype=object)[uniq[sel] - lo]
            else:
                def part(sel=sel):
                    return np.asarray(a.get_orthogonal_selection((uniq[sel],)), dtype=object)
            got[sel] = self._retry(part, oi.manifests.path, (k,))
        _count_decoded(len(got))
        try:
            row, coords, frags = owners.decode_manifest_rows(got, oi.sid_ndim,
                                                             self._max_fragments(),
                                                             row_numbers=uniq)
        except dec.DecodeProblem as exc:
            raise self._err(ChunkDecodeError, f"{exc}; the manifest is corrupt",
                            array="object_index/manifests") from None
        decoded = owners.split_by_row(len(uniq), row, coords, frags)
        return [decoded[i] for i in inv.tolist()]

    def _direct_chunks(self, arr: ArrayMeta, layout: tuple, ks: list) -> list:
        """Chunks ``ks`` of a 1-D object-level array, fetched in one batch and decoded
        without zarr (see :func:`_direct_layout`); each holds its chunk's rows."""
        kind, codecs, dtype, fill = layout
        step, n = _row_chunk_length(arr), int(arr.shape[0])
        rels = [cell_key(arr, self.level.level, (k,)) for k in ks]
        try:
            raws = self.location.get_many(rels)
        except StoreReadError as exc:
            raise self._named(exc, [(arr, (k,)) for k in ks], rels) from None
        def one(k, raw):
            rows = min(step, n - k * step)
            if raw is None:  # zarr's rule: a chunk without an object holds the fill value
                return np.full(rows, fill, object if kind == "vlen" else dtype)
            try:
                if isinstance(raw, BlobRefused):
                    raise dec.DecodeProblem(raw.reason)
                data = dec.decode_byte_codecs(raw, codecs) if codecs else raw
                vals = _vlen_items(data) if kind == "vlen" else np.frombuffer(data, dtype)
                if len(vals) < rows:
                    raise dec.DecodeProblem(f"the chunk holds {len(vals)} rows, expected "
                                            f"{rows}")
            except dec.DecodeProblem as exc:
                raise self._err(ChunkDecodeError, f"{exc}; the chunk is corrupt or "
                                "truncated", arr.path, (k,)) from None
            return vals[:rows]

        if codecs and len(ks) > 1:  # decompression releases the GIL: chunks side by side
            return self.location.map_threads(one, ks, raws)
        return [one(k, raw) for k, raw in zip(ks, raws)]

    def _max_fragments(self) -> int | None:
        """Most fragments one manifest's range blocks may name: referenced fragments
        hold rows, so no more than the level's rows (with a floor for levels whose
        fragments are mostly empty); the decoder's default cap when not recorded."""
        vc = self.level.vertex_count
        return max(vc, 1 << 16) if isinstance(vc, int) and vc > 0 else None

    def _object_index(self):
        oi = self.level.object_index
        if oi is None:
            raise self._err(ArrayNotFoundError, "this level has no object index, so it has no "
                            "objects; use read() or to_dask_dataframe() for its vertices",
                            array="object_index")
        return oi


def drop_process_caches(open_id: str) -> None:
    """Forget the owner tables decoded for one open (``ZVStore.close``)."""
    with _OWNER_LOCK:
        for key in [k for k in _OWNER_TABLES if k[1] == open_id]:
            del _OWNER_TABLES[key]
        for key in [k for k in _OWNER_LOCKS if k[1] == open_id]:
            del _OWNER_LOCKS[key]


def _direct_layout(arr: ArrayMeta):
    """``(kind, byte codecs, dtype, fill)`` when a 1-D object-level array's chunks can be
    decoded here (``vlen-bytes`` or little-endian ``bytes`` of a number type, then only
    byte codecs: no sharding), else ``None`` (zarr reads it)."""
    doc = arr.document
    if len(arr.shape) != 1 or any(o for o in arr.origin):
        return None
    codecs = [((c or {}).get("name"), dict((c or {}).get("configuration") or {}))
              for c in doc.get("codecs") or []]
    if not codecs or any(name not in DIRECT_BYTES_CODECS for name, _ in codecs[1:]):
        return None
    (first, conf), rest = codecs[0], tuple(codecs[1:])
    if first == "vlen-bytes" and doc.get("data_type") == "variable_length_bytes":
        return "vlen", rest, None, b""
    if first != "bytes" or conf.get("endian", "little") != "little":
        return None
    try:
        dtype = np.dtype(str(doc.get("data_type"))).newbyteorder("<")
        fill = np.asarray(doc.get("fill_value", 0), dtype)
    except (TypeError, ValueError):
        return None
    return ("bytes", rest, dtype, fill) if dtype.kind in "iuf" else None


def _vlen_items(data) -> np.ndarray:
    """zarr's ``vlen-bytes`` chunk -> object array of bytes (numcodecs' decoder)."""
    from numcodecs.vlen import VLenBytes

    try:
        return VLenBytes().decode(bytes(data))
    except Exception as exc:  # numcodecs raises ValueError / RuntimeError on bad frames
        raise dec.DecodeProblem(f"vlen-bytes frame does not decode ({exc})") from None


def _row_chunk_length(arr: ArrayMeta) -> int:
    """Rows per (outer) chunk of an object-level array, from its chunk grid."""
    grid = (arr.document.get("chunk_grid") or {}).get("configuration") or {}
    shape = grid.get("chunk_shape") or [0]
    return max(int(shape[0]), 1)
