"""to_zv's ``compressor`` and ``shard_shape`` against the reference writer: the same
files and bytes (decoded content where a codec stamps the time), accepted by its
validator, read back exactly by its reader and by ours; bad options refused before
anything is written."""

from __future__ import annotations

import json

import dask.dataframe as dd
import numpy as np
import pytest
import zarr
from zarr_vectors.types.points import read_points

import zv_dask
from zv_dask.cli import main
from zv_dask.errors import WriteInputError
from zv_dask.write import plan as P
from zv_dask.write.codecs import group_count, group_keys
from writehelpers import (assert_same_store, assert_valid, files, frame, reference, rows_sorted,
                          sample)

GZIP = [{"name": "gzip", "configuration": {"level": 5}}]


def _pair(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "ours").mkdir()
    return tmp_path / "ref" / "pts.zarrvectors", tmp_path / "ours" / "pts.zarrvectors"


def _cell_bytes(root, rel):
    """A file's content decoded by zarr, cell by cell (shards hold several)."""
    array, _, idx = rel.partition("/c/")
    arr = zarr.open_array(str(root / array), mode="r")
    outer = arr.shards or arr.chunks
    lo = [int(i) * s for i, s in zip(idx.split("/"), outer)]
    sel = tuple(slice(a, min(a + s, n)) for a, s, n in zip(lo, outer, arr.shape))
    return [bytes(v) for v in np.asarray(arr[sel], dtype=object).ravel()]


def assert_same_content(ref, ours):
    """Same files and documents; blobs equal as bytes or, where the bytes differ (gzip
    stamps the time), equal once zarr decodes them."""
    a, b = files(ref), files(ours)
    assert sorted(a) == sorted(b)
    for k in a:
        if k.endswith("zarr.json"):
            assert json.loads(a[k]) == json.loads(b[k]), k
        elif a[k] != b[k]:
            # only gzip may differ (its header holds the time), and only in that header
            assert "gzip" in str(json.loads(a[k.partition("/c/")[0] + "/zarr.json"])), k
            assert len(a[k]) == len(b[k]), k
            assert _cell_bytes(ref, k) == _cell_bytes(ours, k), k


def _check_reads(ours, pos, attrs, levels):
    """The reference reader returns the input rows; our reader agrees with it."""
    got = read_points(str(ours), level=0, attribute_names=list(attrs))
    scalar = {k: v for k, v in attrs.items() if np.asarray(v).ndim == 1}
    np.testing.assert_array_equal(
        rows_sorted(got["positions"], {k: got["vertex_attributes"][k] for k in scalar}),
        rows_sorted(pos.astype(np.float32), scalar))
    store = zv_dask.open_zv(ours)
    for level in range(levels):
        mine = store.read(level=level)
        theirs = read_points(str(ours), level=level,
                             attribute_names=list(attrs) if level == 0 else None)
        np.testing.assert_array_equal(mine["positions"], theirs["positions"])
        if level == 0:
            for k in attrs:
                np.testing.assert_array_equal(np.asarray(mine["attributes"][k]),
                                              np.asarray(theirs["vertex_attributes"][k]))


@pytest.mark.parametrize("compressor", [
    None, "none", False, "zstd", "blosc", [], GZIP,
    [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 3, "checksum": True}}],
], ids=["None", "none", "False", "zstd", "blosc", "empty", "gzip", "bytes+zstd3"])
def test_every_compressor_value_writes_what_the_reference_writes(tmp_path, compressor):
    rng = np.random.default_rng(40)
    pos, attrs, df = sample(400, rng, multi=True)
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, chunk_shape=(300, 300, 300), compressor=compressor)
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3), ours, chunk_shape=300,
                  compressor=compressor)
    if compressor == GZIP:
        assert_same_content(ref, ours)
    else:
        assert_same_store(ref, ours)
    codecs = json.loads(files(ours)["0/vertices/zarr.json"])["codecs"]
    assert [c["name"] for c in codecs][1:] == (
        [] if compressor in (None, "none", False, []) else
        ["zstd"] if compressor in ("zstd",) or isinstance(compressor, list) and
        compressor[-1]["name"] == "zstd" else [compressor if isinstance(compressor, str)
                                                else "gzip"])
    assert_valid(ours)
    _check_reads(ours, pos, attrs, 1)


def test_blosc_pyramid_compresses_level_zero_only(tmp_path):
    rng = np.random.default_rng(41)
    pos, attrs, df = sample(600, rng, multi=False)
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=3, chunk_shape=(250, 250, 250), compressor="blosc")
    zv_dask.to_zv(dd.from_pandas(df, npartitions=4), ours, chunk_shape=250, levels=3,
                  compressor="blosc")
    assert_same_store(ref, ours)
    docs = files(ours)
    assert json.loads(docs["0/vertex_fragments/zarr.json"])["codecs"][1]["name"] == "blosc"
    assert len(json.loads(docs["1/vertices/zarr.json"])["codecs"]) == 1
    assert_valid(ours)
    _check_reads(ours, pos, attrs, 3)


@pytest.mark.parametrize("shard,levels,compressor,lo,nparts", [
    (2, 3, "zstd", 0.0, 5),        # blocks of 4 chunks, shards of 2: groups of 4
    (3, 1, None, -300.0, 4),       # single level, negative origin: a group is a shard
    (3, 3, None, -300.0, 3),       # blocks of 4, shards of 3: groups where they meet
    ((2, 3, 2), 2, GZIP, -450.0, 4),
], ids=["s2-l3-zstd", "s3-l1-neg", "s3-l3-neg", "s232-l2-gzip-neg"])
def test_sharded_stores_match_the_reference(tmp_path, shard, levels, compressor, lo, nparts):
    rng = np.random.default_rng(42)
    # 5-6 chunks an axis: several shards and groups, and the reference's sharded reads
    # and validation (seconds per shard) stay short
    pos, attrs, df = sample(300, rng, lo=lo, hi=lo + 1000, multi=True)
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=levels, chunk_shape=(200, 200, 200),
              compressor=compressor, shard_shape=shard)
    zv_dask.to_zv(dd.from_pandas(df, npartitions=nparts), ours, chunk_shape=200,
                  levels=levels, compressor=compressor, shard_shape=shard)
    # a shard written by two tasks would lose the cells of one of them: not the same files
    assert_same_content(ref, ours)
    docs = files(ours)
    v0 = json.loads(docs["0/vertices/zarr.json"])
    outer = [shard] * 3 if isinstance(shard, int) else list(shard)
    assert v0["chunk_grid"]["configuration"]["chunk_shape"] == outer
    assert v0["codecs"][0]["name"] == "sharding_indexed"
    assert "." in v0["attributes"]["nonempty_chunks"][0]  # inner cells still listed
    if lo < 0:
        assert min(v0["attributes"]["chunk_grid_origin"]) < 0
    for lv in range(1, levels):  # coarse levels are neither sharded nor compressed
        d = json.loads(docs[f"{lv}/vertices/zarr.json"])
        assert d["codecs"] == [{"name": "vlen-bytes", "configuration": {}}]
    assert_valid(ours)
    _check_reads(ours, pos, attrs, levels)


def test_two_dimensional_shards_on_chunk_faces(tmp_path):
    g = np.arange(-60, 61, 10, dtype=np.float64)
    pos = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    attrs = {"w": np.arange(len(pos), dtype=np.int64)}
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=2, chunk_shape=(20, 20), bin_shape=(10, 10),
              shard_shape=2)
    zv_dask.to_zv(dd.from_pandas(frame(pos, attrs), npartitions=6), ours, chunk_shape=20,
                  bin_shape=10, levels=2, shard_shape=2)
    assert_same_store(ref, ours)
    assert_valid(ours)
    _check_reads(ours, pos, attrs, 2)


def test_groups_hold_whole_shards_and_whole_blocks():
    # every chunk of a shard, and every chunk of a pyramid block, gets one group key
    for shard, levels, lo in [(2, 3, 0.0), (3, 3, -500.0), (3, 2, -300.0), (4, 1, -70.0),
                              (2, 2, -100.0)]:
        spec = P.WriteSpec(store_name="t", axes=("x", "y"), chunk_shape=(100.0, 100.0),
                           bin_shape=None, bounds=((lo, lo), (lo + 2000, lo + 1500)),
                           levels=levels, shard_shape=(shard, shard))
        origin, shape = spec.grid()
        ij = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
        chunks = ij.reshape(-1, 2) + np.asarray(origin)
        pos = (chunks + 0.5) * 100.0
        keys = group_keys(pos, spec)
        assert keys.min() >= 0 and keys.max() < group_count(spec)
        for owner in ((chunks - np.asarray(origin)) // shard,
                      chunks // np.asarray(spec.block_chunks)):
            _, inv = np.unique(owner, axis=0, return_inverse=True)
            for g in range(inv.max() + 1):
                assert len(set(keys[inv.reshape(-1) == g])) == 1, (shard, levels, lo)
        if levels == 1 or lo == 0.0:  # shards and blocks meet: many groups, not one
            assert len(set(keys)) > 1


@pytest.mark.parametrize("kw,words", [
    (dict(compressor="lz4"), "not supported"),
    (dict(compressor=[{"level": 5}]), "'name' key"),
    (dict(compressor=[{"name": "gzip"}]), "not usable by zarr"),
    (dict(compressor=[{"name": "no-such-codec", "configuration": {}}]), "not usable"),
    (dict(compressor=7), "not supported"),
    (dict(shard_shape=0), "positive int"),
    (dict(shard_shape=(2, 2)), "3 positive ints"),
    (dict(shard_shape=True), "positive int"),
    (dict(shard_shape=2.5), "positive int"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, kw, words):
    _, _, df = sample(50, np.random.default_rng(43), categorical=False, multi=False)
    target = tmp_path / "never.zarrvectors"
    with pytest.raises(WriteInputError, match=words) as ei:
        zv_dask.to_zv(df, target, chunk_shape=300, **kw)
    assert str(target) in str(ei.value) or target.name in str(ei.value)
    assert not target.exists()


def test_convert_cli_compressor_and_shard_shape(tmp_path, capsys):
    _, _, df = sample(700, np.random.default_rng(44), multi=False)
    src = tmp_path / "src.parquet"
    df.to_parquet(src)
    for d in ("direct", "cli", "cli_json"):
        (tmp_path / d).mkdir()
    direct = tmp_path / "direct" / "pts.zarrvectors"
    cli = tmp_path / "cli" / "pts.zarrvectors"
    zv_dask.to_zv(df, direct, chunk_shape=250, levels=2, compressor="blosc", shard_shape=2)
    rc = main(["convert", str(src), str(cli), "--chunk-shape", "250", "--levels", "2",
               "--compressor", "blosc", "--shard-shape", "2", "--scheduler", "sync"])
    assert rc == 0, capsys.readouterr()
    assert files(cli) == files(direct)  # the same bytes as to_zv (validated elsewhere)
    # a JSON codec list and one shard value per axis
    cli_json = tmp_path / "cli_json" / "pts.zarrvectors"
    rc = main(["convert", str(src), str(cli_json), "--chunk-shape", "250",
               "--compressor", json.dumps([{"name": "zstd", "configuration": {"level": 3}}]),
               "--shard-shape", "2", "3", "1", "--scheduler", "sync"])
    assert rc == 0, capsys.readouterr()
    doc = json.loads(files(cli_json)["0/vertices/zarr.json"])
    assert doc["chunk_grid"]["configuration"]["chunk_shape"] == [2, 3, 1]
    inner = doc["codecs"][0]["configuration"]["codecs"]
    assert inner[1] == {"name": "zstd", "configuration": {"level": 3, "checksum": False}}
    assert_valid(cli_json)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["convert", str(src), str(tmp_path / "x.zarrvectors"), "--chunk-shape", "250",
              "--compressor", "lz4"])
    assert "--compressor" in capsys.readouterr().err


def test_sharded_write_to_s3_puts_each_shard_once_without_head(tmp_path):
    pytest.importorskip("s3fs")
    from urllib.parse import unquote

    from s3server import ACCESS_KEY, SECRET_KEY, FaultProxy, MotoServer

    server = MotoServer()
    proxy = FaultProxy(server.port)
    try:
        server.client().create_bucket(Bucket="zv-shards")
        # 4 chunks an axis: 8 level-0 shards, ~100 objects (moto takes ~10 ms each)
        _, _, df = sample(300, np.random.default_rng(45), lo=0, hi=999, multi=False)
        kw = dict(chunk_shape=250, levels=2, compressor="zstd", shard_shape=2)
        local = tmp_path / "pts.zarrvectors"
        zv_dask.to_zv(dd.from_pandas(df, npartitions=3), local, **kw)
        proxy.reset()
        opts = {"endpoint_url": proxy.url, "key": ACCESS_KEY, "secret": SECRET_KEY,
                "skip_instance_cache": True}
        store = zv_dask.to_zv(dd.from_pandas(df, npartitions=3), "s3://zv-shards/pts.zarrvectors",
                              storage_options=opts, **kw)
        puts = proxy.requests("PUT")
        assert ".zv-write.lock" in puts[0]  # the write lock, taken first
        puts = puts[1:]
        keys = sorted(unquote(p.split(" ", 1)[1].split("?")[0]).split("/pts.zarrvectors/", 1)[1]
                      for p in puts)
        want = files(local)
        assert keys == sorted(want)            # one PUT per object: each shard put once
        assert any(k.startswith("0/vertices/c/") for k in keys)
        assert puts[-1].split("?")[0].endswith("/pts.zarrvectors/zarr.json")  # root last
        heads = proxy.requests("HEAD")
        assert not [h for h in heads if "/c/" in h or h.endswith("zarr.json")], heads
        c = server.client()
        for k in want:
            body = c.get_object(Bucket="zv-shards", Key=f"pts.zarrvectors/{k}")["Body"].read()
            assert body == want[k], k
        np.testing.assert_array_equal(store.read()["positions"],
                                      zv_dask.open_zv(local).read()["positions"])
    finally:
        proxy.stop()
        server.stop()


def test_sharded_blosc_write_on_a_local_cluster_matches_the_reference(tmp_path):
    # the p2p shuffle on the group key: every shard still comes whole from one task
    from distributed import Client, LocalCluster

    pos, attrs, df = sample(800, np.random.default_rng(46), multi=False)
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=2, chunk_shape=(250, 250, 250), shard_shape=2,
              compressor="blosc")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster):
        zv_dask.to_zv(dd.from_pandas(df, npartitions=4), ours, chunk_shape=250, levels=2,
                      shard_shape=2, compressor="blosc")
    assert_same_store(ref, ours)
    assert_valid(ours)
