"""Sharded stores (``shard_shape=``) written by the reference writer: zv_dask reads each
shard object itself (whole, or its index and merged ranges) and must give what the
unsharded store of the same data gives, and what was written; damaged shards raise
:class:`ChunkDecodeError` naming the shard object and inner chunk."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask.errors import ChunkDecodeError
from zv_dask.format import shards as S

warnings.filterwarnings("ignore", module="zarr_vectors")

BOUNDS3 = ([0.0] * 3, [2000.0] * 3)
BOUNDS2 = ([-1000.0] * 2, [1000.0] * 2)
EMPTY_CELLS = [(0, 0, 1), (1, 1, 0), (1, 0, 1)]  # inside shard (0, 0, 0) of shard_shape 2


def _points3(rng, n=3000):
    pos = rng.uniform(0, 1999, (n, 3)).astype(np.float32)
    cell = (pos // 500).astype(int)
    keep = ~np.any([(cell == c).all(1) for c in EMPTY_CELLS], axis=0)
    return pos[keep]


def _write(path, kind, data, **kw):
    from zarr_vectors import building as B

    if kind == "points3":
        B.write_points(str(path), data["pos"], chunk_shape=(500.0,) * 3, bounds=BOUNDS3,
                       object_ids=data["oid"], vertex_attributes=data["attrs"], **kw)
    elif kind == "points2":
        B.write_points(str(path), data["pos"], chunk_shape=(250.0,) * 2, bounds=BOUNDS2,
                       vertex_attributes=data["attrs"], **kw)
    elif kind == "streamlines":
        B.write_polylines(str(path), data["lines"], chunk_shape=(500.0,) * 3, bounds=BOUNDS3,
                          vertex_attributes={"fa": data["fa"]}, **kw)
    else:
        B.write_graph(str(path), data["pos"], data["edges"], chunk_shape=(500.0,) * 3,
                      bounds=BOUNDS3, object_ids=data["oid"],
                      vertex_attributes={"w": data["w"]},
                      link_attributes={"length": data["length"]}, **kw)


def _data(kind, rng):
    if kind == "points3":
        pos = _points3(rng)
        n = len(pos)
        return {"pos": pos, "oid": rng.integers(0, 6, n), "attrs": {
            "intensity": rng.random(n).astype(np.float32),
            "region": rng.choice(np.array(["cortex", "white_matter", "csf"]), n),
            "rgb": rng.integers(0, 256, (n, 3)).astype(np.uint8)}}
    if kind == "points2":
        pos = rng.uniform(-1000, 999, (2500, 2)).astype(np.float32)
        return {"pos": pos, "attrs": {"v": rng.random(len(pos)),
                                      "xy": rng.random((len(pos), 2)).astype(np.float32)}}
    if kind == "streamlines":
        lines = []
        for _ in range(12):
            steps = rng.normal(0, 40, (int(rng.integers(20, 60)), 3))
            lines.append(np.clip(rng.uniform(300, 1700, 3) + steps.cumsum(0), 0, 1999)
                         .astype(np.float32))
        return {"lines": lines, "fa": [rng.random(len(x)).astype(np.float32) for x in lines]}
    pos = rng.uniform(0, 1999, (300, 3)).astype(np.float32)
    edges = np.unique(np.sort(rng.integers(0, 300, (500, 2)), 1), axis=0)
    edges = edges[edges[:, 0] != edges[:, 1]]
    return {"pos": pos, "edges": edges, "oid": np.zeros(300, np.int64),
            "w": rng.random(300).astype(np.float32),
            "length": np.linalg.norm(pos[edges[:, 0]] - pos[edges[:, 1]], axis=1)
            .astype(np.float32)}


# name: (kind, options of the sharded store; its twin is written without shard_shape)
STORES = {
    "p3_zstd": ("points3", dict(shard_shape=2, compressor="zstd")),
    "p3_raw": ("points3", dict(shard_shape=2)),
    "p2_edge": ("points2", dict(shard_shape=3, compressor="zstd")),  # 8 cells: partial shards
    "lines": ("streamlines", dict(shard_shape=2, compressor="zstd")),
    "graph": ("graph", dict(shard_shape=2)),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    cache = {}

    def get(name):
        if name not in cache:
            kind, kw = STORES[name]
            data = _data(kind, np.random.default_rng([21, sorted(STORES).index(name)]))
            sharded, plain = root / f"{name}.zarrvectors", root / f"{name}_plain.zarrvectors"
            _write(sharded, kind, data, **kw)
            _write(plain, kind, data, **{k: v for k, v in kw.items() if k != "shard_shape"})
            cache[name] = (str(sharded), str(plain), data)
        return cache[name]
    return get


def _sort_rows(pos):
    return np.lexsort(np.asarray(pos, np.float64).T[::-1])


def _equal_reads(a, b):
    assert a["vertex_count"] == b["vertex_count"]
    np.testing.assert_array_equal(a["positions"], b["positions"])
    assert sorted(a["attributes"]) == sorted(b["attributes"])
    for k, v in a["attributes"].items():
        np.testing.assert_array_equal(v, b["attributes"][k])
    for k in ("object_ids", "owner_count"):
        assert (k in a) == (k in b)
        if k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("name", ["p3_zstd", "p3_raw", "p2_edge"])
def test_sharded_arrays_are_read_by_zv_dask_not_zarr(built, name):
    path, plain, _ = built(name)
    lm = zv_dask.open_zv(path)._meta.levels[0]
    for arr in [lm.vertices, lm.vertex_fragments] + [lm.arrays[a.path]
                                                     for a in lm.attributes.values()]:
        assert arr.access == "sharded", arr.path
    assert zv_dask.open_zv(plain)._meta.levels[0].vertices.access != "sharded"


@pytest.mark.parametrize("name", ["p3_zstd", "p3_raw", "p2_edge"])
def test_full_read_equals_unsharded_store_and_numpy(built, name):
    path, plain, data = built(name)
    got = zv_dask.open_zv(path).read(level=0)
    _equal_reads(got, zv_dask.open_zv(plain).read(level=0))
    # and what was written, row for row once both are in one order
    i, j = _sort_rows(got["positions"]), _sort_rows(data["pos"])
    np.testing.assert_array_equal(got["positions"][i], data["pos"][j])
    for k, v in data["attrs"].items():
        np.testing.assert_array_equal(np.asarray(got["attributes"][k])[i], v[j])
    if "oid" in data:
        np.testing.assert_array_equal(got["object_ids"][i], data["oid"][j])


def test_a_level_with_empty_inner_chunks(built):
    path, _, _ = built("p3_zstd")
    store = zv_dask.open_zv(path)
    listed = {tuple(c) for c in store.chunks(0)}
    assert not listed & set(EMPTY_CELLS) and (0, 0, 0) in listed
    raw = open(f"{path}/0/vertices/c/0/0/0", "rb").read()
    lay = store._meta.levels[0].vertices.shards
    pairs = S.decode_index(S.split_index(raw, lay), lay, len(raw))
    empty = pairs[:, 0] == S.EMPTY
    assert empty.sum() == len(EMPTY_CELLS)  # the shard holds them as empty entries
    box = ([0, 0, 0], [999, 999, 999])  # exactly shard (0, 0, 0)
    got = store.read(bbox=box)
    assert got["vertex_count"] == int(np.all(_points3_of(built) <= 999, 1).sum())


def _points3_of(built):
    return built("p3_zstd")[2]["pos"]


@pytest.mark.parametrize("name,box", [
    ("p3_zstd", ([600, 100, 1100], [900, 450, 1400])),  # inside one cell
    ("p3_zstd", ([400, 400, 400], [1600, 700, 1100])),  # across shards
    ("p3_raw", ([0, 0, 0], [520, 1999, 260])),
    ("p2_edge", ([-900, 600], [999, 999])),  # the partial shards at the grid's edge
])
def test_bbox_reads_equal_unsharded_and_numpy(built, name, box):
    path, plain, data = built(name)
    got = zv_dask.open_zv(path).read(bbox=box)
    _equal_reads(got, zv_dask.open_zv(plain).read(bbox=box))
    lo, hi = (np.asarray(b, np.float32) for b in box)
    want = data["pos"][np.all((data["pos"] >= lo) & (data["pos"] <= hi), 1)]
    np.testing.assert_array_equal(got["positions"][_sort_rows(got["positions"])],
                                  want[_sort_rows(want)])


def _frame_sorted(df):
    return df.sort_values(list(df.columns[:3])).reset_index(drop=True)


@pytest.mark.parametrize("name", ["p3_zstd", "p2_edge"])
def test_dataframes_equal_unsharded(built, name):
    path, plain, _ = built(name)
    s, p = zv_dask.open_zv(path), zv_dask.open_zv(plain)
    # default partitions: one chunk each, in the same (row-major) order
    a = s.to_dask_dataframe(level=0).compute()
    b = p.to_dask_dataframe(level=0).compute()
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True))
    for rows in (300, 10**6):
        a = s.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=rows)
        b = p.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=rows)
        assert _frame_sorted(a.compute()).equals(_frame_sorted(b.compute()))
        assert len(a) == len(b.compute())


@pytest.mark.parametrize("name", ["p3_zstd", "p2_edge"])
def test_auto_partitions_never_split_a_shard(built, name):
    store = zv_dask.open_zv(built(name)[0])
    lm = store._meta.levels[0]
    step = np.asarray(lm.vertices.shards.shard_shape)
    for rows in (1, 200, 10**6):
        parts = store.partitions(level=0, chunks_per_partition="auto", partition_rows=rows)
        owner = {}
        for p, cells in zip(parts.index, parts["chunks"]):
            for c in cells:
                key = tuple(((np.asarray(c) - lm.vertices.origin) // step).tolist())
                assert owner.setdefault(key, p) == p  # every shard in one partition
        if rows == 1:  # one partition per shard object
            assert len(parts) == len(owner)


def test_streamlines_and_graph_links_through_shards(built):
    path, plain, _ = built("lines")
    s, p = zv_dask.open_zv(path), zv_dask.open_zv(plain)
    assert s._meta.levels[0].vertices.access == "sharded"
    a, b = s.read_objects(), p.read_objects()
    for k in ("object_ids", "offsets", "positions"):
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["attributes"]["fa"], b["attributes"]["fa"])
    path, plain, data = built("graph")
    s, p = zv_dask.open_zv(path), zv_dask.open_zv(plain)
    fam = s._meta.levels[0].arrays
    assert any(k.startswith("links/0/") and v.access == "sharded" for k, v in fam.items()) \
        or s._meta.levels[0].vertices.access == "sharded"
    ea = s.edges(0).compute().sort_values(["source", "target"]).reset_index(drop=True)
    eb = p.edges(0).compute().sort_values(["source", "target"]).reset_index(drop=True)
    assert ea.equals(eb) and len(ea) == len(data["edges"])
    _equal_reads(s.read(level=0), p.read(level=0))


def test_sharded_trillion_cell_grid_is_read_without_sizing_by_the_grid(tmp_path):
    # zarr sizes its shard reads by the grid; here only the occupied shards are touched.
    # Written by to_zv (byte for byte the reference's store, see test_write_grid), as the
    # reference writer allocates per grid cell
    import pandas as pd

    pos = np.array([[0.5, 0.5, 0.5], [9999.5, 9999.5, 9999.5], [9999.2, 0.5, 5000.5],
                    [0.7, 0.7, 0.7]])
    df = pd.DataFrame(pos, columns=list("xyz"))
    df["w"] = np.arange(4, dtype=np.int32)
    path = str(tmp_path / "huge.zarrvectors")
    zv_dask.to_zv(df, path, chunk_shape=1, shard_shape=2)
    store = zv_dask.open_zv(path)
    assert store._meta.levels[0].vertices.access == "sharded"
    got = store.read(level=0)
    both = np.column_stack([got["positions"], got["attributes"]["w"]])
    want = np.column_stack([pos.astype(np.float32), np.arange(4)])
    np.testing.assert_array_equal(both[_sort_rows(both[:, :3])], want[_sort_rows(want[:, :3])])
    assert store.to_dask_array("positions", level=0).chunks[0] == (2, 1, 1)


def test_unsupported_sharding_is_left_to_zarr():
    conf = {"chunk_shape": [2, 1], "codecs": [{"name": "vlen-bytes"}],
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                             {"name": "crc32c"}]}
    assert S.parse_sharding((4, 4), (("sharding_indexed", conf),)) is None  # 2 cells each
    conf = dict(conf, chunk_shape=[1, 1], index_codecs=[{"name": "bytes", "configuration":
                                                         {"endian": "big"}}])
    assert S.parse_sharding((4, 4), (("sharding_indexed", conf),)) is None
    conf = dict(conf, index_codecs=[{"name": "bytes"}], index_location="start")
    lay = S.parse_sharding((4, 4), (("sharding_indexed", conf),))
    assert lay is not None and not lay.index_at_end and not lay.index_crc


# --------------------------------------------------------------------------- block lengths


@pytest.mark.parametrize("which", [0, 1], ids=["sharded", "unsharded"])
@pytest.mark.parametrize("name", ["p3_zstd", "p3_raw", "p2_edge"])
def test_exact_block_lengths_of_compressed_and_sharded_vertices(built, name, which):
    store = zv_dask.open_zv(built(name)[which])
    truth = tuple(len(d["positions"]) for _, d in store.iter_chunks(level=0, attributes=[]))
    a = store.to_dask_array("positions", level=0)
    assert a.chunks[0] == truth
    np.testing.assert_array_equal(a.compute(), store.read(level=0)["positions"])


def test_uncompressed_shards_are_counted_from_their_index_alone(built, counting):
    path = built("p3_raw")[0]
    store = zv_dask.open_zv("zvcount://" + path)
    store.chunks(0)
    counting.clear()
    a = store.to_dask_array("positions", level=0)
    gets = [p for op, p in counting if op == "get"]
    n_shards = len({tuple(np.asarray(c) // 2) for c in store.chunks(0)})
    assert len(gets) == len(set(gets)) == n_shards  # one index read per shard object
    assert all("/0/vertices/c/" in p for p in gets)
    truth = tuple(len(d["positions"]) for _, d in
                  zv_dask.open_zv(path).iter_chunks(level=0, attributes=[]))
    assert a.chunks[0] == truth


# --------------------------------------------------------------------------- damage


@pytest.fixture
def damaged(built, tmp_path):
    path = tmp_path / "d.zarrvectors"
    shutil.copytree(built("p3_zstd")[0], path)
    store = zv_dask.open_zv(str(path))
    lm = store._meta.levels[0]
    lay = lm.vertices.shards
    shard = path / "0" / "vertices" / "c" / "0" / "0" / "0"
    cells = [tuple(c) for c in store.chunks(0) if all(x < 2 for x in c)]
    return path, shard, lay, cells


def _rewrite_index(shard, lay, edit):
    raw = bytearray(shard.read_bytes())
    body = np.frombuffer(bytes(raw[-lay.index_nbytes:-4]), "<u8").reshape(-1, 2).copy()
    edit(body)
    new = body.tobytes()
    raw[-lay.index_nbytes:] = new + S.crc32c(new).to_bytes(4, "little")
    shard.write_bytes(bytes(raw))


def _check_named(exc, path, shard_key, inner=None, chunk=None):
    msg = str(exc)
    assert exc.store is not None and str(path) in str(exc.store)
    assert exc.level == 0 and exc.array == "vertices"
    assert f"'{shard_key}'" in msg
    if inner is not None:
        assert f"inner chunk {inner} of" in msg
        assert exc.chunk == chunk
    assert "rewrite" in msg or "restore" in msg or "corrupt" in msg


@pytest.mark.parametrize("how", ["whole", "ranged"])
def test_bad_crc_is_a_chunk_decode_error(damaged, how):
    path, shard, lay, cells = damaged
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 0xFF
    shard.write_bytes(bytes(raw))
    store = zv_dask.open_zv(str(path))
    box = None if how == "whole" else ([10, 10, 10], [20, 20, 20])
    with pytest.raises(ChunkDecodeError, match="checksum") as info:
        store.read(level=0, bbox=box)
    _check_named(info.value, path, "0/vertices/c/0/0/0")


@pytest.mark.parametrize("how", ["whole", "ranged"])
def test_index_entry_beyond_the_object_names_the_inner_chunk(damaged, how):
    path, shard, lay, cells = damaged
    target = (0, 0, 0)
    entry = int(S.locate(np.array([target]), lay)[1][0])

    def edit(body):
        body[entry, 0] = 10**9

    _rewrite_index(shard, lay, edit)
    store = zv_dask.open_zv(str(path))
    box = None if how == "whole" else ([10, 10, 10], [20, 20, 20])
    with pytest.raises(ChunkDecodeError) as info:
        store.read(level=0, bbox=box)
    _check_named(info.value, path, "0/vertices/c/0/0/0", entry, target)


def test_half_empty_index_entry_is_corrupt(damaged):
    path, shard, lay, cells = damaged

    def edit(body):
        body[0, 1] = S.EMPTY

    _rewrite_index(shard, lay, edit)
    with pytest.raises(ChunkDecodeError, match="empty in one field") as info:
        zv_dask.open_zv(str(path)).read(level=0)
    _check_named(info.value, path, "0/vertices/c/0/0/0", 0, (0, 0, 0))


@pytest.mark.parametrize("how", ["whole", "ranged"])
def test_truncated_shard_is_a_chunk_decode_error(damaged, how):
    path, shard, lay, cells = damaged
    raw = shard.read_bytes()
    shard.write_bytes(raw[: len(raw) // 2])
    store = zv_dask.open_zv(str(path))
    box = None if how == "whole" else ([10, 10, 10], [20, 20, 20])
    with pytest.raises(ChunkDecodeError) as info:
        store.read(level=0, bbox=box)
    _check_named(info.value, path, "0/vertices/c/0/0/0")
    shard.write_bytes(raw[:10])  # shorter than its index
    with pytest.raises(ChunkDecodeError, match="truncated|checksum"):
        zv_dask.open_zv(str(path)).read(level=0, bbox=box)


def test_corrupt_inner_chunk_names_it(damaged):
    path, shard, lay, cells = damaged
    raw = bytearray(shard.read_bytes())
    pairs = S.decode_index(S.split_index(bytes(raw), lay), lay, len(raw))
    entry = int(S.locate(np.array([(0, 0, 0)]), lay)[1][0])
    off, n = (int(v) for v in pairs[entry])
    raw[off:off + n] = b"\x00" * n  # not zstd any more; the index still matches
    shard.write_bytes(bytes(raw))
    with pytest.raises(ChunkDecodeError, match="inner chunk is corrupt") as info:
        zv_dask.open_zv(str(path)).read(level=0)
    _check_named(info.value, path, "0/vertices/c/0/0/0", entry, (0, 0, 0))


# --------------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3(built):
    pytest.importorskip("s3fs")
    from s3server import FaultProxy, MotoServer

    server = MotoServer()
    proxy = FaultProxy(server.port)
    try:
        server.client().create_bucket(Bucket="zv-shards")
        server.upload("zv-shards", built("p3_zstd")[0], "p3.zarrvectors")
        yield proxy
    finally:
        proxy.stop()
        server.stop()


def _s3_open(proxy):
    from s3server import ACCESS_KEY, SECRET_KEY

    store = zv_dask.open_zv("s3://zv-shards/p3.zarrvectors", storage_options={
        "endpoint_url": proxy.url, "key": ACCESS_KEY, "secret": SECRET_KEY,
        "skip_instance_cache": True})
    store.chunks(0)  # metadata read now, not counted below
    return store


def _shard_gets(proxy):
    """{shard object path: [Range header or None, ...]} of the GETs of shard objects."""
    out = {}
    for line, rng in proxy.ranges:
        if line.startswith("GET ") and "/c/" in line and "/object_index/" not in line:
            out.setdefault(line[4:], []).append(rng)
    return out


def test_s3_full_read_at_most_two_gets_per_shard_and_no_head(s3, built):
    store = _s3_open(s3)
    s3.reset()
    got = store.read(level=0)
    _equal_reads(got, zv_dask.open_zv(built("p3_zstd")[1]).read(level=0))
    assert not s3.requests("HEAD")
    gets = _shard_gets(s3)
    assert gets and all(len(v) <= 2 for v in gets.values()), gets
    # every shard object of every array read (vertices, fragments, 3 attributes)
    n_shards = len({tuple(np.asarray(c) // 2) for c in store.chunks(0)})
    assert len(gets) == 5 * n_shards
    s3.reset()
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=500)
    assert len(ddf.compute(scheduler="threads")) == got["vertex_count"]
    assert not s3.requests("HEAD")
    assert all(len(v) <= 2 for v in _shard_gets(s3).values())


def test_s3_small_bbox_issues_ranged_gets_only(s3, built):
    store = _s3_open(s3)
    s3.reset()
    box = ([600, 100, 1100], [900, 450, 1400])  # one cell of shard (0, 0, 1)
    got = store.read(bbox=box, attributes=["intensity"])
    _equal_reads(got, zv_dask.open_zv(built("p3_zstd")[1]).read(bbox=box,
                                                                attributes=["intensity"]))
    assert not s3.requests("HEAD")
    gets = _shard_gets(s3)
    assert sorted(k.split("/p3.zarrvectors/")[1] for k in gets) == [
        "0/vertex_attributes/intensity/c/0/0/1", "0/vertex_fragments/c/0/0/1",
        "0/vertices/c/0/0/1"]  # fragments: the object ids
    for ranges in gets.values():  # the index (a suffix range), then the one inner chunk
        assert len(ranges) == 2 and all(r is not None for r in ranges), ranges
        assert ranges[0].startswith("bytes=-")


def test_s3_one_chunk_partitions_read_each_shard_index_once(s3, built):
    store = _s3_open(s3)
    ddf = store.to_dask_dataframe(level=0, attributes=["intensity"])
    s3.reset()
    got = ddf.compute(scheduler="sync")
    want = zv_dask.open_zv(built("p3_zstd")[1]).to_dask_dataframe(
        level=0, attributes=["intensity"]).compute()
    assert got.reset_index(drop=True).equals(want.reset_index(drop=True))
    assert not s3.requests("HEAD")
    gets = _shard_gets(s3)
    for key, ranges in gets.items():  # one index, then one range per task (chunk)
        suffix = [r for r in ranges if r.startswith("bytes=-")]
        assert len(suffix) == 1 and all(r is not None for r in ranges), (key, ranges)
    store.close()


@pytest.mark.parametrize("k", [3, 8, 16])
def test_integer_partitions_read_each_shard_in_one_task(s3, built, k):
    """chunks_per_partition=k on a sharded level: runs of whole shards (2x2x2 here), so
    a shard object is fetched by one task only; a k below a shard's chunks keeps each
    task inside one shard."""
    store = _s3_open(s3)
    ddf = store.to_dask_dataframe(level=0, attributes=["intensity"], chunks_per_partition=k)
    readers: dict = {}  # shard object -> the partitions that fetched it
    parts = []
    for i in range(ddf.npartitions):
        s3.reset()
        parts.append(ddf.partitions[i].compute(scheduler="sync"))
        shards = set(_shard_gets(s3))
        assert shards, i
        for key in shards:
            readers.setdefault(key, set()).add(i)
        if k < 8:
            assert len({key.rsplit("/c/", 1)[1] for key in shards}) == 1, (i, shards)
    if k >= 8:
        assert all(len(p) == 1 for p in readers.values()), readers
        n_shards = len({tuple(np.asarray(c) // 2) for c in store.chunks(0)})
        assert ddf.npartitions == n_shards if k == 8 else ddf.npartitions < n_shards
    want = zv_dask.open_zv(built("p3_zstd")[1]).to_dask_dataframe(
        level=0, attributes=["intensity"]).compute()
    got = pd.concat(parts)
    assert _frame_sorted(got).equals(_frame_sorted(want))
    store.close()
