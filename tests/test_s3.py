"""Stores on a real S3-compatible server (moto_server on 127.0.0.1), through a fault
proxy that counts requests and injects errors, delays and dropped connections."""

from __future__ import annotations

import os
import re
import signal

import dask
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
    # and that array's document, once: this handle never listed the level
    doc = f"GET /{BUCKET}/points_small.zarrvectors/0/vertex_attributes/intensity/zarr.json"
    assert len(proxy.requests()) == n + 1 and proxy.requests().count(doc) == 1
    assert all("/vertex_attributes/intensity/c/" in r for r in proxy.requests() if r != doc)


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
    with pytest.raises(E.StoreReadError) as ei:
        store.read(level=0)
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


def test_sharded_persistent_error_names_the_shard(s3, local_path):
    _, proxy = s3
    store = _open(proxy, "points_sharded", retries=2, retry_backoff=0.01)
    store.chunks(0)
    proxy.reset()
    proxy.rules.append(Rule(r"/0/vertices/c/0/0/0$", 500))
    with pytest.raises(E.StoreReadError) as ei:
        store.read(level=0, attributes=["intensity"])
    e = ei.value
    assert e.array == "vertices" and "0/vertices/c/0/0/0" in str(e) and "3 attempts" in str(e)
    assert len(proxy.requests("GET", "/0/vertices/c/0/0/0")) == 3
    proxy.rules.clear()  # the same handle reads every shard once the server recovers
    got = store.read(level=0, attributes=["intensity"])
    want = zv_dask.open_zv(local_path("points_sharded")).read(level=0, attributes=["intensity"])
    np.testing.assert_array_equal(got["positions"], want["positions"])
    np.testing.assert_array_equal(got["attributes"]["intensity"],
                                  want["attributes"]["intensity"])


def test_sharded_shard_object_deleted_on_s3_is_a_missing_chunk(s3, local_path):
    server, proxy = s3
    server.upload(BUCKET, local_path("points_sharded"), "gone_shard.zarrvectors")
    store = zv_dask.open_zv(f"s3://{BUCKET}/gone_shard.zarrvectors",
                            storage_options=_options(proxy), cache_size=0)
    store.chunks(0)
    keys = [o["Key"] for o in server.client().list_objects_v2(
        Bucket=BUCKET, Prefix="gone_shard.zarrvectors/0/vertex_attributes/intensity/c/")["Contents"]]
    server.client().delete_object(Bucket=BUCKET, Key=sorted(keys)[-1])
    with pytest.raises(E.ChunkMissingError) as ei:
        store.read(level=0, attributes=["intensity"])
    assert ei.value.array == "vertex_attributes/intensity"
    assert "shard object" in str(ei.value)


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
    n = len(store.chunks(0))
    proxy.reset()
    # every partition task blocks on its attribute chunk until the kill has happened
    stall = Rule(r"/0/vertex_attributes/v/c/", "stall")
    proxy.rules.append(stall)
    ddf = store.to_dask_dataframe(level=0, attributes=["v"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=50) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        fut = client.compute(stats.describe(ddf))
        # one thread per worker and one chunk per task: two held requests mean each
        # worker is inside a task that cannot finish before the kill
        assert stall.wait_hits(2)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        stall.release()
        table = fut.result(timeout=120)
    v = want["attributes"]["v"].astype(np.float64)
    assert table.loc["count", "v"] == len(v)
    assert np.isclose(table.loc["mean", "v"], v.mean())
    assert np.isclose(table.loc["std", "v"], v.std(ddof=1))
    gets = proxy.requests("GET", "/v/c/")
    assert len(gets) > n  # the killed worker's task was redone
    assert any(gets.count(line) >= 2 for line in stall.matched[:2])


# --------------------------------------------------------------------------- streaming


def _stall_all_but_first(store, name, then=None) -> Rule:
    """Hold every level-0 vertex GET except the first chunk's."""
    from zv_dask.io.location import cell_key

    lm = store.metadata.levels[0]
    rest = [cell_key(lm.vertices, 0, c) for c in store.chunks(0)[1:]]
    lines = [f"GET /{BUCKET}/{name}.zarrvectors/{r}" for r in rest]
    return Rule("^(" + "|".join(re.escape(x) for x in lines) + ")$", "stall", then=then)


def _prefetch_threads():
    import threading

    return [t for t in threading.enumerate() if t.name == "zv_dask-prefetch"]


@pytest.mark.parametrize("how", ["close", "del", "break"])
def test_closing_iter_chunks_cancels_prefetch_on_a_stalled_endpoint(s3, how):
    import threading

    _, proxy = s3
    store = _open(proxy, "points_small", retry_backoff=0.01)
    assert len(store.chunks(0)) >= 4
    proxy.reset()
    # held requests are answered 503 on release: a read that was not cancelled retries
    stall = _stall_all_but_first(store, "points_small", then=503)
    proxy.rules.append(stall)
    before = set(_prefetch_threads())
    holder = []
    got = []

    def consume():
        it = store.iter_chunks(level=0, prefetch=2, attributes=[])
        if how == "break":
            for c, d in it:
                got.append(c)
                assert stall.wait_hits(2)  # both prefetches are held by the endpoint
                break
            return
        got.append(next(it)[0])
        assert stall.wait_hits(2)
        if how == "close":
            it.close()
        else:
            holder.append(it)
            del it
            holder.clear()  # the last reference: the generator is collected

    t = threading.Thread(target=consume)
    t.start()
    t.join(60)  # a guard only: closing must not wait for the held requests
    assert not t.is_alive(), "closing the iterator waited for the stalled endpoint"
    assert got == [store.chunks(0)[0]]
    workers = [w for w in _prefetch_threads() if w not in before]
    assert len(workers) == 2 and all(w.daemon for w in workers)
    n_requests = len(proxy.requests())
    stall.release()
    for w in workers:
        w.join(60)  # a guard only
    assert not any(w.is_alive() for w in workers)
    assert stall.hits == 2
    assert len(proxy.requests()) == n_requests  # no retry, no further chunk


def test_ctrl_c_during_prefetch_exits_while_the_endpoint_stalls(s3):
    import subprocess
    import sys
    import textwrap

    _, proxy = s3
    name = "points_small"
    store = _open(proxy, name)
    proxy.reset()
    stall = _stall_all_but_first(store, name)
    proxy.rules.append(stall)
    script = textwrap.dedent(f"""
        import zv_dask
        store = zv_dask.open_zv({f"s3://{BUCKET}/{name}.zarrvectors"!r},
                                storage_options={_options(proxy)!r})
        for c, d in store.iter_chunks(level=0, prefetch=4, attributes=[]):
            print("chunk", c, flush=True)
    """)
    root = os.path.dirname(os.path.dirname(zv_dask.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert stall.wait_hits(4)  # four prefetches held: the loop waits for chunk 1
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # a guard only; the stall is still held
        assert not stall.released.is_set()
    finally:
        stall.release()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    assert out.splitlines()[0].startswith("chunk")
    assert stall.hits == 4


# --------------------------------------------------------------------------- one retry policy
# Every kind of remote read goes through the same bounded retry as chunk reads: one
# injected 500/503 is retried (the faulted request shows up twice), a persistent one
# raises StoreReadError naming level, array and chunk.


@pytest.fixture(scope="module")
def graph_s3(s3, store_path):
    server, _ = s3
    server.upload(BUCKET, store_path("web_graph"), "web_graph.zarrvectors")
    return store_path("web_graph")


def _fresh_process_caches():
    """Owner tables are cached per process and store URL; these tests must read them."""
    from zv_dask.read import level as _read

    with _read._OWNER_LOCK:
        _read._OWNER_TABLES.clear()


def _frame_equal(got, want):
    import pandas as pd

    pd.testing.assert_frame_equal(got.sort_index(), want.sort_index(), check_dtype=True)


def _read(remote, local):
    got, want = remote.read(level=0), local.read(level=0)
    np.testing.assert_array_equal(got["object_ids"], want["object_ids"])
    np.testing.assert_array_equal(got["positions"], want["positions"])


def _iter_chunks(remote, local):
    got = [(c, d["object_ids"]) for c, d in remote.iter_chunks(level=0, prefetch=2)]
    want = [(c, d["object_ids"]) for c, d in local.iter_chunks(level=0)]
    assert [c for c, _ in got] == [c for c, _ in want]
    for (_, x), (_, y) in zip(got, want):
        np.testing.assert_array_equal(x, y)


def _dataframe(remote, local):
    import dask

    got = remote.to_dask_dataframe(level=0).compute(
        scheduler=dask.config.get("scheduler", None) or "threads")
    want = local.to_dask_dataframe(level=0).compute(scheduler="sync")
    np.testing.assert_array_equal(got["object_id"].to_numpy(), local.read(level=0)["object_ids"])
    _frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


def _objects(remote, local):
    _frame_equal(remote.objects(level=0).compute(scheduler="sync"),
                 local.objects(level=0).compute(scheduler="sync"))


def _read_objects(remote, local):
    got, want = remote.read_objects(level=0), local.read_objects(level=0)
    for k in ("object_ids", "offsets", "positions"):
        np.testing.assert_array_equal(got[k], want[k])


def _edges(remote, local):
    cols = ["source", "target", "length"]
    got = remote.edges(level=0).compute(scheduler="sync")[cols]
    want = local.edges(level=0).compute(scheduler="sync")[cols]
    key = ["source", "target"]
    _frame_equal(got.sort_values(key).reset_index(drop=True),
                 want.sort_values(key).reset_index(drop=True))



def _fixed(rel, array, chunk):
    return lambda store: (rel, array, chunk)


def _link_cell(store):
    from zv_dask.io.location import cell_key

    lk = store._link_family(0).arrays[-1]
    c = min(lk.cells)
    return cell_key(lk.arr, 0, c), lk.arr.path, c


# (name, store, method, call, where: store -> (object key, array, chunk) of the fault)
RETRY_CASES = [
    # block lengths come from one LIST per array (no HEAD): retried in test_partitions.py
    ("manifests-read", "points_2d", "GET", _read,
     _fixed("0/object_index/manifests/c/0", "object_index/manifests", (0,))),
    ("manifests-iter_chunks", "points_2d", "GET", _iter_chunks,
     _fixed("0/object_index/manifests/c/0", "object_index/manifests", (0,))),
    ("manifests-to_dask_dataframe", "points_2d", "GET", _dataframe,
     _fixed("0/object_index/manifests/c/0", "object_index/manifests", (0,))),
    ("object_ids-objects", "points_2d", "GET", _objects,
     _fixed("0/object_index/object_ids/c/0", "object_index/object_ids", (0,))),
    ("object_ids-read_objects", "points_2d", "GET", _read_objects,
     _fixed("0/object_index/object_ids/c/0", "object_index/object_ids", (0,))),
    ("object_attributes-objects", "points_2d", "GET", _objects,
     _fixed("0/object_attributes/cx/c/0", "object_attributes/cx", (0,))),
    ("links-edges", "web_graph", "GET", _edges, _link_cell),
]


def _stores(s3, local_path, graph_s3, name, **kw):
    _, proxy = s3
    local = zv_dask.open_zv(graph_s3 if name == "web_graph" else local_path(name))
    return _open(proxy, name, **kw), local


@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("case", RETRY_CASES, ids=[c[0] for c in RETRY_CASES])
def test_every_remote_read_kind_is_retried(s3, local_path, graph_s3, case, status):
    _, proxy = s3
    _, name, method, call, where = case
    remote, local = _stores(s3, local_path, graph_s3, name, retry_backoff=0.01)
    rel, _, _ = where(remote)
    line = f"{method} /{BUCKET}/{name}.zarrvectors/{rel}"
    _fresh_process_caches()
    proxy.reset()
    proxy.rules.append(Rule("^" + re.escape(line) + "$", status, times=1))
    call(remote, local)
    assert proxy.rules[0].matched == [line]
    assert proxy.requests().count(line) == 2  # the failed request, then its retry


@pytest.mark.parametrize("case", RETRY_CASES, ids=[c[0] for c in RETRY_CASES])
def test_persistent_failure_of_every_read_kind_names_the_chunk(s3, local_path, graph_s3, case):
    _, proxy = s3
    _, name, method, call, where = case
    remote, local = _stores(s3, local_path, graph_s3, name, retries=2, retry_backoff=0.01)
    rel, array, chunk = where(remote)
    line = f"{method} /{BUCKET}/{name}.zarrvectors/{rel}"
    _fresh_process_caches()
    proxy.reset()
    proxy.rules.append(Rule("^" + re.escape(line) + "$", 500))
    # one thread: the threaded scheduler returns at the first error while other tasks
    # that need the same chunk keep running and send their own attempts, so a count
    # taken after the raise would race them
    with pytest.raises(E.StoreReadError) as ei, dask.config.set(scheduler="sync"):
        call(remote, local)
    e = ei.value
    assert (e.store, e.level, e.array, e.chunk) == (remote.url, 0, array, tuple(chunk))
    assert "3 attempts" in str(e) and SECRET_KEY not in str(e)
    assert proxy.requests().count(line) == 3


def test_existence_check_is_retried_not_taken_for_absence(s3):
    """Without a root document, open_zv asks whether anything is there: one 503 on
    that check is retried (still "not found"), a persistent one is a read error,
    never a false "nothing exists"."""
    _, proxy = s3
    url = f"s3://{BUCKET}/never-written.zarrvectors"
    proxy.reset()
    proxy.rules.append(Rule(r"^HEAD /[^/]+/never-written\.zarrvectors$", 503, times=1))
    with pytest.raises(E.StoreNotFoundError):
        zv_dask.open_zv(url, storage_options=_options(proxy), retry_backoff=0.01)
    assert proxy.rules[0].hits == 1
    assert len(proxy.requests("HEAD", "never-written")) == 2  # the failed check, its retry
    proxy.reset()
    proxy.rules.append(Rule(r"^HEAD /[^/]+/never-written\.zarrvectors$", 503))
    with pytest.raises(E.StoreReadError, match="still failing") as ei:
        zv_dask.open_zv(url, storage_options=_options(proxy), retry_backoff=0.01)
    assert "never-written" in str(ei.value) and SECRET_KEY not in str(ei.value)


def test_filtered_len_sizes_chunks_from_list_pages_not_heads(s3, local_path):
    """``len`` of an axis filter counts inside chunks from one LIST of the vertices
    array (sizes come in the LIST pages) and reads only boundary chunks: no HEAD."""
    _, proxy = s3
    local = zv_dask.open_zv(local_path("points_small"))
    pos = local.read(level=0)["positions"]
    cut = float(np.quantile(pos[:, 0], 0.3))
    store = _open(proxy, "points_small")
    ddf = store.to_dask_dataframe(level=0)
    proxy.reset()
    assert len(ddf[ddf.x > cut]) == int((pos[:, 0] > cut).sum())
    assert not proxy.requests("HEAD")
    lists = [r for r in proxy.requests("GET") if "list-type" in r]
    assert len(lists) == 1 and "0%2Fvertices" in lists[0], lists
    chunk_gets = [r for r in proxy.requests("GET") if "/c/" in r]
    assert 0 < len(chunk_gets) < len(store.chunks(0))


# ------------------------------------------------------------------ the CLI on S3


def _cli_s3_args(proxy):
    return ["--storage-option", f"endpoint_url={proxy.url}",
            "--storage-option", f"key={ACCESS_KEY}", "--storage-option", f"secret={SECRET_KEY}",
            "--storage-option", "skip_instance_cache=true"]


def test_cli_reads_s3_with_storage_options(s3, local_path, capsys):
    from zv_dask.cli import main

    _, proxy = s3
    url = f"s3://{BUCKET}/points_small.zarrvectors"
    assert main(["stats", url, "--level", "1", *_cli_s3_args(proxy)]) == 0
    remote = capsys.readouterr().out.splitlines()
    assert main(["stats", local_path("points_small"), "--level", "1"]) == 0
    local = capsys.readouterr().out.splitlines()
    assert remote[0] == f"store  {url}" and remote[1:] == local[1:]
    assert main(["info", url, *_cli_s3_args(proxy)]) == 0
    assert "points_small.zarrvectors" in capsys.readouterr().out


def test_cli_takes_s3_credentials_from_the_environment(s3):
    import subprocess
    import sys
    from pathlib import Path

    server, _ = s3
    exe = Path(sys.executable).parent / "zv-dask"
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_ENDPOINT_URL=server.url, AWS_DEFAULT_REGION="us-east-1")
    r = subprocess.run([str(exe), "info", f"s3://{BUCKET}/points_2d.zarrvectors"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "points_2d.zarrvectors" in r.stdout and "2-D" in r.stdout


def test_cli_missing_bucket_is_one_line_in_cli_words(s3, capsys):
    from zv_dask.cli import main

    _, proxy = s3
    assert main(["info", "s3://no-such-bucket/x.zarrvectors", *_cli_s3_args(proxy)]) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith("zv-dask: error: ") and captured.out == ""
    assert "--storage-option" in err[0] and "storage_options" not in err[0]
    assert SECRET_KEY not in captured.err


def test_cli_retries_flag_sets_the_attempts_and_the_advice_names_it(s3, capsys):
    from zv_dask.cli import main

    _, proxy = s3
    proxy.reset()
    proxy.rules.append(Rule(r"/1/vertices/c/1/0/1$", 500))
    try:
        code = main(["stats", f"s3://{BUCKET}/points_small.zarrvectors", "--level", "1",
                     "--columns", "x", "--scheduler", "sync", "--retries", "1",
                     *_cli_s3_args(proxy)])
    finally:
        proxy.rules.clear()
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1
    assert "after 2 attempts" in err and "raise --retries" in err and "retries=" not in err
    assert len(proxy.requests("GET", "/1/vertices/c/1/0/1")) == 2


def test_cli_storage_option_values_are_checked(capsys):
    from zv_dask.cli import main

    with pytest.raises(SystemExit) as ei:
        main(["info", "--storage-option", "no-equals-sign"])
    assert ei.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        main(["info", "--retries", "-1"])
    assert ei.value.code == 2 and ">= 0" in capsys.readouterr().err
