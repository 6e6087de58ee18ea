"""Where statistics get their rows: a store, a path/URL, or a dask DataFrame.

Also the partitioning used for reductions and the grid box of spatial statistics.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from zv_dask.errors import QueryError


def _is_dataframe(obj) -> bool:
    import dask.dataframe as dd

    return isinstance(obj, dd.DataFrame)


# The store class and its opener, registered by zv_dask.store when it is imported: the
# store's describe()/histogram()/... call into this module, so it must not import them.
_STORE: dict = {}


def register_store(store_class, opener) -> None:
    """Tell the statistics which class is a store and how a path/URL opens one.

    Examples
    --------
    >>> from zv_dask import stats, store
    >>> stats.register_store(store.ZVStore, store.open_zv)  # what zv_dask.store does
    """
    _STORE["class"], _STORE["open"] = store_class, opener


def _store(source):
    if "class" in _STORE and isinstance(source, _STORE["class"]):
        return source
    if isinstance(source, (str, os.PathLike)) and "open" in _STORE:
        return _STORE["open"](source)
    raise QueryError(
        f"source must be a ZVStore, a path/URL or a dask DataFrame from to_dask_dataframe, "
        f"got {type(source).__name__}"
    )


TARGET_ROWS_PER_PARTITION = 1_000_000


def auto_chunks_per_partition(store, level: int, n_chunks: int):
    """Partitions for a reduction: ``chunks_per_partition="auto"`` grouping of the level
    into compact boxes of about a million rows per task (tasks cost ~0.5 ms threaded,
    ~3 ms on a cluster, a 10k-row chunk ~0.1 ms), but at least four partitions per
    core so every core stays busy; narrower plans use these groups trimmed."""
    lm = store.metadata.levels[level]
    if n_chunks == 0 or lm.n_cells == 0:
        return 1
    rows = max(1.0, (lm.vertex_count or 0) / lm.n_cells) * n_chunks  # None: unknown
    target = max(1, min(TARGET_ROWS_PER_PARTITION, math.ceil(rows / (4 * (os.cpu_count() or 1)))))
    return store._auto_partitioning(level, target)


def _check_unique(columns) -> None:
    if columns is None:
        return
    if isinstance(columns, str):
        raise QueryError(f"columns must be a list of names, got the string {columns!r}; "
                         f"use [{columns!r}]")
    twice = sorted({c for c in columns if list(columns).count(c) > 1})
    if twice:
        raise QueryError(f"columns {twice} are named more than once; name each column once")


def _frame(source, columns, level, bbox, target_resolution):
    """(dask DataFrame restricted to ``columns``, store or None)."""
    _check_unique(columns)
    if _is_dataframe(source):
        if level is not None or bbox is not None or target_resolution is not None:
            raise QueryError("level/bbox/target_resolution apply to stores; this source is "
                             "already a dataframe (select rows on it instead)")
        ddf = source
        store = None
    else:
        store = _store(source)
        attrs = None
        if columns is not None:
            lv = store._plan(level, None, target_resolution, []).level
            known = store.metadata.levels[lv].attributes
            attrs = sorted({c if c in known else c.rsplit("_", 1)[0] for c in columns
                            if c not in store.axes and c != "object_id"} & set(known))
        plan = store._plan(level, bbox, target_resolution, [])
        cpp = auto_chunks_per_partition(store, plan.level, len(plan.cells))
        ddf = store.to_dask_dataframe(level=level, bbox=bbox, target_resolution=target_resolution,
                                      attributes=attrs, chunks_per_partition=cpp)
    if columns is not None:
        missing = [c for c in columns if c not in ddf.columns]
        if missing:
            every = ddf.columns if store is None else store.to_dask_dataframe(
                level=level, target_resolution=target_resolution).columns
            raise QueryError(f"unknown columns {missing}; available: {list(every)}",
                             store=None if store is None else store.url)
        ddf = ddf[list(columns)]
    return ddf, store


def _numeric_columns(meta: pd.DataFrame) -> list:
    return [c for c in meta.columns
            if pd.api.types.is_numeric_dtype(meta[c].dtype)
            and not isinstance(meta[c].dtype, pd.CategoricalDtype)]


def _grid_box(store, bbox):
    """The box a grid (histogram of an axis, density) covers: the bbox, with the store's
    bounding box on every open (infinite) side and where there is no bbox."""
    from zv_dask.plan.select import normalize_bbox

    lo, hi = store.bounding_box
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    box = normalize_bbox(bbox, store.spatial_dims, store.url)
    if box is None:
        return lo, hi
    blo, bhi = box
    lo = np.where(np.isfinite(blo), blo, lo)
    hi = np.where(np.isfinite(bhi), bhi, hi)
    return lo, np.maximum(hi, lo)  # a box beyond the data on an open side: one empty bin


def _positions(store, level, bbox, target_resolution):
    plan = store._plan(level, bbox, target_resolution, [])
    cpp = auto_chunks_per_partition(store, plan.level, len(plan.cells))
    return store.to_dask_array("positions", level=level, bbox=bbox,
                               target_resolution=target_resolution, chunks_per_partition=cpp)
