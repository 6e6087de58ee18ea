"""Statistics edge cases against numpy on full reads of reference-written stores:
boxes that leave chunks empty or select nothing, vertices on the upper corner, open
(infinite) boxes, columns holding inf, duplicate column names."""

from __future__ import annotations

import numpy as np
import pytest

import zv_dask
from zv_dask import stats

INF = np.inf


@pytest.fixture(scope="module")
def inf_store(tmp_path_factory):
    """float64 points over 4x4x4 chunks; v has +inf in two chunks, w has +inf and -inf,
    u is finite."""
    from zarr_vectors import building as B

    rng = np.random.default_rng(61)
    p = rng.uniform(0, 8, (3000, 3))
    v = rng.normal(0, 1, len(p))
    v[[5, 900]] = INF
    w = rng.normal(0, 1, len(p))
    w[17], w[2000] = INF, -INF
    path = str(tmp_path_factory.mktemp("edges") / "inf.zarrvectors")
    B.write_points(path, p, chunk_shape=(2.0,) * 3, bounds=([0.0] * 3, [8.0] * 3),
                   dtype="float64", vertex_attributes={"v": v, "w": w, "u": rng.random(len(p))})
    return path


@pytest.fixture(scope="module")
def corner_store(tmp_path_factory):
    """Vertices on the lower and upper corners and faces of [0, 0.9]^3 (chunk 0.3)."""
    from zarr_vectors import building as B

    g = np.array([0.0, 0.3, 0.45, 0.6, 0.9])
    p = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    path = str(tmp_path_factory.mktemp("edges") / "corner.zarrvectors")
    B.write_points(path, p, chunk_shape=(0.3,) * 3, bounds=([0.0] * 3, [0.9] * 3),
                   dtype="float64")
    return path


def _inside(p, box):
    return np.all((p >= np.asarray(box[0])) & (p <= np.asarray(box[1])), axis=1)


def _numpy_bounds(p):
    if len(p) == 0:
        return np.full((2, p.shape[1]), np.nan)
    return np.stack([p.min(0), p.max(0)])


def _boxes(store, n, seed):
    """Random boxes from tiny (most planned chunks keep no row) to large, plus boxes
    beyond the data and open ones."""
    rng = np.random.default_rng(seed)
    lo, hi = (np.asarray(b, np.float64) for b in store.bounding_box)
    span = hi - lo
    out = []
    for i in range(n):
        a = lo + rng.uniform(-0.1, 1.0, len(lo)) * span
        size = span * (10.0 ** rng.uniform(-3, 0))
        out.append((a.tolist(), (a + size).tolist()))
    out.append(((hi + 1).tolist(), (hi + span).tolist()))  # nothing there
    out.append(([-INF] * len(lo), (lo + span / 3).tolist()))
    out.append(((lo + span / 2).tolist(), [INF] * len(lo)))
    return out


@pytest.mark.parametrize("name", ["points_pyramid", "points_2d", "points_f64_zstd"])
def test_bounds_over_many_boxes_equal_numpy(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    p = store.read(level=0, attributes=[])["positions"]
    D = store.spatial_dims
    empties = 0
    for box in _boxes(store, 7, seed=len(name)):
        want = _numpy_bounds(p[_inside(p, box)])
        empties += np.isnan(want).all()
        lazy = stats.bounds(store, bbox=box)
        assert lazy.shape == (2, D)
        got = lazy.compute()
        assert got.shape == (2, D)
        np.testing.assert_array_equal(got, want)  # NaN where nothing is selected
        got_df = stats.bounds(store.to_dask_dataframe(bbox=box)).compute()
        np.testing.assert_array_equal(got_df, want)
    assert empties >= 1


def test_bounds_when_planned_chunks_keep_no_row(store_path):
    """A tiny box inside a non-empty chunk: the chunk is planned, keeps nothing."""
    store = zv_dask.open_zv(store_path("points_pyramid"))
    p = store.read(attributes=[])["positions"]
    box = ([250.123, 250.456, 250.789], [250.124, 250.457, 250.79])
    assert store.chunks(0, box) and not _inside(p, box).any()
    got = stats.bounds(store, bbox=box).compute()
    assert got.shape == (2, 3) and np.isnan(got).all()
    # a box that keeps rows in some planned chunks and none in others
    box = ([499.0, 0.0, 0.0], [501.0, 2000.0, 2000.0])
    m = _inside(p, box)
    assert 0 < m.sum()
    np.testing.assert_array_equal(stats.bounds(store, bbox=box).compute(), _numpy_bounds(p[m]))


def test_density_counts_the_upper_corner(corner_store):
    store = zv_dask.open_zv(corner_store)
    p = store.read()["positions"]
    for box in (None, ([0.0] * 3, [0.9] * 3), ([0.3] * 3, [0.9] * 3), ([0.0] * 3, [0.6] * 3)):
        lo, hi = (np.zeros(3), np.full(3, 0.9)) if box is None else map(np.asarray, box)
        d = stats.density(store, 0.3, bbox=box)
        n = d.shape[0]
        assert d.shape == (n, n, n) and n == round((hi[0] - lo[0]) / 0.3)
        edges = np.append(lo[0] + 0.3 * np.arange(n), max(lo[0] + 0.3 * n, hi[0]))
        m = np.ones(len(p), bool) if box is None else _inside(p, box)
        want = np.histogramdd(p[m], bins=[edges] * 3)[0].astype(np.int64)
        np.testing.assert_array_equal(np.asarray(d.compute()), want)
        assert int(want.sum()) == int(m.sum())  # every selected vertex, corners included


def test_density_on_faces_of_random_data_boxes(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    p = store.read()["positions"].astype(np.float64)
    rng = np.random.default_rng(3)
    for _ in range(6):
        a, b = p[rng.integers(len(p), size=2)]
        box = (np.minimum(a, b), np.maximum(a, b))  # two vertices sit on the corners
        d = stats.density(store, (37.0, 91.0), bbox=(box[0].tolist(), box[1].tolist()))
        assert int(d.sum()) == int(_inside(p, box).sum())


def test_open_boxes_in_histogram_and_density(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    p = store.read(attributes=[])["positions"]
    lo, hi = store.bounding_box
    box = ([-INF, 300.0, -INF], [1200.0, INF, INF])
    m = _inside(p, box)
    counts, edges = stats.histogram(store, "x", bins=6, bbox=box)
    assert np.isfinite(edges).all() and edges[0] == lo[0] and edges[-1] == 1200.0
    np.testing.assert_array_equal(counts.compute(), np.histogram(p[m, 0], bins=edges)[0])
    counts, edges = stats.histogram(store, "y", bins=4, bbox=box)
    assert edges[0] == 300.0 and edges[-1] == hi[1]
    np.testing.assert_array_equal(counts.compute(), np.histogram(p[m, 1], bins=edges)[0])
    d = stats.density(store, 250.0, bbox=box)
    assert d.shape == (5, 7, 8) and int(d.sum()) == int(m.sum())
    everything = stats.density(store, 500.0, bbox=([-INF] * 3, [INF] * 3))
    assert int(everything.sum()) == len(p)


def test_describe_named_columns_when_no_chunk_is_touched(store_path, capsys):
    path = store_path("points_pyramid")
    store = zv_dask.open_zv(path)
    far = ([5000.0] * 3, [6000.0] * 3)
    assert store.chunks(0, far) == []
    t = stats.describe(store, columns=["x", "fa", "rgb_1"], bbox=far).compute()
    assert list(t.columns) == ["x", "fa", "rgb_1"]
    empty = np.zeros(0)
    for c in t.columns:
        assert t.loc["count", c] == 0 and t.loc["sum", c] == empty.sum()
        assert np.isnan(t.loc[["mean", "std", "min", "max"], c].astype(float)).all()
    # the same through the CLI: count 0 rows, nothing reported as skipped
    from zv_dask.cli import main

    assert main(["stats", path, "--bbox", *map(str, far[0] + far[1]), "--columns", "x",
                 "fa"]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[-2:]}
    assert rows["x"][0] == "0" and rows["fa"][0] == "0"


def test_inf_values_follow_numpy(inf_store):
    store = zv_dask.open_zv(inf_store)
    r = store.read()
    t = stats.describe(store, columns=["v", "w", "u", "x"]).compute()
    with np.errstate(invalid="ignore"):
        for c in ("v", "w", "u"):
            a = r["attributes"][c]
            want = {"count": len(a), "mean": a.mean(), "std": a.std(ddof=1), "min": a.min(),
                    "max": a.max(), "sum": a.sum()}
            for k, w in want.items():
                np.testing.assert_allclose(float(t.loc[k, c]), w, rtol=1e-9, err_msg=(c, k))
    assert t.loc["mean", "v"] == INF and np.isnan(t.loc["mean", "w"])
    # the dataframe path (vectorised merge) agrees
    t2 = stats.describe(store.to_dask_dataframe(), columns=["v", "w"]).compute()
    assert t2.loc["mean", "v"] == INF and np.isnan(t2.loc["mean", "w"])

    with pytest.raises(zv_dask.QueryError, match=r"histogram of 'v'.*not finite.*range="):
        stats.histogram(store, "v")
    with pytest.raises(zv_dask.QueryError, match="not finite"):
        stats.histogram(store, "u", range=(0.0, INF))
    with pytest.raises(zv_dask.QueryError, match="lo > hi"):
        stats.histogram(store, "u", range=(1.0, 0.0))
    counts, edges = stats.histogram(store, "v", bins=8, range=(-2.0, 2.0))
    want, want_edges = np.histogram(r["attributes"]["v"], bins=8, range=(-2.0, 2.0))
    np.testing.assert_array_equal(counts.compute(), want)
    np.testing.assert_array_equal(edges, want_edges)
    counts, edges = stats.histogram(store, "u", bins=5)  # finite data range: as numpy
    want, want_edges = np.histogram(r["attributes"]["u"], bins=5)
    np.testing.assert_array_equal(counts.compute(), want)
    np.testing.assert_allclose(edges, want_edges)


def test_duplicate_column_names_are_refused(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    with pytest.raises(zv_dask.QueryError, match=r"\['x'\] are named more than once"):
        stats.describe(store, columns=["x", "x"])
    with pytest.raises(zv_dask.QueryError, match="more than once"):
        stats.describe(store.to_dask_dataframe(), columns=["fa", "y", "fa"])


@pytest.mark.parametrize("name", ["points_pyramid", "points_2d"])
def test_dask_array_reductions_over_boxes_equal_numpy(store_path, name):
    """``to_dask_array(bbox=...).min(axis=0)``: no block is empty, so dask's own
    reductions work wherever numpy's do."""
    store = zv_dask.open_zv(store_path(name))
    full = store.read(level=0)
    p = full["positions"]
    for box in _boxes(store, 6, seed=7 + len(name)):
        m = _inside(p, box)
        a = store.to_dask_array("positions", bbox=box)
        if m.any():
            np.testing.assert_array_equal(a.min(axis=0).compute(), p[m].min(0))
            np.testing.assert_array_equal(a.max(axis=0).compute(), p[m].max(0))
            np.testing.assert_array_equal(a.compute(), p[m])
        else:  # no row: stats.bounds gives NaN; a min of nothing is undefined
            assert a.compute().shape == (0, store.spatial_dims)
            assert np.isnan(stats.bounds(store, bbox=box).compute()).all()
        if "rgb" in full["attributes"] and m.any():
            rgb = store.to_dask_array("rgb", bbox=box)
            np.testing.assert_array_equal(rgb.max(axis=0).compute(),
                                          full["attributes"]["rgb"][m].max(0))
