"""to_zv(geometry="streamline" | "polyline"): the store write_polylines (then
building.build_fragment_owner_index) makes for the same lines, file for file; vertex
order kept across partitions and interleaved objects; the reference reader and ours give
back the input; bad input refused before anything is written."""

from __future__ import annotations

import json

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from zarr_vectors.building import build_fragment_owner_index
from zarr_vectors.types.polylines import read_polylines, write_polylines

import zv_dask
from zv_dask.errors import InvalidPointsError, WriteInputError
from writehelpers import assert_same_store, assert_valid, files


def _lines(rng, n=60, step=30.0, start=200.0, longest=40):
    return [np.cumsum(rng.normal(0, step, (int(rng.integers(1, longest)), 3)), 0) + start
            for _ in range(n)]


def _frame(lines, ids=None, attrs=None):
    ids = np.arange(len(lines)) if ids is None else np.asarray(ids)
    df = pd.DataFrame(np.concatenate(lines), columns=list("xyz"))
    df["object_id"] = np.repeat(ids, [len(p) for p in lines]).astype(np.int64)
    for name, per_line in (attrs or {}).items():
        df[name] = np.concatenate(per_line)
    return df


def _reference(path, lines, attrs=None, object_attributes=None, **kw):
    write_polylines(str(path), lines, chunk_shape=(100, 100, 100), vertex_attributes=attrs,
                    object_attributes=object_attributes, **kw)
    build_fragment_owner_index(str(path))
    return path


@pytest.fixture
def case(tmp_path):
    rng = np.random.default_rng(0)
    lines = _lines(rng)
    attrs = {"fa": [rng.random(len(p)).astype(np.float32) for p in lines],
             "label": [rng.integers(-9, 9, len(p)).astype(np.int16) for p in lines]}
    oattrs = {"length": np.array([len(p) for p in lines], np.float32),
              "bundle": rng.integers(0, 5, len(lines)).astype(np.int32)}
    ref = _reference(tmp_path / "ref" / "lines.zarrvectors", lines, attrs, oattrs)
    return lines, attrs, oattrs, ref


def test_same_store_as_write_polylines_with_owner_column(tmp_path, case):
    lines, attrs, oattrs, ref = case
    ddf = dd.from_pandas(_frame(lines, attrs=attrs), npartitions=4, sort=False)
    ours = tmp_path / "ours" / "lines.zarrvectors"
    zv_dask.to_zv(ddf, ours, chunk_shape=100, geometry="streamline",
                  object_attributes=pd.DataFrame(oattrs))
    assert_same_store(ref, ours)
    assert_valid(ours)
    links = [k for k in files(ours) if k.startswith("0/links/0/") and "/c/" in k]
    assert links  # the case crosses chunks


def test_interleaved_objects_across_partitions_keep_vertex_order(tmp_path, case):
    """Rows of different objects interleaved, one object's rows spread over several
    partitions: the frame's order within each object id is the line's order."""
    lines, attrs, oattrs, ref = case
    df = _frame(lines, attrs=attrs)
    rng = np.random.default_rng(5)
    # a random interleaving that keeps each object's rows in order
    key = rng.random(len(df))
    key = pd.Series(key).groupby(df["object_id"]).transform(np.sort).to_numpy()
    shuffled = df.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    assert not shuffled["object_id"].is_monotonic_increasing
    ours = tmp_path / "ours" / "lines.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(shuffled, npartitions=7, sort=False), ours, chunk_shape=100,
                  geometry="streamline", object_attributes=pd.DataFrame(oattrs))
    assert_same_store(ref, ours)


def test_readers_give_back_the_input_lines(tmp_path):
    rng = np.random.default_rng(1)
    lines = _lines(rng, n=40, step=50.0, start=-100.0)
    ids = np.sort(rng.choice(10**6, len(lines), replace=False))  # sparse ids
    df = _frame(lines, ids=ids, attrs={"w": [rng.random(len(p)) for p in lines]})
    path = tmp_path / "sparse.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3, sort=False), path,
                          chunk_shape=60, geometry="polyline",
                          object_attributes=pd.DataFrame({"k": np.arange(20.0)}, index=ids[::2]))
    assert_valid(path)
    root = json.loads((path / "zarr.json").read_text())["attributes"]["zarr_vectors"]
    assert root["geometry_types"] == ["polyline"]
    # the reference's full read lists ids 0..O-1 only (a quirk): ask for the ids
    ref = read_polylines(str(path), object_ids=[int(i) for i in ids])
    assert list(ref["object_ids"]) == list(ids)
    for got, want in zip(ref["polylines"], lines):
        np.testing.assert_array_equal(np.concatenate(got), want.astype(np.float32))
    ours = zv_dask.open_zv(path).read_objects()
    assert list(ours["object_ids"]) == list(ids)
    for k, want in enumerate(lines):
        a, b = ours["offsets"][k], ours["offsets"][k + 1]
        np.testing.assert_array_equal(ours["positions"][a:b], want.astype(np.float32))
        np.testing.assert_array_equal(ours["attributes"]["w"][a:b],
                                      df["w"][df["object_id"] == ids[k]].to_numpy())
    table = zv_dask.open_zv(path).objects().compute()
    assert list(table.index) == list(ids)
    np.testing.assert_array_equal(table["k"].to_numpy()[::2], np.arange(20.0))
    assert table["k"].iloc[1::2].isna().all()  # objects without a row: absent


def test_one_partition_equals_many(tmp_path):
    rng = np.random.default_rng(2)
    df = _frame(_lines(rng, n=25))
    a, b = tmp_path / "a" / "s.zarrvectors", tmp_path / "b" / "s.zarrvectors"
    zv_dask.to_zv(df, a, chunk_shape=100, geometry="streamline")
    zv_dask.to_zv(dd.from_pandas(df, npartitions=5, sort=False), b, chunk_shape=100,
                  geometry="streamline")
    assert files(a) == files(b)


# ----------------------------------------------------------------------------- refusals


def _existing(tmp_path):
    target = tmp_path / "deep" / "s.zarrvectors"
    zv_dask.to_zv(_frame(_lines(np.random.default_rng(9), n=5)), target, chunk_shape=100,
                  geometry="streamline")
    return target, files(tmp_path)


def _refused(tmp_path, df, match, err=WriteInputError, **kw):
    """Refused before a byte is written: the existing store is as it was."""
    target, before = _existing(tmp_path)
    kw.setdefault("geometry", "streamline")
    with pytest.raises(err, match=match) as ei:
        zv_dask.to_zv(df, target, chunk_shape=100, overwrite=True, **kw)
    assert files(tmp_path) == before
    assert str(target) in str(ei.value)
    zv_dask.open_zv(target)
    return ei.value


def test_float_object_ids_refused(tmp_path):
    df = _frame(_lines(np.random.default_rng(3), n=4))
    df["object_id"] = df["object_id"].astype(float)
    _refused(tmp_path, df, "object ids must be integers")


def test_missing_object_ids_refused(tmp_path):
    df = _frame(_lines(np.random.default_rng(3), n=4))
    df["object_id"] = df["object_id"].astype("Int64")
    df.loc[2, "object_id"] = pd.NA
    _refused(tmp_path, df, "<NA>")


def test_nan_positions_refused(tmp_path):
    df = _frame(_lines(np.random.default_rng(3), n=4))
    df.loc[3, "y"] = np.nan
    _refused(tmp_path, df, "NaN", err=InvalidPointsError)


def test_no_object_id_column_refused(tmp_path):
    df = _frame(_lines(np.random.default_rng(3), n=4)).drop(columns="object_id")
    _refused(tmp_path, df, "object_id")


@pytest.mark.parametrize("table, match", [
    (pd.DataFrame({"a": [1.0]}, index=[99]), "no vertices"),
    (pd.DataFrame({"a": [1.0, 2.0]}, index=[0, 0]), "repeated"),
    (pd.DataFrame({"a": ["x"]}, index=[0]), "dtype"),
])
def test_bad_object_attributes_refused(tmp_path, table, match):
    df = _frame(_lines(np.random.default_rng(3), n=4))
    _refused(tmp_path, df, match, object_attributes=table)


@pytest.mark.parametrize("kw, match", [
    ({"geometry": "surface"}, "geometry must be"),
    ({"compressor": "blosc"}, "compressor other than 'zstd'"),
    ({"shard_shape": 2}, "shard_shape"),
])
def test_unsupported_options_refused(tmp_path, kw, match):
    df = _frame(_lines(np.random.default_rng(3), n=4))
    _refused(tmp_path, df, match, **kw)


def test_points_still_refuse_object_id(tmp_path):
    df = _frame(_lines(np.random.default_rng(3), n=4))
    with pytest.raises(WriteInputError, match="object_id"):
        zv_dask.to_zv(df, tmp_path / "p.zarrvectors", chunk_shape=100)


def test_more_objects_than_one_manifest_chunk(tmp_path):
    """17,000 lines: manifests in two zarr chunks of 16,384 rows, object ids in one."""
    rng = np.random.default_rng(7)
    lines = [rng.uniform(0, 400, (int(k), 3)) for k in rng.integers(1, 4, 17_000)]
    ref = _reference(tmp_path / "ref" / "many.zarrvectors", lines)
    ours = tmp_path / "ours" / "many.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(_frame(lines), npartitions=3, sort=False), ours,
                  chunk_shape=100, geometry="streamline")
    assert_same_store(ref, ours)


def test_two_dimensional_lines_and_compute_false(tmp_path):
    rng = np.random.default_rng(8)
    lines = [np.cumsum(rng.normal(0, 40, (int(k), 2)), 0) for k in rng.integers(2, 30, 30)]
    ref = tmp_path / "ref" / "flat.zarrvectors"
    write_polylines(str(ref), lines, chunk_shape=(100, 100))
    build_fragment_owner_index(str(ref))
    df = pd.DataFrame(np.concatenate(lines), columns=["x", "y"])
    df["object_id"] = np.repeat(np.arange(len(lines)), [len(p) for p in lines])
    ours = tmp_path / "ours" / "flat.zarrvectors"
    job = zv_dask.to_zv(df, ours, chunk_shape=100, geometry="streamline", compute=False)
    assert not (ours / "zarr.json").exists()  # nothing opens before the job runs
    assert job.compute()["objects"] == len(lines)
    assert_same_store(ref, ours)


def test_float64_given_bounds_and_empty_partitions(tmp_path):
    import dask

    rng = np.random.default_rng(3)
    lines = [np.cumsum(rng.normal(0, 30, (int(k), 3)), 0) + 100 for k in rng.integers(2, 30, 20)]
    box = ([-500.0] * 3, [800.0] * 3)
    ref = tmp_path / "ref" / "a.zarrvectors"
    write_polylines(str(ref), lines, chunk_shape=(50, 50, 50), dtype="float64", bounds=box)
    build_fragment_owner_index(str(ref))
    df = _frame(lines)
    parts = [df.iloc[:0], df.iloc[:100], df.iloc[100:100], df.iloc[100:]]
    ddf = dd.from_delayed([dask.delayed(p) for p in parts], meta=df.iloc[:0])
    ours = tmp_path / "ours" / "a.zarrvectors"
    zv_dask.to_zv(ddf, ours, chunk_shape=50, geometry="streamline", dtype="float64", bounds=box)
    assert_same_store(ref, ours)


def test_object_source_fills_the_keywords_and_records_its_facts(tmp_path):
    from zv_dask.ingest.source import ObjectSource
    lines = pd.DataFrame({"x": [1., 60, 120, 5, 6], "y": [1., 2, 3, 90, 95],
                          "object_id": [0, 0, 0, 1, 1]})
    table = pd.DataFrame({"score": [0.5, 2.0]})
    src = ObjectSource("streamline", dd.from_pandas(lines, npartitions=2),
                       object_attributes=table, source={"format": "test", "files": ["a"]})
    store = zv_dask.to_zv(src, str(tmp_path / "s.zarrvectors"), chunk_shape=50)
    got = store.read_objects()
    assert got["offsets"].tolist() == [0, 3, 5]
    assert store.objects(attributes=["score"]).compute()["score"].tolist() == [0.5, 2.0]
    np.testing.assert_array_equal(got["positions"][:, 1], lines["y"].to_numpy("float32"))
    root = json.loads((tmp_path / "s.zarrvectors" / "zarr.json").read_text())
    assert root["attributes"]["zv_dask_source"] == {"format": "test", "files": ["a"]}
    with pytest.raises(WriteInputError, match="given twice"):
        zv_dask.to_zv(src, str(tmp_path / "t.zarrvectors"), chunk_shape=50,
                      object_attributes=table)
    with pytest.raises(WriteInputError, match="holds 'streamline'"):
        zv_dask.to_zv(src, str(tmp_path / "u.zarrvectors"), chunk_shape=50, geometry="mesh")


@pytest.mark.parametrize("levels", [1, 2])
def test_local_writes_park_rows_in_spill_files_and_remove_them(tmp_path, case, levels):
    """On the local schedulers rows reach their blocks through spill files, not dask's
    in-memory shuffle (which held every split until the last output partition); the
    store is the same, and the scratch folder is empty afterwards."""
    import dask

    lines, attrs, oattrs, ref = case
    ddf = dd.from_pandas(_frame(lines, attrs=attrs), npartitions=4, sort=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    ours = tmp_path / "ours" / "lines.zarrvectors"
    with dask.config.set({"temporary-directory": str(scratch)}):
        job = zv_dask.to_zv(ddf, ours, chunk_shape=100, geometry="streamline", levels=levels,
                            object_attributes=pd.DataFrame(oattrs), compute=False)
        keys = " ".join(str(k) for k in dict(job.__dask_graph__()))
        assert "zv-park-objects" in keys and "shuffle" not in keys
        job.compute()
    assert list(scratch.iterdir()) == []
    if levels == 1:
        assert_same_store(ref, ours)
    assert_valid(ours)
    got = zv_dask.open_zv(ours).read_objects()
    np.testing.assert_array_equal(got["positions"].astype(np.float64),
                                  np.concatenate(lines).astype(np.float32))
