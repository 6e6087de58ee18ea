"""to_zv onto a real S3-compatible server (moto_server on 127.0.0.1) through the fault
proxy: the same bytes as a local write, one PUT per object and no HEAD before PUTs,
the root document last, transient failures retried, persistent ones typed."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pytest

import zv_dask
from zv_dask.errors import IncompleteStoreError, StoreWriteError
from s3server import ACCESS_KEY, SECRET_KEY, FaultProxy, MotoServer, Rule
from writehelpers import files, sample

BUCKET = "zv-write"


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs")
    server = MotoServer()
    proxy = FaultProxy(server.port)
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server, proxy
    finally:
        proxy.stop()
        server.stop()


def _options(proxy):
    return {"endpoint_url": proxy.url, "key": ACCESS_KEY, "secret": SECRET_KEY,
            "skip_instance_cache": True}


def _df():
    _, _, df = sample(3000, np.random.default_rng(11), lo=0, hi=1999, multi=False)
    return dd.from_pandas(df, npartitions=3)


def _objects(server, prefix):
    c = server.client()
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            body = c.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            out[o["Key"][len(prefix) + 1:]] = body
    return out


def test_s3_write_equals_local_with_one_put_per_object_and_no_head(s3, tmp_path):
    server, proxy = s3
    local = tmp_path / "pts.zarrvectors"
    zv_dask.to_zv(_df(), local, chunk_shape=1000, bin_shape=250, levels=2)
    proxy.reset()
    url = f"s3://{BUCKET}/pts.zarrvectors"
    store = zv_dask.to_zv(_df(), url, chunk_shape=1000, bin_shape=250, levels=2,
                          storage_options=_options(proxy))
    puts = proxy.requests("PUT")
    # the first PUT takes the write lock; it is deleted once the root document is written
    assert ".zv-write.lock" in puts[0] and len(proxy.requests("PUT", ".zv-write.lock")) == 1
    assert proxy.requests("DELETE", ".zv-write.lock") and \
        proxy.log.index(proxy.requests("DELETE", ".zv-write.lock")[0]) > proxy.log.index(puts[-1])
    puts = puts[1:]
    want = files(local)
    from urllib.parse import unquote

    assert sorted(unquote(p.split(" ", 1)[1].split("?")[0]).split("/pts.zarrvectors/", 1)[1]
                  for p in puts) == sorted(want)           # exactly one PUT per object
    assert puts[-1].split("?")[0].endswith("/pts.zarrvectors/zarr.json")  # root last
    heads = proxy.requests("HEAD")
    assert not [h for h in heads if "/c/" in h or h.endswith("zarr.json")], heads
    assert _objects(server, "pts.zarrvectors") == want      # same bytes as the local write
    assert store.vertex_count(0) == 3000
    local_read = zv_dask.open_zv(local).read()
    np.testing.assert_array_equal(store.read()["positions"], local_read["positions"])


def test_s3_transient_put_failures_are_retried(s3, tmp_path):
    server, proxy = s3
    proxy.reset()
    proxy.rules.append(Rule(r"^PUT .*/retry\.zarrvectors/0/vertices/c/", 503, times=3))
    store = zv_dask.to_zv(_df(), f"s3://{BUCKET}/retry.zarrvectors", chunk_shape=1000,
                          storage_options=_options(proxy))
    assert proxy.rules[0].hits == 3
    assert store.vertex_count(0) == 3000
    local = tmp_path / "retry.zarrvectors"
    zv_dask.to_zv(_df(), local, chunk_shape=1000)
    assert _objects(server, "retry.zarrvectors") == files(local)


def test_s3_persistent_put_failure_is_typed_and_leaves_an_incomplete_store(s3):
    server, proxy = s3
    proxy.reset()
    proxy.rules.append(Rule(r"^PUT .*/broken\.zarrvectors/0/vertices/c/", 500))
    url = f"s3://{BUCKET}/broken.zarrvectors"
    with pytest.raises(StoreWriteError, match="vertices/c/") as ei:
        zv_dask.to_zv(_df(), url, chunk_shape=1000, storage_options=_options(proxy))
    assert SECRET_KEY not in str(ei.value)
    proxy.reset()
    left = _objects(server, "broken.zarrvectors")
    assert left and "zarr.json" not in left
    with pytest.raises(IncompleteStoreError):
        zv_dask.open_zv(url, storage_options=_options(proxy))
