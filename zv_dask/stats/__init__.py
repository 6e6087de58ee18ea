"""Statistics as dask reductions: per-chunk partials, a tree combine, a finalize step.

Every function takes ``source``: an open store, a path/URL, or a dataframe made by
:meth:`ZVStore.to_dask_dataframe`.  Results are lazy and run unchanged on the local
scheduler and on a ``dask.distributed`` cluster (and show in ``ProgressBar`` and the
dashboard).  Means and variances are merged with the pairwise (Chan et al.) rule on
``(n, mean, M2)``, never from a naive sum of squares.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from zv_dask.errors import QueryError
from zv_dask.stats.moments import (  # noqa: F401  (public: the building blocks of describe)
    PARTIAL_FIELDS,
    STAT_ROWS,
    CellMoments,
    _identity,
    _partials_frame,
    finalize_moments,
    merge_moments,
    partial_moments,
)
from zv_dask.stats.moments import _finite_range
# public here: register_store, auto_chunks_per_partition
from zv_dask.stats.source import (  # noqa: F401
    TARGET_ROWS_PER_PARTITION,
    _frame,
    _grid_box,
    _is_dataframe,
    _numeric_columns,
    _store,
    auto_chunks_per_partition,
    register_store,
)
from zv_dask.stats.space import block_bounds, bounds, density  # noqa: F401  (public)


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
    from zv_dask.collections import build as _build
    from zv_dask.read.partitions import PartitionReader

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
    return _build.from_partition_function(CellMoments(part, columns), plan, meta, cpp,
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
