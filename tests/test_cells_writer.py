"""Cell parity with the reference writer: values on and one or two ULPs around chunk faces.

The writer puts a value in cell ``floor(p / s)`` computed in float64 (``write_points``
without object ids goes through its bins: ``floor(floor(p / b) / round(s / b))``).  These
tests write such values with the reference writer and check that bbox reads, chunk
iteration, dataframes and the ``partitions()`` boxes agree with numpy on the full read.
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import zarr_vectors.building as B
from hypothesis import given, settings
from hypothesis import strategies as st

import zv_dask
from zv_dask.plan import select as _plan

pytestmark = pytest.mark.filterwarnings("ignore:This chunk_shape allocates")

# name: (chunk_shape, bin_shape, dtype, object ids, far faces on x)
STORES = {
    "c0.1-f64": ((0.1,) * 3, None, "float64", False, (-300, 17, 43, 300)),
    "c0.7-f32": ((0.7,) * 3, None, "float32", False, (-2001, -2000, 1999)),
    "c1/3-f64-ids": ((1 / 3,) * 3, None, "float64", True, (-3000, 3001)),
    "c500-f32-ids": ((500.0,) * 3, None, "float32", True, (-2000, 2000)),
    "c0.7-bins0.1-f32": ((0.7,) * 3, (0.1,) * 3, "float32", False, (-2000,)),
    "mixed-bins-f64": ((0.1, 0.7, 1 / 3), (0.05, 0.1, 1 / 9), "float64", False, (-1000,)),
}


def _near(values: np.ndarray, dtype, ulps: int = 2) -> np.ndarray:
    """``values`` (cast to ``dtype``) and their neighbours up to ``ulps`` ULPs away, as float64."""
    v = values.astype(dtype)
    out, up, down = [v], v, v
    for _ in range(ulps):
        up = np.nextafter(up, np.array(np.inf, dtype))
        down = np.nextafter(down, np.array(-np.inf, dtype))
        out += [up, down]
    return np.unique(np.concatenate(out)).astype(np.float64)


def _faces(s: float, ks) -> np.ndarray:
    return np.asarray(ks, np.float64) * s


def writer_rule_cells(name: str, p: np.ndarray) -> np.ndarray:
    """The cell the reference writer gives each row, written out independently here."""
    cs, bins, _, ids, _ = STORES[name]
    cs = np.asarray(cs, np.float64)
    if bins is None or ids:
        return np.floor(p / cs).astype(np.int64)
    b = np.asarray(bins, np.float64)
    n = np.array([int(round(c / x)) for c, x in zip(cs, b)])
    return np.floor_divide(np.floor(p / b).astype(np.int64), n)


def planned_oracle(name: str, present: list, box) -> set:
    """Present cells between the writer cells of ``lo`` and ``hi`` on every axis, over the
    rules the reader must allow (the metadata does not say whether ids were used)."""
    cs, bins, _, _, _ = STORES[name]
    cs = np.asarray(cs, np.float64)
    lo, hi = (np.asarray(x, np.float64) for x in box)
    with np.errstate(invalid="ignore"):
        c0, c1 = [np.floor(lo / cs)], [np.floor(hi / cs)]
        if bins is not None:
            b = np.asarray(bins, np.float64)
            n = np.array([float(round(c / x)) for c, x in zip(cs, b)])
            c0.append(np.floor(np.floor(lo / b) / n))
            c1.append(np.floor(np.floor(hi / b) / n))
    c0, c1 = np.min(c0, 0), np.max(c1, 0)
    return {c for c in present if all(a <= x <= b for x, a, b in zip(c, c0, c1))}


def _build(root, name: str, seed: int) -> dict:
    cs, bins, dtype, ids, far = STORES[name]
    rng = np.random.default_rng(seed)
    axes_vals = []
    for d, s in enumerate(cs):
        ks = list(range(-8, 9)) + (list(far) if d == 0 else [])
        axes_vals.append(_near(_faces(s, ks), dtype))
    n = len(axes_vals[0])
    p = np.stack([axes_vals[0]] + [rng.choice(v, n) for v in axes_vals[1:]], 1)
    lo = p.min(0) - 2 * np.asarray(cs)
    hi = p.max(0) + 2 * np.asarray(cs)
    path = str(root / name.replace("/", "_"))
    kw = {"vertex_attributes": {"row": np.arange(n, dtype=np.float64)}}
    if bins is not None:
        kw["bin_shape"] = bins
    if ids:
        kw["object_ids"] = rng.integers(0, 7, n)
    B.write_points(path, p, chunk_shape=cs, bounds=(lo.tolist(), hi.tolist()), dtype=dtype, **kw)
    store = zv_dask.open_zv(path)
    full = store.read()
    chunks = list(store.iter_chunks())
    cells = np.concatenate([np.repeat([c], len(d["positions"]), 0) for c, d in chunks])
    extra = []  # bbox corners also exactly on the float64 faces and open sides
    for d, s in enumerate(cs):
        extra.append(np.concatenate([_faces(s, range(-9, 10)), [-np.inf, np.inf]]))
    return {"store": store, "full": full, "cells": cells, "axes_vals": axes_vals,
            "extra": extra, "chunks": chunks}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    return {name: _build(root, name, i) for i, name in enumerate(STORES)}


def queries(stores):
    """A store and a closed bbox whose corners are stored values, values one or two ULPs
    from a face, float64 faces ``k * s`` or open sides."""
    @st.composite
    def draw_query(draw):
        name = draw(st.sampled_from(sorted(STORES)))
        lo, hi = [], []
        for vals, extra in zip(stores[name]["axes_vals"], stores[name]["extra"]):
            pool = st.one_of(st.sampled_from(vals.tolist()), st.sampled_from(extra.tolist()))
            a, b = draw(pool), draw(pool)
            lo.append(min(a, b))
            hi.append(max(a, b))
        return name, (lo, hi)
    return draw_query()


def _mask(p, box):
    p = p.astype(np.float64)
    return np.all((p >= np.asarray(box[0])) & (p <= np.asarray(box[1])), axis=1)


def _assert_rows(got: dict, full: dict, m):
    np.testing.assert_array_equal(got["positions"], full["positions"][m])
    np.testing.assert_array_equal(got["attributes"]["row"], full["attributes"]["row"][m])
    if "object_ids" in full:
        np.testing.assert_array_equal(got["object_ids"], full["object_ids"][m])


def test_stored_cells_follow_the_writer_rule_and_lie_in_their_boxes(stores):
    for name, info in stores.items():
        p = info["full"]["positions"].astype(np.float64)
        # iter_chunks and read() give the same rows in the same order
        np.testing.assert_array_equal(
            np.concatenate([d["positions"] for _, d in info["chunks"]]), info["full"]["positions"])
        np.testing.assert_array_equal(info["cells"], writer_rule_cells(name, p))
        table = info["store"].partitions()
        assert [tuple(c) for c in table["chunk"]] == [c for c, _ in info["chunks"]]
        for i, (_, d) in enumerate(info["chunks"]):
            q = d["positions"].astype(np.float64)
            row = table.iloc[i]
            for k, ax in enumerate("xyz"):
                assert (q[:, k] >= row[f"{ax}_min"]).all() and (q[:, k] <= row[f"{ax}_max"]).all()


def test_every_row_is_planned_by_boxes_with_a_face_on_it(stores):
    """For each row and axis, the boxes ``[value, inf)`` and ``(-inf, value]`` on that axis
    plan the row's chunk (planning only; reads are checked below)."""
    for name, info in stores.items():
        store = info["store"]
        p = info["full"]["positions"].astype(np.float64)
        for r in range(len(p)):
            cell = tuple(info["cells"][r].tolist())
            for d in range(3):
                lo, hi = np.full(3, -np.inf), np.full(3, np.inf)
                hi[d] = p[r, d]
                assert cell in store.chunks(0, (lo, hi)), (name, r, d)
                lo[d], hi[d] = p[r, d], np.inf
                assert cell in store.chunks(0, (lo, hi)), (name, r, d)


def test_far_faces_of_the_recipes_are_kept(stores):
    """The probe's values: 1.7 with chunk 0.1 (cell 17) and float32 -1400 with chunk 0.7
    (cell -2001) are read back by a box whose face is that value."""
    for name, x in (("c0.1-f64", 1.7), ("c0.7-f32", -1400.0)):
        info = stores[name]
        p = info["full"]["positions"].astype(np.float64)
        assert (p[:, 0] == x).any()
        for box in (([-np.inf] * 3, [x, np.inf, np.inf]), ([x, -np.inf, -np.inf], [np.inf] * 3)):
            got = info["store"].read(bbox=box)
            assert (got["positions"][:, 0].astype(np.float64) == x).any()
            _assert_rows(got, info["full"], _mask(p, box))


def test_bbox_read_and_iter_chunks_equal_numpy_on_faces(stores):
    @settings(max_examples=60, deadline=None)
    @given(q=queries(stores))
    def check(q):
        name, box = q
        info = stores[name]
        store, full = info["store"], info["full"]
        m = _mask(full["positions"], box)
        _assert_rows(store.read(bbox=box), full, m)
        planned = store.chunks(0, box)
        present = [c for c, _ in info["chunks"]]
        assert set(planned) == planned_oracle(name, present, box)
        assert {tuple(c) for c in info["cells"][m].tolist()} <= set(planned)
        items = list(store.iter_chunks(bbox=box))
        assert [c for c, _ in items] == planned
        if not items:
            assert not m.any()
            return
        got = {"positions": np.concatenate([d["positions"] for _, d in items]),
               "attributes": {"row": np.concatenate([d["attributes"]["row"] for _, d in items])}}
        if "object_ids" in full:
            got["object_ids"] = np.concatenate([d["object_ids"] for _, d in items])
        _assert_rows(got, full, m)

    check()


def test_dataframe_partitions_lie_in_their_boxes(stores):
    @settings(max_examples=15, deadline=None)
    @given(q=queries(stores), per=st.sampled_from([1, 3]))
    def check(q, per):
        name, box = q
        full = stores[name]["full"]
        store = stores[name]["store"]
        m = _mask(full["positions"], box)
        ddf = store.to_dask_dataframe(bbox=box, chunks_per_partition=per)
        table = store.partitions(bbox=box, chunks_per_partition=per)
        parts = dask.compute(*ddf.to_delayed(), scheduler="sync")
        df = pd.concat(parts)
        np.testing.assert_array_equal(df[["x", "y", "z"]].to_numpy(), full["positions"][m])
        np.testing.assert_array_equal(df["row"].to_numpy(), full["attributes"]["row"][m])
        if len(table) == 0:
            assert not m.any()
            return
        assert len(parts) == len(table)
        for i, part in enumerate(parts):  # every row of a partition lies in its box
            for ax in "xyz":
                v = part[ax].to_numpy(np.float64)
                assert (v >= table.iloc[i][f"{ax}_min"]).all()
                assert (v <= table.iloc[i][f"{ax}_max"]).all()

    check()


# ----------------------------------------------------------------------------- pure boxes

SIZES = st.one_of(st.sampled_from([0.1, 0.7, 1 / 3, 500.0, 0.05, 1 / 9, 2.5e-7, 3e5]),
                  st.floats(1e-6, 1e6))


@settings(max_examples=150, deadline=None)
@given(s=SIZES, k=st.lists(st.integers(-10**9, 10**9), min_size=1, max_size=20))
def test_cell_boxes_are_the_exact_writer_extents(s, k):
    """lo is the smallest and hi the largest double with ``floor(p / s) == k``."""
    cells = np.asarray(k, np.int64)[:, None]
    lo, hi = _plan.cell_boxes(_plan.CellRule(np.array([s])), cells)
    lo, hi, k = lo[:, 0], hi[:, 0], cells[:, 0].astype(np.float64)
    assert (np.floor(lo / s) == k).all() and (np.floor(hi / s) == k).all()
    assert (np.floor(np.nextafter(lo, -np.inf) / s) < k).all()
    assert (np.floor(np.nextafter(hi, np.inf) / s) > k).all()


@settings(max_examples=150, deadline=None)
@given(s=st.sampled_from([0.7, 0.3, 1 / 3, 500.0]), n=st.integers(1, 9),
       k=st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=10))
def test_cell_boxes_cover_the_binned_rule(s, n, k):
    """With bins the box is the hull of both rules' extents: the values just inside and
    just outside it land in the cell, resp. outside it, under at least one rule / no rule."""
    b = s / n
    rule = _plan.CellRule(np.array([s]), np.array([b]), np.array([n]))
    cells = np.asarray(k, np.int64)[:, None]
    lo, hi = _plan.cell_boxes(rule, cells)

    def rules(x):
        return np.floor(x / s), np.floor(np.floor(x / b) / n)

    kk = cells[:, 0].astype(np.float64)
    for x in (lo[:, 0], hi[:, 0]):
        a, bb = rules(x)
        assert ((a == kk) | (bb == kk)).all()
    a, bb = rules(np.nextafter(lo[:, 0], -np.inf))
    assert ((a < kk) & (bb < kk)).all()
    a, bb = rules(np.nextafter(hi[:, 0], np.inf))
    assert ((a > kk) & (bb > kk)).all()


def test_extreme_chunk_sizes_and_the_bisection_fallback(monkeypatch):
    """Subnormal and huge chunk sizes satisfy the definition; with no stepping allowed the
    bisection fallback gives the same boxes."""
    cases = [(s, np.array([[-3], [0], [1], [7], [2**40], [179769314]], np.int64))
             for s in (5e-324, 1e-310, 1e300)]
    cases.append((0.7, np.arange(-50, 50, dtype=np.int64)[:, None]))
    cases.append((1 / 3, np.array([[-10**12], [10**12]], np.int64)))
    boxes = []
    with np.errstate(over="ignore", invalid="ignore"):
        for s, k in cases:
            lo, hi = _plan.cell_boxes(_plan.CellRule(np.array([s])), k)
            kk = k[:, 0].astype(np.float64)
            assert (np.floor(lo[:, 0] / s) >= kk).all()
            assert (np.floor(np.nextafter(lo[:, 0], -np.inf) / s) < kk).all()
            assert (np.floor(hi[:, 0] / s) < kk + 1).all()
            assert (np.floor(np.nextafter(hi[:, 0], np.inf) / s) >= kk + 1).all()
            boxes.append((lo, hi))
        monkeypatch.setattr(_plan, "_STEPS", 0)
        for (s, k), (lo, hi) in zip(cases, boxes):
            lo2, hi2 = _plan.cell_boxes(_plan.CellRule(np.array([s])), k)
            np.testing.assert_array_equal(lo2, lo)
            np.testing.assert_array_equal(hi2, hi)
