"""Statistics as dask reductions: per-chunk partials, a tree combine, a finalize step.

Every function takes ``source``: an open store, a path/URL, or a dataframe made by
:meth:`ZVStore.to_dask_dataframe`.  Results are lazy and run unchanged on the local
scheduler and on a ``dask.distributed`` cluster (and show in ``ProgressBar`` and the
dashboard).  Means and variances are merged with the pairwise (Chan et al.) rule on
``(n, mean, M2)``, never from a naive sum of squares.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from .errors import QueryError

PARTIAL_FIELDS = ["n", "sum", "mean", "m2", "min", "max"]
STAT_ROWS = ["count", "mean", "std", "min", "max", "sum"]


# --------------------------------------------------------------------------- sources


def _is_dataframe(obj) -> bool:
    import dask.dataframe as dd

    return isinstance(obj, dd.DataFrame)


def _store(source):
    from .store import ZVStore, open_zv

    if isinstance(source, ZVStore):
        return source
    if isinstance(source, (str, os.PathLike)):
        return open_zv(source)
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
    rows = max(1.0, lm.vertex_count / lm.n_cells) * n_chunks
    target = max(1, min(TARGET_ROWS_PER_PARTITION, math.ceil(rows / (4 * (os.cpu_count() or 1)))))
    return store._auto_partitioning(level, target)


def _frame(source, columns, level, bbox, target_resolution):
    """(dask DataFrame restricted to ``columns``, store or None)."""
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


_BLOCK = 1 << 16


def _sum_sq_dev(v: np.ndarray, mean: float) -> float:
    """sum((v - mean)^2) in float64, in cache-sized blocks (no full-size temporaries)."""
    m2 = 0.0
    for i in range(0, len(v), _BLOCK):
        d = v[i:i + _BLOCK].astype(np.float64)
        d -= mean
        m2 += float(np.dot(d, d))
    return m2


def partial_moments(df: pd.DataFrame, columns=None) -> pd.DataFrame:
    """One row per column: ``n, sum, mean, m2, min, max`` of the non-NaN values."""
    cols = list(df.columns) if columns is None else columns
    out = np.zeros((len(cols), len(PARTIAL_FIELDS)))
    for i, c in enumerate(cols):
        v = df[c].to_numpy()
        if v.dtype.kind == "f":
            nan = np.isnan(v)
            if nan.any():
                v = v[~nan]
        elif v.dtype.kind not in "iub":
            v = v.astype(np.float64)
        n = len(v)
        if n:
            total = float(np.add.reduce(v, dtype=np.float64))
            mean = total / n
            out[i] = (n, total, mean, _sum_sq_dev(v, mean), float(v.min()), float(v.max()))
        else:
            out[i] = (0, 0.0, 0.0, 0.0, np.inf, -np.inf)
    return _partials_frame(out, cols)


_FIELDS_INDEX = pd.Index(PARTIAL_FIELDS, dtype=object)


def _partials_frame(values: np.ndarray, names) -> pd.DataFrame:
    # object-dtype indexes: pandas' default string inference costs more than the maths
    return pd.DataFrame(values, index=pd.Index(list(names), dtype=object, name="column"),
                        columns=_FIELDS_INDEX, copy=False)


def merge_moments(parts: pd.DataFrame) -> pd.DataFrame:
    """Merge stacked partials (the same column may appear many times) into one row each:
    ``n = sum n_i``, ``mean = sum n_i mean_i / n``, ``M2 = sum M2_i + sum n_i (mean_i - mean)^2``."""
    codes, names = pd.factorize(parts.index)
    k = len(names)
    n_i = parts["n"].to_numpy()
    mean_i = parts["mean"].to_numpy()
    n = np.bincount(codes, weights=n_i, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.bincount(codes, weights=n_i * mean_i, minlength=k) / n, 0.0)
    dev = n_i * (mean_i - mean[codes]) ** 2
    m2 = np.bincount(codes, weights=parts["m2"].to_numpy() + dev, minlength=k)
    total = np.bincount(codes, weights=parts["sum"].to_numpy(), minlength=k)
    lo = np.full(k, np.inf)
    hi = np.full(k, -np.inf)
    np.minimum.at(lo, codes, parts["min"].to_numpy())
    np.maximum.at(hi, codes, parts["max"].to_numpy())
    return _partials_frame(np.stack([n, total, mean, m2, lo, hi], axis=1), names)


def finalize_moments(merged: pd.DataFrame) -> pd.DataFrame:
    """Partials -> the describe table (rows count, mean, std, min, max, sum)."""
    merged = merge_moments(merged)
    n = merged["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(merged["m2"] / (n - 1)).where(n > 1, np.nan)
    table = pd.DataFrame({
        "count": n.astype(np.int64),
        "mean": merged["mean"].where(n > 0, np.nan),
        "std": std,
        "min": merged["min"].where(n > 0, np.nan),
        "max": merged["max"].where(n > 0, np.nan),
        "sum": merged["sum"],
    })
    out = table.T
    out.columns.name = None
    return out.loc[STAT_ROWS]


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
    meta = finalize_moments(partial_moments(ddf._meta))
    if not _is_dataframe(source):  # per-chunk partials straight from the decoded columns
        partials = _store_partials(_store(source), numeric, level, bbox, target_resolution)
        return partials.reduction(
            chunk=_identity, combine=merge_moments, aggregate=finalize_moments, meta=meta,
            split_every=split_every, token="zv-describe")
    return ddf.reduction(
        chunk=partial_moments,
        combine=merge_moments,
        aggregate=finalize_moments,
        meta=meta,
        split_every=split_every,
        token="zv-describe",
    )


def _identity(df):
    return df


class CellMoments:
    """Picklable per-partition function: its cells -> one row of partials per column.

    Partials are computed chunk by chunk on the decoded numpy columns and merged with
    the pairwise rule, so no partition-sized frame or concatenation is ever built.
    """

    def __init__(self, partition_reader, columns):
        self.part = partition_reader
        self.columns = list(columns)

    def __dask_tokenize__(self):
        return ("zv_dask.CellMoments", self.part.__dask_tokenize__(), self.columns)

    def __call__(self, coords):
        schema, cells = self.part.cell_columns(coords, self.columns)
        order = {c: i for i, c in enumerate(self.columns)}
        schema = sorted(schema, key=lambda s: order[s[0]])
        acc = np.tile([0.0, 0.0, 0.0, 0.0, np.inf, -np.inf], (len(schema), 1))
        for cols in cells:
            for i, (_, src, j) in enumerate(schema):
                v = cols[src] if j is None else cols[src][:, j]
                acc[i] = _merge_pair(acc[i], _moments(v))
        return _partials_frame(acc, [c for c, _, _ in schema])


def _moments(v: np.ndarray) -> np.ndarray:
    """(n, sum, mean, M2, min, max) of the non-NaN values of one chunk's column."""
    if v.dtype.kind == "f":
        nan = np.isnan(v)
        if nan.any():
            v = v[~nan]
    n = len(v)
    if not n:
        return np.array([0.0, 0.0, 0.0, 0.0, np.inf, -np.inf])
    total = float(np.add.reduce(v, dtype=np.float64))
    mean = total / n
    return np.array([n, total, mean, _sum_sq_dev(v, mean), float(v.min()), float(v.max())])


def _merge_pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chan et al.: merge two (n, sum, mean, M2, min, max) partials."""
    if b[0] == 0:
        return a
    if a[0] == 0:
        return b
    n = a[0] + b[0]
    delta = b[2] - a[2]
    return np.array([n, a[1] + b[1], a[2] + delta * b[0] / n,
                     a[3] + b[3] + delta * delta * a[0] * b[0] / n,
                     min(a[4], b[4]), max(a[5], b[5])])


def _store_partials(store, columns, level, bbox, target_resolution):
    """A dask DataFrame of per-partition partials of ``columns`` over a store's level."""
    from . import _graph
    from ._read import PartitionReader

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
    task); otherwise a lazy dask scalar.

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
        return store.vertex_count(lv)
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

    Without ``range``: axis columns use the store's bounding box (or the bbox);
    other columns take ``[min, max]`` from a first (eager) reduction.

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
    import dask.array as da

    import dask

    series, store = _column_array(source, column, level, bbox, target_resolution)
    values = series.to_dask_array()
    if range is None:
        if store is not None and column in store.axes:
            d = store.axes.index(column)
            lo, hi = store.bounding_box if bbox is None else (np.asarray(bbox[0], float),
                                                               np.asarray(bbox[1], float))
            range = (float(lo[d]), float(hi[d]))
        else:
            lo, hi = dask.compute(series.min(), series.max())
            range = (float(lo), float(hi)) if np.isfinite(lo) else (0.0, 1.0)
    if isinstance(bins, int):
        edges = np.linspace(range[0], range[1], bins + 1)
    else:
        edges = np.asarray(bins, np.float64)
    counts, _ = da.histogram(values, bins=edges)
    return counts.astype(np.int64), edges


def _positions(store, level, bbox, target_resolution):
    plan = store._plan(level, bbox, target_resolution, [])
    cpp = auto_chunks_per_partition(store, plan.level, len(plan.cells))
    return store.to_dask_array("positions", level=level, bbox=bbox,
                               target_resolution=target_resolution, chunks_per_partition=cpp)


def bounds(source, level=None, bbox=None, target_resolution=None):
    """Exact data bounds, lazily: a dask array ``(2, D)`` of ``[min; max]`` per axis.

    Examples
    --------
    >>> import zv_dask
    >>> from zv_dask import stats
    >>> b = stats.bounds(zv_dask.example_store(), level=2).compute()
    >>> b.shape
    (2, 3)
    """
    import dask.array as da

    if _is_dataframe(source):
        if level is not None or bbox is not None or target_resolution is not None:
            raise QueryError("level/bbox/target_resolution apply to stores, not dataframes")
        axes = [c for c in source.columns if c in ("x", "y", "z")] or list(source.columns[:3])
        pos = source[axes].to_dask_array()
    else:
        pos = _positions(_store(source), level, bbox, target_resolution)
    return da.stack([pos.min(axis=0), pos.max(axis=0)])


def density(source, resolution, level=None, bbox=None, target_resolution=None):
    """Vertex counts on a regular voxel grid, as a lazy dask array (an
    ``xarray.DataArray`` with voxel-centre coordinates when xarray is installed).

    The grid starts at the bbox's lower corner (the store's bounding box without
    one) with voxels of edge ``resolution`` (a number or one per axis), enough of
    them to cover the upper corner, which is included.

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
    if bbox is None:
        lo, hi = store.bounding_box
    else:
        from ._plan import normalize_bbox

        lo, hi = normalize_bbox(bbox, D, store.url)
    nbins = [max(1, int(math.ceil((h - l) / r))) for l, h, r in zip(lo, hi, res)]
    if np.prod(nbins, dtype=np.float64) > 2e9:
        raise QueryError(f"a grid of {nbins} voxels is too large; use a coarser resolution",
                         store=store.url)
    edges = [l + r * np.arange(n + 1) for l, r, n in zip(lo, res, nbins)]
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
