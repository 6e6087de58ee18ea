"""Property tests: bbox reads equal numpy filtering; exactly the touching chunks are read.

Values on and around chunk faces are covered in test_cells_writer.py."""

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


def _touching(coords, lm, box, lead):
    """Chunks that can hold a value of the closed bbox under the writer's float64 rule
    ``floor(p / s)`` (and, at level 0, its binned rule ``floor(floor(p / b) / round(s / b))``):
    by monotonicity, those between the cells of ``lo`` and ``hi``."""
    cs = np.asarray(lm.chunk_shape, np.float64)
    lo, hi = (np.asarray(x, np.float64) for x in box)
    c0, c1 = [np.floor(lo / cs)], [np.floor(hi / cs)]
    b = np.asarray(lm.bin_shape, np.float64)
    if lm.level == 0 and not np.array_equal(b, cs):
        n = np.round(cs / b)
        c0.append(np.floor(np.floor(lo / b) / n))
        c1.append(np.floor(np.floor(hi / b) / n))
    c0, c1 = np.min(c0, 0), np.max(c1, 0)
    return [tuple(cc) for cc in coords
            if all(a <= c <= z for c, a, z in zip(cc[lead:], c0, c1))]


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
        assert planned == _touching(all_chunks, lm, box, lead)
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
