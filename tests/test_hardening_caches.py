"""A store rewritten at the same path and opened again is read as it is now: no
process cache (owner tables, worker-side locations, listing caches) outlives an open."""

from __future__ import annotations

import cloudpickle as pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import zv_dask
from zv_dask.io import location as _store
from zv_dask.read import level as _read

sys.path.insert(0, str(Path(__file__).parent))

POS = np.array([[100.0, 100.0, 100.0], [200.0, 200.0, 200.0], [300.0, 300.0, 300.0],
                [700.0, 700.0, 700.0]], np.float32)


def write(path: Path, ids, extra: bool = False):
    """Four points; ``extra=True`` adds the attribute ``extra``."""
    from zarr_vectors import building as B

    attrs = {"w": np.asarray(ids, np.float32) * 10}
    if extra:
        attrs["extra"] = np.arange(len(ids), dtype=np.int32) + 100
    if path.exists():
        shutil.rmtree(path)
    B.write_points(str(path), POS, chunk_shape=(500.0,) * 3, bin_shape=(250.0,) * 3,
                   bounds=([0.0] * 3, [1000.0] * 3), vertex_attributes=attrs,
                   object_ids=np.asarray(ids))


def ids_of(store) -> list:
    return store.read()["object_ids"].tolist()


def test_rewrite_then_reopen_sees_the_new_store(tmp_path):
    path = tmp_path / "s.zarrvectors"
    write(path, [0, 1, 1, 2])
    first = zv_dask.open_zv(path)
    assert ids_of(first) == [0, 1, 1, 2]
    assert sorted(first.to_dask_dataframe().compute(scheduler="threads")["object_id"]) == [0, 1, 1, 2]
    worker_side = pickle.loads(pickle.dumps(first._reader(0)))  # as a worker unpickles it
    assert worker_side.owner_table().oid.tolist() == [0, 1, 2]

    write(path, [5, 7, 7, 9], extra=True)  # the first store object stays open
    second = zv_dask.open_zv(path)
    assert ids_of(second) == [5, 7, 7, 9]
    df = second.to_dask_dataframe().compute(scheduler="threads")
    assert sorted(df["object_id"]) == [5, 7, 7, 9]
    assert df["extra"].tolist() == [100, 101, 102, 103]
    assert sorted(second.attributes_at(0)) == ["extra", "w"]
    again = pickle.loads(pickle.dumps(second._reader(0)))
    assert again.location is not worker_side.location
    assert again.owner_table().oid.tolist() == [5, 7, 9]
    assert second.objects().compute().index.tolist() == [5, 7, 9]


def test_close_drops_the_process_caches(tmp_path):
    path = tmp_path / "s.zarrvectors"
    write(path, [0, 1, 1, 2])
    store = zv_dask.open_zv(path)
    ids_of(store)
    pickle.loads(pickle.dumps(store._reader(0))).owner_table()
    oid = store._loc.open_id
    assert any(k[1] == oid for k in _read._OWNER_TABLES)
    assert any(v.open_id == oid for v in _store._SHARED.values())
    store.close()
    assert not any(k[1] == oid for k in _read._OWNER_TABLES)
    assert not any(v.open_id == oid for v in _store._SHARED.values())


def test_worker_processes_see_the_rewritten_store(tmp_path):
    from distributed import Client, LocalCluster

    path = tmp_path / "s.zarrvectors"
    write(path, [0, 1, 1, 2])
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster):
        a = zv_dask.open_zv(path).to_dask_dataframe()["object_id"]
        assert sorted(a.compute()) == [0, 1, 1, 2]
        write(path, [5, 7, 7, 9])
        b = zv_dask.open_zv(path).to_dask_dataframe()["object_id"]
        assert sorted(b.compute()) == [5, 7, 7, 9]


def test_s3_reopen_sees_objects_added_since_the_first_open(tmp_path):
    pytest.importorskip("s3fs")
    from s3server import ACCESS_KEY, SECRET_KEY, MotoServer

    server = MotoServer()
    try:
        server.client().create_bucket(Bucket="zv-stale")
        a, b = tmp_path / "a.zarrvectors", tmp_path / "b.zarrvectors"
        write(a, [0, 1, 1, 2])
        write(b, [5, 7, 7, 9], extra=True)
        server.upload("zv-stale", a, "s.zarrvectors")
        # what users pass: fsspec's shared filesystem instance is allowed
        opts = {"endpoint_url": server.url, "key": ACCESS_KEY, "secret": SECRET_KEY}
        url = "s3://zv-stale/s.zarrvectors"
        first = zv_dask.open_zv(url, storage_options=opts)
        assert sorted(first.attributes_at(0)) == ["w"]
        assert ids_of(first) == [0, 1, 1, 2]
        server.upload("zv-stale", b, "s.zarrvectors")  # rewritten in place, one file added
        second = zv_dask.open_zv(url, storage_options=opts)
        assert sorted(second.attributes_at(0)) == ["extra", "w"]
        assert second.read()["attributes"]["extra"].tolist() == [100, 101, 102, 103]
        assert ids_of(second) == [5, 7, 7, 9]
        # the same with fsspec's shared instance asked for explicitly
        shared = dict(opts, skip_instance_cache=False)
        url2 = "s3://zv-stale/t.zarrvectors"
        server.upload("zv-stale", a, "t.zarrvectors")
        assert sorted(zv_dask.open_zv(url2, storage_options=shared).attributes_at(0)) == ["w"]
        server.upload("zv-stale", b, "t.zarrvectors")
        third = zv_dask.open_zv(url2, storage_options=shared)
        assert sorted(third.attributes_at(0)) == ["extra", "w"]
        assert ids_of(third) == [5, 7, 7, 9]
    finally:
        server.stop()
