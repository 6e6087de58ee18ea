"""Reductions equal numpy on the full read (local scheduler)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask import stats


def _numpy_describe(values: np.ndarray) -> dict:
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    return {"count": len(v), "mean": v.mean(), "std": v.std(ddof=1), "min": v.min(),
            "max": v.max(), "sum": v.sum()}


def _check_table(table: pd.DataFrame, columns: dict):
    assert list(table.index) == ["count", "mean", "std", "min", "max", "sum"]
    for c, values in columns.items():
        want = _numpy_describe(values)
        for row, w in want.items():
            assert np.isclose(table.loc[row, c], w, rtol=1e-9, atol=1e-9), (c, row)


@pytest.mark.parametrize("name, level", [("points_pyramid", 0), ("points_pyramid", 2),
                                         ("points_2d", 1), ("points_sharded", 0)])
def test_describe_equals_numpy(store_path, name, level):
    store = zv_dask.open_zv(store_path(name))
    full = store.read(level=level)
    table = stats.describe(store, level=level, split_every=3).compute(scheduler="threads")
    cols = {ax: full["positions"][:, i] for i, ax in enumerate(store.axes)}
    for k, v in full["attributes"].items():
        if v.dtype != object:
            if v.ndim == 2:
                cols.update({f"{k}_{j}": v[:, j] for j in range(v.shape[1])})
            else:
                cols[k] = v
    if "object_ids" in full:
        cols["object_id"] = full["object_ids"]
    if "owner_count" in full:
        cols["owner_count"] = full["owner_count"]
    assert set(table.columns) == set(cols)
    _check_table(table, cols)


def test_describe_bbox_and_columns_and_url(store_path):
    path = store_path("points_pyramid")
    store = zv_dask.open_zv(path)
    box = ([100, 200, 300], [1200, 1700, 1999])
    r = store.read(level=0, bbox=box, attributes=["fa", "label"])
    t = stats.describe(path, columns=["fa", "label", "y"], bbox=box).compute()
    assert list(t.columns) == ["fa", "label", "y"]
    _check_table(t, {"fa": r["attributes"]["fa"], "label": r["attributes"]["label"],
                     "y": r["positions"][:, 1]})
    # a dataframe source
    ddf = store.to_dask_dataframe(level=0, bbox=box)
    t2 = stats.describe(ddf, columns=["fa"]).compute()
    assert np.isclose(t2.loc["mean", "fa"], t.loc["mean", "fa"])
    with pytest.raises(zv_dask.QueryError, match=r"unknown columns \['nope'\].*'intensity'"):
        stats.describe(store, columns=["nope"])
    with pytest.raises(zv_dask.QueryError, match="not numeric"):
        stats.describe(store, columns=["region"])
    with pytest.raises(zv_dask.QueryError, match="already a dataframe"):
        stats.describe(ddf, level=1)


def test_describe_is_numerically_stable():
    """Large offset, tiny spread: a naive sum of squares loses every digit here."""
    rng = np.random.default_rng(1)
    parts = [pd.DataFrame({"v": 1e9 + rng.normal(0, 1e-3, n)}) for n in (5, 1000, 17, 300)]
    partials = pd.concat([stats.partial_moments(p) for p in parts])
    table = stats.finalize_moments(partials)
    allv = pd.concat(parts)["v"].to_numpy()
    assert np.isclose(table.loc["std", "v"], allv.std(ddof=1), rtol=1e-6)
    with np.errstate(invalid="ignore"):
        naive = np.sqrt((np.sum(allv ** 2) - allv.sum() ** 2 / len(allv)) / (len(allv) - 1))
    assert not np.isclose(naive, allv.std(ddof=1), rtol=1e-2)  # the trap is real


def test_count_from_metadata_without_tasks(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    assert stats.count(store, level=1) == store.vertex_count(1)
    assert isinstance(stats.count(store), int)
    box = ([-400, -900], [300, 200])
    lazy = stats.count(store, bbox=box)
    assert int(lazy.compute()) == store.read(bbox=box)["vertex_count"]


def test_histogram_equals_numpy(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    full = store.read()
    counts, edges = stats.histogram(store, "x", bins=8)
    assert edges[0] == 0 and edges[-1] == 2000
    np.testing.assert_array_equal(counts.compute(), np.histogram(full["positions"][:, 0], edges)[0])
    counts, edges = stats.histogram(store, "fa", bins=7)
    fa = full["attributes"]["fa"]
    assert np.isclose(edges[0], fa.min()) and np.isclose(edges[-1], fa.max())
    np.testing.assert_array_equal(counts.compute(), np.histogram(fa, edges)[0])
    counts, edges = stats.histogram(store, "label", bins=[0, 2, 5, 10], level=0)
    np.testing.assert_array_equal(counts.compute(),
                                  np.histogram(full["attributes"]["label"], [0, 2, 5, 10])[0])


def test_bounds_are_exact(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    for level in store.levels:
        p = store.read(level=level)["positions"]
        np.testing.assert_array_equal(stats.bounds(store, level=level).compute(),
                                      np.stack([p.min(0), p.max(0)]))


def test_density_equals_numpy_histogramdd(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    p = store.read(level=0)["positions"]
    d = stats.density(store, 250.0, level=0)
    edges = [np.arange(-1000, 1001, 250.0)] * 2
    want = np.histogramdd(p, bins=edges)[0].astype(np.int64)
    np.testing.assert_array_equal(np.asarray(d.compute()), want)
    assert d.dims == ("x", "y") and float(d.x[0]) == -875.0
    box = ([-500, -500], [480, 333])
    d = stats.density(store, (100.0, 50.0), level=0, bbox=box)
    m = np.all((p >= box[0]) & (p <= box[1]), axis=1)
    assert int(d.sum()) == int(m.sum())
    assert d.shape == (10, 17)


def test_store_methods_delegate(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    t = store.describe(columns=["intensity"], level=1 if False else 0).compute()
    assert int(t.loc["count", "intensity"]) == store.vertex_count(0)
    assert store.bounds(level=3).compute().shape == (2, 3)
    assert int(store.density(1000.0, level=3).sum()) == store.vertex_count(3)
    c, _ = store.histogram("z", bins=2, level=3)
    assert int(c.sum().compute()) == store.vertex_count(3)
