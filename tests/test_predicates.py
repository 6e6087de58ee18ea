"""Predicates as plain values (no dask expression): boxes, cells and row masks."""

from __future__ import annotations

import operator

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zv_dask
from zv_dask.plan import select as _plan
from zv_dask.plan import predicates as P

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
       "==": operator.eq, "!=": operator.ne}


def test_terms_flip_and_between():
    assert P.term("x", "<", 3, flipped=True) == ("x", ">", 3)
    assert P.term("x", "==", 3, flipped=True) == ("x", "==", 3)
    assert P.between("y", 1, 2) == (("y", ">=", 1), ("y", "<=", 2))
    assert P.between("y", 1, 2, "neither") == (("y", ">", 1), ("y", "<", 2))
    with pytest.raises(ValueError, match="inclusive"):
        P.between("y", 1, 2, "sometimes")
    with pytest.raises(ValueError, match="unknown comparison"):
        P.term("x", "=~", 1)


def test_and_or_distribute_and_cap():
    a = ((("x", ">", 1),),)
    b = ((("y", "<", 2),), (("z", "==", 3),))
    assert P.and_(None, a) == a and P.and_(a, None) == a
    assert P.and_(a, b) == ((("x", ">", 1), ("y", "<", 2)), (("x", ">", 1), ("z", "==", 3)))
    assert P.or_(a, b) == a + b
    assert P.or_(a, None) is None  # "or true" is true: nothing to push
    wide = tuple(((("x", "==", i),),) for i in range(9))
    big = wide[0]
    for w in wide[1:]:
        big = P.or_(big, w)
    assert P.and_(big, big) is None  # 81 conjunctions: left to dask
    assert P.columns_of(P.and_(a, b)) == ["x", "y", "z"]


def test_strict_bounds_step_inwards_and_closed_ones_do_not():
    f8 = np.dtype("f8")
    lo, hi = P.conjunction_box((("x", ">", 1000.0), ("y", "<=", 5.0)), ("x", "y"), f8)
    assert lo[0] == np.nextafter(1000.0, np.inf) and hi[1] == 5.0
    lo, hi = P.conjunction_box((("x", "<", 1000.0),), ("x", "y"), f8)
    assert hi[0] == np.nextafter(1000.0, -np.inf) and lo[0] == -np.inf
    lo, hi = P.conjunction_box((("x", "==", 7),), ("x",), f8)
    assert (lo[0], hi[0]) == (7.0, 7.0)
    assert P.conjunction_box((("x", ">", 5), ("x", "<", 3)), ("x",), f8) is None
    assert P.conjunction_box((("x", ">", float("nan")),), ("x",), f8) is None
    lo, hi = P.conjunction_box((("x", "!=", float("nan")), ("x", "!=", 3)), ("x",), f8)
    assert np.isinf(lo).all() and np.isinf(hi).all()
    lo, hi = P.conjunction_box((("label", "==", 3), ("x", ">=", "a")), ("x",), f8)
    assert np.isinf(lo).all() and np.isinf(hi).all()  # not axis terms / not numbers


def test_narrow_float_columns_widen_by_their_rounding():
    # 999.99999 rounds to 1000.0 in float32: a float32 row at 1000.0 equals it there
    lo, hi = P.conjunction_box((("x", "==", 999.99999),), ("x",), np.dtype("f4"))
    assert lo[0] <= 999.99999 and hi[0] >= 1000.0


_VALUES = st.one_of(st.floats(-3000, 3000, allow_nan=False, width=32),
                    st.sampled_from([0.0, 500.0, 1000.0, -500.0, 999.99999, 1000.00001, 0.1,
                                     float("inf"), -float("inf"), float("nan")]),
                    st.integers(-3000, 3000))


@settings(max_examples=300, deadline=None)
@given(x=st.floats(-3000, 3000, allow_nan=False, width=32), op=st.sampled_from(sorted(OPS)),
       value=_VALUES, dtype=st.sampled_from(["f4", "f8"]), flip=st.booleans())
def test_box_holds_every_row_pandas_keeps(x, op, value, dtype, flip):
    """Whatever pandas keeps (numpy's scalar promotion included) lies in the box."""
    s = pd.Series(np.array([x], dtype=dtype))
    kept = bool((OPS[op](value, s) if flip else OPS[op](s, value)).iloc[0])
    t = P.term("x", op, value, flipped=flip)
    box = P.conjunction_box((t,), ("x",), np.dtype(dtype))
    if kept:
        assert box is not None
        assert box[0][0] <= float(s.iloc[0]) <= box[1][0]


def test_row_mask_is_pandas_on_every_column_kind():
    df = pd.DataFrame({"x": np.array([1.0, 2.0, 3.0], "f4"),
                       "c": pd.Categorical(["a", "b", "a"]),
                       "i": np.array([5, 6, 7], "i2")})
    pred = (((("x", ">", 1.5), ("c", "==", "a")), (("i", "<=", 5),)))
    want = ((df.x > 1.5) & (df.c == "a")) | (df.i <= 5)
    assert P.row_mask(pred, df.__getitem__, 3).tolist() == want.tolist()
    assert P.row_mask((), df.__getitem__, 3).tolist() == [False] * 3
    assert P.row_mask(None, df.__getitem__, 3) is None
    assert P.row_mask(((),), df.__getitem__, 3) is None  # an empty conjunction is true


@pytest.fixture(scope="module")
def level2d(store_path):
    return zv_dask.open_zv(store_path("points_2d")).metadata.levels[0]


def test_cells_in_boxes_are_plan_cells_with_strict_faces(level2d):
    lm = level2d  # chunk 500, negative origin
    axes = ("x", "y")
    f4 = lm.vertices.dtype
    cells = lm.presence.coords(lm.presence.linear)
    for op, face_in in (("<", False), ("<=", True)):
        boxes = P.boxes(((("x", op, -500.0),),), axes, f4)
        got = lm.presence.coords(P.cells_in_boxes(lm, boxes))
        assert (got[:, 0] <= -1).all()  # x index -1 holds [-500, 0): never needed
        assert ((got[:, 0] == -1).any()) == (face_in and (cells[:, 0] == -1).any())
    closed = P.boxes(((("x", ">=", -600.0), ("y", "<=", 100.0)),), axes, f4)
    want = _plan.plan_cells(lm, (np.array([-600.0, -np.inf]), np.array([np.inf, 100.0])))
    np.testing.assert_array_equal(P.cells_in_boxes(lm, closed), want)
    assert P.cells_in_boxes(lm, []).size == 0
    assert not P.narrows(P.boxes(((("v", ">", 0.5),),), axes, f4))
    assert P.narrows([])


def test_interior_cells_are_strictly_between_the_faces(level2d):
    lm = level2d
    cells = lm.presence.coords(lm.presence.linear)
    box = (np.array([-750.0, -np.inf]), np.array([600.0, np.inf]))
    inside = P.interior(lm, cells, [box])
    # x cells -2 (holds -750) and 1 (holds 600) are faces; -1 and 0 lie inside
    assert set(cells[inside][:, 0].tolist()) <= {-1, 0}
    assert inside[np.isin(cells[:, 0], [-1, 0])].all()
    everything = (np.full(2, -np.inf), np.full(2, np.inf))
    assert P.interior(lm, cells, [everything]).all()
    np.testing.assert_array_equal(P.linear_index(lm, cells), lm.presence.linear)


def test_boxes_are_exact_only_for_plain_axis_bounds():
    f4, axes = np.dtype("f4"), ("x", "y")
    assert P.boxes_are_exact(None, axes, f4)
    assert P.boxes_are_exact(((("x", ">=", 500.0), ("y", "<", 3)),), axes, f4)
    assert not P.boxes_are_exact(((("x", ">", 0.1),),), axes, f4)  # 0.1 rounds in float32
    assert P.boxes_are_exact(((("x", ">", 0.1),),), axes, np.dtype("f8"))
    assert not P.boxes_are_exact(((("v", ">", 1.0),),), axes, f4)
    assert not P.boxes_are_exact(((("x", ">", float("nan")),),), axes, f4)
    assert not P.boxes_are_exact(((("x", "!=", 1.0),),), axes, f4)
