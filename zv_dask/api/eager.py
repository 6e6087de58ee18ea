"""The eager reads of a :class:`~zv_dask.store.ZVStore`: ``read``, ``iter_chunks``."""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from zv_dask.errors import QueryError, ZVWarning
from zv_dask.format import decode as dec
from zv_dask.format.metadata import AttributeInfo, LevelMeta
from zv_dask.io.prefetch import iterate
from zv_dask.plan import select as _select
from zv_dask.read.level import attr_key, clip_columns, decode_categorical_columns


class ReadMethods:
    """Numpy reads through the store's chunk cache (mixed into ``ZVStore``)."""

    def owner_table(self, level: int) -> dec.OwnerTable | None:
        """Fragment -> object table of ``level``, decoded once from all manifests."""
        lm = self._level(level)
        if lm.object_index is None:
            return None
        return self._reader(lm.level).owner_table()

    def _load(self, level: int, coords: list, attrs: list, positions: bool, object_ids: bool):
        """Decoded unclipped columns per cell, through the LRU cache."""
        names = {"positions"} if positions else set()
        names |= {attr_key(a.name) for a in attrs}
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

    def _select(self, cols: dict, plan: _select.ReadPlan, attrs) -> dict:
        """Clip one cell to the plan's bbox and shape it as an iter_chunks/read item."""
        keep = ["positions"] + [attr_key(a.name) for a in attrs]
        shared = plan.object_ids and self._meta.levels[plan.level].shared_fragments
        if plan.object_ids:
            keep.append("object_ids")
        if shared:
            keep.append("owner_count")
        cols = clip_columns({k: cols[k] for k in keep if k in cols}, plan.bbox)
        item = {"positions": cols["positions"],
                "attributes": decode_categorical_columns(
                    {a.name: cols[attr_key(a.name)] for a in attrs}, attrs)}
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
        plan = _select.plan_read(meta, level, bbox, target_resolution, attributes)
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
        plan = _select.plan_read(meta, level, bbox, None, attributes)
        coords = [tuple(c) for c in plan.cells.tolist()]
        attrs = list(plan.attributes)
        if plan.object_ids:
            self.owner_table(plan.level)  # decode the manifests once, before the threads start

        reader = self._reader(plan.level)

        def one(c):  # not through the chunk cache: streaming must not accumulate chunks
            cols = reader.load([c], attrs, True, plan.object_ids)[0]
            return self._select(cols, plan, attrs)

        return iterate(coords, one, int(prefetch), n_workers)


def check_row_total(total: int, lm: LevelMeta, store: str) -> None:
    """Warn (:class:`ZVWarning`) when a whole level's rows differ from its recorded
    ``vertex_count``; a count of 0 or less means "not recorded" (streaming writers)."""
    vc = lm.vertex_count
    if isinstance(vc, int) and vc > 0 and int(total) != vc:
        warnings.warn(ZVWarning(
            f"store {store}, level {lm.level}: read {int(total)} rows but the level records "
            f"vertex_count {vc}; the store may be damaged or was changed while being read "
            "(compare it with a fresh copy, or rewrite the level)"), stacklevel=3)


def _concat(parts, empty):
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty
    return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


def _empty_attribute(a: AttributeInfo) -> np.ndarray:
    shape = (0,) if a.width == 1 else (0, a.width)
    return np.zeros(shape, a.value_dtype)
