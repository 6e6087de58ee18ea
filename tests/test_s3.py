"""Stores on a real S3-compatible server (moto_server on 127.0.0.1), through a fault
proxy that counts requests and injects errors, delays and dropped connections."""

from __future__ import annotations

import os
import re
import signal
import time

import numpy as np
import pytest

import zv_dask
from zv_dask import stats
from zv_dask import errors as E

from s3server import ACCESS_KEY, SECRET_KEY, FaultProxy, MotoServer, Rule

BUCKET = "zv-test"
NAMES = ["points_small", "points_2d", "points_sharded"]


def build_points_small(path):
    """Few cells (moto_server takes ~10 ms a request): 2x2x2 chunks, 4 attributes, 3 levels."""
    from zarr_vectors import building as B
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    rng = np.random.default_rng(7)
    pos = rng.uniform(0, 1999, (6000, 3)).astype(np.float32)
    n = len(pos)
    B.write_points(str(path), pos, chunk_shape=(1000.0,) * 3, bin_shape=(250.0,) * 3,
                   bounds=([0.0] * 3, [2000.0] * 3), vertex_attributes={
                       "intensity": rng.random(n).astype(np.float32), "fa": rng.random(n),
                       "label": rng.integers(0, 9, n).astype(np.int32),
                       "region": rng.choice(np.array(["a", "b", "c"]), n)})
    build_pyramid(str(path), factors=[(2.0, 1.0), (2.0, 1.0)])


@pytest.fixture(scope="module")
def small_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("s3src") / "points_small.zarrvectors"
    build_points_small(path)
    return str(path)


@pytest.fixture(scope="module")
def local_path(store_path, small_path):
    return lambda name: small_path if name == "points_small" else store_path(name)


@pytest.fixture(scope="module")
def s3(local_path):
    pytest.importorskip("s3fs")
    server = MotoServer()
    proxy = FaultProxy(server.port)
    try:
        server.client().create_bucket(Bucket=BUCKET)
        for name in NAMES:
            server.upload(BUCKET, local_path(name), f"{name}.zarrvectors")
        yield server, proxy
    finally:
        proxy.stop()
        server.stop()


def _options(proxy, **extra):
    return {"endpoint_url": proxy.url, "key": ACCESS_KEY, "secret": SECRET_KEY,
            "skip_instance_cache": True, **extra}


def _open(proxy, name, **kw):
    extra = kw.pop("storage_extra", {})
    return zv_dask.open_zv(f"s3://{BUCKET}/{name}.zarrvectors",
                           storage_options=_options(proxy, **extra), **kw)


@pytest.mark.parametrize("name", NAMES)
def test_s3_reads_equal_local(s3, local_path, name):
    _, proxy = s3
    proxy.reset()
    remote = _open(proxy, name)
    local = zv_dask.open_zv(local_path(name))
    assert remote.levels == local.levels
    for level in remote.levels:
        a, b = remote.read(level=level), local.read(level=level)
        np.testing.assert_array_equal(a["positions"], b["positions"])
        for k in b["attributes"]:
            np.testing.assert_array_equal(a["attributes"][k], b["attributes"][k])
        if "object_ids" in b:
            np.testing.assert_array_equal(a["object_ids"], b["object_ids"])
    df = remote.to_dask_dataframe(level=0).compute(scheduler="threads")
    np.testing.assert_array_equal(df[list(local.axes)].to_numpy(), local.read()["positions"])
    box = ([100] * local.spatial_dims, [900] * local.spatial_dims)
    got = [(c, d["positions"]) for c, d in remote.iter_chunks(level=0, bbox=box, prefetch=2)]
    want = [(c, d["positions"]) for c, d in local.iter_chunks(level=0, bbox=box)]
    assert [c for c, _ in got] == [c for c, _ in want]
    for (_, x), (_, y) in zip(got, want):
        np.testing.assert_array_equal(x, y)
    assert not proxy.requests("HEAD")


def test_open_fetches_only_documents_and_listings(s3):
    _, proxy = s3
    proxy.reset()
    store = _open(proxy, "points_small")
    reqs = proxy.requests()
    assert reqs and all(r.startswith("GET ") for r in reqs), reqs  # no HEAD, no PUT
    gets = [r for r in reqs if "list-type" not in r]
    lists = [r for r in reqs if "list-type" in r]
    assert all(r.endswith("/zarr.json") for r in gets), gets
    assert len(gets) == len(set(gets))
    assert not [r for r in reqs if re.search(r"\.z(group|attrs|array|metadata)", r)]
    n_levels = len(store.levels)
    assert len(lists) == n_levels + 1  # each level group + level 0's vertex_attributes/
    n_arrays = sum(len(store.metadata.levels[lv].arrays) for lv in store.levels)
    assert len(gets) == 1 + n_levels + n_arrays


def test_consolidated_metadata_opens_with_one_request(s3, local_path, tmp_path):
    import shutil

    import zarr

    server, proxy = s3
    copy = tmp_path / "cons.zarrvectors"
    shutil.copytree(local_path("points_2d"), copy)
    zarr.consolidate_metadata(str(copy))
    server.upload(BUCKET, copy, "cons.zarrvectors")
    proxy.reset()
    store = _open(proxy, "cons")
    assert proxy.requests() == [f"GET /{BUCKET}/cons.zarrvectors/zarr.json"]
    np.testing.assert_array_equal(store.read(level=1)["positions"],
                                  zv_dask.open_zv(local_path("points_2d")).read(level=1)["positions"])


def test_chunk_reads_one_get_per_needed_array(s3):
    _, proxy = s3
    store = _open(proxy, "points_small")
    box = ([1010, 1010, 1010], [1990, 1990, 1990])  # inside chunk (1, 1, 1)
    proxy.reset()
    [(coord, data)] = list(store.iter_chunks(level=0, bbox=box, attributes=["intensity"]))
    assert coord == (1, 1, 1) and len(data["positions"])
    gets = proxy.requests("GET")
    assert sorted(gets) == sorted([
        f"GET /{BUCKET}/points_small.zarrvectors/0/vertices/c/1/1/1",
        f"GET /{BUCKET}/points_small.zarrvectors/0/vertex_attributes/intensity/c/1/1/1"])
    assert proxy.requests() == gets  # no HEAD, no listing
    # a whole level: exactly one GET per cell and array
    proxy.reset()
    store.read(level=0, attributes=["fa", "label"])
    n = len(store.chunks(0))
    assert len(proxy.requests("GET")) == 3 * n == len(proxy.requests())
    # projection: only the intensity blobs
    ddf = store.to_dask_dataframe(level=0)
    proxy.reset()
    ddf.intensity.sum().compute(scheduler="threads")
    assert len(proxy.requests()) == n
    assert all("/vertex_attributes/intensity/c/" in r for r in proxy.requests())


def test_transient_errors_are_retried(s3, local_path):
    _, proxy = s3
    store = _open(proxy, "points_small", retry_backoff=0.01)
    want = zv_dask.open_zv(local_path("points_small")).read(level=1)
    key = f"/{BUCKET}/points_small.zarrvectors/1/vertices/c/1/1/0"
    proxy.reset()
    proxy.rules += [Rule(re.escape(key) + "$", 503, times=2),
                    Rule(r"/1/vertices/c/0/0/1$", 500, times=1),
                    Rule(r"/1/vertices/c/1/0/1$", "drop", times=1)]
    got = store.read(level=1)
    np.testing.assert_array_equal(got["positions"], want["positions"])
    assert len(proxy.requests("GET", key)) == 3
    assert all(r.hits == r.times for r in proxy.rules)


def test_timeouts_are_retried(s3, local_path):
    _, proxy = s3
    store = _open(proxy, "points_2d", retry_backoff=0.01,
                  storage_extra={"config_kwargs": {"read_timeout": 0.5, "connect_timeout": 0.5}})
    want = zv_dask.open_zv(local_path("points_2d")).read(level=2)
    proxy.reset()
    proxy.rules.append(Rule(r"/2/vertices/c/0/0$", "delay", times=1, seconds=2.0))
    got = store.read(level=2)
    np.testing.assert_array_equal(got["positions"], want["positions"])
    assert proxy.rules[0].hits == 1


def test_persistent_errors_name_the_chunk_and_never_return_partial(s3):
    _, proxy = s3
    store = _open(proxy, "points_small", retries=2, retry_backoff=0.01)
    proxy.reset()
    proxy.rules.append(Rule(r"/0/vertex_attributes/label/c/1/0/1$", 500))
    t = time.perf_counter()
    with pytest.raises(E.StoreReadError) as ei:
        store.read(level=0)
    assert time.perf_counter() - t < 20
    e = ei.value
    assert (e.level, e.array, e.chunk) == (0, "vertex_attributes/label", (1, 0, 1))
    msg = str(e)
    assert "points_small.zarrvectors" in msg and "3 attempts" in msg
    assert SECRET_KEY not in msg and SECRET_KEY not in repr(store)
    assert len(proxy.requests("GET", "/0/vertex_attributes/label/c/1/0/1")) == 3
    # the dask path fails the same way (no silently empty partition)
    with pytest.raises(E.StoreReadError):
        store.to_dask_dataframe(level=0, attributes=["label"]).compute(scheduler="threads")


def test_sharded_arrays_over_s3_retry_too(s3, local_path):
    _, proxy = s3
    store = _open(proxy, "points_sharded", retry_backoff=0.01)
    proxy.reset()
    proxy.rules.append(Rule(r"/0/vertices/c/0/0/0$", 500, times=1))  # not retried by s3fs
    got = store.read(level=0, attributes=["intensity"])
    want = zv_dask.open_zv(local_path("points_sharded")).read(level=0, attributes=["intensity"])
    np.testing.assert_array_equal(got["positions"], want["positions"])
    assert proxy.rules[0].hits == 1


def test_missing_bucket_and_credentials_never_leak(s3):
    _, proxy = s3
    with pytest.raises(E.StoreNotFoundError) as ei:
        zv_dask.open_zv("s3://no-such-bucket/x.zarrvectors", storage_options=_options(proxy))
    assert SECRET_KEY not in str(ei.value)
    store = _open(proxy, "points_2d")
    ddf = store.to_dask_dataframe(level=0)
    assert SECRET_KEY not in repr(store) and SECRET_KEY not in str(ddf)
    assert all(SECRET_KEY not in str(k) for k in ddf.__dask_graph__().keys())


def test_worker_killed_mid_reduction_still_right(s3, local_path):
    from distributed import Client, LocalCluster

    _, proxy = s3
    store = _open(proxy, "points_2d", retry_backoff=0.01)
    want = zv_dask.open_zv(local_path("points_2d")).read(level=0, attributes=["v"])
    proxy.reset()
    proxy.rules.append(Rule(r"/0/vertex_attributes/v/c/", "delay", seconds=0.25))
    ddf = store.to_dask_dataframe(level=0, attributes=["v"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=50) as cluster, Client(cluster) as client:
        fut = client.compute(stats.describe(ddf))
        deadline = time.time() + 20
        while not proxy.requests("GET", "/v/c/") and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        pids = client.run(os.getpid)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        table = fut.result(timeout=120)
    v = want["attributes"]["v"].astype(np.float64)
    assert table.loc["count", "v"] == len(v)
    assert np.isclose(table.loc["mean", "v"], v.mean())
    assert np.isclose(table.loc["std", "v"], v.std(ddof=1))
    assert len(proxy.requests("GET", "/v/c/")) > len(store.chunks(0))  # work was redone
