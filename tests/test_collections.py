"""Dask collections: equal to read(), lazy, projected, pruned, deterministic."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import zv_dask


def _as_read(store, df, level, attrs=None):
    """A dataframe rebuilt into read()'s shape for comparison."""
    lm = store.metadata.levels[level]
    pos = df[list(store.axes)].to_numpy()
    out = {"positions": pos, "attributes": {}}
    for name in (attrs if attrs is not None else lm.attributes):
        cols = [c for c in df.columns if c == name or c.startswith(name + "_")]
        if cols == [name]:
            v = df[name]
            out["attributes"][name] = v.astype(object).to_numpy() if isinstance(
                v.dtype, pd.CategoricalDtype) else v.to_numpy()
        else:
            out["attributes"][name] = df[cols].to_numpy()
    if "object_id" in df:
        out["object_ids"] = df["object_id"].to_numpy()
    return out


def _assert_same(a, b):
    np.testing.assert_array_equal(a["positions"], b["positions"])
    assert set(a["attributes"]) == set(b["attributes"])
    for k in a["attributes"]:
        np.testing.assert_array_equal(a["attributes"][k], b["attributes"][k])
    assert ("object_ids" in a) == ("object_ids" in b)
    if "object_ids" in a:
        np.testing.assert_array_equal(a["object_ids"], b["object_ids"])


@pytest.mark.parametrize("name", ["points_pyramid", "points_sharded", "points_2d",
                                  "points_by_gene", "streamlines", "points_f64_zstd"])
def test_dataframe_equals_read(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    for level in store.levels:
        ddf = store.to_dask_dataframe(level=level)
        assert ddf.npartitions == len(store.chunks(level))
        df = ddf.compute(scheduler="threads")
        r = store.read(level=level)
        _assert_same(_as_read(store, df, level), r)
        lm = store.metadata.levels[level]
        for c in store.axes:
            assert df[c].dtype == lm.vertices.dtype
        for a in lm.attributes.values():
            if a.is_categorical:
                assert list(df[a.name].cat.categories) == list(a.categories)


def test_dataframe_bbox_clips_and_prunes(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    box = ([120.5, 0, 480], [1337, 999.5, 1500])
    ddf = store.to_dask_dataframe(level=0, bbox=box, attributes=["rgb", "region"])
    assert list(ddf.columns) == ["x", "y", "z", "rgb_0", "rgb_1", "rgb_2", "region"]
    assert ddf.npartitions == len(store.chunks(0, box))
    _assert_same(_as_read(store, ddf.compute(), 0, ["rgb", "region"]),
                 store.read(level=0, bbox=box, attributes=["rgb", "region"]))
    # partition i is chunk row i of partitions()
    parts = store.partitions(level=0, bbox=box)
    assert list(parts["chunk"]) == store.chunks(0, box)
    total = 0
    for i in range(0, ddf.npartitions, 3):
        lo = parts.iloc[i][["x_min", "y_min", "z_min"]].to_numpy(float)
        hi = parts.iloc[i][["x_max", "y_max", "z_max"]].to_numpy(float)
        p = ddf.partitions[i].compute()[["x", "y", "z"]].to_numpy()
        assert (p >= lo).all() and (p <= hi).all()
        total += len(p)
    assert total > 0


def test_chunks_per_partition_groups_neighbours(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    one = store.to_dask_dataframe(level=0)
    grouped = store.to_dask_dataframe(level=0, chunks_per_partition=4)
    assert grouped.npartitions == -(-one.npartitions // 4)
    pd.testing.assert_frame_equal(one.compute().reset_index(drop=True),
                                  grouped.compute().reset_index(drop=True))
    parts = store.partitions(level=0, chunks_per_partition=4)
    assert parts["n_chunks"].sum() == len(store.chunks(0))
    with pytest.raises(zv_dask.QueryError):
        store.to_dask_dataframe(chunks_per_partition=0)


def test_empty_selection_gives_empty_frame_with_meta(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    ddf = store.to_dask_dataframe(bbox=([5000] * 3, [6000] * 3))
    df = ddf.compute()
    assert len(df) == 0 and list(df.columns) == list(store.to_dask_dataframe().columns)
    a = store.to_dask_array(bbox=([5000] * 3, [6000] * 3))
    assert a.shape == (0, 3) and a.compute().shape == (0, 3)


class _NoCompute:
    def __call__(self, *a, **k):
        raise AssertionError("a collection was computed while being built")


@pytest.mark.parametrize("name", ["points_pyramid", "points_2d", "streamlines"])
def test_building_collections_reads_and_computes_nothing(store_path, counting, name):
    store = zv_dask.open_zv("zvcount://" + store_path(name))
    store.owner_table(0) if store.metadata.levels[0].object_index else None
    store._widths(0, list(store.metadata.levels[0].attributes.values()))  # probe once
    counting.clear()
    box = ([0] * store.spatial_dims, [900] * store.spatial_dims)
    with dask.config.set(scheduler=_NoCompute()):
        for level in store.levels:
            store.to_dask_dataframe(level=level)
            store.to_dask_dataframe(level=level, bbox=box, chunks_per_partition=3)
            store.to_dask_array("positions", level=level, bbox=box)
            store.partitions(level=level, bbox=box)
        store.describe(level=0)
        store.bounds(level=0, bbox=box)
    assert [p for op, p in counting if op == "get" and "/c/" in p] == []  # no chunk blob
    # describe's "auto" grouping may list vertex arrays once each (sizes give rows), no stat
    listed = [p for op, p in counting if op == "list"]
    assert len(listed) == len(set(listed)) and all(p.endswith("/vertices") for p in listed)
    assert not [p for op, p in counting if op == "stat"]
    assert [p for op, p in counting if p.endswith("zarr.json")] == []  # no metadata re-read


def test_projection_fetches_only_requested_arrays(store_path, counting):
    path = store_path("points_pyramid")
    store = zv_dask.open_zv("zvcount://" + path)
    ddf = store.to_dask_dataframe(level=0)
    counting.clear()
    got = ddf.intensity.mean().compute(scheduler="sync")
    fetched = {p.split(".zarrvectors/")[1].split("/c/")[0] for op, p in counting if op == "get"}
    # (and the document of that array, see test_tasks_never_reread_metadata)
    assert fetched == {"0/vertex_attributes/intensity", "0/vertex_attributes/intensity/zarr.json"}
    assert np.isclose(got, store.read(attributes=["intensity"])["attributes"]["intensity"].mean())
    # with a bbox the vertices are needed to clip rows, still no other attribute
    box = ([0] * 3, [800] * 3)
    counting.clear()
    store.to_dask_dataframe(level=0, bbox=box)[["label"]].compute(scheduler="sync")
    fetched = {p.split(".zarrvectors/")[1].split("/c/")[0] for op, p in counting
               if op == "get" and not p.endswith("zarr.json")}
    assert fetched == {"0/vertex_attributes/label", "0/vertices"}
    assert len(ddf) == store.vertex_count(0)


def test_tasks_never_reread_metadata(store_path, counting):
    """Chunk tasks read chunks only.  A handle that has not listed the level re-reads
    the documents of the arrays a compute decodes, once per compute in one task that
    every chunk task waits for (a store rewritten since then raises; see
    tests/test_stale_handles.py); one that listed it checks rows and re-reads nothing."""
    store = zv_dask.open_zv("zvcount://" + store_path("points_2d"))
    ddf = store.to_dask_dataframe(level=1)
    assert ddf.npartitions > 1
    for _ in range(2):
        counting.clear()
        ddf.compute(scheduler="threads")
        gets = [p for op, p in counting if op == "get"]
        docs = sorted(p.split(".zarrvectors/")[1] for p in gets if p.endswith("zarr.json"))
        assert len(gets) > len(docs) and docs == ["1/vertices/zarr.json"]
        assert not [op for op, _ in counting if op == "list"]
    store.to_dask_array(level=1)  # lists the level
    ddf = store.to_dask_dataframe(level=1)
    counting.clear()
    ddf.compute(scheduler="threads")
    gets = [p for op, p in counting if op == "get"]
    assert gets and not [p for p in gets if p.endswith("zarr.json")]
    assert not [op for op, _ in counting if op == "list"]


def test_keys_are_deterministic(store_path):
    path = store_path("points_pyramid")
    a = zv_dask.open_zv(path).to_dask_dataframe(level=1, bbox=([0] * 3, [900] * 3))
    b = zv_dask.open_zv(path).to_dask_dataframe(level=1, bbox=([0] * 3, [900] * 3))
    c = zv_dask.open_zv(path).to_dask_dataframe(level=1, bbox=([0] * 3, [901] * 3))
    assert a._name == b._name != c._name
    assert sorted(a.__dask_graph__().keys()) == sorted(b.__dask_graph__().keys())
    x = zv_dask.open_zv(path).to_dask_array("fa", level=0)
    y = zv_dask.open_zv(path).to_dask_array("fa", level=0)
    assert x.name == y.name


def test_keys_and_graph_hold_no_credentials(store_path):

    store = zv_dask.open_zv(store_path("points_2d"), storage_options={"auto_mkdir": False})
    s3ish = zv_dask.store.ZVStore(
        zv_dask.io.location.StoreLocation("s3://bucket/x.zarrvectors",
                                     {"key": "AKIAXXXX", "secret": "TOPSECRET"}),
        store.metadata)
    ddf = s3ish.to_dask_dataframe(level=0)
    graph = ddf.__dask_graph__()
    assert all("TOPSECRET" not in str(k) for k in graph.keys())
    assert "TOPSECRET" not in repr(s3ish) and "TOPSECRET" not in str(ddf)


@pytest.mark.parametrize("name", ["points_pyramid", "points_2d", "streamlines"])
def test_arrays_equal_read_with_exact_lengths(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    for level in store.levels:
        r = store.read(level=level)
        a = store.to_dask_array("positions", level=level)
        assert a.shape == r["positions"].shape  # exact, from blob sizes
        assert a.numblocks[0] == len(store.chunks(level))
        np.testing.assert_array_equal(a.compute(), r["positions"])
        for n, v in r["attributes"].items():
            b = store.to_dask_array(n, level=level)
            got = b.compute()
            if v.dtype == object:
                cats = store.metadata.levels[level].attributes[n].categories
                got = np.asarray(cats, object)[got]
            np.testing.assert_array_equal(got, v)
            assert b.shape[1:] == v.shape[1:]
    box = ([0] * store.spatial_dims, [700] * store.spatial_dims)
    a = store.to_dask_array("positions", level=0, bbox=box)
    assert np.isnan(a.shape[0])
    np.testing.assert_array_equal(a.compute(), store.read(level=0, bbox=box)["positions"])


def test_streamline_tangent_width_probed_from_blob_sizes(store_path, counting):
    store = zv_dask.open_zv("zvcount://" + store_path("streamlines"))
    counting.clear()
    ddf = store.to_dask_dataframe(level=0)
    assert [c for c in ddf.columns if c.startswith("tangent")] == ["tangent_0", "tangent_1", "tangent_2"]
    assert not [p for op, p in counting if op == "get"]  # sizes only (stat), no blob read


def test_pruning_property(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    lm = store.metadata.levels[0]
    all_chunks = np.asarray(store.chunks(0))

    # no subnormal bounds: the expectation below is naive interval arithmetic, while a
    # subnormal p / chunk underflows to -0.0, so such a point is in chunk 0, not -1
    # (the exact writer rule is checked in test_cells_writer.py)
    @given(st.lists(st.floats(-1500, 1500, allow_subnormal=False), min_size=4, max_size=4))
    def check(v):
        lo = np.minimum(v[:2], v[2:])
        hi = np.maximum(v[:2], v[2:])
        parts = store.partitions(level=0, bbox=(lo, hi))
        ok = np.all((all_chunks * lm.chunk_shape <= hi) & ((all_chunks + 1) * lm.chunk_shape > lo), 1)
        assert list(parts["chunk"]) == [tuple(c) for c in all_chunks[ok].tolist()]
        assert store.to_dask_dataframe(level=0, bbox=(lo, hi)).npartitions == max(1, int(ok.sum()))

    check()


def test_progress_bar_runs(store_path, capsys):
    from dask.diagnostics import ProgressBar

    store = zv_dask.open_zv(store_path("points_2d"))
    with ProgressBar():
        store.describe(columns=["v"]).compute(scheduler="threads")
    assert "100%" in capsys.readouterr().out
