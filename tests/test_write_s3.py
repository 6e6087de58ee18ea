"""to_zv onto a real S3-compatible server (moto_server on 127.0.0.1) through the fault
proxy: the same bytes as a local write, one PUT per object and no HEAD before PUTs,
the root document last, transient failures retried, persistent ones typed."""

from __future__ import annotations

import json

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


def test_convert_like_reaches_source_like_and_out_on_s3_with_cli_options(s3, tmp_path,
                                                                          capsys):
    """``--storage-option``/``--retries`` apply to SOURCE, --like and OUT: the copy made
    on S3 is the example store, object for object."""
    from pathlib import Path

    from zv_dask.cli import main

    server, proxy = s3
    example = zv_dask.example_store("points")
    rows = tmp_path / "rows"
    assert main(["export", example, str(rows), "--scheduler", "sync"]) == 0
    server.upload(BUCKET, rows, "cli/rows")
    server.upload(BUCKET, Path(example), "cli/like/example.zarrvectors")
    opts = ["--storage-option", f"endpoint_url={proxy.url}", "--storage-option",
            f"key={ACCESS_KEY}", "--storage-option", f"secret={SECRET_KEY}",
            "--storage-option", "skip_instance_cache=true", "--retries", "2"]
    capsys.readouterr()
    rc = main(["convert", f"s3://{BUCKET}/cli/rows", f"s3://{BUCKET}/cli/out/example.zarrvectors",
               "--like", f"s3://{BUCKET}/cli/like/example.zarrvectors", "--scheduler", "sync",
               *opts])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "level 2: 63 vertices" in captured.out and SECRET_KEY not in captured.out
    client = server.client()
    prefix = "cli/out/example.zarrvectors/"
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=prefix) for o in page.get("Contents", [])]
    local = files(example)
    assert sorted(k[len(prefix):] for k in keys) == sorted(local)
    for k in keys:
        got, want = client.get_object(Bucket=BUCKET, Key=k)["Body"].read(), local[k[len(prefix):]]
        if k.endswith("zarr.json"):  # documents: equal as JSON (the indentation differs)
            got, want = json.loads(got), json.loads(want)
        assert got == want, k
