"""Shard objects and compressed cells built by zv_dask (``write.shards``) against zarr's
own encoder, and sharded stores against the reference writer: empty inner chunks and
empty shards, partial edge shards, 2-D and 3-D, every compressor, categorical and
multi-column attributes."""

from __future__ import annotations

import json
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import zarr
from zarr.codecs import (BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, VLenBytesCodec,
                         ZstdCodec)

import zv_dask
from zv_dask.format.encode import frame as vlen_frame
from zv_dask.write import shards as S
from zv_dask.write.codecs import CellRecoder, level0_recoder, resolve
from zv_dask.write.plan import WriteSpec
from test_write_options import GZIP, _check_reads, _pair, assert_same_content
from writehelpers import assert_same_store, assert_valid, files, frame, reference, sample

_COMPRESSORS = {
    "none": [],
    "zstd": [ZstdCodec(level=0, checksum=False)],
    "zstd3-checksum": [ZstdCodec(level=3, checksum=True)],
    "blosc": [BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle", typesize=4)],
    "blosc-lz4-shuffle": [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle", typesize=8)],
}


def _zarr_shards(grid, shard, compressors, at, cells):
    """zarr's stored objects for ``{grid index: payload}`` of a sharded vlen array."""
    data: dict = {}
    index_codecs = [BytesCodec(endian="little")] + ([Crc32cCodec()] if at != "nocrc" else [])
    codec = ShardingCodec(chunk_shape=(1,) * len(grid), codecs=[VLenBytesCodec(), *compressors],
                          index_codecs=index_codecs,
                          index_location="start" if at == "start" else "end")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(zarr.storage.MemoryStore(data), shape=grid, chunks=shard,
                                dtype="bytes", serializer=codec, compressors=None)
        if cells:
            idx = np.array(list(cells), np.int64)
            values = np.empty(len(cells), dtype=object)
            values[:] = list(cells.values())
            arr.set_coordinate_selection(tuple(idx.T), values)
    doc = json.loads(data["zarr.json"].to_bytes())
    return doc["codecs"], {k: v.to_bytes() for k, v in data.items() if k.startswith("c/")}


@pytest.mark.parametrize("grid,shard", [((5, 3), (2, 2)), ((7, 7), (3, 3)), ((4, 5, 6), (4, 2, 3)),
                                        ((9,), (5,)), ((8, 8), (8, 8)), ((3, 5, 4), (2, 2, 2))],
                         ids=["2d-edge", "2d-s3", "3d-mixed", "1d", "2d-one-shard", "3d-edge"])
@pytest.mark.parametrize("at", ["end", "start", "nocrc"])
@pytest.mark.parametrize("comp", list(_COMPRESSORS))
def test_shard_objects_equal_zarrs(grid, shard, at, comp):
    rng = np.random.default_rng(abs(hash((grid, shard))) % 2**32)
    n = int(np.prod(grid))
    # about half the cells, so shards hold empty inner chunks and some shards are empty
    keep = rng.random(n) < 0.5
    cells = {tuple(int(v) for v in np.unravel_index(i, grid)):
             rng.integers(0, 4, rng.integers(1, 60)).astype(np.uint8).tobytes()
             for i in np.flatnonzero(keep)}
    codecs_doc, want = _zarr_shards(grid, shard, _COMPRESSORS[comp], at, cells)
    encoder, layout = S.plan_level0(codecs_doc, shard)
    assert layout.index_at_end == (at != "start") and layout.index_crc == (at != "nocrc")
    level0 = S.GridEncoder(encoder, layout)
    assert level0.take({"0/v/c/" + "/".join(map(str, k)): vlen_frame(p)
                        for k, p in cells.items()}) == {}
    got = {k[len("0/v/"):]: v for k, v in level0.flush().items()}
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k] == want[k], k


def test_unsharded_cells_equal_zarrs_for_every_byte_codec():
    rng = np.random.default_rng(3)
    payloads = [rng.integers(0, 9, m).astype(np.uint8).tobytes() for m in (1, 7, 300, 5000)]
    for comp in ("zstd3-checksum", "blosc", "blosc-lz4-shuffle"):
        data: dict = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = zarr.create_array(zarr.storage.MemoryStore(data), shape=(4,), chunks=(1,),
                                    dtype="bytes", serializer=VLenBytesCodec(),
                                    compressors=_COMPRESSORS[comp])
            arr[:] = np.array(payloads, dtype=object)
        codecs_doc = json.loads(data["zarr.json"].to_bytes())["codecs"]
        encoder, layout = S.plan_level0(codecs_doc, None)
        assert layout is None
        for i, p in enumerate(payloads):
            assert encoder.encode(vlen_frame(p)) == data[f"c/{i}"].to_bytes(), (comp, i)


def test_morton_rank_is_zarrs_order():
    from zarr.core.indexing import morton_order_iter

    for shape in [(2, 2), (3, 5), (4, 2, 3), (8, 8, 8), (1, 6), (7,), (5, 5, 5)]:
        rank = S.morton_rank(shape)
        want = [np.ravel_multi_index(c, shape) for c in morton_order_iter(shape)]
        assert np.argsort(rank).tolist() == want, shape


def test_codecs_zarr_would_need_go_through_zarr():
    lz4 = [{"name": "numcodecs.lz4", "configuration": {"acceleration": 1}}]
    spec_kw = dict(store_name="s", axes=("x", "y"), chunk_shape=(1.0, 1.0), bin_shape=None,
                   bounds=((0.0, 0.0), (3.0, 3.0)))
    assert isinstance(level0_recoder(WriteSpec(**spec_kw, **resolve(lz4, 2, 2, (4, 4), "s"))),
                      CellRecoder)
    for comp, shard in [("zstd", 2), ("blosc", None), (GZIP, 2), (None, 3)]:
        got = level0_recoder(WriteSpec(**spec_kw, **resolve(comp, shard, 2, (4, 4), "s")))
        assert isinstance(got, S.GridEncoder), (comp, shard)
    assert level0_recoder(WriteSpec(**spec_kw, **resolve("zstd", None, 2, (4, 4), "s"))) is None


def _clustered(rng, n, ndim, lo, hi):
    """Points in two corner clusters of the box: most cells and shards stay empty."""
    span = hi - lo
    a = rng.uniform(lo, lo + 0.3 * span, (n // 2, ndim))
    b = rng.uniform(hi - 0.25 * span, hi, (n - n // 2, ndim))
    return np.concatenate([a, b])


@pytest.mark.parametrize("ndim,shard,levels,compressor", [
    (3, 3, 1, "blosc"),
    (3, 2, 2, None),
    (2, 3, 2, GZIP),
    (2, (2, 4), 3, "zstd"),
], ids=["3d-s3-blosc", "3d-s2-l2-none", "2d-s3-l2-gzip", "2d-s24-l3-zstd"])
def test_sparse_sharded_stores_match_the_reference(tmp_path, ndim, shard, levels, compressor):
    rng = np.random.default_rng(50 + ndim)
    lo, hi = -130.0, 1000.0  # 6 (3-D) or 12 (2-D) chunks an axis: partial edge shards
    chunk = 200.0 if ndim == 3 else 100.0
    pos_any, attrs, _ = sample(400 if ndim == 3 else 600, rng, ndim=ndim)
    pos = _clustered(rng, len(pos_any), ndim, lo, hi)
    pos[0], pos[1] = lo, hi  # the full box: its grid is what the shards tile
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=levels, chunk_shape=(chunk,) * ndim,
              compressor=compressor, shard_shape=shard)
    zv_dask.to_zv(dd.from_pandas(frame(pos, attrs), npartitions=3), ours, chunk_shape=chunk,
                  levels=levels, compressor=compressor, shard_shape=shard)
    if compressor == GZIP:
        assert_same_content(ref, ours)
    else:
        assert_same_store(ref, ours)
    v0 = json.loads(files(ours)["0/vertices/zarr.json"])
    shape, outer = v0["shape"], v0["chunk_grid"]["configuration"]["chunk_shape"]
    assert any(n % s for n, s in zip(shape, outer))  # some shards hang over the grid's edge
    n_shards = int(np.prod([-(-n // s) for n, s in zip(shape, outer)]))
    stored = [k for k in files(ours) if k.startswith("0/vertices/c/")]
    assert 0 < len(stored) < n_shards  # empty shards are not stored
    cells = len(v0["attributes"]["nonempty_chunks"])
    assert cells < len(stored) * int(np.prod(outer))  # stored shards hold empty cells
    assert_valid(ours)
    _check_reads(ours, pos, attrs, levels)


@pytest.mark.parametrize("ndim,shard,levels,compressor", [
    (3, 2, 3, "zstd"),
    (2, 3, 2, "blosc"),
    (3, (2, 3, 2), 2, None),
], ids=["3d-s2-l3-zstd", "2d-s3-l2-blosc", "3d-s232-l2"])
def test_shard_levels_is_the_reference_shard_store(tmp_path, ndim, shard, levels, compressor):
    from zarr_vectors.sharding import shard_store

    rng = np.random.default_rng(60 + ndim)
    pos, attrs, df = sample(300 if ndim == 3 else 500, rng, lo=-130.0, hi=900.0, ndim=ndim)
    chunk = 200.0 if ndim == 3 else 100.0
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=levels, chunk_shape=(chunk,) * ndim,
              compressor=compressor, shard_shape=shard)
    shard_store(str(ref), shard_shape=shard)  # links and coarse levels repacked
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3), ours, chunk_shape=chunk, levels=levels,
                  compressor=compressor, shard_shape=shard, shard_levels=True)
    assert_same_store(ref, ours, coarse_tolerance=False)
    docs = files(ours)
    outer = [shard] * ndim if isinstance(shard, int) else list(shard)
    grid_arrays = [k for k in docs if k.endswith("zarr.json") and "nonempty_chunks" in
                   json.loads(docs[k]).get("attributes", {})]
    assert any(k.startswith("0/links/") for k in grid_arrays) and any(
        k.startswith(f"{levels - 1}/") for k in grid_arrays)
    for k in grid_arrays:  # every grid array of every level is sharded
        d = json.loads(docs[k])
        assert d["codecs"][0]["name"] == "sharding_indexed", k
        assert d["chunk_grid"]["configuration"]["chunk_shape"] == outer, k
    assert_valid(ours)
    _check_reads(ours, pos, attrs, levels)


def test_shard_levels_needs_shard_shape(tmp_path):
    _, _, df = sample(20, np.random.default_rng(1))
    for kw, words in [(dict(shard_levels=True), "give shard_shape"),
                      (dict(shard_levels="yes", shard_shape=2), "True or False")]:
        with pytest.raises(zv_dask.errors.WriteInputError, match=words):
            zv_dask.to_zv(df, tmp_path / "x.zarrvectors", chunk_shape=300, **kw)
    assert not (tmp_path / "x.zarrvectors").exists()


def test_convert_shard_levels_writes_what_to_zv_writes(tmp_path, capsys):
    from zv_dask.cli import main

    _, _, df = sample(300, np.random.default_rng(7), lo=-130.0, hi=900.0)
    src = tmp_path / "rows.parquet"
    df.to_parquet(src)
    lib, cli = tmp_path / "lib.zarrvectors", tmp_path / "cli.zarrvectors"
    zv_dask.to_zv(pd.read_parquet(src), lib, chunk_shape=200, levels=2, shard_shape=2,
                  shard_levels=True)
    assert main(["convert", str(src), str(cli), "--chunk-shape", "200", "--levels", "2",
                 "--shard-shape", "2", "--shard-levels", "--scheduler", "sync"]) == 0
    a, b = files(lib), files(cli)
    assert sorted(a) == sorted(b)
    assert [k for k in a if k != "zarr.json" and a[k] != b[k]] == []  # root names the store
    assert any(k.startswith("1/") and json.loads(v).get("codecs", [{}])[0].get("name")
               == "sharding_indexed" for k, v in a.items() if k.endswith("zarr.json"))
    capsys.readouterr()
    # without --shard-shape: one error line in CLI words, nothing written
    assert main(["convert", str(src), str(tmp_path / "no.zarrvectors"), "--chunk-shape",
                 "200", "--shard-levels"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shard-shape" in err[0] and "shard_shape" not in err[0]
    assert not (tmp_path / "no.zarrvectors").exists()
