"""chunks_per_partition="auto" (compact groups of neighbouring chunks) and exact block
lengths from one listing per array, on reference-written stores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask import stats
from zv_dask.errors import QueryError
from zv_dask.plan import partitioning as P

LEVEL0 = ["points_pyramid", "points_2d", "points_by_gene", "streamlines"]


def _real_rows(store, level, bbox=None) -> dict:
    """Rows of every chunk, counted on the eager per-chunk read."""
    return {tuple(c): len(d["positions"])
            for c, d in store.iter_chunks(level=level, bbox=bbox, attributes=[])}


def _cells_and_rows(store, level):
    rows = _real_rows(store, level)
    cells = np.asarray(store.chunks(level), np.int64)
    return cells, np.array([rows[tuple(c)] for c in cells.tolist()], np.float64)


def _cuts(boxes) -> int:
    """How many axis-aligned grid planes cut the partitions' boxes, summed: what a
    half-space filter on a random plane finds straddling (lower is more compact)."""
    return int((boxes[:, 1] - boxes[:, 0]).sum())


def _sorted(df):
    return df.sort_values(list(df.columns)).reset_index(drop=True)


# ------------------------------------------------------------------- grouping (pure)


@pytest.mark.parametrize("name", LEVEL0)
def test_auto_groups_cover_every_chunk_once_within_target(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    lm = store.metadata.levels[0]
    lead = lm.rank - len(lm.chunk_shape)
    cells, rows = _cells_and_rows(store, 0)
    for target in [1, 40, 300, 1000, int(rows.sum()) + 1]:
        groups = P.auto_groups(cells, rows, target, lead)
        idx = np.concatenate(groups)
        assert sorted(idx.tolist()) == list(range(len(cells)))  # each chunk exactly once
        for g in groups:
            assert rows[g].sum() <= target or len(g) == 1
            if lead:  # chunk_by_attribute: one attribute value per partition
                assert len(np.unique(cells[g, :lead], axis=0)) == 1
        if target > rows.sum() and not lead:
            assert len(groups) == 1


def test_auto_groups_uniform_grid_gives_equal_cubes():
    cells = np.array([[i, j, k] for i in range(8) for j in range(8) for k in range(8)])
    groups = P.auto_groups(cells, np.full(512, 10_000), 1_000_000)
    assert [len(g) for g in groups] == [64] * 8  # 640k rows each: 4x4x4 cubes
    boxes = P.group_boxes([cells[g] for g in groups])
    assert ((boxes[:, 1] - boxes[:, 0]) == 3).all()
    # a target that is not a power of two: halves until it fits (32 chunks, 320k rows)
    groups = P.auto_groups(cells, np.full(512, 10_000), 500_000)
    assert [len(g) for g in groups] == [32] * 16


@pytest.mark.parametrize("name,target", [("points_pyramid", 700), ("streamlines", 120),
                                         ("streamlines", 400)])
def test_auto_boxes_more_compact_than_row_major_runs(store_path, name, target):
    store = zv_dask.open_zv(store_path(name))
    cells, rows = _cells_and_rows(store, 0)
    auto = [cells[g] for g in P.auto_groups(cells, rows, target)]
    # row-major runs with no more chunks per partition than auto's average
    k = int(np.ceil(len(cells) / len(auto)))
    runs = [cells[g] for g in P.row_major_groups(len(cells), k)]
    assert len(runs) <= len(auto)
    a, r = P.group_boxes(auto), P.group_boxes(runs)
    vol = lambda b: int(np.prod(b[:, 1] - b[:, 0] + 1, axis=1).sum())  # noqa: E731
    assert vol(a) < vol(r)
    assert _cuts(a) < _cuts(r)


def test_partitioning_trims_to_a_narrower_plan(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    cells, rows = _cells_and_rows(store, 0)
    part = P.Partitioning.from_indices(cells, P.auto_groups(cells, rows, 600))
    box = ([-900.0, -900.0], [100.0, 400.0])
    sub = np.asarray(store.chunks(0, bbox=box), np.int64)
    specs = part.specs_for(sub)
    got = np.concatenate(specs)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, sub.tolist()))
    whole = [set(map(tuple, g.tolist())) for g in part.groups]
    for s in specs:  # a trimmed partition is part of one original partition
        assert any(set(map(tuple, s.tolist())) <= w for w in whole)
    assert len(specs) <= len(part.groups)
    # cells the grouping never saw get a partition each
    extra = np.array([[99, 99]])
    assert [g.tolist() for g in part.specs_for(extra)] == [[[99, 99]]]


# ------------------------------------------------------------------- store API


@pytest.mark.parametrize("name", LEVEL0 + ["points_sharded", "points_f64_zstd"])
def test_auto_dataframe_equals_one_partition_per_chunk(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    box = ([0.0] * store.spatial_dims, [1100.0] * store.spatial_dims)
    for bbox in [None, box]:
        one = store.to_dask_dataframe(level=0, bbox=bbox)
        auto = store.to_dask_dataframe(level=0, bbox=bbox, chunks_per_partition="auto",
                                       partition_rows=700)
        table = store.partitions(level=0, bbox=bbox, chunks_per_partition="auto",
                                 partition_rows=700)
        assert auto.npartitions == len(table) <= max(one.npartitions, 1)
        a, b = auto.compute(), one.compute()
        assert len(a) == len(b)
        pd.testing.assert_frame_equal(_sorted(a), _sorted(b))


def test_partitions_table_shows_union_box_and_chunks(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))  # negative origins
    from zv_dask.plan.select import cell_boxes, cell_rule

    cs = store.chunk_shape_at(0)
    lm = store.metadata.levels[0]
    rows = _real_rows(store, 0)
    table = store.partitions(level=0, chunks_per_partition="auto", partition_rows=500)
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=500)
    seen = []
    for i, row in table.iterrows():
        chunks = np.asarray(row["chunks"])
        assert row["n_chunks"] == len(chunks) and row["chunk"] == tuple(chunks[0])
        blo, bhi = cell_boxes(cell_rule(lm), chunks)  # each chunk's closed box
        for d, ax in enumerate(store.axes):
            assert row[f"{ax}_min"] == blo[:, d].min()  # the hull of its chunks' boxes
            assert row[f"{ax}_max"] == bhi[:, d].max()
            assert abs(row[f"{ax}_max"] - (chunks[:, d].max() + 1) * cs[d]) < 1e-6 * cs[d]
        assert sum(rows[tuple(c)] for c in chunks.tolist()) <= 500 or len(chunks) == 1
        part = ddf.get_partition(i).compute()
        assert len(part) == sum(rows[tuple(c)] for c in chunks.tolist())
        lo = np.array([row[f"{ax}_min"] for ax in store.axes])
        hi = np.array([row[f"{ax}_max"] for ax in store.axes])
        xyz = part[list(store.axes)].to_numpy()
        assert ((xyz >= lo) & (xyz <= hi)).all()  # the closed box holds every row
        seen += [tuple(c) for c in chunks.tolist()]
    assert sorted(seen) == sorted(store.chunks(0))
    # the default stays one partition per chunk, in row-major order
    default = store.partitions(level=0)
    assert list(default["chunk"]) == [tuple(c) for c in store.chunks(0)]


def test_auto_to_dask_array_has_exact_grouped_lengths(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    a = store.to_dask_array("positions", level=0, chunks_per_partition="auto",
                            partition_rows=1000)
    table = store.partitions(level=0, chunks_per_partition="auto", partition_rows=1000)
    rows = _real_rows(store, 0)
    want = tuple(sum(rows[tuple(c)] for c in cs) for cs in table["chunks"])
    assert a.chunks[0] == want and max(want) <= 1000
    got = a.compute()
    np.testing.assert_array_equal(np.sort(got, axis=0),
                                  np.sort(store.read(level=0)["positions"], axis=0))


def test_statistics_use_auto_partitions(store_path):
    store = zv_dask.open_zv(store_path("streamlines"))
    cpp = stats.auto_chunks_per_partition(store, 0, len(store.chunks(0)))
    assert isinstance(cpp, P.Partitioning)
    assert sorted(map(tuple, np.concatenate(cpp.groups).tolist())) == sorted(store.chunks(0))
    want = store.read(level=0, attributes=[])["positions"]
    got = store.bounds(level=0).compute()
    np.testing.assert_array_equal(got, np.stack([want.min(0), want.max(0)]))


@pytest.mark.parametrize("kw", [{"chunks_per_partition": "bogus"},
                                {"chunks_per_partition": 0},
                                {"chunks_per_partition": True},
                                {"chunks_per_partition": 2.5},
                                {"chunks_per_partition": 1, "partition_rows": 10},
                                {"chunks_per_partition": "auto", "partition_rows": 0},
                                {"chunks_per_partition": "auto", "partition_rows": "many"}])
def test_bad_partitioning_arguments_are_refused(store_path, kw):
    store = zv_dask.open_zv(store_path("points_2d"))
    with pytest.raises(QueryError, match="chunks_per_partition|partition_rows") as err:
        store.to_dask_dataframe(**kw)
    assert store.url in str(err.value)
    with pytest.raises(QueryError):
        store.partitions(**kw)


# ------------------------------------------------------------------- block lengths


@pytest.mark.parametrize("name", ["points_pyramid", "points_2d", "streamlines"])
def test_block_lengths_from_one_listing_per_array(store_path, counting, name):
    path = store_path(name)
    truth = zv_dask.open_zv(path)
    store = zv_dask.open_zv("zvcount://" + path)
    for lv in store.levels:
        counting.clear()
        a = store.to_dask_array("positions", level=lv)
        assert [(op, p.rsplit(".zarrvectors/", 1)[1]) for op, p in counting
                if op != "walk"] == [("list", f"{lv}/vertices")]  # no stat, no GET
        rows = _real_rows(truth, lv)
        assert a.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(lv))
        counting.clear()
        store.to_dask_array("intensity" if "intensity" in store.attributes_at(lv) else
                            "positions", level=lv, chunks_per_partition=3)
        assert counting == []  # the listing is remembered
    # read_zv: exact lengths, one listing of the vertices array, no stat, no chunk read
    pytest.importorskip("xarray")
    store = zv_dask.open_zv("zvcount://" + path)
    store._widths(0, list(store.metadata.levels[0].attributes.values()))  # a mis-recorded
    counting.clear()  # width is probed once from one chunk's two sizes, not per chunk
    ds = zv_dask.read_zv(store, level=0)
    assert [op for op, _ in counting if op in ("list", "stat", "get")] == ["list"]
    rows = _real_rows(truth, 0)
    assert ds.positions.data.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(0))
    assert ds.sizes["vertex"] == truth.vertex_count(0)


def test_block_lengths_with_flat_chunk_keys(store_path, tmp_path, counting):
    """v2 chunk key encoding with '.': every chunk file in one folder."""
    src = Path(store_path("points_pyramid"))
    dst = tmp_path / "flat.zarrvectors"
    shutil.copytree(src, dst)
    vdir = dst / "0" / "vertices"
    doc = json.loads((vdir / "zarr.json").read_text())
    doc["chunk_key_encoding"] = {"name": "v2", "configuration": {"separator": "."}}
    (vdir / "zarr.json").write_text(json.dumps(doc))
    for f in sorted((vdir / "c").rglob("*")):
        if f.is_file():
            (vdir / ".".join(f.relative_to(vdir / "c").parts)).write_bytes(f.read_bytes())
    shutil.rmtree(vdir / "c")
    truth = zv_dask.open_zv(src)
    store = zv_dask.open_zv("zvcount://" + str(dst))
    counting.clear()
    a = store.to_dask_array("positions", level=0)
    assert [op for op, _ in counting] == ["list", "walk"]  # one listing reading one folder
    rows = _real_rows(truth, 0)
    assert a.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(0))
    np.testing.assert_array_equal(a.compute(), truth.read(level=0)["positions"])


def test_metadata_only_copy_has_unknown_lengths_but_auto_still_groups(store_path, tmp_path):
    src = Path(store_path("points_pyramid"))
    dst = tmp_path / "meta-only.zarrvectors"
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if n == "c"])
    store = zv_dask.open_zv(dst)
    a = store.to_dask_array("positions", level=0)
    assert all(np.isnan(a.chunks[0]))
    # rows estimated as vertex_count / n_chunks: 6000 / 63 ~ 95 per chunk
    table = store.partitions(level=0, chunks_per_partition="auto", partition_rows=800)
    assert table["n_chunks"].sum() == 63 and (table["n_chunks"] <= 8).all()


def test_sharded_vertices_are_counted_from_shard_headers(store_path, counting):
    path = store_path("points_sharded")
    truth = zv_dask.open_zv(path)
    rows = _real_rows(truth, 0)
    store = zv_dask.open_zv("zvcount://" + path)
    counting.clear()
    a = store.to_dask_array("positions", level=0)
    assert a.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(0))
    # the shard indexes and the inner chunks' zstd headers: at most 2 reads per object
    assert not [op for op, _ in counting if op == "list"]
    gets = [p for op, p in counting if op == "get"]
    assert gets and all("/0/vertices/c/" in p for p in gets)
    assert max(gets.count(p) for p in gets) <= 2
    counting.clear()  # once per handle: read_zv reuses the counts
    pytest.importorskip("xarray")
    ds = zv_dask.read_zv(store, level=0)
    assert not [p for op, p in counting if op == "get"]
    assert ds.positions.data.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(0))
    # level 1 is unsharded: its lengths come from a listing again
    counting.clear()
    b = store.to_dask_array("positions", level=1)
    assert [op for op, _ in counting if op != "walk"] == ["list"]
    assert sum(b.chunks[0]) == truth.vertex_count(1)


# ------------------------------------------------------------------- object store

S3_BUCKET = "zv-partitions"


@pytest.fixture(scope="module")
def s3(store_path):
    pytest.importorskip("s3fs")
    from s3server import FaultProxy, MotoServer

    server = MotoServer()
    proxy = FaultProxy(server.port)
    try:
        server.client().create_bucket(Bucket=S3_BUCKET)
        for name in ["points_2d", "points_sharded"]:
            server.upload(S3_BUCKET, store_path(name), f"{name}.zarrvectors")
        yield proxy
    finally:
        proxy.stop()
        server.stop()


def _s3_open(proxy, name):
    from s3server import ACCESS_KEY, SECRET_KEY

    return zv_dask.open_zv(f"s3://{S3_BUCKET}/{name}.zarrvectors", storage_options={
        "endpoint_url": proxy.url, "key": ACCESS_KEY, "secret": SECRET_KEY,
        "skip_instance_cache": True})


def test_s3_block_lengths_come_from_list_pages_without_head(s3, store_path):
    proxy = s3
    truth = zv_dask.open_zv(store_path("points_2d"))
    store = _s3_open(proxy, "points_2d")
    for lv in store.levels:
        proxy.reset()
        a = store.to_dask_array("positions", level=lv)
        reqs = proxy.requests()
        assert not proxy.requests("HEAD")
        assert len(reqs) == 1 and "list-type=2" in reqs[0], reqs  # one LIST page
        assert f"{lv}%2Fvertices" in reqs[0]  # of the vertices array
        rows = _real_rows(truth, lv)
        assert a.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(lv))
    pytest.importorskip("xarray")
    store = _s3_open(proxy, "points_2d")
    proxy.reset()
    ds = zv_dask.read_zv(store, level=0)
    assert not proxy.requests("HEAD")
    assert [r for r in proxy.requests() if "list-type=2" in r] == proxy.requests()
    assert len(proxy.requests()) == 1
    assert ds.sizes["vertex"] == truth.vertex_count(0)
    np.testing.assert_array_equal(ds.positions.values, truth.read(level=0)["positions"])


def test_s3_sharded_vertices_are_counted_from_ranged_gets(s3, store_path):
    proxy = s3
    truth = zv_dask.open_zv(store_path("points_sharded"))
    rows = _real_rows(truth, 0)
    store = _s3_open(proxy, "points_sharded")
    store.chunks(0)
    proxy.reset()
    a = store.to_dask_array("positions", level=0)
    assert a.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(0))
    assert not proxy.requests("HEAD") and not [r for r in proxy.requests() if "list-type" in r]
    gets = [(line, rng) for line, rng in proxy.ranges if line.startswith("GET ")]
    assert gets and all("/0/vertices/c/" in line and rng for line, rng in gets), gets
    lines = [line for line, _ in gets]
    assert max(lines.count(x) for x in lines) <= 2  # index, then the merged headers
    pytest.importorskip("xarray")
    proxy.reset()
    ds = zv_dask.read_zv(store, level=0)
    assert not proxy.requests("HEAD") and not [r for r in proxy.requests() if "list-type" in r]
    assert ds.positions.data.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(0))


def test_auto_partitioning_is_deterministic_and_picklable(store_path):
    import pickle

    from dask.base import tokenize

    store = zv_dask.open_zv(store_path("points_pyramid"))
    a = store.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=900)
    b = zv_dask.open_zv(store_path("points_pyramid")).to_dask_dataframe(
        level=0, chunks_per_partition="auto", partition_rows=900)
    assert a._name == b._name
    c = store.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=2000)
    assert c._name != a._name
    plan = store._plan(0, None, None, [])
    part = store._partitioning(plan, "auto", 900)
    again = pickle.loads(pickle.dumps(part))
    assert tokenize(again) == tokenize(part)
    assert [g.tolist() for g in again.groups] == [g.tolist() for g in part.groups]
    import cloudpickle  # what distributed sends graphs with

    pd.testing.assert_frame_equal(cloudpickle.loads(cloudpickle.dumps(a)).compute(), a.compute())


def test_s3_without_list_permission_lengths_are_counted_not_headed(s3, store_path):
    """A bucket that answers LIST with 403: no HEAD per chunk either; to_dask_array has
    NaN lengths and read_zv counts rows by reading the vertex chunks."""
    from s3server import Rule

    proxy = s3
    truth = zv_dask.open_zv(store_path("points_2d"))
    store = _s3_open(proxy, "points_2d")
    proxy.reset()
    proxy.rules.append(Rule(r"list-type=2", 403))
    a = store.to_dask_array("positions", level=0)
    assert all(np.isnan(a.chunks[0]))
    assert not proxy.requests("HEAD") and len(proxy.requests()) == 1  # the refused LIST
    pytest.importorskip("xarray")
    ds = zv_dask.read_zv(store, level=0)
    assert not proxy.requests("HEAD")
    rows = _real_rows(truth, 0)
    assert ds.positions.data.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(0))
    proxy.reset()


def test_s3_listing_is_retried_on_transient_errors(s3, store_path):
    from s3server import Rule

    proxy = s3
    truth = zv_dask.open_zv(store_path("points_2d"))
    store = zv_dask.open_zv(f"s3://{S3_BUCKET}/points_2d.zarrvectors", retry_backoff=0.01,
                            storage_options=_s3_open(proxy, "points_2d")._loc._options)
    proxy.reset()
    proxy.rules.append(Rule(r"list-type=2", 503, times=1))
    a = store.to_dask_array("positions", level=0)
    assert proxy.rules[0].hits == 1 and len(proxy.requests()) == 2  # failed LIST, retry
    assert not proxy.requests("HEAD")
    rows = _real_rows(truth, 0)
    assert a.chunks[0] == tuple(rows[tuple(c)] for c in truth.chunks(0))
    proxy.reset()


def test_listed_chunk_keys_skip_stray_files():
    from zv_dask.api.lazy import _cell_keys

    listing = {"0/vertices/zarr.json": 500, "0/vertices/c/1/2/3": 20,
               "0/vertices/c/0/0/10": 32, "0/vertices/c/1/2/3.4242.tmp": 20,
               "0/vertices/c/x/1/2": 8, "0/vertices/c/1/2": 8}
    cells, sizes = _cell_keys(listing, "0/vertices/c/", "/", 3)
    assert cells.tolist() == [[1, 2, 3], [0, 0, 10]] and sizes.tolist() == [20, 32]
    cells, sizes = _cell_keys({"0/vertices/c/4.5": 16}, "0/vertices/c/", ".", 2)
    assert cells.tolist() == [[4, 5]] and sizes.tolist() == [16]
    cells, sizes = _cell_keys({"0/vertices/zarr.json": 1}, "0/vertices/c/", "/", 3)
    assert cells.shape == (0, 3) and sizes.shape == (0,)


# ------------------------------------------------------------------- row labels


@pytest.mark.parametrize("name", LEVEL0)
def test_auto_rows_are_labelled_by_their_position_in_the_frame(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=700)
    full = ddf.compute()
    assert isinstance(full.index, pd.RangeIndex)
    assert (full.index.start, full.index.stop) == (0, store.vertex_count(0))
    # each partition continues where the previous one stopped
    starts = [p.index[0] for p in (ddf.get_partition(i).compute() for i in range(ddf.npartitions))]
    assert starts == sorted(starts) and starts[0] == 0
    # the same rows as the per-chunk frame, whose partitions each count from 0
    one = store.to_dask_dataframe(level=0).compute()
    assert not one.index.is_unique or len(store.chunks(0)) == 1
    pd.testing.assert_frame_equal(_sorted(full), _sorted(one))


@pytest.mark.parametrize("name", ["points_pyramid", "points_2d"])
def test_filters_keep_the_labels_of_the_rows_they_keep(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=500)
    full = ddf.compute()
    x = full.x.quantile([0.3, 0.7]).tolist()
    cases = [(ddf.x > x[1], full.x > x[1]),  # prunes partitions and trims chunk lists
             ((ddf.x >= x[0]) & (ddf.x < x[1]), (full.x >= x[0]) & (full.x < x[1])),
             (ddf.y <= full.y.median(), full.y <= full.y.median())]
    if "intensity" in full:
        cases.append((ddf.intensity > 0.5, full.intensity > 0.5))  # not an axis: no pruning
    for q, want in cases:
        pd.testing.assert_frame_equal(ddf[q].compute(), full[want])
        pd.testing.assert_series_equal(ddf[q].x.compute(), full[want].x)
    assert ddf[ddf.x > x[1]].npartitions < ddf.npartitions


def test_compressed_vertices_give_partitions_counting_from_zero(store_path):
    # zstd blobs: their sizes say nothing about rows, so no row's position is known
    store = zv_dask.open_zv(store_path("points_f64_zstd"))
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=700)
    assert ddf.npartitions > 1
    for i in range(ddf.npartitions):
        part = ddf.get_partition(i).compute()
        assert (part.index == np.arange(len(part))).all()


def test_labels_refuse_a_chunk_that_changed_after_the_frame_was_built(store_path, tmp_path):
    dst = tmp_path / "changing.zarrvectors"
    shutil.copytree(store_path("points_pyramid"), dst)
    store = zv_dask.open_zv(dst)
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition="auto", partition_rows=700)
    before = ddf[["x"]].compute()
    cell = tuple(int(v) for v in store.chunks(0)[3])
    lm = store.metadata.levels[0]
    key = "/".join(str(c - o) for c, o in zip(cell, lm.vertices.origin))
    blob = dst / "0" / "vertices" / "c" / key
    raw = blob.read_bytes()
    row = 3 * lm.vertices.dtype.itemsize
    payload = raw[8:-row]  # one row fewer, still a well-formed vlen-bytes blob
    blob.write_bytes(np.array([1, len(payload)], "<u4").tobytes() + payload)
    with pytest.raises(zv_dask.errors.StoreReadError) as err:
        ddf[["x"]].compute()
    assert "changed since it was opened" in str(err.value)
    assert err.value.chunk == cell and err.value.level == 0
    # opened again: the listing no longer adds up to the level's vertex_count, so no
    # row's position is trusted and partitions count from 0; the rows are all there
    again = zv_dask.open_zv(dst).to_dask_dataframe(level=0, chunks_per_partition="auto",
                                                   partition_rows=700)[["x"]].compute()
    assert len(again) == len(before) - 1 and not again.index.is_unique
