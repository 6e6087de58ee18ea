"""Read cells of one level: fetch their blobs (one concurrent batch), decode, clip.

:class:`LevelReader` is small and picklable (location + parsed level metadata); it is
what dask tasks call on workers.  It never re-reads or lists metadata.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from zv_dask.format import decode as dec
from zv_dask.format.metadata import ArrayMeta, AttributeInfo, LevelMeta, Presence
from zv_dask.read import object_arrays as _object_arrays
from zv_dask.read.object_arrays import (  # noqa: F401 - caches re-exported (store, tests)
    _OWNER_LOCK, _OWNER_TABLES, ObjectArrays)
from zv_dask.read.shards import drop_indexes, fetch_sharded
from zv_dask.errors import (
    ChunkDecodeError,
    ChunkMissingError,
    StoreReadError,
    UnsupportedFormatError,
    ZVError,
)
from zv_dask.io.location import BlobRefused, StoreLocation, cell_key, is_transient

_NO_CELLS = np.zeros(0, np.int64)
POSITIONS = "vertices"
FRAGMENTS = "vertex_fragments"
# keys of a decoded cell that are not attributes; an attribute of one of these names
# is keyed by its array path instead (see :func:`attr_key`)
_CELL_KEYS = frozenset({"positions", "object_ids", "owner_count", "fragments"})


def attr_key(name: str) -> str:
    """The key of attribute ``name`` in a decoded cell (:meth:`LevelReader.load`): its
    name, or ``vertex_attributes/<name>`` when the name is one of the cell's own keys
    (``positions``, ``object_ids``, ``owner_count``, ``fragments``).

    Examples
    --------
    >>> attr_key("intensity"), attr_key("owner_count")
    ('intensity', 'vertex_attributes/owner_count')
    """
    return f"vertex_attributes/{name}" if name in _CELL_KEYS else name


class LevelReader(ObjectArrays):
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

    def fetch(self, arrays: Sequence[ArrayMeta], coords: Sequence[tuple],
              in_task: bool = False) -> dict:
        """Payloads (framing and codecs removed) for every (array, cell); one batch
        (``in_task``: see :meth:`StoreLocation.get_many`).

        Returns ``{(array.path, coord): memoryview}``.  A cell listed as non-empty
        whose object is missing raises :class:`ChunkMissingError`.  Sharded arrays
        read each shard object once (:mod:`zv_dask.read.shards`).
        """
        out = {}
        direct = [a for a in arrays if a.access in ("plain", "bytes_codecs")]
        keys = [(a, c) for a in direct for c in coords]
        lv = self.level.level
        rels = [cell_key(a, lv, c) for a, c in keys]
        bounds = {a.path: self._byte_bound(a) for a in direct}
        limits = [_stored_limit(bounds[a.path], a) for a, _ in keys]
        try:
            raws = self.location.get_many(rels, limits, in_task=in_task)
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
        sharded = [a for a in arrays if a.access == "sharded"]
        if sharded:
            out.update(fetch_sharded(self, sharded, coords,
                                     {a.path: self._byte_bound(a) for a in sharded}, in_task))
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
             fragments: bool = False, in_task: bool = False, rows=None) -> list[dict]:
        """Decoded, unclipped columns of each cell: ``positions``, attributes (under
        :func:`attr_key`), ``object_ids``/``owner_count`` with ``object_ids=True``, and
        the cell's :class:`FragmentIndex` under ``"fragments"`` with ``fragments=True``.
        ``in_task``: called from a dask task (see :meth:`StoreLocation.get_many`).
        ``rows``: per cell, the rows it held when the collection was built (-1
        unknown); a cell decoding to another count raises :class:`StoreReadError`."""
        owners = self.owner_table() if object_ids else None
        coords = [tuple(int(x) for x in c) for c in coords]
        attributes = list(attributes)
        # vertex rows are needed to split attribute bytes into rows only when the
        # recorded width cannot be trusted (or nothing else gives the row count)
        need_pos = (positions or owners is not None or fragments
                    or any(not a.width_reliable for a in attributes)
                    or all(a.implied_by_key for a in attributes))
        arrays = self.arrays_for(attributes, need_pos, owners is not None or fragments)
        payloads = self.fetch(arrays, coords, in_task)
        rows = [-1] * len(coords) if rows is None else [int(r) for r in rows]
        out = [self._decode_cell(c, payloads, attributes, owners, r)
               for c, r in zip(coords, rows)]
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

    def _changed(self, coord, now: int, then: int, array: str) -> StoreReadError:
        return self._err(
            StoreReadError, f"the chunk decodes to {now} rows (read as {self._dtype_of(array)}) "
            f"but held {then} when the collection was built: the store changed since it "
            "was opened (rewritten, e.g. with another dtype); open it again", array, coord)

    def _dtype_of(self, array: str) -> str:
        lm = self.level
        if array == POSITIONS:
            return str(lm.vertices.dtype)
        info = next((i for i in lm.attributes.values() if i.path == array), None)
        return "?" if info is None else str(info.dtype)

    def _decode_cell(self, coord, payloads, attributes, owners, expect: int = -1) -> dict:
        lm = self.level
        out = {}
        vb = payloads.get((POSITIONS, coord))
        n = None
        if vb is not None:
            try:
                pos = dec.decode_vertices(vb, lm.vertices.dtype, self.ndim)
            except dec.DecodeProblem as exc:
                if expect >= 0:  # it held whole rows when the collection was built
                    raise self._changed(coord, f"{len(vb)} bytes, not whole", expect,
                                        POSITIONS) from None
                raise self._err(ChunkDecodeError, f"{exc}; the chunk is corrupt or its "
                                "dtype attribute is wrong", POSITIONS, coord) from None
            out["positions"] = pos
            n = len(pos)
            if expect >= 0 and n != expect:  # a stale handle: rows of another dtype
                raise self._changed(coord, n, expect, POSITIONS)
        for info in sorted(attributes, key=lambda a: a.implied_by_key):
            if info.implied_by_key:
                out[attr_key(info.name)] = np.full(n, coord[0], np.int64)
                continue
            try:
                col = dec.decode_attribute(payloads[(info.path, coord)], info.dtype, n, info.width)
            except dec.DecodeProblem as exc:
                raise self._err(ChunkDecodeError, f"{exc}; the attribute chunk does not match "
                                "the vertex chunk", info.path, coord) from None
            if n is None and expect >= 0 and len(col) != expect:
                raise self._changed(coord, len(col), expect, info.path)
            out[attr_key(info.name)] = col
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


def drop_process_caches(open_id: str) -> None:
    """Forget the process-wide caches of one open (``ZVStore.close``): decoded owner
    tables and shard indexes."""
    _object_arrays.drop_process_caches(open_id)
    drop_indexes(open_id)


def _undecodable(exc: BaseException) -> bool:
    """zarr got the bytes but could not decode them (not an IO failure)."""
    return not is_transient(exc) and not isinstance(exc, (OSError, KeyError, ZVError))


def _stored_limit(bound: int | None, a: ArrayMeta) -> int | None:
    """Most bytes the stored object of a cell may hold: the decoded bound, plus what
    compression can add to incompressible data."""
    if bound is None:
        return None
    return bound if not a.byte_codecs else bound + bound // 64 + 4096


def decode_categorical_columns(cols: dict, attributes: Sequence[AttributeInfo]) -> dict:
    """Replace dictionary codes by category values (object arrays)."""
    for info in attributes:
        if info.is_categorical and info.name in cols:
            try:
                cols[info.name] = dec.decode_categories(cols[info.name], info.categories,
                                                        info.fill_code)
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
