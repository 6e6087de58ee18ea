"""to_zv against the reference writer: same files, same bytes, accepted by its validator,
read back exactly by its reader and by ours."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from zarr_vectors.types.points import read_points

import zv_dask
from writehelpers import assert_same_store, assert_valid, frame, reference, rows_sorted, sample


def _pair(tmp_path, name="pts.zarrvectors"):
    (tmp_path / "ref").mkdir()
    (tmp_path / "ours").mkdir()
    return tmp_path / "ref" / name, tmp_path / "ours" / name


def _read_ref(path, level=0, names=()):
    return read_points(str(path), level=level, attribute_names=list(names) or None)


def test_pyramid_with_every_attribute_kind_matches_reference(tmp_path):
    rng = np.random.default_rng(0)
    pos, attrs, df = sample(2000, rng)
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=3, chunk_shape=(250, 250, 250), bin_shape=(125, 125, 125))
    store = zv_dask.to_zv(dd.from_pandas(df, npartitions=4), ours, chunk_shape=250,
                          bin_shape=125, levels=3)
    assert_same_store(ref, ours)
    r = assert_valid(ours)
    assert any("links[delta=1] validated" in p for p in r.passed)
    # the reference reader returns exactly the input rows at level 0
    got = _read_ref(ours, 0, attrs)
    assert got["positions"].shape == (2000, 3)
    want = {k: v for k, v in attrs.items() if k != "rgb"}
    have = {k: got["vertex_attributes"][k] for k in want}
    np.testing.assert_array_equal(rows_sorted(got["positions"], have),
                                  rows_sorted(pos.astype(np.float32), want))
    np.testing.assert_array_equal(np.sort(got["vertex_attributes"]["rgb"], axis=0),
                                  np.sort(attrs["rgb"], axis=0))
    # our reader reads back what the reference reader reads, in the same order
    for level in range(3):
        mine = store.read(level=level)
        theirs = _read_ref(ours, level, attrs if level == 0 else ())
        np.testing.assert_array_equal(mine["positions"], theirs["positions"])
        if level == 0:
            for k in attrs:
                np.testing.assert_array_equal(np.asarray(mine["attributes"][k]),
                                              np.asarray(theirs["vertex_attributes"][k]))
    assert store.levels == [0, 1, 2]


def test_default_bin_three_levels_blocks_span_several_chunks(tmp_path):
    rng = np.random.default_rng(1)
    # 6 chunks an axis: blocks of 4 chunks, one whole and one cut by the data's extent
    pos, attrs, df = sample(900, rng, lo=0, hi=600, categorical=False, multi=False)
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=3, chunk_shape=(100, 100, 100))
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3), ours, chunk_shape=100, levels=3)
    assert_same_store(ref, ours)
    assert_valid(ours)


def test_points_on_chunk_faces_and_negative_origin(tmp_path):
    # integer grid points: many lie exactly on chunk and bin faces, several below zero
    g = np.arange(-40, 41, 10, dtype=np.float64)
    pos = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    attrs = {"w": np.arange(len(pos), dtype=np.int64)}
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=2, chunk_shape=(20, 20, 20), bin_shape=(10, 10, 10))
    store = zv_dask.to_zv(dd.from_pandas(frame(pos, attrs), npartitions=5), ours,
                          chunk_shape=20, bin_shape=10, levels=2)
    assert_same_store(ref, ours)
    assert_valid(ours)
    got = store.read(level=0)
    # each row's cell is floor(p / chunk): x = -40, -20, 0, 20, 40 start a new cell
    cells = {tuple(int(v) for v in c) for c in np.floor(pos / 20)}
    assert {tuple(c) for c in store.chunks(0)} == cells
    order = np.argsort(got["attributes"]["w"])
    np.testing.assert_array_equal(got["positions"][order], pos.astype(np.float32))


def test_two_dimensional_with_given_bounds(tmp_path):
    rng = np.random.default_rng(2)
    pos, attrs, df = sample(1500, rng, lo=-999, hi=999, ndim=2, multi=False)
    ref, ours = _pair(tmp_path)
    bounds = ([-1000, -1000], [1000, 1000])
    reference(ref, pos, attrs, levels=3, chunk_shape=(500, 500), bin_shape=(250, 250),
              bounds=bounds)
    zv_dask.to_zv(dd.from_pandas(df, npartitions=2), ours, chunk_shape=(500, 500),
                  bin_shape=(250, 250), bounds=bounds, levels=3)
    assert_same_store(ref, ours)
    assert_valid(ours)


def test_float64_positions_zstd(tmp_path):
    rng = np.random.default_rng(3)
    pos, attrs, df = sample(1200, rng, lo=0, hi=100, categorical=False, multi=False)
    attrs["d"] = rng.random(1200)
    df["d"] = attrs["d"]
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, chunk_shape=(25, 25, 25), dtype="float64", compressor="zstd")
    store = zv_dask.to_zv(df, ours, chunk_shape=25, dtype="float64", compressor="zstd")
    assert_same_store(ref, ours)
    assert_valid(ours)
    got = store.read()
    assert got["positions"].dtype == np.float64
    np.testing.assert_array_equal(rows_sorted(got["positions"], {"d": got["attributes"]["d"]}),
                                  rows_sorted(pos, {"d": attrs["d"]}))


def test_single_point_and_one_partition_equals_many(tmp_path):
    ref, ours = _pair(tmp_path)
    pos = np.array([[12.5, -3.0, 7.0]])
    attrs = {"v": np.array([4.0], np.float32)}
    reference(ref, pos, attrs, levels=2, chunk_shape=(10, 10, 10))
    zv_dask.to_zv(frame(pos, attrs), ours, chunk_shape=10, levels=2)
    assert_same_store(ref, ours)
    assert_valid(ours)

    rng = np.random.default_rng(4)
    _, _, df = sample(2000, rng)
    (tmp_path / "split").mkdir()
    one, many = _pair(tmp_path / "split")  # same name: the ome block names the store
    zv_dask.to_zv(dd.from_pandas(df, npartitions=1), one, chunk_shape=200, levels=2)
    shuffled = df.sample(frac=1.0, random_state=0)  # any row order: only input order inside bins moves
    zv_dask.to_zv(dd.from_pandas(df, npartitions=7), many, chunk_shape=200, levels=2)
    from writehelpers import files

    assert files(one) == files(many)
    s = zv_dask.to_zv(shuffled, tmp_path / "shuf.zarrvectors", chunk_shape=200, levels=2)
    assert s.vertex_count(0) == 2000
    assert s.vertex_count(1) == zv_dask.open_zv(one).vertex_count(1)


def test_empty_input_with_bounds(tmp_path):
    ref, ours = _pair(tmp_path)
    pos = np.zeros((0, 3))
    reference(ref, pos, {}, chunk_shape=(50, 50, 50), bounds=([0, 0, 0], [100, 100, 100]))
    df = pd.DataFrame({"x": [], "y": [], "z": []}, dtype="float64")
    store = zv_dask.to_zv(df, ours, chunk_shape=50, bounds=([0, 0, 0], [100, 100, 100]))
    assert_same_store(ref, ours)
    assert_valid(ours)
    assert store.vertex_count(0) == 0
    assert store.read()["positions"].shape == (0, 3)


def test_attribute_selection_and_custom_axes(tmp_path):
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"px": rng.uniform(0, 10, 300), "py": rng.uniform(0, 10, 300),
                       "keep": rng.random(300), "drop": rng.random(300)})
    s = zv_dask.to_zv(df, tmp_path / "a.zarrvectors", chunk_shape=5, axes=["px", "py"],
                      attributes=["keep"])
    assert_valid(tmp_path / "a.zarrvectors")
    got = s.read()
    assert sorted(got["attributes"]) == ["keep"]
    assert tuple(s.axes) == ("px", "py")
    np.testing.assert_array_equal(np.sort(got["attributes"]["keep"]), np.sort(df["keep"].to_numpy()))


def test_compute_false_returns_a_delayed_that_writes(tmp_path):
    rng = np.random.default_rng(6)
    _, _, df = sample(500, rng, categorical=False, multi=False)
    target = tmp_path / "lazy.zarrvectors"
    job = zv_dask.to_zv(dd.from_pandas(df, npartitions=2), target, chunk_shape=300, levels=2,
                        compute=False)
    assert not (target / "zarr.json").exists()
    out = job.compute()
    assert out["vertex_count"][0] == 500
    assert zv_dask.open_zv(target).vertex_count(0) == 500
    assert_valid(target)


@pytest.mark.parametrize("levels", [2])
def test_distributed_cluster_p2p(tmp_path, levels):
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(7)
    pos, attrs, df = sample(2000, rng, multi=False)
    ref, ours = _pair(tmp_path)
    reference(ref, pos, attrs, levels=levels, chunk_shape=(300, 300, 300))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        zv_dask.to_zv(dd.from_pandas(df, npartitions=4), ours, chunk_shape=300, levels=levels)
    assert_same_store(ref, ours)
    assert_valid(ours)
