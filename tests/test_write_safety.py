"""to_zv never leaves something half-written that opens, refuses bad input before
writing, and writes the same bytes when run again."""

from __future__ import annotations

import os

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.callbacks import Callback

import zv_dask
from zv_dask.errors import (
    IncompleteStoreError,
    InvalidPointsError,
    NotAZVStoreError,
    StoreExistsError,
    WriteInputError,
    ZVError,
)
from writehelpers import assert_valid, files, sample


def _df(n=1500, seed=0, **kw):
    _, _, df = sample(n, np.random.default_rng(seed), **kw)
    return df


def _snapshot(path):
    return {k: (v, os.stat(os.path.join(path, k)).st_mtime_ns) for k, v in files(path).items()}


def test_overwrite_false_refuses_an_existing_store_and_touches_nothing(tmp_path):
    target = tmp_path / "s.zarrvectors"
    zv_dask.to_zv(_df(seed=1), target, chunk_shape=300)
    before = _snapshot(target)
    with pytest.raises(StoreExistsError, match="overwrite=True") as ei:
        zv_dask.to_zv(_df(seed=2), target, chunk_shape=300)
    assert isinstance(ei.value, FileExistsError) and str(target) in str(ei.value)
    assert _snapshot(target) == before
    # a non-empty folder that is not a store is refused the same way
    other = tmp_path / "folder"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(StoreExistsError):
        zv_dask.to_zv(_df(), other, chunk_shape=300)
    assert (other / "notes.txt").read_text() == "keep me" and len(os.listdir(other)) == 1


def test_overwrite_true_replaces_everything(tmp_path):
    target = tmp_path / "s.zarrvectors"
    zv_dask.to_zv(_df(seed=1, lo=0, hi=5000), target, chunk_shape=250, levels=3)
    old = set(files(target))
    new_df = _df(seed=2, lo=0, hi=100, categorical=False, multi=False)
    store = zv_dask.to_zv(new_df, target, chunk_shape=250, overwrite=True)
    assert store.levels == [0] and store.vertex_count(0) == len(new_df)
    now = set(files(target))
    assert not any(k.startswith(("1/", "2/")) for k in now)  # no old level survives
    assert "0/vertex_attributes/region/zarr.json" in old
    assert not any("region" in k or "rgb" in k for k in now)
    assert_valid(target)
    # what is there equals a fresh write
    fresh = tmp_path / "fresh" / "s.zarrvectors"
    fresh.parent.mkdir()
    zv_dask.to_zv(new_df, fresh, chunk_shape=250)
    assert files(fresh) == files(target)


class _StopAfterFirstWrite(Callback):
    """Cancel the computation once one block-writing task has finished."""

    def _posttask(self, key, result, dsk, state, id):
        name = key[0] if isinstance(key, tuple) else key
        if "write_partition" in str(name):
            raise KeyboardInterrupt("cancelled mid-write by the test")


def test_a_job_cancelled_mid_write_leaves_nothing_that_opens(tmp_path):
    target = tmp_path / "s.zarrvectors"
    df = dd.from_pandas(_df(3000, lo=0, hi=2000), npartitions=4)
    with dask.config.set(scheduler="sync"), _StopAfterFirstWrite():
        with pytest.raises(KeyboardInterrupt):
            zv_dask.to_zv(df, target, chunk_shape=250)
    written = files(target)
    assert any(k.startswith("0/vertices/c/") for k in written)  # some cells were written...
    assert "zarr.json" not in written                          # ...but never the root
    with pytest.raises(IncompleteStoreError, match="incomplete|root zarr.json") as ei:
        zv_dask.open_zv(target)
    assert isinstance(ei.value, NotAZVStoreError) and str(target) in str(ei.value)
    import zarr_vectors

    with pytest.raises(Exception):
        zarr_vectors.open(str(target)).level(0).read()
    # running it again with overwrite=True gives a complete, valid store
    store = zv_dask.to_zv(df, target, chunk_shape=250, overwrite=True)
    assert store.vertex_count(0) == 3000
    assert_valid(target)


def test_a_task_run_again_writes_the_same_bytes(tmp_path):
    df = dd.from_pandas(_df(2000), npartitions=3)
    a = tmp_path / "a" / "s.zarrvectors"
    b = tmp_path / "b" / "s.zarrvectors"
    a.parent.mkdir()
    b.parent.mkdir()
    zv_dask.to_zv(df, a, chunk_shape=200, levels=2)
    first = files(a)
    zv_dask.to_zv(df, a, chunk_shape=200, levels=2, overwrite=True)
    assert files(a) == first
    # and a different partitioning of the same rows gives the same store
    zv_dask.to_zv(df.repartition(npartitions=5), b, chunk_shape=200, levels=2)
    assert files(b) == first


@pytest.mark.parametrize("make, match", [
    (lambda df: df.drop(columns="z").rename(columns={"x": "a"}), "axis column 'x' is missing"),
    (lambda df: df.assign(y=df["y"].astype(str)), "axis column 'y' has dtype"),
    (lambda df: df.assign(object_id=np.arange(len(df))), "'object_id' names objects.*geometry="),
    (lambda df: df.assign(when=pd.Timestamp("2020-01-01")), "attribute 'when' has dtype"),
])
def test_bad_columns_are_refused_before_anything_is_written(tmp_path, make, match):
    target = tmp_path / "s.zarrvectors"
    with pytest.raises(WriteInputError, match=match) as ei:
        zv_dask.to_zv(dd.from_pandas(make(_df(200)), npartitions=2), target, chunk_shape=300)
    assert isinstance(ei.value, ValueError) and str(target) in str(ei.value)
    assert not target.exists()


def test_nan_and_infinite_positions_name_count_and_example(tmp_path):
    df = _df(500)
    df.loc[[10, 20, 30], "x"] = np.nan
    df.loc[40, "z"] = np.inf
    target = tmp_path / "s.zarrvectors"
    with pytest.raises(InvalidPointsError, match=r"4 of 500 rows have NaN or infinite") as ei:
        zv_dask.to_zv(dd.from_pandas(df, npartitions=3), target, chunk_shape=300)
    assert ei.value.count == 4
    ex = ei.value.example
    assert np.isnan(ex["x"]) or np.isinf(ex["z"])
    assert not target.exists()


def test_points_outside_given_bounds_name_count_and_example(tmp_path):
    df = _df(500, lo=0, hi=100)
    df.loc[7, "y"] = 150.0
    df.loc[8, "x"] = -1.0
    target = tmp_path / "s.zarrvectors"
    with pytest.raises(InvalidPointsError, match=r"2 of 500 points are outside bounds") as ei:
        zv_dask.to_zv(dd.from_pandas(df, npartitions=2), target, chunk_shape=50,
                      bounds=([0, 0, 0], [100, 100, 100]))
    assert ei.value.count == 2
    bad = [{a: float(np.float32(df.loc[i, a])) for a in "xyz"} for i in (7, 8)]
    assert ei.value.example in bad
    assert not target.exists()


@pytest.mark.parametrize("kw, match", [
    ({"chunk_shape": None}, "chunk_shape is required"),
    ({"chunk_shape": [100, 100]}, "2 values but there are 3 axes"),
    ({"chunk_shape": 100, "bin_shape": 30}, "must divide chunk_shape"),
    ({"chunk_shape": 100, "levels": 0}, "levels must be"),
    ({"chunk_shape": 100, "shard_shape": 0}, "shard_shape must be a positive int"),
    ({"chunk_shape": 100, "compressor": "lz4"}, "compressor 'lz4' is not supported"),
    ({"chunk_shape": 100, "attributes": ["nope"]}, "attribute 'nope' is not a column"),
])
def test_bad_options_are_refused(tmp_path, kw, match):
    target = tmp_path / "s.zarrvectors"
    with pytest.raises(WriteInputError, match=match):
        zv_dask.to_zv(_df(100), target, **kw)
    assert not target.exists()


def test_empty_input_without_bounds_says_what_to_do(tmp_path):
    df = pd.DataFrame({"x": [], "y": []}, dtype="float32")
    with pytest.raises(WriteInputError, match="pass bounds="):
        zv_dask.to_zv(df, tmp_path / "e.zarrvectors", chunk_shape=10)


def test_errors_pickle_with_their_facts():
    import pickle

    e = InvalidPointsError("bad", store="s", count=3, example={"x": 1.0})
    e2 = pickle.loads(pickle.dumps(e))
    assert isinstance(e2, ZVError) and e2.count == 3 and e2.example == {"x": 1.0}
    assert str(e2) == str(e)
