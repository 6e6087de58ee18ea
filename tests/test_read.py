"""Eager reads equal the reference readers, value for value."""

from __future__ import annotations

import numpy as np
import pytest

import zv_dask
from zvfixtures import READABLE_STORES, reference_level


def _levels(path):
    with zv_dask.open_zv(path) as s:
        return s.levels


@pytest.mark.parametrize("name", READABLE_STORES)
def test_full_level_reads_equal_reference(store_path, name):
    path = store_path(name)
    store = zv_dask.open_zv(path)
    for level in store.levels:
        ref = reference_level(path, level)
        got = store.read(level=level)
        assert got["level"] == level
        assert got["positions"].dtype == ref["positions"].dtype
        np.testing.assert_array_equal(got["positions"], ref["positions"])  # bit-exact
        assert got["vertex_count"] == len(ref["positions"]) == store.vertex_count(level)
        lm = store.metadata.levels[level]
        stored = {n for n, a in lm.attributes.items() if not a.implied_by_key}
        assert stored == set(ref["attributes"])
        for n, values in ref["attributes"].items():
            mine = got["attributes"][n]
            if values.dtype.kind == "U":
                assert mine.dtype == object
                mine = mine.astype(str)
            assert mine.shape == values.shape, n
            np.testing.assert_array_equal(mine, values)
        if "owner" in ref:
            np.testing.assert_array_equal(got["object_ids"], ref["owner"])
        else:
            assert "object_ids" not in got


@pytest.mark.parametrize("name", READABLE_STORES)
def test_chunks_and_per_chunk_counts_equal_reference(store_path, name):
    path = store_path(name)
    store = zv_dask.open_zv(path)
    for level in store.levels:
        ref = reference_level(path, level)
        assert store.chunks(level) == [tuple(k) for k in ref["chunk_keys"].tolist()]
        counts = [len(d["positions"]) for _, d in store.iter_chunks(level=level, attributes=[])]
        np.testing.assert_array_equal(counts, ref["chunk_counts"])


@pytest.mark.parametrize("name", ["points_pyramid", "points_sharded", "points_2d"])
def test_read_points_matches_reference_read_points(store_path, name):
    from zarr_vectors.types.points import read_points

    path = store_path(name)
    store = zv_dask.open_zv(path)
    for level in store.levels:
        names = sorted(store.attributes_at(level))
        ref = read_points(path, level=level, attribute_names=names or None)
        got = store.read(level=level)
        np.testing.assert_array_equal(got["positions"], ref["positions"])
        for n in names:
            want = ref["vertex_attributes"][n]
            mine = got["attributes"][n]
            np.testing.assert_array_equal(mine.astype(want.dtype) if want.dtype.kind == "U" else mine,
                                          want)


def test_level_api_read_matches(store_path):
    import zarr_vectors as zv

    path = store_path("points_pyramid")
    store = zv_dask.open_zv(path)
    for level in store.levels:
        api = zv.open(path).level(level).read()
        np.testing.assert_array_equal(store.read(level=level)["positions"], api.positions)


def test_multicolumn_attribute_width_from_bytes(store_path):
    """write_polylines records row_shape [] for the (N, 3) tangent; we read 3 columns."""
    path = store_path("streamlines")
    store = zv_dask.open_zv(path)
    assert store.attributes_at(0)["tangent"]["width"] == 1  # what the metadata claims
    r = store.read(level=0, attributes=["tangent"])
    assert r["attributes"]["tangent"].shape == (r["vertex_count"], 3)
    pts = zv_dask.open_zv(store_path("points_pyramid")).read(attributes=["rgb"])
    assert pts["attributes"]["rgb"].shape == (pts["vertex_count"], 3)
    assert pts["attributes"]["rgb"].dtype == np.uint8


def test_object_ids_sparse_and_shared(store_path):
    """Sparse ids (10*k+5) at level 0; coarse levels share rows: smallest owner wins."""
    path = store_path("points_2d")
    store = zv_dask.open_zv(path)
    r0 = store.read(level=0)
    assert set(np.unique(r0["object_ids"]).tolist()) <= {10 * k + 5 for k in range(8)}
    assert store.n_objects == 8
    shared = 0
    for level in store.levels[1:]:
        ref = reference_level(path, level)
        shared += int((ref["nowners"] > 1).sum())
        np.testing.assert_array_equal(store.read(level=level)["object_ids"], ref["owner"])
    assert shared > 0  # the fixture really exercises shared metavertices


def test_chunk_by_attribute_gene_from_key(store_path):
    path = store_path("points_by_gene")
    store = zv_dask.open_zv(path)
    r = store.read()
    assert "gene" in r["attributes"] and "count" in r["attributes"]
    keys = reference_level(path, 0)["chunk_keys"]
    counts = reference_level(path, 0)["chunk_counts"]
    values = store.metadata.levels[0].chunk_attribute[1]
    want = np.repeat(np.asarray(values, object)[keys[:, 0]], counts)
    np.testing.assert_array_equal(r["attributes"]["gene"], want)
    # bbox filters on the spatial axes only, all genes kept
    box = ([0, 0, 0], [999, 999, 999])
    rb = store.read(bbox=box)
    m = np.all((r["positions"] >= 0) & (r["positions"] <= 999), axis=1)
    np.testing.assert_array_equal(rb["positions"], r["positions"][m])
    np.testing.assert_array_equal(rb["attributes"]["gene"], r["attributes"]["gene"][m])


def test_attribute_selection(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    assert store.read(attributes=[])["attributes"] == {}
    r = store.read(attributes=["label"])
    assert list(r["attributes"]) == ["label"]
    assert r["attributes"]["label"].dtype == np.int32


def test_target_resolution_selects_coarsest_adequate_level(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    bins = [max(store.bin_shape_at(lv)) for lv in store.levels]
    assert bins == [100.0, 200.0, 400.0, 800.0]
    assert store.select_level(99) == 0          # none qualifies -> level 0
    assert store.select_level(100) == 0
    assert store.select_level(399.9) == 1
    assert store.select_level(400) == 2
    assert store.select_level(1e9) == 3
    assert store.read(target_resolution=450)["level"] == 2
    assert store.bin_ratio_at(2) == (4.0, 4.0, 4.0)


def test_iter_chunks_prefetch_matches_sequential(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"), cache_size=0)
    box = ([100, 100, 100], [1300, 1800, 900])
    seq = list(store.iter_chunks(level=0, bbox=box))
    pre = list(store.iter_chunks(level=0, bbox=box, prefetch=3, n_workers=2))
    assert [c for c, _ in seq] == [c for c, _ in pre] == store.chunks(0, box)
    for (_, a), (_, b) in zip(seq, pre):
        np.testing.assert_array_equal(a["positions"], b["positions"])
        np.testing.assert_array_equal(a["attributes"]["region"], b["attributes"]["region"])
    full = store.read(level=0, bbox=box)
    np.testing.assert_array_equal(np.concatenate([d["positions"] for _, d in seq]), full["positions"])


def test_iter_chunks_fetches_each_chunk_once(store_path, counting):
    path = store_path("points_pyramid")
    store = zv_dask.open_zv("zvcount://" + path)
    counting.clear()
    chunks = [c for c, _ in store.iter_chunks(level=1, prefetch=2, attributes=[])]
    gets = [p for op, p in counting if op == "get"]
    assert len(gets) == len(chunks) == len(set(gets))
    assert all("/1/vertices/c/" in p for p in gets)


def test_cache_serves_repeated_reads(store_path, counting):
    store = zv_dask.open_zv("zvcount://" + store_path("points_pyramid"), cache_size=1000)
    counting.clear()
    a = store.read(level=2)
    n = len(counting)
    b = store.read(level=2)
    assert len(counting) == n > 0
    np.testing.assert_array_equal(a["positions"], b["positions"])
    small = zv_dask.open_zv("zvcount://" + store_path("points_pyramid"), cache_size=2)
    small.read(level=2)
    counting.clear()
    small.read(level=2)
    assert len(counting) >= store.metadata.levels[2].n_cells - 2


def test_fragment_index_public_api(store_path):
    path = store_path("edge_cases")
    store = zv_dask.open_zv(path)
    from zarr_vectors import building as B

    g = B.get_resolution_level(B.open_store(path), 0)
    explicit_seen = False
    for cc in store.chunks(0):
        mine = zv_dask.read_fragment_index(store.level_group(0), "vertex_fragments", cc)
        ref = B.read_vertex_fragment_index(g, cc)
        assert mine.num_fragments == ref.num_fragments
        assert mine.num_range_fragments == ref.num_range_fragments
        for f in range(mine.num_fragments):
            np.testing.assert_array_equal(mine.indices(f), np.asarray(ref.indices(f)))
            if mine.is_range(f):
                assert mine.range(f) == tuple(ref.range(f))
            else:
                explicit_seen = True
    assert explicit_seen


def test_edge_case_manifest_modes_give_object_ids(store_path):
    """Objects 6 (mode 1, explicit fragment) and 7 (mode 2) re-use rows of object 0..5."""
    path = store_path("edge_cases")
    store = zv_dask.open_zv(path)
    ref = reference_level(path, 0)
    got = store.read()
    np.testing.assert_array_equal(got["object_ids"], ref["owner"])
    assert (ref["nowners"] > 1).any()


def test_raw_array_and_level_group_are_read_only(store_path):
    store = zv_dask.open_zv(store_path("streamlines"))
    fa = store.raw_array("object_attributes/mean_fa", level=0)
    assert fa.shape == (40,)
    assert np.isfinite(fa[:]).all()
    v = store.raw_array("vertices")
    assert v.ndim == 3
    assert store.raw_array("groups" if False else "vertex_fragments").ndim == 3
    with pytest.raises(Exception):
        v[0:1, 0:1, 0:1] = b"x"
    g = store.level_group(0)
    assert "vertices" in g


def test_empty_bbox_gives_typed_empty_result(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    r = store.read(bbox=([5000, 5000, 5000], [6000, 6000, 6000]))
    assert r["vertex_count"] == 0
    assert r["positions"].shape == (0, 3) and r["positions"].dtype == np.float32
    assert r["attributes"]["rgb"].shape == (0, 3)
    assert store.chunks(0, ([5000] * 3, [6000] * 3)) == []
