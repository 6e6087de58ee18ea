"""Statistics as dask reductions: per-chunk partials, a tree combine, a finalize step.

Every function takes ``source``: an open store, a path/URL, or a dataframe made by
:meth:`ZVStore.to_dask_dataframe`.  Results are lazy and run unchanged on the local
scheduler and on a ``dask.distributed`` cluster (and show in ``ProgressBar`` and the
dashboard).  Means and variances are merged with the pairwise (Chan et al.) rule on
``(n, mean, M2)``, never from a naive sum of squares.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import pandas as pd

from .errors import QueryError

from ._moments import (  # noqa: F401  (public: the building blocks of describe)
    PARTIAL_FIELDS,
    STAT_ROWS,
    CellMoments,
    _identity,
    _partials_frame,
    finalize_moments,
    merge_moments,
    partial_moments,
)
from ._moments import _finish_bounds, _finite_range, _one_block_bounds, _voxel_count, voxel_edges


# --------------------------------------------------------------------------- sources


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


# --------------------------------------------------------------------------- describe


def describe(source, columns=None, level=None, bbox=None, target_resolution=None,
             split_every=None):
    """count, mean, std, min, max and sum per numeric column, as one lazy reduction.

    Parameters
    ----------
    source : ZVStore, str or dask DataFrame
    columns : list of str, optional
        Default: every numeric column (categoricals are skipped).  Only the arrays
        these columns need are fetched.
    level, bbox, target_resolution
        As for :meth:`ZVStore.read` (stores and URLs only).
    split_every : int, optional
        Fan-in of the tree reduction.

    Returns
    -------
    dask DataFrame
        ``.compute()`` gives a pandas DataFrame with rows count, mean, std (ddof=1),
        min, max, sum and one column per input column.

    Examples
    --------
    >>> import zv_dask
    >>> from zv_dask import stats
    >>> t = stats.describe(zv_dask.example_store(), columns=["intensity"]).compute()
    >>> int(t.loc["count", "intensity"])
    5000
    """
    ddf, _ = _frame(source, columns, level, bbox, target_resolution)
    numeric = _numeric_columns(ddf._meta)
    if columns is not None:
        bad = [c for c in columns if c not in numeric]
        if bad:
            raise QueryError(f"describe needs numeric columns; {bad} are not numeric")
    if not numeric:
        raise QueryError("no numeric columns to describe")
    ddf = ddf[numeric]
    meta = finalize_moments(partial_moments(ddf._meta), numeric)
    aggregate = functools.partial(finalize_moments, columns=tuple(numeric))
    if not _is_dataframe(source):  # per-chunk partials straight from the decoded columns
        partials = _store_partials(_store(source), numeric, level, bbox, target_resolution)
        return partials.reduction(
            chunk=_identity, combine=merge_moments, aggregate=aggregate, meta=meta,
            split_every=split_every, token="zv-describe")
    return ddf.reduction(
        chunk=partial_moments,
        combine=merge_moments,
        aggregate=aggregate,
        meta=meta,
        split_every=split_every,
        token="zv-describe",
    )


def _store_partials(store, columns, level, bbox, target_resolution):
    """A dask DataFrame of per-partition partials of ``columns`` over a store's level."""
    from . import _graph
    from ._partition_reader import PartitionReader

    lv = store._plan(level, None, target_resolution, []).level
    known = store.metadata.levels[lv].attributes
    names = sorted({c if c in known else c.rsplit("_", 1)[0] for c in columns} & set(known))
    plan = store._plan(level, bbox, target_resolution, names)
    reader = store._reader(plan.level)
    part = PartitionReader(reader, plan.attributes, store.axes, plan.bbox, plan.object_ids,
                           store._widths(plan.level, plan.attributes),
                           bool(reader.level.shared_fragments))
    cpp = auto_chunks_per_partition(store, plan.level, len(plan.cells))
    meta = _partials_frame(np.zeros((0, len(PARTIAL_FIELDS))), [])
    return _graph.from_partition_function(CellMoments(part, columns), plan, meta, cpp,
                                          label="zv-moments")


# --------------------------------------------------------------------------- counts


def count(source, level=None, bbox=None, target_resolution=None):
    """Number of vertices.  Without a bbox the answer comes from metadata (an int, no
    task) where the store records it; otherwise a lazy dask scalar.

    Examples
    --------
    >>> import zv_dask
    >>> from zv_dask import stats
    >>> stats.count(zv_dask.example_store(), level=1)
    504
    """
    if not _is_dataframe(source) and bbox is None:
        store = _store(source)
        lv = store._plan(level, None, target_resolution, []).level
        if store.vertex_count(lv) is not None:
            return store.vertex_count(lv)
        # the count is not recorded: count the rows (lazily, like a bbox count)
    ddf, _ = _frame(source, None, level, bbox, target_resolution)
    return ddf.shape[0]


def _column_array(source, column, level, bbox, target_resolution):
    ddf, store = _frame(source, [column], level, bbox, target_resolution)
    dtype = ddf._meta[column].dtype
    if isinstance(dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(dtype):
        raise QueryError(f"column {column!r} is not numeric ({dtype})")
    return ddf[column], store


def histogram(source, column, bins=10, range=None, level=None, bbox=None,
              target_resolution=None):
    """Histogram of one column as a lazy dask array, plus the bin edges.

    Without ``range``: axis columns use the store's bounding box (or the bbox, with
    the bounding box on its open sides); other columns take ``[min, max]`` from a
    first (eager) reduction.  Bins follow :func:`numpy.histogram` (the last bin
    includes its upper edge).  A non-finite range (given, or found because the
    column holds inf) is refused with :class:`QueryError`, as numpy refuses it.

    Returns
    -------
    (counts, edges) : (dask array of int64, numpy array)

    Examples
    --------
    >>> import zv_dask
    >>> from zv_dask import stats
    >>> counts, edges = stats.histogram(zv_dask.example_store(), "x", bins=4)
    >>> int(counts.sum().compute()), edges.tolist()
    (5000, [0.0, 500.0, 1000.0, 1500.0, 2000.0])
    """
    import dask
    import dask.array as da

    series, store = _column_array(source, column, level, bbox, target_resolution)
    values = series.to_dask_array()
    if range is not None:
        range = _finite_range(range, "range", column)
    elif not np.ndim(bins) == 0:
        range = None  # explicit edges
    elif store is not None and column in store.axes:
        d = store.axes.index(column)
        lo, hi = _grid_box(store, bbox)
        range = (float(lo[d]), float(hi[d]))
    else:
        lo, hi = dask.compute(series.min(), series.max())
        if np.isnan(lo) and np.isnan(hi):
            range = (0.0, 1.0)  # no values: numpy's range for an empty array
        else:
            range = _finite_range((float(lo), float(hi)), "the data range", column)
    try:
        edges = np.histogram_bin_edges(np.zeros(0), bins=bins, range=range)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"histogram of {column!r}: {exc}") from None
    counts, _ = da.histogram(values, bins=edges)
    return counts.astype(np.int64), edges


def _grid_box(store, bbox):
    """The box a grid (histogram of an axis, density) covers: the bbox, with the store's
    bounding box on every open (infinite) side and where there is no bbox."""
    from ._plan import normalize_bbox

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


def bounds(source, level=None, bbox=None, target_resolution=None):
    """Exact data bounds, lazily: a dask array ``(2, D)`` of ``[min; max]`` per axis.

    Chunks the bbox leaves empty are fine; when no row is selected the result is
    ``(2, D)`` of NaN (the lazy and the computed shape are both ``(2, D)``).

    Examples
    --------
    >>> import zv_dask
    >>> from zv_dask import stats
    >>> b = stats.bounds(zv_dask.example_store(), level=2).compute()
    >>> b.shape
    (2, 3)
    """
    if _is_dataframe(source):
        if level is not None or bbox is not None or target_resolution is not None:
            raise QueryError("level/bbox/target_resolution apply to stores, not dataframes")
        axes = [c for c in source.columns if c in ("x", "y", "z")] or list(source.columns[:3])
        pos = source[axes].to_dask_array()
    else:
        pos = _positions(_store(source), level, bbox, target_resolution)
    return block_bounds(pos)


def block_bounds(pos):
    """``(2, D)`` ``[min; max]`` of a dask array ``(N, D)`` whose blocks may be empty.

    dask's own ``min(axis=0)`` fails when a block of unknown length turns out empty
    (it concatenates a ``(1, 0)`` placeholder with ``(1, D)`` results); here every
    block gives ``(2, D)`` with ``inf``/``-inf`` identities, and no row at all gives
    NaN.  Float dtypes are kept, integers become float64 (to hold NaN).

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> a = da.from_array(np.array([[1.0, 5.0], [3.0, 2.0]]), chunks=1)
    >>> block_bounds(a).compute().tolist()
    [[1.0, 2.0], [3.0, 5.0]]
    """
    import dask.array as da

    if pos.ndim != 2:
        raise QueryError(f"bounds need an (N, D) array, got {pos.ndim} dimensions")
    if pos.numblocks[1] != 1:
        pos = pos.rechunk({1: -1})
    D = pos.shape[1]
    dtype = pos.dtype if pos.dtype.kind == "f" else np.dtype(np.float64)
    parts = pos.map_blocks(_one_block_bounds, dtype, dtype=dtype,
                           chunks=((2,) * pos.numblocks[0], (D,)))
    lo = parts[0::2].min(axis=0)
    hi = parts[1::2].max(axis=0)
    return da.map_blocks(_finish_bounds, lo, hi, dtype=dtype, new_axis=0,
                         chunks=((2,), (D,)))


def density(source, resolution, level=None, bbox=None, target_resolution=None):
    """Vertex counts on a regular voxel grid, as a lazy dask array (an
    ``xarray.DataArray`` with voxel-centre coordinates when xarray is installed).

    The grid starts at the bbox's lower corner (the store's bounding box without
    one, and on the open sides of a bbox with ``-inf``/``inf``) with voxels of edge
    ``resolution`` (a number or one per axis), enough of them to cover the upper
    corner.  A vertex on the upper corner is counted in the last voxel, as
    :func:`numpy.histogramdd` counts its last bin's upper edge.

    Examples
    --------
    >>> import zv_dask
    >>> from zv_dask import stats
    >>> d = stats.density(zv_dask.example_store(), 500.0, level=0)
    >>> tuple(d.shape), int(d.sum().compute())
    ((4, 4, 4), 5000)
    """
    import dask.array as da

    store = _store(source)
    D = store.spatial_dims
    res = np.broadcast_to(np.asarray(resolution, np.float64), (D,))
    if not np.all(np.isfinite(res)) or (res <= 0).any():
        raise QueryError(f"resolution must be positive, got {resolution!r}", store=store.url)
    lo, hi = _grid_box(store, bbox)
    nbins = [_voxel_count(float(l), float(h), float(r)) for l, h, r in zip(lo, hi, res)]
    if np.prod(nbins, dtype=np.float64) > 2e9:
        raise QueryError(f"a grid of {nbins} voxels is too large; use a coarser resolution",
                         store=store.url)
    edges = [voxel_edges(float(l), float(h), float(r), n)
             for l, h, r, n in zip(lo, hi, res, nbins)]
    pos = _positions(store, level, bbox, target_resolution)
    counts, _ = da.histogramdd(pos, bins=edges)
    counts = counts.astype(np.int64)
    try:
        import xarray as xr
    except ImportError:
        return counts
    coords = {ax: (e[:-1] + e[1:]) / 2 for ax, e in zip(store.axes, edges)}
    return xr.DataArray(counts, dims=store.axes, coords=coords, name="density",
                        attrs={"resolution": res.tolist(), "store": store.url})
