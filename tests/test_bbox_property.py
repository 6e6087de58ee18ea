"""Property tests: bbox reads equal numpy filtering; exactly the touching chunks are read."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zv_dask

settings.register_profile("zv", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile("zv")


def _box(draw, lo, hi, ndim):
    a = np.array(draw(st.lists(st.floats(lo, hi), min_size=ndim, max_size=ndim)))
    b = np.array(draw(st.lists(st.floats(lo, hi), min_size=ndim, max_size=ndim)))
    return np.minimum(a, b), np.maximum(a, b)


@st.composite
def boxes(draw, lo, hi, ndim, snap):
    """Boxes with corners often exactly on chunk faces (snap) to probe the closed edges."""
    def coord():
        if draw(st.booleans()):
            return float(draw(st.integers(int(lo // snap), int(hi // snap))) * snap)
        return draw(st.floats(lo, hi))
    a = np.array([coord() for _ in range(ndim)])
    b = np.array([coord() for _ in range(ndim)])
    return np.minimum(a, b), np.maximum(a, b)


def _touching(coords, chunk_shape, box, lead):
    """Chunks whose half-open box [c*s, (c+1)*s) meets the closed bbox, in exact
    rational arithmetic (the reference rule, free of float rounding)."""
    from fractions import Fraction as Fr

    out = []
    for cc in coords:
        ok = all(Fr(c) * Fr(s) <= Fr(h) and Fr(c + 1) * Fr(s) > Fr(lo)
                 for c, s, lo, h in zip(cc[lead:], chunk_shape, box[0], box[1]))
        if ok:
            out.append(tuple(cc))
    return out


@pytest.mark.parametrize("name, level", [("points_pyramid", 0), ("points_pyramid", 2),
                                         ("points_2d", 0), ("points_2d", 1),
                                         ("points_by_gene", 0), ("streamlines", 1)])
def test_bbox_read_equals_numpy_filter(store_path, counting, name, level):
    path = store_path(name)
    store = zv_dask.open_zv("zvcount://" + path, cache_size=0)
    full = store.read(level=level)
    lo, hi = store.bounding_box
    lm = store.metadata.levels[level]
    lead = lm.rank - store.spatial_dims
    all_chunks = store.chunks(level)
    snap = float(lm.chunk_shape[0])

    @given(boxes(float(lo.min()) - 300, float(hi.max()) + 300, store.spatial_dims, snap))
    def check(box):
        counting.clear()
        got = store.read(level=level, bbox=box)
        p = full["positions"]
        m = np.all((p >= box[0]) & (p <= box[1]), axis=1)
        np.testing.assert_array_equal(got["positions"], p[m])
        for k, v in full["attributes"].items():
            np.testing.assert_array_equal(got["attributes"][k], v[m])
        if "object_ids" in full:
            np.testing.assert_array_equal(got["object_ids"], full["object_ids"][m])
        planned = store.chunks(level, box)
        assert planned == _touching(all_chunks, lm.chunk_shape, box, lead)
        fetched = {p.split("/vertices/c/")[1] for op, p in counting
                   if op == "get" and "/vertices/c/" in p}
        origin = lm.presence.origin
        want = {"/".join(str(c - o) for c, o in zip(cc, origin)) for cc in planned}
        assert fetched == want

    check()


def test_closed_faces_documented_example(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    planned = store.chunks(0, ([500, 500, 500], [1000, 1000, 1000]))
    assert len(planned) == 8 and set(planned) == {(i, j, k) for i in (1, 2) for j in (1, 2) for k in (1, 2)}
    # a vertex exactly on a corner is kept (closed box)
    p = store.read()["positions"][123].astype(np.float64)
    r = store.read(bbox=(p, p))
    assert any(np.array_equal(q, p) for q in r["positions"].astype(np.float64))
