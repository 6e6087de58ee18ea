"""nearest / within / pairs against one cKDTree (and brute force for ties) on the
whole level, on stores written by the reference writer."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

import zv_dask
from zv_dask.errors import ColumnNotFoundError, QueryError
from zv_dask.plan import halos

warnings.filterwarnings("ignore", module="zarr_vectors")


def _write(path, pos, chunk, bounds, bin_shape=None, attrs=None):
    from zarr_vectors import building as B

    kw = {} if bin_shape is None else {"bin_shape": bin_shape}
    B.write_points(str(path), pos, chunk_shape=chunk, bounds=bounds,
                   vertex_attributes=attrs, **kw)
    return str(path)


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """3-D clusters with empty chunks between them, negative origin, two cell rules."""
    rng = np.random.default_rng(23)
    centres = np.array([[-800.0, -750.0, -700.0], [300.0, 700.0, -200.0], [600.0, -500.0, 800.0]])
    pos = np.concatenate([c + rng.normal(0, 60, (700, 3)) for c in centres])
    n = len(pos)
    attrs = {"label": rng.integers(0, 9, n).astype(np.int32),
             "rgb": rng.integers(0, 255, (n, 3)).astype(np.uint8),
             "region": rng.choice(np.array(["a", "b"]), n)}
    path = tmp_path_factory.mktemp("nn") / "clustered.zarrvectors"
    return _write(path, pos, (250.0,) * 3, ([-1000.0] * 3, [1000.0] * 3),
                  bin_shape=(125.0,) * 3, attrs=attrs)


@pytest.fixture(scope="module")
def lattice(tmp_path_factory):
    """2-D lattice points: queries at lattice midpoints tie with 2 or 4 vertices."""
    g = np.arange(-200.0, 200.0, 25.0)
    pos = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    pos = pos[np.random.default_rng(1).permutation(len(pos))]
    path = tmp_path_factory.mktemp("nn") / "lattice.zarrvectors"
    return _write(path, pos, (100.0, 100.0), ([-200.0, -200.0], [200.0, 200.0]))


def _level(path, level=0):
    s = zv_dask.open_zv(path)
    return s, s.read(level=level)["positions"].astype(np.float64)


def _brute(pos, q, k, max_distance=None):
    """(query, vertex_id, distance) of the k nearest, ties to the smaller id."""
    rows = []
    for i, p in enumerate(q):
        d = np.sqrt(((pos - p) ** 2).sum(1))
        order = np.lexsort((np.arange(len(pos)), d))[:k]
        order = order if max_distance is None else order[d[order] <= max_distance]
        rows += [(i, r, j, d[j]) for r, j in enumerate(order)]
    return pd.DataFrame(rows, columns=["query", "rank", "vertex_id", "distance"])


def _queries(store, rng, n=150):
    lo, hi = (np.asarray(b) for b in store.bounding_box)
    chunk = np.asarray(store.chunk_shape)
    inside = rng.uniform(lo, hi, (n, len(lo)))
    faces = np.round(inside / chunk) * chunk                   # chunk corners
    face = inside.copy()
    face[:, 0] = np.round(face[:, 0] / chunk[0]) * chunk[0]    # chunk faces
    outside = rng.uniform(lo - 3 * chunk, hi + 3 * chunk, (n, len(lo)))
    return np.concatenate([inside, faces, face, outside])


def _check_nearest(store, pos, q, k, max_distance=None):
    got = store.nearest(q, k=k, max_distance=max_distance)
    want = _brute(pos, q, k, max_distance)
    assert got.dtypes["distance"] == np.float64
    np.testing.assert_array_equal(got[["query", "rank", "vertex_id"]].to_numpy(),
                                  want[["query", "rank", "vertex_id"]].to_numpy())
    d, _ = cKDTree(pos).query(q, k=[k])
    last = got[got["rank"] == k - 1]
    np.testing.assert_allclose(last.distance.to_numpy(), d[last["query"].to_numpy(), 0],
                               rtol=1e-12)
    np.testing.assert_allclose(got.distance.to_numpy(), want.distance.to_numpy(), rtol=1e-12)
    return got


@pytest.mark.parametrize("k", [1, 4, 17])
def test_nearest_equals_the_whole_level_kdtree(clustered, k):
    store, pos = _level(clustered)
    q = _queries(store, np.random.default_rng(k))
    got = _check_nearest(store, pos, q, k)
    assert len(got) == len(q) * k


def test_nearest_with_max_distance_drops_far_queries(clustered):
    store, pos = _level(clustered)
    q = _queries(store, np.random.default_rng(5), 60)
    got = _check_nearest(store, pos, q, 3, max_distance=40.0)
    assert 0 < got["query"].nunique() < len(q)
    assert (got.distance <= 40.0).all()


def test_ties_go_to_the_smaller_vertex_id(lattice):
    store, pos = _level(lattice)
    g = np.arange(-187.5, 200.0, 25.0)
    mid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)          # 4-way ties
    edge = mid.copy()
    edge[:, 0] -= 12.5                                             # 2-way ties
    for k in (1, 2, 3, 5):
        _check_nearest(store, pos, np.concatenate([mid, edge]), k)


def test_columns_are_the_neighbours_values(clustered):
    store, pos = _level(clustered)
    full = store.read()
    q = _queries(store, np.random.default_rng(9), 20)
    got = store.nearest(pd.DataFrame(q, columns=list(store.axes), index=np.arange(len(q)) * 7),
                        k=2, columns=["label", "rgb", "region", "y"])
    vid = got.vertex_id.to_numpy()
    assert np.array_equal(got["label"], full["attributes"]["label"][vid])
    assert np.array_equal(got["rgb_2"], full["attributes"]["rgb"][vid, 2])
    assert np.array_equal(got["region"].to_numpy(), full["attributes"]["region"][vid])
    assert np.array_equal(got["y"], pos[vid, 1])
    assert got["query"].max() == len(q) - 1   # row positions, not index labels


def test_vertex_ids_follow_read_order_with_a_leading_attribute_axis(store_path):
    store, pos = _level(store_path("points_by_gene"))
    q = _queries(store, np.random.default_rng(3), 40)
    _check_nearest(store, pos, q, 3)


def test_within_equals_query_ball_point(clustered, lattice):
    for path, r in ((clustered, 70.0), (lattice, 25.0)):
        store, pos = _level(path)
        q = _queries(store, np.random.default_rng(2), 50)
        got = store.within(q, r)
        balls = cKDTree(pos).query_ball_point(q, r)
        want = sorted((i, j) for i, b in enumerate(balls) for j in b)
        assert list(zip(got["query"], got["vertex_id"])) == want
        np.testing.assert_allclose(
            got.distance, np.sqrt(((pos[got.vertex_id] - q[got["query"]]) ** 2).sum(1)))


@pytest.mark.parametrize("bbox", [None, ([-900.0, -900.0, -900.0], [400.0, 800.0, 100.0])])
def test_pairs_equal_query_pairs(clustered, bbox):
    store, pos = _level(clustered)
    got = store.pairs(30.0, bbox=bbox)
    ids = np.arange(len(pos))
    if bbox is not None:
        ids = ids[np.all((pos >= bbox[0]) & (pos <= bbox[1]), 1)]
    ref = cKDTree(pos[ids]).query_pairs(30.0, output_type="ndarray")
    want = np.sort(ids[ref], axis=1)
    want = want[np.lexsort((want[:, 1], want[:, 0]))]
    assert np.array_equal(got[["vertex_id_0", "vertex_id_1"]].to_numpy(), want)
    np.testing.assert_allclose(got.distance, np.sqrt(((pos[want[:, 0]] - pos[want[:, 1]]) ** 2)
                                                     .sum(1)))


def test_lattice_pairs_at_exactly_the_radius(lattice):
    store, pos = _level(lattice)
    got = store.pairs(25.0)
    want = cKDTree(pos).query_pairs(25.0, output_type="ndarray")
    assert len(got) == len(want) > 0


def test_halo_plan_reads_only_nearby_cells(clustered):
    store, _ = _level(clustered)
    grid = store._neighbour_grid(0)
    q = np.array([[-800.0, -750.0, -700.0]])
    near = halos.cells_needed(grid, q, np.array([100.0]))
    assert 0 < len(near) < len(grid)
    assert (halos.box_distances(q, grid.lo[near], grid.hi[near]) <= 100.0).all()
    far = np.setdiff1d(np.arange(len(grid)), near)
    assert (halos.box_distances(q, grid.lo[far], grid.hi[far]) > 100.0).all()


@pytest.mark.parametrize("call, match", [
    (lambda s: s.nearest(np.zeros((3, 2))), r"\(N, 3\)"),
    (lambda s: s.nearest([[0.0, np.nan, 0.0]]), "NaN"),
    (lambda s: s.nearest([[0.0, 0.0, 0.0]], k=0), "k must be"),
    (lambda s: s.within([[0.0, 0.0, 0.0]], radius=0), "radius must be"),
    (lambda s: s.pairs(-1.0), "radius must be"),
    (lambda s: s.nearest(pd.DataFrame({"x": [0.0]})), "axis column"),
    (lambda s: s.nearest([[0.0, 0.0, 0.0]], columns=["nope"]), "unknown column"),
])
def test_bad_input_is_a_query_error(clustered, call, match):
    store = zv_dask.open_zv(clustered)
    with pytest.raises(QueryError, match=match) as e:
        call(store)
    assert e.value.store == store.url


def test_unknown_column_is_a_column_error(clustered):
    with pytest.raises(ColumnNotFoundError):
        zv_dask.open_zv(clustered).nearest([[0.0, 0.0, 0.0]], columns=["nope"])


# --------------------------------------------------------------------------- dask


def _dask_queries(store, q, npartitions=3):
    import dask.dataframe as dd

    return dd.from_pandas(pd.DataFrame(q, columns=list(store.axes)), npartitions=npartitions)


def test_dask_queries_give_a_dask_frame_partitioned_like_the_input(clustered):
    import dask.dataframe as dd

    store, _ = _level(clustered)
    q = _queries(store, np.random.default_rng(4), 30)
    ddf = _dask_queries(store, q)
    got = store.nearest(ddf, k=3, columns=["label"])
    assert isinstance(got, dd.DataFrame) and got.npartitions == ddf.npartitions
    want = store.nearest(q, k=3, columns=["label"])
    pd.testing.assert_frame_equal(got.compute(scheduler="sync").reset_index(drop=True), want)
    got = store.within(ddf, 50.0).compute(scheduler="sync").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, store.within(q, 50.0))


def test_nan_in_a_dask_query_frame_fails_at_compute(clustered):
    store, _ = _level(clustered)
    q = np.zeros((4, 3))
    q[2, 1] = np.nan
    with pytest.raises(QueryError, match="NaN"):
        store.nearest(_dask_queries(store, q, 2)).compute(scheduler="sync")


def test_same_answers_on_a_local_cluster(clustered):
    from distributed import Client, LocalCluster

    store, _ = _level(clustered)
    q = _queries(store, np.random.default_rng(6), 10)
    want_nn = store.nearest(q, k=2)
    want_pairs = store.pairs(25.0)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster):
        got_nn = store.nearest(_dask_queries(store, q, 2), k=2).compute()
        got_pairs = store.pairs(25.0, lazy=True).compute()
    pd.testing.assert_frame_equal(got_nn.reset_index(drop=True), want_nn)
    pd.testing.assert_frame_equal(got_pairs.reset_index(drop=True), want_pairs)


# --------------------------------------------------------------------------- properties


def test_random_stores_and_queries(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    root = tmp_path_factory.mktemp("nn-prop")

    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(seed=st.integers(0, 2**16), n=st.integers(1, 300), ndim=st.sampled_from([2, 3]),
           chunk=st.sampled_from([7.0, 20.0, 55.0]), k=st.integers(1, 6),
           clusters=st.integers(1, 3))
    def check(seed, n, ndim, chunk, k, clusters):
        rng = np.random.default_rng(seed)
        centres = rng.uniform(-100, 100, (clusters, ndim))
        pos = centres[rng.integers(0, clusters, n)] + rng.normal(0, 8, (n, ndim))
        pos = np.round(pos, 1)   # coarse values make ties
        path = root / f"s{seed}-{n}-{ndim}-{chunk}.zarrvectors"
        if not path.exists():
            lo, hi = pos.min(0) - 1, pos.max(0) + 1
            _write(path, pos, (chunk,) * ndim, (lo.tolist(), hi.tolist()))
        store, stored = _level(str(path))
        q = np.round(rng.uniform(-150, 150, (25, ndim)), 1)
        _check_nearest(store, stored, q, k)
        r = float(rng.uniform(1, 30))
        got = store.within(q, r)
        balls = cKDTree(stored).query_ball_point(q, r)
        assert list(zip(got["query"], got["vertex_id"])) == sorted(
            (i, j) for i, b in enumerate(balls) for j in b)
        pairs = store.pairs(r)
        assert len(pairs) == len(cKDTree(stored).query_pairs(r))

    check()


# --------------------------------------------------------------------------- the rest


@pytest.mark.parametrize("module", ["plan.halos", "plan.cellindex", "api.neighbours"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    m = importlib.import_module(f"zv_dask.{module}")
    result = doctest.testmod(m, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_a_level_without_vertices_is_a_query_error(clustered, monkeypatch):
    store = zv_dask.open_zv(clustered)
    grid = store._neighbour_grid(0)
    empty = halos.NeighbourGrid(grid.coords[:0], grid.lo[:0], grid.hi[:0], grid.starts[:0],
                                grid.lengths[:0], grid.rule)
    store._derived[("neighbour_grid", 0)] = empty   # as a level whose chunks hold no rows
    with pytest.raises(QueryError, match="no vertices") as e:
        store.nearest([[0.0, 0.0, 0.0]])
    assert e.value.level == 0


def test_without_scipy_the_error_says_how_to_install_it(clustered, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.spatial", None)   # import fails as if absent
    with pytest.raises(zv_dask.MissingDependencyError, match="pip install scipy"):
        zv_dask.open_zv(clustered).nearest([[0.0, 0.0, 0.0]])
