"""The same collections and reductions on a real distributed.LocalCluster with worker
processes: results equal the local answers (and every task pickled)."""

from __future__ import annotations

import numpy as np
import pytest

import zv_dask
from zv_dask import stats


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as c:
        yield c


def test_describe_on_cluster_equals_numpy(client, store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    full = store.read(level=0)
    t = stats.describe(store, columns=["fa", "z", "label"], split_every=4).compute()
    for col, v in (("fa", full["attributes"]["fa"]), ("z", full["positions"][:, 2]),
                   ("label", full["attributes"]["label"])):
        v = v.astype(np.float64)
        assert t.loc["count", col] == len(v)
        assert np.isclose(t.loc["mean", col], v.mean())
        assert np.isclose(t.loc["std", col], v.std(ddof=1))
        assert t.loc["min", col] == v.min() and t.loc["max", col] == v.max()


def test_dataframe_with_object_ids_on_cluster(client, store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    box = ([-700, -800], [600, 500])
    df = store.to_dask_dataframe(level=1, bbox=box, chunks_per_partition=2).compute()
    r = store.read(level=1, bbox=box)
    np.testing.assert_array_equal(df[["x", "y"]].to_numpy(), r["positions"])
    np.testing.assert_array_equal(df["object_id"].to_numpy(), r["object_ids"])


def test_histogram_and_density_on_cluster(client, store_path):
    store = zv_dask.open_zv(store_path("points_sharded"))
    full = store.read(level=0)
    counts, edges = stats.histogram(store, "intensity", bins=6)
    np.testing.assert_array_equal(counts.compute(),
                                  np.histogram(full["attributes"]["intensity"], edges)[0])
    d = stats.density(store, 400.0, level=0)
    want = np.histogramdd(full["positions"], bins=[np.arange(0, 2001, 400.0)] * 3)[0]
    np.testing.assert_array_equal(np.asarray(d.compute()), want.astype(np.int64))
