"""The arithmetic of the statistics, numpy/pandas only (no dask, no IO): per-chunk
``(n, sum, mean, M2, min, max)`` partials, the pairwise (Chan et al.) merge, the
describe table, per-block bounds, and checked histogram ranges and voxel edges.

Means and variances are merged from ``(n, mean, M2)``, never from a naive sum of
squares.  Columns holding inf follow numpy: the mean is the sum's (inf, or nan when
+inf and -inf meet), the variance is nan.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from zv_dask.errors import QueryError

PARTIAL_FIELDS = ["n", "sum", "mean", "m2", "min", "max"]
STAT_ROWS = ["count", "mean", "std", "min", "max", "sum"]


_BLOCK = 1 << 16


def _sum_sq_dev(v: np.ndarray, mean: float) -> float:
    """sum((v - mean)^2) in float64, in cache-sized blocks (no full-size temporaries)."""
    m2 = 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # inf values: nan, as numpy's var
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
    with np.errstate(invalid="ignore", over="ignore"):  # inf values: nan M2, as numpy's var
        dev = n_i * (mean_i - mean[codes]) ** 2
    m2 = np.bincount(codes, weights=parts["m2"].to_numpy() + dev, minlength=k)
    total = np.bincount(codes, weights=parts["sum"].to_numpy(), minlength=k)
    lo = np.full(k, np.inf)
    hi = np.full(k, -np.inf)
    np.minimum.at(lo, codes, parts["min"].to_numpy())
    np.maximum.at(hi, codes, parts["max"].to_numpy())
    return _partials_frame(np.stack([n, total, mean, m2, lo, hi], axis=1), names)


_EMPTY_PARTIAL = (0.0, 0.0, 0.0, 0.0, np.inf, -np.inf)


def finalize_moments(merged: pd.DataFrame, columns=None) -> pd.DataFrame:
    """Partials -> the describe table (rows count, mean, std, min, max, sum).

    ``columns`` fixes the table's columns and their order: a column with no partial
    (no chunk was selected) gets count 0, NaN mean/std/min/max and sum 0, as numpy and
    pandas give for no values.
    """
    merged = merge_moments(merged)
    if columns is not None:
        missing = [c for c in columns if c not in merged.index]
        if missing:
            fill = _partials_frame(np.tile(_EMPTY_PARTIAL, (len(missing), 1)), missing)
            merged = pd.concat([merged, fill])
        merged = merged.loc[list(columns)]
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
    total = a[1] + b[1]
    if not (math.isfinite(a[2]) and math.isfinite(b[2])):
        # inf/nan values: the mean is the sum's (inf, or nan for +inf and -inf, as in
        # numpy); the delta form would give inf - inf = nan for a plain inf
        return np.array([n, total, total / n, math.nan, min(a[4], b[4]), max(a[5], b[5])])
    delta = b[2] - a[2]
    return np.array([n, total, a[2] + delta * b[0] / n,
                     a[3] + b[3] + delta * delta * a[0] * b[0] / n,
                     min(a[4], b[4]), max(a[5], b[5])])


# --------------------------------------------------------------------------- grids


def _finite_range(rng, what: str, column) -> tuple:
    """``(lo, hi)`` as floats; a non-finite range is refused (numpy refuses it too)."""
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise QueryError(f"histogram of {column!r}: {what} must be two numbers, got "
                         f"{rng!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise QueryError(
            f"histogram of {column!r}: {what} [{lo}, {hi}] is not finite (the column holds "
            "inf or nan); pass a finite range=(lo, hi) or explicit bin edges")
    if lo > hi:
        raise QueryError(f"histogram of {column!r}: {what} has lo > hi ({lo} > {hi})")
    return lo, hi


def _one_block_bounds(block: np.ndarray, dtype) -> np.ndarray:
    """``[min; max]`` per column of one block; ``[inf; -inf]`` when it has no rows."""
    out = np.empty((2, block.shape[1]), dtype)
    if len(block):
        out[0] = block.min(axis=0)
        out[1] = block.max(axis=0)
    else:
        out[0] = np.inf
        out[1] = -np.inf
    return out


def _finish_bounds(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    empty = lo > hi  # no row at all: NaN, not the identities
    return np.stack([np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)])


def _voxel_count(lo: float, hi: float, r: float) -> int:
    """Voxels of edge ``r`` from ``lo`` that reach ``hi`` (at least one).  A quotient
    within rounding of a whole number is that number (0.6 / 0.3 = 2.0000000000000004
    is 2 voxels, the last one closed at ``hi``), not one voxel more."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise QueryError(f"the grid box [{lo}, {hi}] is not finite; give a finite bbox or "
                         "check the store's bounds")
    q = (hi - lo) / r
    k = round(q)
    if k >= 1 and abs(q - k) <= 1e-9 * k:
        return int(k)
    return max(1, math.ceil(q))


def voxel_edges(lo: float, hi: float, r: float, n: int) -> np.ndarray:
    """``n + 1`` voxel edges from ``lo`` in steps of ``r``; the last is at least ``hi``
    (``lo + r * n`` can land one ULP below it), so a vertex at ``hi`` is counted.

    Examples
    --------
    >>> bool(voxel_edges(0.0, 0.9, 0.3, 3)[-1] >= 0.9)
    True
    """
    edges = lo + r * np.arange(n + 1, dtype=np.float64)
    edges[-1] = max(edges[-1], hi)
    return edges
