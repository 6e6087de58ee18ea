"""``open_zv`` and :class:`ZVStore`: the seed's eager API on top of plan/read/decode."""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict, deque
from typing import Iterator

import numpy as np

from . import _decode as dec
from . import _plan
from ._metadata import AttributeInfo, LevelMeta, StoreMeta
from ._read import LevelReader, clip_columns, decode_categorical_columns, drop_process_caches
from ._api_dask import DaskMethods
from ._api_objects import ObjectMethods
from ._store import ReadCancelled, StoreLocation, cancel_scope, read_metadata
from .errors import (
    ArrayNotFoundError,
    QueryError,
    StoreClosedError,
    ZVWarning,
)


def open_zv(path_or_url, *, storage_options=None, cache_size: int = 128, n_workers=None,
            retries: int = 4, retry_backoff: float = 0.2) -> "ZVStore":
    """Open a Zarr Vectors store; reads the ``zarr.json`` documents only.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        A local path or an fsspec URL (``s3://``, ``gs://``, ``memory://``, ``file://``).
    storage_options : dict, optional
        Passed to fsspec (credentials, ``endpoint_url``, ``anon=True``...).  Never shown
        in reprs or messages.
    cache_size : int
        Number of decoded chunks kept in an LRU cache (0 disables it).
    n_workers : int, optional
        Parallel chunk fetches for :meth:`ZVStore.read` (default 8).
    retries, retry_backoff : int, float
        Transient store failures (timeouts, resets, HTTP 5xx, throttling) are retried
        up to ``retries`` times, waiting about ``retry_backoff * 2**attempt`` seconds;
        then the read fails with :class:`StoreReadError` naming the chunk.

    Returns
    -------
    ZVStore

    Examples
    --------
    >>> import zv_dask
    >>> store = zv_dask.open_zv(zv_dask.example_store())
    >>> store.geometry_type, store.spatial_dims, store.levels
    ('point_cloud', 3, [0, 1, 2])
    """
    if cache_size is None or int(cache_size) < 0:
        raise QueryError(f"cache_size must be a non-negative integer, got {cache_size!r}")
    if n_workers is not None and int(n_workers) < 1:
        raise QueryError(f"n_workers must be >= 1, got {n_workers!r}")
    loc = StoreLocation(path_or_url, storage_options, n_workers, retries, retry_backoff)
    meta = read_metadata(loc)
    return ZVStore(loc, meta, cache_size=int(cache_size))


class ZVStore(DaskMethods, ObjectMethods):
    """An open Zarr Vectors store: metadata in memory, chunk data read on demand.

    Create it with :func:`open_zv`.  Nothing here writes to the store.

    Examples
    --------
    >>> import zv_dask
    >>> with zv_dask.open_zv(zv_dask.example_store()) as store:
    ...     r = store.read(level=2)
    >>> r["level"], r["positions"].shape[1]
    (2, 3)
    """

    def __init__(self, location: StoreLocation, meta: StoreMeta, cache_size: int = 128):
        self._loc = location
        self._meta = meta
        self._cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()  # (level, coord) -> decoded columns (LRU)
        self._derived: dict = {}  # small per-level facts computed once (widths, ids, links)
        self._lock = threading.RLock()
        self._closed = False

    # -- identity -------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"levels={self.levels}"
        return (f"<ZVStore {self._loc.url!r} {self.geometry_type} {self.spatial_dims}-D "
                f"{state}>")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Free the caches (this store's and the process-wide ones of this open) and the
        IO threads; later reads raise ``StoreClosedError``."""
        with self._lock:
            self._closed = True
            self._cache.clear()
            self._derived.clear()
        drop_process_caches(self._loc.open_id)
        self._loc.close()

    def _open(self) -> StoreMeta:
        if self._closed:
            raise StoreClosedError("the store was closed; open it again with zv_dask.open_zv",
                                   store=self._loc.url)
        return self._meta

    @property
    def url(self) -> str:
        """The store's path or URL (without credentials)."""
        return self._loc.url

    @property
    def metadata(self) -> StoreMeta:
        """The parsed metadata (a frozen value)."""
        return self._open()

    # -- metadata ---------------------------------------------------------------------------

    @property
    def geometry_type(self) -> str:
        return self._meta.geometry_type

    @property
    def spatial_dims(self) -> int:
        return self._meta.spatial_dims

    @property
    def axes(self) -> tuple:
        return self._meta.axes

    @property
    def zv_version(self) -> str:
        return self._meta.zv_version

    @property
    def chunk_shape(self) -> tuple:
        return tuple(float(x) for x in self._meta.chunk_shape)

    @property
    def bin_shape(self) -> tuple:
        return self.bin_shape_at(min(self._meta.levels))

    @property
    def levels(self) -> list:
        return list(self._meta.levels)

    @property
    def bounding_box(self) -> tuple:
        lo, hi = self._meta.bounds
        return lo.copy(), hi.copy()

    @property
    def n_objects(self):
        """Objects at level 0 (``None`` when the store has no object index)."""
        return self.object_count_at(min(self._meta.levels))

    def _level(self, level) -> LevelMeta:
        meta = self._open()
        return meta.levels[_plan.resolve_level(meta, level)]

    def vertex_count(self, level: int = 0) -> int | None:
        """Rows stored at ``level`` (from metadata; no data read).

        ``None`` when the store does not record it: the level's ``vertex_count`` is
        missing, or is 0 although chunks are listed (some reference writers record 0).
        """
        return self._level(level).vertex_count

    def chunk_shape_at(self, level: int) -> tuple:
        return tuple(float(x) for x in self._level(level).chunk_shape)

    def bin_shape_at(self, level: int) -> tuple:
        return tuple(float(x) for x in self._level(level).bin_shape)

    def bin_ratio_at(self, level: int) -> tuple:
        return tuple(float(x) for x in self._level(level).bin_ratio)

    def object_count_at(self, level: int):
        """Objects present at ``level`` (non-empty manifests), ``None`` without an index."""
        oi = self._level(level).object_index
        return None if oi is None else oi.num_present

    def attributes_at(self, level: int = 0) -> dict:
        """``{name: {"dtype", "width", "categories"}}`` of the per-vertex attributes.

        ``width`` comes from ``row_shape``, which some reference writers record as
        scalar for multi-column attributes; reads take the width from the bytes.
        """
        return {
            a.name: {"dtype": a.value_dtype if a.is_categorical else a.dtype,
                     "width": a.width,
                     "categories": list(a.categories) if a.is_categorical else None}
            for a in self._level(level).attributes.values()
        }

    def chunks(self, level: int = 0, bbox=None) -> list:
        """Planned chunk coordinates (absolute, row-major) at ``level`` touching ``bbox``."""
        meta = self._open()
        lm = self._level(level)
        box = _plan.normalize_bbox(bbox, meta.spatial_dims, meta.name)
        return [tuple(c) for c in lm.presence.coords(_plan.plan_cells(lm, box)).tolist()]

    def select_level(self, target_resolution: float) -> int:
        """The coarsest level with ``max(bin_shape) <= target_resolution`` (0 if none)."""
        return _plan.select_level(self._open(), target_resolution)

    # -- reading --------------------------------------------------------------------------

    def _memo(self, key, compute):
        """``compute()`` once per key for the store's lifetime (outside the chunk LRU)."""
        with self._lock:
            if key in self._derived:
                return self._derived[key]
        value = compute()
        with self._lock:
            return self._derived.setdefault(key, value)

    def _reader(self, level: int) -> LevelReader:
        meta = self._open()
        return LevelReader(self._loc, meta.levels[level], meta.spatial_dims)

    def owner_table(self, level: int) -> dec.OwnerTable | None:
        """Fragment -> object table of ``level``, decoded once from all manifests."""
        lm = self._level(level)
        if lm.object_index is None:
            return None
        return self._reader(lm.level).owner_table()

    def _load(self, level: int, coords: list, attrs: list, positions: bool, object_ids: bool):
        """Decoded unclipped columns per cell, through the LRU cache."""
        names = {"positions"} if positions else set()
        names |= {a.name for a in attrs}
        if object_ids:
            names.add("object_ids")
        out = [None] * len(coords)
        missing = []
        with self._lock:
            for i, c in enumerate(coords):
                hit = self._cache.get((level, c))
                if hit is not None and names <= hit.keys():
                    self._cache.move_to_end((level, c))
                    out[i] = hit
                else:
                    missing.append(i)
        if missing:
            loaded = self._reader(level).load([coords[i] for i in missing], attrs,
                                              positions, object_ids)
            with self._lock:
                for i, cols in zip(missing, loaded):
                    key = (level, coords[i])
                    merged = dict(self._cache.get(key) or {})
                    merged.update(cols)
                    out[i] = merged
                    if self._cache_size:
                        self._cache[key] = merged
                        self._cache.move_to_end(key)
                        while len(self._cache) > self._cache_size:
                            self._cache.popitem(last=False)
        return out

    def _select(self, cols: dict, plan: _plan.ReadPlan, attrs) -> dict:
        """Clip one cell to the plan's bbox and shape it as an iter_chunks/read item."""
        keep = ["positions"] + [a.name for a in attrs]
        shared = plan.object_ids and self._meta.levels[plan.level].shared_fragments
        if plan.object_ids:
            keep.append("object_ids")
        if shared:
            keep.append("owner_count")
        cols = clip_columns({k: cols[k] for k in keep if k in cols}, plan.bbox)
        item = {"positions": cols["positions"],
                "attributes": decode_categorical_columns(
                    {a.name: cols[a.name] for a in attrs}, attrs)}
        if plan.object_ids:
            item["object_ids"] = cols["object_ids"]
        if shared:
            item["owner_count"] = cols["owner_count"]
        return item

    def read(self, level=None, bbox=None, target_resolution=None, attributes=None) -> dict:
        """Read one level (optionally a bbox of it) into numpy.

        Parameters
        ----------
        level : int, optional
            Resolution level; default 0.  Not together with ``target_resolution``.
        bbox : (lo, hi), optional
            Closed box, one value per axis: rows with ``lo <= p <= hi`` are kept.
            Only chunks that can hold such rows are fetched.
        target_resolution : float, optional
            Pick the coarsest level whose ``max(bin_shape) <= target_resolution``.
        attributes : list of str, optional
            ``None`` reads every attribute, ``[]`` none.

        Returns
        -------
        dict
            ``level``, ``vertex_count``, ``positions`` (N, D) in the stored dtype,
            ``attributes`` {name: (N,) or (N, C)} (categoricals decoded to values),
            and ``object_ids`` (int64, -1 where no object; smallest owner where a
            coarse-level vertex is shared) when the level has an object index; on
            levels with ``shared_fragments`` also ``owner_count`` (int64, the number
            of objects that own each row).

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> r = s.read(bbox=([0, 0, 0], [250, 250, 250]), attributes=["intensity"])
        >>> bool((r["positions"] <= 250).all()), sorted(r["attributes"])
        (True, ['intensity'])
        """
        meta = self._open()
        plan = _plan.plan_read(meta, level, bbox, target_resolution, attributes)
        lm = meta.levels[plan.level]
        coords = [tuple(c) for c in plan.cells.tolist()]
        attrs = list(plan.attributes)
        items = [self._select(cols, plan, attrs)
                 for cols in self._load(plan.level, coords, attrs, True, plan.object_ids)]
        D = meta.spatial_dims
        pos = _concat([i["positions"] for i in items], np.zeros((0, D), lm.vertices.dtype))
        out_attrs = {}
        for a in attrs:
            parts = [i["attributes"][a.name] for i in items]
            out_attrs[a.name] = _concat(parts, _empty_attribute(a))
        result = {"level": plan.level, "vertex_count": int(len(pos)), "positions": pos,
                  "attributes": out_attrs}
        if plan.object_ids:
            result["object_ids"] = _concat([i["object_ids"] for i in items], np.zeros(0, np.int64))
        if plan.object_ids and lm.shared_fragments:
            result["owner_count"] = _concat([i["owner_count"] for i in items],
                                            np.zeros(0, np.int64))
        if plan.bbox is None:
            check_row_total(len(pos), lm, self.url)
        return result

    def iter_chunks(self, level: int = 0, bbox=None, prefetch: int = 0, n_workers=None,
                    attributes=None) -> Iterator:
        """Yield ``(chunk_coord, {"positions", "attributes"[, "object_ids"[, "owner_count"]]})``
        per chunk (``owner_count`` on levels with ``shared_fragments``).

        Only non-empty chunks touching ``bbox`` are visited, in row-major order, rows
        clipped to the bbox; each chunk is fetched and decoded exactly once.
        ``prefetch=k`` keeps up to ``k`` chunks in flight on ``n_workers`` background
        threads (default ``k``) while the caller works on the current one.

        Streaming: chunks bypass the store's chunk cache, and the iterator holds at
        most ``prefetch + 1`` decoded chunks (the one it hands out and ``prefetch``
        ahead; none once the caller has dropped its last chunk, apart from those).
        Closing the iterator (``close()``, ``break`` followed by garbage collection,
        an exception such as ``KeyboardInterrupt`` in the loop) returns at once: the
        pending prefetches are dropped, and a prefetch thread still waiting on the
        store sends no further request (no retry) and exits when that request
        returns.  Prefetch threads are daemon threads, so they never keep the
        process alive.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> total = sum(len(d["positions"]) for _, d in s.iter_chunks(level=1, prefetch=2))
        >>> total == s.vertex_count(1)
        True
        """
        meta = self._open()
        if prefetch is None or int(prefetch) < 0:
            raise QueryError(f"prefetch must be >= 0, got {prefetch!r}", store=self.url)
        plan = _plan.plan_read(meta, level, bbox, None, attributes)
        coords = [tuple(c) for c in plan.cells.tolist()]
        attrs = list(plan.attributes)
        if plan.object_ids:
            self.owner_table(plan.level)  # decode the manifests once, before the threads start

        reader = self._reader(plan.level)

        def one(c):  # not through the chunk cache: streaming must not accumulate chunks
            cols = reader.load([c], attrs, True, plan.object_ids)[0]
            return self._select(cols, plan, attrs)

        return _iterate(coords, one, int(prefetch), n_workers)

    # -- raw access -----------------------------------------------------------------------

    def raw_array(self, array_path: str, level: int = 0):
        """A read-only ``zarr.Array`` of the level (e.g. ``"vertices"``,
        ``"vertex_attributes/intensity"``, ``"object_attributes/mean_fa"``).

        Grid arrays hold one variable-length byte blob per chunk; slice them
        (``a[i:i+1, j:j+1, k:k+1]``), never index with scalars.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> s.raw_array("vertices").ndim
        3
        """
        lm = self._level(level)
        path = _safe_array_path(array_path, self.url, lm.level)
        if path in lm.arrays:
            return self._loc.zarr_array(lm.arrays[path], lm.level)
        import zarr

        try:
            return zarr.open_array(store=self._loc.zarr_store(), path=f"{lm.level}/{path}",
                                   mode="r", zarr_format=3)
        except Exception:
            raise ArrayNotFoundError(
                f"no array {path!r} at this level; known arrays: {sorted(lm.arrays)}",
                store=self.url, level=lm.level, array=path,
            ) from None

    def level_group(self, level: int = 0):
        """The level as a read-only ``zarr.Group``."""
        import zarr

        lm = self._level(level)
        return zarr.open_group(store=self._loc.zarr_store(), path=str(lm.level), mode="r",
                               zarr_format=3, use_consolidated=False)


def check_row_total(total: int, lm: LevelMeta, store: str) -> None:
    """Warn (:class:`ZVWarning`) when a whole level's rows differ from its recorded
    ``vertex_count``; a count of 0 or less means "not recorded" (streaming writers)."""
    vc = lm.vertex_count
    if isinstance(vc, int) and vc > 0 and int(total) != vc:
        warnings.warn(ZVWarning(
            f"store {store}, level {lm.level}: read {int(total)} rows but the level records "
            f"vertex_count {vc}; the store may be damaged or was changed while being read "
            "(compare it with a fresh copy, or rewrite the level)"), stacklevel=3)


def _safe_array_path(array_path: str, store: str, level: int) -> str:
    p = str(array_path).strip()
    parts = p.split("/")
    if not p or p.startswith("/") or "\\" in p or any(x in ("", ".", "..") for x in parts) \
            or ":" in parts[0]:
        raise QueryError(
            f"array path {array_path!r} must be relative to the level, without '..', "
            "e.g. 'vertices' or 'vertex_attributes/intensity'",
            store=store, level=level, array=array_path,
        )
    return p


def _concat(parts, empty):
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty
    return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


def _empty_attribute(a: AttributeInfo) -> np.ndarray:
    shape = (0,) if a.width == 1 else (0, a.width)
    return np.zeros(shape, a.value_dtype)


def _iterate(coords, one, prefetch: int, n_workers):
    """Yield ``(coord, one(coord))`` in order, computing up to ``prefetch`` ahead."""
    if prefetch == 0:
        for c in coords:
            yield c, one(c)
        return
    pf = _Prefetch(list(coords), one, prefetch, int(n_workers) if n_workers else prefetch)
    try:
        for i in range(len(pf.coords)):
            # ``pf.take`` hands its reference over: nothing here keeps the chunk alive
            yield pf.coords[i], pf.take(i)
    finally:
        pf.cancel()


class _Prefetch:
    """Daemon threads computing ``one(coords[i])`` for ``i < taken + prefetch + 1``.

    Results are held only until taken.  :meth:`cancel` never waits: queued work is
    dropped, and reads still running in a thread stop before their next attempt or
    backoff (:func:`~zv_dask._store.cancel_scope`).
    """

    def __init__(self, coords: list, one, prefetch: int, n_workers: int):
        self.coords = coords
        self.one = one
        self.prefetch = prefetch
        self.cancelled = threading.Event()
        self.cond = threading.Condition()
        self.queue: deque = deque()  # indices submitted, not yet started
        self.done: dict = {}  # index -> (ok, value), until taken
        self.submitted = 0
        self.threads = [threading.Thread(target=self._work, name="zv_dask-prefetch", daemon=True)
                        for _ in range(max(1, min(n_workers, prefetch + 1, len(coords))))]
        self._started = False

    def take(self, i: int):
        with self.cond:
            while self.submitted < min(i + self.prefetch + 1, len(self.coords)):
                self.queue.append(self.submitted)
                self.submitted += 1
            self.cond.notify_all()
            if not self._started:
                self._started = True
                for t in self.threads:
                    t.start()
            while i not in self.done:
                self.cond.wait()
            ok, value = self.done.pop(i)
        if not ok:
            raise value
        return value

    def _work(self):
        with cancel_scope(self.cancelled):
            while True:
                with self.cond:
                    while not self.queue and not self.cancelled.is_set():
                        self.cond.wait()
                    if self.cancelled.is_set():
                        return
                    i = self.queue.popleft()
                try:
                    res = (True, self.one(self.coords[i]))
                except ReadCancelled:
                    return
                except BaseException as exc:  # handed to the consumer, raised there
                    res = (False, exc)
                with self.cond:  # hand the result over: this thread keeps no reference
                    if self.cancelled.is_set():
                        return
                    self.done[i] = res
                    del res
                    self.cond.notify_all()

    def cancel(self):
        self.cancelled.set()
        with self.cond:
            self.queue.clear()
            self.done.clear()
            self.cond.notify_all()
