"""Row predicates as plain values, and what they mean for chunks.  Pure: no IO, no dask.

A predicate is in disjunctive normal form: a tuple of conjunctions, each a tuple of
terms ``(column, op, value)`` with ``op`` one of ``< <= > >= == !=``; ``None`` keeps
every row and ``()`` keeps none.  Terms on axis columns also narrow the chunks a
query needs: each conjunction becomes a closed box (strict bounds moved one float64
step inwards) and a chunk is kept when :func:`zv_dask.plan.select.plan_cells` plans it for
one of the boxes.  Rows are always filtered exactly with the same pandas comparison a
``dask`` ``Filter`` would run, so pruning only has to be conservative, never exact.
"""

from __future__ import annotations

import math
import operator
import warnings
from numbers import Real

import numpy as np

from zv_dask.plan import select as _select

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
       "==": operator.eq, "!=": operator.ne}
FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
MAX_CONJUNCTIONS = 64  # an OR of ANDs that grows beyond this is left to dask's Filter


def term(column: str, op: str, value, flipped: bool = False) -> tuple:
    """One comparison ``column op value`` (``value op column`` with ``flipped=True``).

    Examples
    --------
    >>> term("x", "<", 5, flipped=True)
    ('x', '>', 5)
    """
    if op not in OPS:
        raise ValueError(f"unknown comparison {op!r}; use one of {sorted(OPS)}")
    return (str(column), FLIP[op] if flipped else op, value)


def between(column: str, lo, hi, inclusive: str = "both") -> tuple:
    """The conjunction of ``Series.between(lo, hi, inclusive)``.

    Examples
    --------
    >>> between("x", 1, 2, "left")
    (('x', '>=', 1), ('x', '<', 2))
    """
    if inclusive not in ("both", "neither", "left", "right"):
        raise ValueError(f"inclusive must be both, neither, left or right, got {inclusive!r}")
    left = ">=" if inclusive in ("both", "left") else ">"
    right = "<=" if inclusive in ("both", "right") else "<"
    return ((str(column), left, lo), (str(column), right, hi))


def and_(a, b):
    """Conjunction of two predicates (``None`` is true); ``None`` if it grows too large.

    Examples
    --------
    >>> and_(((("x", ">", 1),),), ((("y", "<", 2),), (("y", ">", 5),)))
    ((('x', '>', 1), ('y', '<', 2)), (('x', '>', 1), ('y', '>', 5)))
    """
    if a is None:
        return b
    if b is None:
        return a
    out = tuple(ca + cb for ca in a for cb in b)
    return out if len(out) <= MAX_CONJUNCTIONS else None


def or_(a, b):
    """Disjunction of two predicates in DNF (``None`` if either is true or too large)."""
    if a is None or b is None:
        return None
    out = tuple(a) + tuple(b)
    return out if len(out) <= MAX_CONJUNCTIONS else None


def columns_of(predicate) -> list:
    """Columns a predicate reads, in first-use order."""
    seen = {}
    for conj in predicate or ():
        for col, _, _ in conj:
            seen.setdefault(col, None)
    return list(seen)


def _is_real(v) -> bool:
    return isinstance(v, (Real, np.number)) and not isinstance(v, (bool, np.bool_)) \
        and not isinstance(v, np.complexfloating)


def _candidates(value, dtype: np.dtype) -> list:
    """The float64 values a comparison with ``value`` may effectively use: numpy compares
    a narrow float column with a Python scalar in the column's dtype."""
    v = float(value)
    out = [v]
    if dtype.kind == "f" and dtype.itemsize < 8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(float(dtype.type(value)))
    return out


def conjunction_box(conj, axes, dtype):
    """Closed float64 box ``(lo, hi)`` holding every row that can satisfy ``conj``
    (``None`` when no row can).  Terms on other columns do not narrow it.

    Examples
    --------
    >>> lo, hi = conjunction_box((("x", ">=", 1.0), ("y", "<", 2.0)), ("x", "y"), np.dtype("f8"))
    >>> lo.tolist(), bool(hi[1] < 2.0)
    ([1.0, -inf], True)
    """
    dtype = np.dtype(dtype)
    d = len(axes)
    lo = np.full(d, -np.inf)
    hi = np.full(d, np.inf)
    index = {a: i for i, a in enumerate(axes)}
    for col, op, value in conj:
        if col not in index or not _is_real(value):
            continue
        i = index[col]
        if math.isnan(float(value)):
            if op == "!=":
                continue
            return None  # every comparison with NaN but != is false
        if op == "!=":
            continue
        cands = _candidates(value, dtype)
        exact = len(set(cands)) == 1  # strictness is only safe when no rounding is possible
        if op in (">", ">=", "=="):
            b = min(cands)
            if op == ">" and exact:
                b = float(np.nextafter(b, np.inf))
            lo[i] = max(lo[i], b)
        if op in ("<", "<=", "=="):
            b = max(cands)
            if op == "<" and exact:
                b = float(np.nextafter(b, -np.inf))
            hi[i] = min(hi[i], b)
    if (lo > hi).any():
        return None
    return lo, hi


def boxes_are_exact(predicate, axes, dtype) -> bool:
    """Whether the boxes of ``predicate`` hold exactly its rows (so a cell inside a box
    matches entirely): only ``< <= > >= ==`` on axis columns, with numbers the column's
    dtype represents exactly.

    Examples
    --------
    >>> boxes_are_exact(((("x", ">", 1.5),),), ("x",), np.dtype("f4"))
    True
    >>> boxes_are_exact(((("x", "!=", 1.5),),), ("x",), np.dtype("f4"))
    False
    """
    dtype = np.dtype(dtype)
    for conj in predicate or ():
        for col, op, value in conj:
            if col not in axes or op == "!=" or not _is_real(value):
                return False
            if math.isnan(float(value)) or len(set(_candidates(value, dtype))) != 1:
                return False
    return True


def boxes(predicate, axes, dtype, bbox=None) -> list:
    """One closed box per satisfiable conjunction, intersected with ``bbox``."""
    out = []
    for conj in predicate if predicate is not None else ((),):
        box = conjunction_box(conj, axes, dtype)
        if box is None:
            continue
        lo, hi = box
        if bbox is not None:
            lo, hi = np.maximum(lo, bbox[0]), np.minimum(hi, bbox[1])
            if (lo > hi).any():
                continue
        out.append((lo, hi))
    return out


def narrows(box_list) -> bool:
    """Whether the boxes prune anything (some box has a finite side, or there are none)."""
    return not box_list or any(np.isfinite(lo).any() or np.isfinite(hi).any()
                               for lo, hi in box_list)


def cells_in_boxes(lm, box_list) -> np.ndarray:
    """Sorted linear indices of the non-empty cells that can hold a row of some box."""
    parts = [_select.plan_cells(lm, box) for box in box_list]
    if not parts:
        return np.zeros(0, np.int64)
    return np.unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]


def linear_index(lm, coords: np.ndarray) -> np.ndarray:
    """Linear (row-major) index of absolute cell coordinates ``(K, rank)``."""
    coords = np.asarray(coords, np.int64).reshape(-1, lm.rank)
    pres = lm.presence
    return np.ravel_multi_index((coords - np.asarray(pres.origin, np.int64)).T, pres.shape)


def interior(lm, coords: np.ndarray, box_list) -> np.ndarray:
    """Per cell: every row it can hold lies inside one of the boxes (so its rows can be
    counted from its size).  A cell strictly between the cells holding a box's two
    faces is inside it, since cell membership is monotone in the coordinate; cells
    on a face are not (rows there need the exact test)."""
    coords = np.asarray(coords, np.int64).reshape(-1, lm.rank)
    out = np.zeros(len(coords), bool)
    lead = lm.rank - len(lm.chunk_shape)
    origin = np.asarray(lm.presence.origin, np.int64)
    for lo, hi in box_list:
        ranges = _select.bbox_index_ranges(lm, (lo, hi))
        if ranges is None:
            continue
        ok = np.ones(len(coords), bool)
        for d in range(len(lm.chunk_shape)):
            a = lead + d
            idx = coords[:, a] - origin[a]
            i0, i1 = ranges[a]
            ok &= (idx > i0) | (lo[d] == -np.inf)
            ok &= (idx < i1) | (hi[d] == np.inf)
        out |= ok
    return out


def row_mask(predicate, column, n: int) -> np.ndarray | None:
    """Rows satisfying ``predicate``; ``column(name)`` gives a pandas Series (so the
    comparison is the one pandas runs in a dask ``Filter``) of ``n`` rows.  ``None`` for
    no predicate.

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.Series([1.0, 2.0, 3.0])
    >>> row_mask(((("x", ">", 2.5),), (("x", "==", 1.0),)), lambda c: s, 3).tolist()
    [True, False, True]
    """
    if predicate is None:
        return None
    out = None
    for conj in predicate:
        m = None
        for col, op, value in conj:
            r = np.asarray(OPS[op](column(col), value), dtype=bool)
            m = r if m is None else (m & r)
        if m is None:  # an empty conjunction is true
            return None
        out = m if out is None else (out | m)
    return np.zeros(int(n), bool) if out is None else out
