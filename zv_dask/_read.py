"""Read cells of one level: fetch their blobs (one concurrent batch), decode, clip.

:class:`LevelReader` is small and picklable (location + parsed level metadata); it is
what dask tasks call on workers.  It never re-reads or lists metadata.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Sequence

import numpy as np

from . import _decode as dec
from ._metadata import ArrayMeta, AttributeInfo, LevelMeta, Presence
from ._store import BlobRefused, StoreLocation, cell_key, is_transient
from .errors import (ArrayNotFoundError, ChunkDecodeError, ChunkMissingError, StoreReadError,
                     UnsupportedFormatError, ZVError)

_NO_CELLS = np.zeros(0, np.int64)
_OWNER_TABLES: dict = {}  # (store token, open id, level) -> OwnerTable, per process
_OWNER_LOCKS: dict = {}
_OWNER_LOCK = threading.Lock()
_OWNER_CACHE_SIZE = 16
POSITIONS = "vertices"
FRAGMENTS = "vertex_fragments"


class LevelReader:
    """Fetch and decode cells of one level.

    Parameters
    ----------
    location : StoreLocation
    level : LevelMeta
    ndim : int
        Number of spatial axes.

    Examples
    --------
    >>> import zv_dask
    >>> s = zv_dask.open_zv(zv_dask.example_store())
    >>> r = s._reader(0)
    >>> cols = r.load([tuple(s.chunks(0)[0])], [], positions=True)[0]
    >>> cols["positions"].shape[1]
    3
    """

    def __init__(self, location: StoreLocation, level: LevelMeta, ndim: int):
        self.location = location
        # tasks carry this object: drop the presence list (only its shape/origin is used)
        pres = level.presence
        self.level = replace(level, presence=Presence(pres.shape, pres.origin, _NO_CELLS))
        self.ndim = ndim

    def __repr__(self) -> str:
        return f"LevelReader({self.location.url!r}, level={self.level.level})"

    # -- fetching -------------------------------------------------------------------------

    def _err(self, cls, msg, array=None, chunk=None):
        return cls(msg, store=self.location.url, level=self.level.level, array=array, chunk=chunk)

    def _named(self, exc: StoreReadError, keys: list, rels: list) -> StoreReadError:
        """The location's error re-raised naming the array and chunk of the failed key."""
        a, c = keys[rels.index(exc.key)] if getattr(exc, "key", None) in rels else (None, None)
        return self._err(StoreReadError, exc.message, array=a.path if a else None, chunk=c)

    def _retry(self, fn, array: str, chunk=None, on_undecodable=None):
        """``fn()`` (a read through zarr) under the location's bounded retry policy; a
        final failure or a vanished object raises :class:`StoreReadError`, bytes that
        zarr cannot decode a :class:`ChunkDecodeError` (``on_undecodable(exc)`` builds
        it when given), each naming the array and chunk."""
        def guarded():
            try:
                return fn()
            except Exception as exc:
                if not _undecodable(exc):
                    raise
                if on_undecodable is not None:
                    raise on_undecodable(exc) from None
                raise self._err(ChunkDecodeError, f"zarr cannot decode the chunk "
                                f"({type(exc).__name__}: {exc}); the chunk is corrupt or "
                                "truncated", array=array, chunk=chunk) from None

        try:
            return self.location.retry(guarded, f"{self.level.level}/{array}")
        except StoreReadError as exc:
            raise self._err(StoreReadError, exc.message, array=array, chunk=chunk) from None
        except (FileNotFoundError, KeyError) as exc:
            raise self._err(StoreReadError, f"an object disappeared while being read "
                            f"({type(exc).__name__}: {exc}); the store was modified during "
                            "the read, open it again", array=array, chunk=chunk) from None

    def sizes(self, pairs: Sequence[tuple]) -> list:
        """Blob sizes in bytes of ``[(array, coord)]`` cells (``None`` when missing): a
        stat locally, a HEAD remotely, retried like every read; a final failure raises
        :class:`StoreReadError` naming the array and chunk."""
        keys = [(a, tuple(c)) for a, c in pairs]
        rels = [cell_key(a, self.level.level, c) for a, c in keys]
        try:
            return self.location.sizes(rels)
        except StoreReadError as exc:
            raise self._named(exc, keys, rels) from None

    def fetch(self, arrays: Sequence[ArrayMeta], coords: Sequence[tuple]) -> dict:
        """Payloads (framing and codecs removed) for every (array, cell); one batch.

        Returns ``{(array.path, coord): memoryview}``.  A cell listed as non-empty
        whose object is missing raises :class:`ChunkMissingError`.
        """
        out = {}
        direct = [a for a in arrays if a.access != "zarr"]
        keys = [(a, c) for a in direct for c in coords]
        lv = self.level.level
        rels = [cell_key(a, lv, c) for a, c in keys]
        bounds = {a.path: self._byte_bound(a) for a in direct}
        limits = [_stored_limit(bounds[a.path], a) for a, _ in keys]
        try:
            raws = self.location.get_many(rels, limits)
        except StoreReadError as exc:  # name the array and chunk whose object failed
            raise self._named(exc, keys, rels) from None
        for (a, c), raw in zip(keys, raws):
            if raw is None:
                raise self._err(
                    ChunkMissingError,
                    "the chunk is listed in nonempty_chunks but its object is missing from "
                    "the store; the store is incomplete or was modified while being read",
                    array=a.path, chunk=c,
                )
            if isinstance(raw, BlobRefused):
                raise self._err(ChunkDecodeError, f"{raw.reason}; the chunk is corrupt "
                                "or its level's vertex_count is wrong", a.path, c)
            try:
                if a.byte_codecs:
                    raw = dec.decode_byte_codecs(raw, a.byte_codecs, bounds[a.path])
                out[(a.path, c)] = dec.strip_vlen_frame(raw)
            except dec.DecodeProblem as exc:
                raise self._err(ChunkDecodeError, f"{exc}; the chunk is corrupt", a.path, c) from None
        for a in arrays:
            if a.access == "zarr":
                out.update(self._fetch_zarr(a, coords))
        return out

    def _byte_bound(self, a: ArrayMeta) -> int | None:
        """Most bytes a decoded cell of ``a`` can hold (8-byte frame included): the
        level's recorded ``vertex_count`` rows times the row size; ``None`` where the
        count is not recorded or the row size is not known (e.g. untrusted widths)."""
        lm = self.level
        vc = lm.vertex_count
        if not isinstance(vc, int) or vc <= 0:
            return None
        if a.path == POSITIONS:
            row = self.ndim * lm.vertices.dtype.itemsize
        else:
            info = next((i for i in lm.attributes.values() if i.path == a.path), None)
            if info is None or not info.width_reliable or info.implied_by_key:
                return None
            row = max(int(info.width), 1) * info.dtype.itemsize
        return 8 + vc * row

    def _fetch_zarr(self, a: ArrayMeta, coords) -> dict:
        if not len(coords):
            return {}
        idx = np.asarray(coords, np.int64) - np.asarray(a.origin, np.int64)
        arr = self.location.zarr_array(a, self.level.level)
        got = self._retry(lambda: arr.get_coordinate_selection(tuple(idx.T)), a.path,
                          chunk=coords[0] if len(coords) == 1 else None,
                          on_undecodable=lambda exc: self._zarr_decode_error(
                              arr, a, coords, idx, exc))
        out = {}
        for c, v in zip(coords, got.ravel()):
            b = b"" if v is None else bytes(v)
            if not b:
                raise self._err(
                    ChunkMissingError,
                    "the chunk is listed in nonempty_chunks but holds no data; the store "
                    "is incomplete or was modified while being read",
                    array=a.path, chunk=c,
                )
            out[(a.path, c)] = memoryview(b)
        return out

    def _zarr_decode_error(self, arr, a: ArrayMeta, coords, idx, exc) -> ChunkDecodeError:
        """Which cell of a failed coordinate selection is damaged: read them one by one."""
        bad = coords[0] if len(coords) == 1 else None
        if bad is None:
            for c, i in zip(coords, idx.tolist()):
                try:
                    arr.get_coordinate_selection(tuple(np.asarray([[x] for x in i])))
                except Exception as one:
                    if _undecodable(one):
                        bad, exc = c, one
                        break
        return self._err(ChunkDecodeError, f"zarr cannot decode the chunk "
                         f"({type(exc).__name__}: {exc}); the chunk is corrupt or truncated",
                         array=a.path, chunk=bad)

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
        try:
            return dec.OwnerTable.from_manifests(
                [bytes(b) if b is not None else b"" for b in blobs], ids, oi.sid_ndim,
                lm.presence.shape, lm.presence.origin, self._max_fragments())
        except dec.DecodeProblem as exc:
            raise self._err(ChunkDecodeError, f"{exc}; the manifest is corrupt",
                            array="object_index/manifests") from None

    # -- decoding -------------------------------------------------------------------------

    def arrays_for(self, attributes: Sequence[AttributeInfo], positions: bool, object_ids: bool):
        lm = self.level
        arrays = []
        if positions or object_ids:
            self._check_raw()
            arrays.append(lm.vertices)
        for info in attributes:
            if not info.implied_by_key:
                arrays.append(lm.arrays[info.path])
        if object_ids:
            if lm.vertex_fragments is None:
                raise self._err(UnsupportedFormatError,
                                "object ids need vertex_fragments, which this level lacks",
                                array=FRAGMENTS)
            arrays.append(lm.vertex_fragments)
        return arrays

    def _check_raw(self):
        enc = self.level.vertices.encoding
        if enc not in (None, "raw"):
            raise self._err(
                UnsupportedFormatError,
                f"vertex encoding {enc!r} is not supported: zv_dask reads raw vertices only "
                "(Draco cells are permuted and lossy, and zarr-vectors cannot read them "
                "either). Re-write the store with encoding='raw'",
                array=POSITIONS,
            )

    def load(self, coords: Sequence[tuple], attributes: Sequence[AttributeInfo],
             positions: bool = True, object_ids: bool = False,
             fragments: bool = False) -> list[dict]:
        """Decoded, unclipped columns of each cell: ``positions``, attribute names,
        ``object_ids``/``owner_count`` with ``object_ids=True``, and the cell's
        :class:`FragmentIndex` under ``"fragments"`` with ``fragments=True``."""
        owners = self.owner_table() if object_ids else None
        coords = [tuple(int(x) for x in c) for c in coords]
        attributes = list(attributes)
        # vertex rows are needed to split attribute bytes into rows only when the
        # recorded width cannot be trusted (or nothing else gives the row count)
        need_pos = (positions or owners is not None or fragments
                    or any(not a.width_reliable for a in attributes)
                    or all(a.implied_by_key for a in attributes))
        arrays = self.arrays_for(attributes, need_pos, owners is not None or fragments)
        payloads = self.fetch(arrays, coords)
        out = [self._decode_cell(c, payloads, attributes, owners) for c in coords]
        if fragments:
            for c, cols in zip(coords, out):
                n = len(cols["positions"]) if "positions" in cols else None
                cols["fragments"] = self._fragment_index(payloads, c, n)
        return out

    def fragment_indexes(self, coords: Sequence[tuple], n_rows: Sequence[int] | None = None
                         ) -> list:
        """The decoded ``vertex_fragments`` blob of each cell (nothing else fetched);
        ``n_rows`` (each cell's vertex rows) checks that its rows lie in the chunk."""
        lm = self.level
        if lm.vertex_fragments is None:
            raise self._err(UnsupportedFormatError, "this level has no vertex_fragments",
                            array=FRAGMENTS)
        coords = [tuple(int(x) for x in c) for c in coords]
        payloads = self.fetch([lm.vertex_fragments], coords)
        ns = [None] * len(coords) if n_rows is None else list(n_rows)
        return [self._fragment_index(payloads, c, n) for c, n in zip(coords, ns)]

    def _fragment_index(self, payloads, coord, n_rows=None) -> dec.FragmentIndex:
        try:
            return dec.FragmentIndex.from_bytes(payloads[(FRAGMENTS, coord)], n_rows)
        except dec.DecodeProblem as exc:
            raise self._err(ChunkDecodeError, f"{exc}; the fragment index is corrupt",
                            FRAGMENTS, coord) from None

    # -- object-level arrays (object_index/*, object_attributes/*) ------------------------

    def read_rows(self, arr: ArrayMeta, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of an object-level array (through zarr; any codecs).

        Read chunk by chunk, each under the location's retry policy, so a failure
        names the chunk (``(k,)``: rows ``k*L`` to ``(k+1)*L``)."""
        a = self.location.zarr_array(arr, self.level.level)
        n = a.shape[0]
        start, stop = max(0, int(start)), n if stop is None else min(int(stop), n)
        step = _row_chunk_length(arr)
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
        uniq, inv = np.unique(rows, return_inverse=True)
        a = self.location.zarr_array(oi.manifests, self.level.level)
        step = _row_chunk_length(oi.manifests)
        got = np.empty(len(uniq), dtype=object)
        chunk_of = uniq // step
        for k in np.unique(chunk_of).tolist():  # one chunk at a time: errors name it
            sel = np.flatnonzero(chunk_of == k)
            lo, hi = k * step, min((k + 1) * step, a.shape[0])
            if len(sel) * 2 > hi - lo:  # most rows of the chunk: one slice
                def part(lo=lo, hi=hi, sel=sel):
                    return np.asarray(a[lo:hi], dtype=object)[uniq[sel] - lo]
            else:
                def part(sel=sel):
                    return np.asarray(a.get_orthogonal_selection((uniq[sel],)), dtype=object)
            got[sel] = self._retry(part, oi.manifests.path, (k,))
        blobs = got[inv]
        out = []
        limit = self._max_fragments()
        for r, b in zip(rows.tolist(), blobs):
            try:
                if b is None or len(b) == 0:
                    raise dec.DecodeProblem("absent (0 bytes; an empty manifest is 4 zero "
                                            "bytes), its chunk object is missing or truncated")
                out.append(dec.decode_manifest(bytes(b), oi.sid_ndim, limit))
            except dec.DecodeProblem as exc:
                raise self._err(ChunkDecodeError, f"manifest row {r}: {exc}; the manifest is "
                                "corrupt", array="object_index/manifests") from None
        return out

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

    def _decode_cell(self, coord, payloads, attributes, owners) -> dict:
        lm = self.level
        out = {}
        vb = payloads.get((POSITIONS, coord))
        n = None
        if vb is not None:
            try:
                pos = dec.decode_vertices(vb, lm.vertices.dtype, self.ndim)
            except dec.DecodeProblem as exc:
                raise self._err(ChunkDecodeError, f"{exc}; the chunk is corrupt or its "
                                "dtype attribute is wrong", POSITIONS, coord) from None
            out["positions"] = pos
            n = len(pos)
        for info in sorted(attributes, key=lambda a: a.implied_by_key):
            if info.implied_by_key:
                out[info.name] = np.full(n, coord[0], np.int64)
                continue
            try:
                col = dec.decode_attribute(payloads[(info.path, coord)], info.dtype, n, info.width)
            except dec.DecodeProblem as exc:
                raise self._err(ChunkDecodeError, f"{exc}; the attribute chunk does not match "
                                "the vertex chunk", info.path, coord) from None
            out[info.name] = col
            n = len(col) if n is None else n
        if owners is not None:
            try:
                fi = dec.FragmentIndex.from_bytes(payloads[(FRAGMENTS, coord)], n)
                rows, frag = fi.row_fragment_pairs()
            except dec.DecodeProblem as exc:
                raise self._err(ChunkDecodeError, f"{exc}; the fragment index is corrupt",
                                FRAGMENTS, coord) from None
            lin = int(np.ravel_multi_index(
                np.asarray(coord) - np.asarray(lm.presence.origin), lm.presence.shape))
            ff, oo = owners.for_cell(lin)
            try:
                owner, count = dec.row_owners(rows, frag, oo, ff, n, fi.num_fragments)
            except dec.DecodeProblem as exc:
                raise self._err(ChunkDecodeError, f"{exc}; the object index and the fragment "
                                "index disagree", "object_index/manifests", coord) from None
            out["object_ids"] = owner
            out["owner_count"] = count
        return out


def _undecodable(exc: BaseException) -> bool:
    """zarr got the bytes but could not decode them (not an IO failure)."""
    return not is_transient(exc) and not isinstance(exc, (OSError, KeyError, ZVError))


def _stored_limit(bound: int | None, a: ArrayMeta) -> int | None:
    """Most bytes the stored object of a cell may hold: the decoded bound, plus what
    compression can add to incompressible data."""
    if bound is None:
        return None
    return bound if not a.byte_codecs else bound + bound // 64 + 4096


def drop_process_caches(open_id: str) -> None:
    """Forget the owner tables decoded for one open (``ZVStore.close``)."""
    with _OWNER_LOCK:
        for key in [k for k in _OWNER_TABLES if k[1] == open_id]:
            del _OWNER_TABLES[key]
        for key in [k for k in _OWNER_LOCKS if k[1] == open_id]:
            del _OWNER_LOCKS[key]


def _row_chunk_length(arr: ArrayMeta) -> int:
    """Rows per (outer) chunk of an object-level array, from its chunk grid."""
    grid = (arr.document.get("chunk_grid") or {}).get("configuration") or {}
    shape = grid.get("chunk_shape") or [0]
    return max(int(shape[0]), 1)


def decode_categorical_columns(cols: dict, attributes: Sequence[AttributeInfo]) -> dict:
    """Replace dictionary codes by category values (object arrays)."""
    for info in attributes:
        if info.is_categorical and info.name in cols:
            try:
                cols[info.name] = dec.decode_categories(cols[info.name], info.categories, info.fill_code)
            except dec.DecodeProblem as exc:
                raise ChunkDecodeError(str(exc), array=info.path) from None
    return cols


def clip_columns(cols: dict, bbox) -> dict:
    """Keep the rows with ``lo <= p <= hi`` (closed box) in every column."""
    if bbox is None:
        return cols
    lo, hi = bbox
    p = cols["positions"]
    mask = np.all((p >= lo) & (p <= hi), axis=1)
    if mask.all():
        return cols
    return {k: v[mask] for k, v in cols.items()}


# --------------------------------------------------------------------------- partitions


def column_schema(axes, attributes: Sequence[AttributeInfo], widths: dict, object_ids: bool,
                  owner_count: bool = False):
    """Ordered ``[(column, source, index)]`` of a dataframe: axes, attributes, object_id.

    ``source`` is ``"positions"``, an attribute name or ``"object_ids"``; ``index`` is
    the column within it (``None`` for a 1-column attribute).
    """
    out = [(ax, "positions", i) for i, ax in enumerate(axes)]
    for a in attributes:
        w = widths.get(a.name, a.width)
        if w == 1:
            out.append((a.name, a.name, None))
        else:
            out += [(f"{a.name}_{j}", a.name, j) for j in range(w)]
    if object_ids:
        out.append(("object_id", "object_ids", None))
    if owner_count:
        out.append(("owner_count", "owner_count", None))
    return out


class PartitionReader:
    """Picklable per-partition function: cells -> one pandas DataFrame.

    Called by dask with one partition's cell coordinates and an optional
    ``columns`` list (column projection from the optimizer): only the arrays that
    the requested columns need are fetched (vertices only when an axis column is
    requested or a bbox must clip rows).
    """

    def __init__(self, reader: LevelReader, attributes, axes, bbox, object_ids: bool, widths: dict,
                 owner_count: bool = False):
        self.reader = reader
        self.attributes = tuple(attributes)
        self.axes = tuple(axes)
        self.bbox = bbox
        self.object_ids = object_ids
        # shared_fragments levels: how many objects own each row (object_id is the smallest)
        self.owner_count = bool(object_ids and owner_count)
        self.widths = dict(widths)
        self.schema = column_schema(self.axes, self.attributes, self.widths, object_ids,
                                    self.owner_count)

    def __dask_tokenize__(self):
        lm = self.reader.level
        return (type(self).__name__, self.reader.location.token(), lm.level,
                [a.name for a in self.attributes], self.axes,
                None if self.bbox is None else [b.tolist() for b in self.bbox],
                self.object_ids, self.owner_count, sorted(self.widths.items()))

    def meta(self):
        return self._frame({c: self._empty(src) for c, src, _ in self.schema}, self.schema)

    def _empty(self, src):
        if src == "positions":
            return np.zeros(0, self.reader.level.vertices.dtype)
        if src in ("object_ids", "owner_count"):
            return np.zeros(0, np.int64)
        info = next(a for a in self.attributes if a.name == src)
        return np.zeros(0, np.int64 if info.is_categorical else info.dtype)

    def _frame(self, data: dict, schema, n_rows=None, blocks=None, slots=None):
        import pandas as pd

        cols = {}
        plain = True
        for c, src, _ in schema:
            v = data[c]
            info = next((a for a in self.attributes if a.name == src), None)
            if info is not None and info.is_categorical:
                codes = np.asarray(v, np.int64).copy()
                if info.fill_code is not None:
                    codes[codes == int(info.fill_code)] = -1
                v = pd.Categorical.from_codes(codes, categories=list(info.categories))
                plain = False
            cols[c] = v
        index = pd.RangeIndex(0 if n_rows is None else n_rows)
        if not cols:
            return pd.DataFrame(index=index)
        names = pd.Index(list(cols), dtype=object)
        if plain and blocks is not None and len(blocks) == 1 and len(cols) == len(blocks[0]) \
                and [r for _, r in slots] == list(range(len(cols))):
            # one dtype: the block becomes the frame's only block as it is (no copy)
            return pd.DataFrame(blocks[0].T, columns=names, index=index, copy=False)
        # the arrays are fresh and ours: no copy, no consolidation
        return pd.DataFrame(cols, index=index, copy=False)

    def _cells(self, coords, attrs, want_pos: bool, want_ids: bool, selection=None):
        """(coords, per-cell columns clipped to the bbox) of one partition."""
        cells = self.reader.load(coords, attrs, want_pos, want_ids)
        return coords, [clip_columns(cols, self.bbox) for cols in cells]

    def __call__(self, coords, columns=None):
        return self._build(coords, columns)

    def cell_columns(self, coords, columns=None):
        """(schema, per-cell column dicts clipped to the bbox) without building a frame;
        what reductions use to compute per-chunk partials."""
        schema = self.schema if columns is None else [s for s in self.schema if s[0] in set(columns)]
        sources = {src for _, src, _ in schema}
        attrs = [a for a in self.attributes if a.name in sources]
        want_pos = "positions" in sources or self.bbox is not None
        want_ids = "object_ids" in sources or "owner_count" in sources
        return schema, self._cells(coords, attrs, want_pos, want_ids)[1]

    def _build(self, coords, columns=None, selection=None):
        schema = self.schema if columns is None else [s for s in self.schema if s[0] in set(columns)]
        sources = {src for _, src, _ in schema}
        attrs = [a for a in self.attributes if a.name in sources]
        want_pos = "positions" in sources or self.bbox is not None
        want_ids = "object_ids" in sources or "owner_count" in sources
        coords, cells = self._cells(coords, attrs, want_pos, want_ids, selection)
        return self.assemble(schema, coords, cells)

    def assemble(self, schema, coords, cells, n_rows=None):
        """One frame of ``schema`` from per-cell column dicts (``n_rows`` when the
        schema is empty and the cells hold no columns).

        Each output column is allocated once and every cell's values are copied
        straight into it (no per-cell transpose, no concatenation); columns of one
        dtype share a 2-D block, so the frame is built without consolidating."""
        counted = sum(len(next(iter(cols.values()))) if cols else 0 for cols in cells)
        picks = [[self._pick(cols, src, j, coord) for _, src, j in schema]
                 for coord, cols in zip(coords, cells)]
        dtypes = [np.result_type(*[p[i] for p in picks]) if picks else self._empty(src).dtype
                  for i, (_, src, _) in enumerate(schema)]
        slots, blocks = _column_slots(dtypes, counted)
        off = 0
        for row in picks:
            n = len(row[0]) if row else 0
            for (b, r), v in zip(slots, row):
                blocks[b][r, off:off + n] = v
            off += n
        data = {c: blocks[b][r] for (c, _, _), (b, r) in zip(schema, slots)}
        return self._frame(data, schema, counted if n_rows is None else n_rows, blocks, slots)

    def _pick(self, cols: dict, src: str, j, coord) -> np.ndarray:
        """Column ``j`` of source ``src`` in one cell (a strided view, no copy)."""
        v = cols[src]
        if j is not None:
            if v.ndim != 2 or v.shape[1] <= j:
                raise ChunkDecodeError(
                    f"attribute {src!r} has {1 if v.ndim == 1 else v.shape[1]} "
                    f"column(s) in this chunk but {self.widths.get(src)} elsewhere",
                    store=self.reader.location.url, level=self.reader.level.level,
                    array=f"vertex_attributes/{src}", chunk=coord)
            return v[:, j]
        if v.ndim == 2:
            raise ChunkDecodeError(
                f"attribute {src!r} has {v.shape[1]} columns in this chunk but 1 elsewhere",
                store=self.reader.location.url, level=self.reader.level.level,
                array=f"vertex_attributes/{src}", chunk=coord)
        return v


def _column_slots(dtypes, n_rows: int):
    """``(slots, blocks)``: one ``(k, n_rows)`` array per distinct dtype and, per
    column, its ``(block, row)``."""
    order = list(dict.fromkeys(dtypes))
    rows = [0] * len(order)
    slots = []
    for dt in dtypes:
        b = order.index(dt)
        slots.append((b, rows[b]))
        rows[b] += 1
    return slots, [np.empty((k, n_rows), dt) for dt, k in zip(order, rows)]


class ObjectPartitionReader(PartitionReader):
    """A :class:`PartitionReader` keeping only the rows of selected objects.

    Its partitions are ``(coords, selection)`` where ``selection[i]`` holds the
    ``(fragments, object ids)`` pairs of the selected objects in cell ``coords[i]``
    (from their manifests).  A row is kept when a selected object owns it;
    ``object_id`` is then the smallest *selected* owner and ``owner_count`` (on
    shared-fragment levels) still counts every owner of the row.
    """

    def __call__(self, spec, columns=None):
        coords, selection = spec
        return self._build(list(coords), columns, dict(zip(coords, selection)))

    def _cells(self, coords, attrs, want_pos: bool, want_ids: bool, selection=None):
        need_count = want_ids and self.owner_count
        cells = self.reader.load(coords, attrs, True, need_count, fragments=True)
        out = []
        for coord, cols in zip(coords, cells):
            fi = cols.pop("fragments")
            n = len(cols["positions"])
            rows, frag = fi.row_fragment_pairs()
            sf, so = selection[tuple(coord)]
            try:
                owner, count = dec.row_owners(rows, frag, np.asarray(so, np.int64),
                                              np.asarray(sf, np.int64), n, fi.num_fragments)
            except dec.DecodeProblem as exc:
                raise ChunkDecodeError(f"{exc}; the object index and the fragment index "
                                       "disagree", store=self.reader.location.url,
                                       level=self.reader.level.level,
                                       array="object_index/manifests", chunk=coord) from None
            keep = count > 0
            cols = {k: v[keep] for k, v in cols.items()}
            cols["object_ids"] = owner[keep]
            out.append(clip_columns(cols, self.bbox))
        return coords, out
