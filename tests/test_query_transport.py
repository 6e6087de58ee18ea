"""Queries travel and count cheaply: plain ``pickle`` of frames, filtered queries, their
optimized expressions and graphs (no special serializer); partitions kept as arrays on
large metadata-only levels; ``len()`` of a filtered frame on S3 sizes the chunks inside
the query box from one LIST of the vertices array, with no HEAD."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_queries import assert_same, eager_frame, kept_cells

import zv_dask
from zv_dask._expr import ZVFrame


@pytest.mark.parametrize("name,kw", [
    ("points_pyramid", {}),
    ("points_2d", {"chunks_per_partition": 2}),
    ("streamlines", {"chunks_per_partition": "auto", "partition_rows": 500}),
    ("points_2d", {"object_ids": [25, 45]}),
])
def test_plain_pickle_of_frames_queries_and_graphs(store_path, name, kw):
    store = zv_dask.open_zv(store_path(name))
    ddf = store.to_dask_dataframe(level=0, **kw)
    full = ddf.compute(scheduler="sync")
    cut = float(full.x.median())
    q = ddf[(ddf.x > cut) & (ddf.y <= float(full.y.max()))]
    want = full[(full.x > cut) & (full.y <= float(full.y.max()))]
    assert 0 < len(want) < len(full)
    for frame, expected in [(ddf, full), (q, want)]:
        back = pickle.loads(pickle.dumps(frame))
        assert back._name == frame._name
        assert_same(back.compute(scheduler="sync"), expected)
        opt = pickle.loads(pickle.dumps(frame.optimize()))
        assert opt.npartitions == frame.optimize().npartitions
        assert_same(opt.compute(scheduler="sync"), expected)
    graph = pickle.loads(pickle.dumps(dict(q.optimize().__dask_graph__())))
    assert len(graph) == q.optimize().npartitions
    parts = dask_get(graph, q.optimize().__dask_keys__())
    assert_same(pd.concat(parts), want)
    assert len(pickle.loads(pickle.dumps(q))) == len(want)


def dask_get(graph, keys):
    from dask.local import get_sync

    return get_sync(graph, keys)


def test_plain_pickle_across_processes(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    ddf = store.to_dask_dataframe(level=0)
    full = eager_frame(store, 0)
    q = ddf[ddf.z > 900][["x", "intensity"]]
    # the process pool pickles each task with the standard pickle
    import dask

    with dask.config.set({"multiprocessing.context": "spawn"}):
        got = q.compute(scheduler="processes", num_workers=2)
    assert_same(got, full[full.z > 900][["x", "intensity"]])


def _metadata_only_level(src: Path, dst: Path, side: int) -> int:
    """A copy of ``src``'s zarr.json documents whose level 0 is a full ``side**3`` grid
    of non-empty chunks (origin unchanged), without chunk blobs."""
    for f in src.rglob("zarr.json"):
        if f.relative_to(src).parts[0] in ("0",) or len(f.relative_to(src).parts) == 1:
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst / f.relative_to(src))
    root = json.loads((dst / "zarr.json").read_text())
    ms = root["attributes"].get("multiscales")
    if ms:
        ms[0]["datasets"] = ms[0]["datasets"][:1]
    nodes = root["attributes"].get("ome", {}).get("nodes")
    if nodes:
        root["attributes"]["ome"]["nodes"] = nodes[:1]
    (dst / "zarr.json").write_text(json.dumps(root))
    keys = [f"{i}.{j}.{k}" for i in range(side) for j in range(side) for k in range(side)]
    for f in (dst / "0").rglob("zarr.json"):
        doc = json.loads(f.read_text())
        if doc.get("node_type") == "array" and "nonempty_chunks" in doc.get("attributes", {}):
            doc["shape"] = [side] * 3
            doc["attributes"]["nonempty_chunks"] = keys
            doc["attributes"].pop("chunk_grid_origin", None)
            f.write_text(json.dumps(doc))
    return side ** 3


def test_pruning_a_large_metadata_only_level(store_path, tmp_path, counting):
    # 16**3 chunks, one partition each, then two chunks a partition
    src = Path(store_path("points_pyramid"))
    dst = tmp_path / "big.zarrvectors"
    n = _metadata_only_level(src, dst, 16)
    store = zv_dask.open_zv("zvcount://" + str(dst))
    cs = store.metadata.levels[0].chunk_shape.astype(float)
    mid = 8 * cs
    counting.clear()
    for cpp, total in [(1, n), (2, n // 2)]:
        ddf = store.to_dask_dataframe(level=0, chunks_per_partition=cpp)
        assert ddf.npartitions == total
        q = ddf[(ddf.x > mid[0]) & (ddf.y > mid[1]) & (ddf.z > mid[2])]
        kept = kept_cells(q)
        assert kept == {(i, j, k) for i in range(8, 16) for j in range(8, 16)
                        for k in range(8, 16)}
        assert q.optimize().npartitions == 8 ** 3 // cpp
        frame = [e for e in q.optimize().expr.walk() if isinstance(e, ZVFrame)][0]
        lay = frame._specs
        assert isinstance(lay.cells, np.ndarray) and len(lay) == 8 ** 3 // cpp
        # a different bound is a different query, the same one the same name
        again = ddf[(ddf.x > mid[0]) & (ddf.y > mid[1]) & (ddf.z > mid[2])]
        other = ddf[(ddf.x > mid[0]) & (ddf.y > mid[1]) & (ddf.z > mid[2] + 1)]
        assert again.optimize()._name == q.optimize()._name != other.optimize()._name
    assert counting == []  # planning read no chunk, listed and statted nothing


# ------------------------------------------------------------------- object store

BUCKET = "zv-query-len"


@pytest.fixture(scope="module")
def s3(store_path):
    pytest.importorskip("s3fs")
    from s3server import FaultProxy, MotoServer

    server = MotoServer()
    proxy = FaultProxy(server.port)
    try:
        server.client().create_bucket(Bucket=BUCKET)
        server.upload(BUCKET, store_path("points_2d"), "points_2d.zarrvectors")
        yield proxy
    finally:
        proxy.stop()
        server.stop()


def test_s3_len_of_a_filter_sizes_inside_chunks_from_one_list(s3, store_path):
    from s3server import ACCESS_KEY, SECRET_KEY

    proxy = s3
    truth = zv_dask.open_zv(store_path("points_2d"))
    full = eager_frame(truth, 0)
    store = zv_dask.open_zv(f"s3://{BUCKET}/points_2d.zarrvectors", storage_options={
        "endpoint_url": proxy.url, "key": ACCESS_KEY, "secret": SECRET_KEY,
        "skip_instance_cache": True})
    ddf = store.to_dask_dataframe(level=0)
    cs = float(store.metadata.levels[0].chunk_shape[0])
    cells = np.asarray(store.chunks(0))
    a = (np.median(cells[:, 0]) + 0.5) * cs  # mid-chunk: that column is the boundary
    q = ddf[ddf.x > a]
    planned = kept_cells(q)
    proxy.reset()
    assert len(q) == int((full.x > a).sum())
    reqs = proxy.requests()
    assert not proxy.requests("HEAD")
    lists = [r for r in reqs if "list-type" in r]
    assert len(lists) == 1 and "0%2Fvertices" in lists[0], lists  # one LIST page
    reads = [r for r in reqs if "list-type" not in r]
    assert all(r.startswith("GET ") and "/0/vertices/c/" in r for r in reads), reads
    origin = store.metadata.levels[0].presence.origin  # keys are grid indices
    keys = {tuple(int(x) + o for x, o in zip(
        re.split(r"[/ ?]", r.split("/vertices/c/")[1])[:2], origin)) for r in reads}
    assert keys and len(keys) < len(planned)  # the inside chunks were not read
    assert {k[0] for k in keys} == {min(c[0] for c in planned)}  # the boundary column
