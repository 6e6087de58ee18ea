"""Where ``to_zv`` may write: never over or into its own input, never inside an existing
store, never over files that are not a store, and one writer at a time (an exclusive
lock object in the target).  Real stores written by ``to_zv`` or the reference writer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask.errors import StoreExistsError, WriteInputError
from zv_dask.io.targets import LOCK_NAME
from zv_dask.write.sources import frame_sources
from writehelpers import files, reference, sample


def _df(n=600, seed=0, value=None):
    df = pd.DataFrame(np.random.default_rng(seed).uniform(0, 100, (n, 3)), columns=list("xyz"))
    df["v"] = np.float32(seed if value is None else value)
    return df


@pytest.fixture
def store(tmp_path):
    p = tmp_path / "pts.zarrvectors"
    zv_dask.to_zv(_df(), p, chunk_shape=25, levels=2)
    return p


# -- rule 1: the input is never destroyed ----------------------------------------------


@pytest.mark.parametrize("make", [
    lambda s: s.to_dask_dataframe(),
    lambda s: s.to_dask_dataframe(level=1),
    lambda s: s.to_dask_dataframe()[lambda d: d.x > 10].assign(w=1.0),
    lambda s: dd.concat([s.to_dask_dataframe(), dd.from_pandas(_df(5, 9), npartitions=1)]),
], ids=["frame", "level1", "filtered", "concat"])
def test_a_store_written_over_itself_is_refused_and_stays_readable(store, make):
    before = files(store)
    ddf = make(zv_dask.open_zv(store))
    with pytest.raises(WriteInputError, match="which the DataFrame reads") as ei:
        zv_dask.to_zv(ddf, store, chunk_shape=50, overwrite=True)
    assert str(store) in str(ei.value) and "write to a new path" in str(ei.value)
    assert files(store) == before
    assert zv_dask.open_zv(store).vertex_count(0) == 600


def test_a_target_inside_or_holding_the_input_store_is_refused(store):
    ddf = zv_dask.open_zv(store).to_dask_dataframe()
    before = files(store)
    with pytest.raises(WriteInputError, match="lies inside"):
        zv_dask.to_zv(ddf, store / "copy", chunk_shape=50)
    with pytest.raises(WriteInputError, match="holds"):
        zv_dask.to_zv(ddf, store.parent, chunk_shape=50, overwrite=True)
    assert files(store) == before and not (store / "copy").exists()


def test_another_store_as_input_is_written(store, tmp_path):
    ddf = zv_dask.open_zv(store).to_dask_dataframe()
    assert frame_sources(ddf) == [str(store)]
    out = zv_dask.to_zv(ddf, tmp_path / "rechunked.zarrvectors", chunk_shape=50)
    assert out.vertex_count(0) == 600 and zv_dask.open_zv(store).vertex_count(0) == 600


def test_parquet_and_csv_inputs_inside_the_target_are_refused(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    _df().to_parquet(d / "pts.parquet")
    _df(seed=1).to_csv(d / "a.csv", index=False)
    (d / "notes.txt").write_text("keep me")
    before = files(d)
    for ddf, src in [(dd.read_parquet(d / "pts.parquet"), "pts.parquet"),
                     (dd.read_parquet(str(d)), "data"),
                     (dd.read_csv(str(d / "*.csv")), "a.csv")]:
        assert any(s.endswith(src) for s in frame_sources(ddf)), frame_sources(ddf)
        with pytest.raises(WriteInputError, match="which the DataFrame reads"):
            zv_dask.to_zv(ddf, d, chunk_shape=50, overwrite=True)
    with pytest.raises(WriteInputError, match="the target is"):
        zv_dask.to_zv(dd.read_parquet(d / "pts.parquet"), d / "pts.parquet", chunk_shape=50,
                      overwrite=True)
    assert files(d) == before
    assert frame_sources(dd.from_pandas(_df(), npartitions=2)) == []  # nothing on disk


# -- rule 8: a path inside a store is not a new store ----------------------------------


@pytest.mark.parametrize("sub", ["0", "1", "new", "0/vertices", "0/vertex_attributes/new"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_path_inside_a_store_is_refused(store, sub, overwrite):
    before = files(store)
    with pytest.raises(StoreExistsError, match="lies inside a Zarr Vectors store") as ei:
        zv_dask.to_zv(_df(5), store / sub, chunk_shape=1, overwrite=overwrite)
    assert str(store) in str(ei.value) and "choose a path outside it" in str(ei.value)
    assert files(store) == before
    assert zv_dask.open_zv(store).levels == [0, 1]


def test_a_path_inside_a_reference_store_is_refused(tmp_path):
    pos, attrs, _ = sample(200, np.random.default_rng(3), multi=False, categorical=False)
    ref = reference(tmp_path / "ref.zarrvectors", pos, attrs, chunk_shape=(300.0,) * 3)
    before = files(ref)
    with pytest.raises(StoreExistsError, match="inside a Zarr Vectors store"):
        zv_dask.to_zv(_df(5), ref / "0" / "x", chunk_shape=1, overwrite=True)
    assert files(ref) == before


# -- overwrite=True replaces a store, never other files --------------------------------


def test_overwrite_refuses_foreign_files_and_a_file(tmp_path, store):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    (folder / "0").mkdir()
    with pytest.raises(StoreExistsError, match=r"not a Zarr Vectors store \(0, notes.txt\)"):
        zv_dask.to_zv(_df(), folder, chunk_shape=50, overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "pts.csv"
    a_file.write_text("x,y,z\n")
    with pytest.raises(StoreExistsError, match="is a file, not a store"):
        zv_dask.to_zv(_df(), a_file, chunk_shape=50, overwrite=True)
    assert a_file.read_text() == "x,y,z\n"
    # a holder of a store is not a store either
    listed = r"not a Zarr Vectors store \(folder, pts.csv, pts.zarrvectors\)"
    with pytest.raises(StoreExistsError, match=listed):
        zv_dask.to_zv(_df(), store.parent, chunk_shape=50, overwrite=True)
    assert zv_dask.open_zv(store).vertex_count(0) == 600


# -- rule 7: one writer at a time --------------------------------------------------------


def _values(path):
    return set(np.unique(zv_dask.open_zv(path).read()["attributes"]["v"]).tolist())


def test_a_second_writer_is_refused_while_the_first_writes(store):
    a = zv_dask.to_zv(_df(800, seed=1), store, chunk_shape=10, overwrite=True, compute=False)
    lock = json.loads((store / LOCK_NAME).read_text())  # A checked, cleared, holds the lock
    assert lock["pid"] == os.getpid() and lock["host"] == socket.gethostname()
    for overwrite in (True, False):
        with pytest.raises(StoreExistsError, match="another to_zv is writing here") as ei:
            zv_dask.to_zv(_df(700, seed=2), store, chunk_shape=10, overwrite=overwrite)
        assert lock["writer"] in str(ei.value) and LOCK_NAME in str(ei.value)
        assert ei.value.holder["writer"] == lock["writer"]
    with pytest.raises(StoreExistsError, match="inside a store being written"):
        zv_dask.to_zv(_df(5), store / "0", chunk_shape=1)
    summary = a.compute()
    assert summary["vertex_count"][0] == 800
    assert not (store / LOCK_NAME).exists()            # released with the root document
    s = zv_dask.open_zv(store)
    assert s.vertex_count(0) == 800 and s.levels == [0] and _values(store) == {1.0}
    # once A has finished, B replaces it whole
    zv_dask.to_zv(_df(700, seed=2), store, chunk_shape=10, overwrite=True)
    assert zv_dask.open_zv(store).vertex_count(0) == 700 and _values(store) == {2.0}
    assert LOCK_NAME not in files(store)


def test_a_writer_in_another_process_is_refused(store):
    a = zv_dask.to_zv(_df(800, seed=1), store, chunk_shape=10, overwrite=True, compute=False)
    child = textwrap.dedent("""
        import sys, numpy as np, pandas as pd, zv_dask
        df = pd.DataFrame(np.zeros((10, 3)), columns=list("xyz"))
        try:
            zv_dask.to_zv(df, sys.argv[1], chunk_shape=1, overwrite=True)
            print("ok")
        except zv_dask.StoreExistsError as e:
            print("refused:", e)
    """)
    r = subprocess.run([sys.executable, "-c", child, str(store)], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ))
    assert r.stdout.startswith("refused:") and "another to_zv is writing here" in r.stdout, \
        r.stdout + r.stderr
    a.compute()
    assert zv_dask.open_zv(store).vertex_count(0) == 800 and _values(store) == {1.0}


def test_a_stale_lock_is_taken_over_and_a_live_one_names_what_to_do(tmp_path):
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, timeout=60)
    target = tmp_path / "s.zarrvectors"
    target.mkdir()
    doc = {"writer": "dead", "host": socket.gethostname(), "pid": int(exited.stdout)}
    (target / LOCK_NAME).write_text(json.dumps(doc))
    assert zv_dask.to_zv(_df(), target, chunk_shape=50).vertex_count(0) == 600
    assert not (target / LOCK_NAME).exists()
    # a lock of another host cannot be judged: refused, saying which file to delete
    (target / LOCK_NAME).write_text(json.dumps(dict(doc, host="elsewhere", writer="w2")))
    with pytest.raises(StoreExistsError, match="if that write no longer runs, delete") as ei:
        zv_dask.to_zv(_df(), target, chunk_shape=50, overwrite=True)
    assert str(target / LOCK_NAME) in str(ei.value)
    assert zv_dask.open_zv(target).vertex_count(0) == 600  # untouched


def _boom(s):
    if len(s):
        raise RuntimeError("attribute source failed")
    return s


def test_a_failed_write_releases_its_lock(tmp_path):
    target = tmp_path / "s.zarrvectors"
    ddf = dd.from_pandas(_df(), npartitions=2)
    ddf["w"] = ddf.x.map_partitions(_boom, meta=("w", "f8"))  # read by the write tasks only
    with pytest.raises(RuntimeError, match="attribute source failed"):
        zv_dask.to_zv(ddf, target, chunk_shape=50)
    assert not (target / LOCK_NAME).exists()
    assert zv_dask.to_zv(_df(), target, chunk_shape=50, overwrite=True).vertex_count(0) == 600


# -- the same on S3 (moto_server): the lock is a conditional PUT -----------------------


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs")
    from s3server import ACCESS_KEY, SECRET_KEY, MotoServer

    server = MotoServer()
    try:
        server.client().create_bucket(Bucket="zv-targets")
        yield server, {"endpoint_url": server.url, "key": ACCESS_KEY, "secret": SECRET_KEY,
                       "skip_instance_cache": True}
    finally:
        server.stop()


def test_s3_one_writer_at_a_time_and_no_store_inside_a_store(s3):
    server, opts = s3
    url = "s3://zv-targets/pts.zarrvectors"
    zv_dask.to_zv(_df(300, seed=3), url, chunk_shape=50, storage_options=opts)
    a = zv_dask.to_zv(_df(800, seed=1), url, chunk_shape=10, overwrite=True, compute=False,
                      storage_options=opts)
    c = server.client()
    held = json.loads(c.get_object(Bucket="zv-targets",
                                   Key=f"pts.zarrvectors/{LOCK_NAME}")["Body"].read())
    with pytest.raises(StoreExistsError, match="another to_zv is writing here") as ei:
        zv_dask.to_zv(_df(700, seed=2), url, chunk_shape=10, overwrite=True,
                      storage_options=opts)
    assert ei.value.holder["writer"] == held["writer"]
    a.compute()
    keys = [o["Key"] for o in c.list_objects_v2(Bucket="zv-targets",
                                                Prefix="pts.zarrvectors/")["Contents"]]
    assert f"pts.zarrvectors/{LOCK_NAME}" not in keys
    s = zv_dask.open_zv(url, storage_options=opts)
    assert s.vertex_count(0) == 800
    assert set(np.unique(s.read()["attributes"]["v"]).tolist()) == {1.0}
    with pytest.raises(StoreExistsError, match="inside a Zarr Vectors store"):
        zv_dask.to_zv(_df(5), url + "/0", chunk_shape=1, overwrite=True, storage_options=opts)
    # a lock put by another host's writer: the conditional PUT fails, the write is refused
    c.put_object(Bucket="zv-targets", Key=f"other.zarrvectors/{LOCK_NAME}",
                 Body=json.dumps({"writer": "w9", "host": "elsewhere", "pid": 1}).encode())
    with pytest.raises(StoreExistsError, match="writer w9"):
        zv_dask.to_zv(_df(), "s3://zv-targets/other.zarrvectors", chunk_shape=50,
                      storage_options=opts)
