"""``to_zv(df, out, like=store)`` and ``zv-dask convert --like``: a copy keeps the
store's layout (chunk and bin shape, bounds, levels, dtype, codecs, shards), so rows
read from a reference-written store and written back give every file byte for byte;
keywords given as well win; stores the writer cannot rebuild are refused, saying why."""

from __future__ import annotations

import json
import shutil

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask.cli import main
from zv_dask.errors import WriteInputError
from zv_dask.write.like import layout_of
from writehelpers import assert_valid, files, reference, sample

EXAMPLE = zv_dask.example_store("points")


def _assert_same_files(ref, ours):
    """Every file of ``ref`` in ``ours`` with the same bytes, documents as JSON."""
    a, b = files(ref), files(ours)
    assert sorted(a) == sorted(b)
    for k in a:
        if k.endswith("zarr.json"):
            assert json.loads(a[k]) == json.loads(b[k]), k
        else:
            assert a[k] == b[k], k
    return a


def _kinds(names) -> set:
    """Which kinds of data blob a file list holds, per level (the test covers them all)."""
    out = set()
    for k in names:
        if "/c/" in k:
            level, array = k.split("/")[0], k.split("/c/")[0].split("/", 1)[1]
            out.add((level, array.split("/")[0]))
    return out


def _counts(store):
    return [(lv, store.vertex_count(lv), len(store.chunks(lv))) for lv in store.levels]


def test_copy_of_the_example_store_from_its_dataframe_is_byte_equal(tmp_path):
    src = zv_dask.open_zv(EXAMPLE)
    df = src.to_dask_dataframe(level=0)
    out = tmp_path / "example.zarrvectors"  # same name: the root document names the store
    copy = zv_dask.to_zv(df, out, like=src)
    blobs = _assert_same_files(EXAMPLE, out)
    assert _kinds(blobs) >= {("0", "vertices"), ("0", "vertex_fragments"),
                             ("0", "vertex_attributes"), ("0", "links"), ("1", "vertices"),
                             ("1", "vertex_fragments"), ("1", "links"), ("2", "vertices"),
                             ("2", "links")}
    assert copy.levels == src.levels == [0, 1, 2]
    assert _counts(copy) == _counts(src)
    assert list(copy.to_dask_dataframe(level=0).columns) == list(df.columns)
    assert_valid(out)


def test_copy_from_read_arrays_and_a_path_is_byte_equal(tmp_path):
    got = zv_dask.open_zv(EXAMPLE).read(level=0)
    df = pd.DataFrame(got["positions"], columns=["x", "y", "z"])
    for name, values in got["attributes"].items():  # region: strings, dictionary-encoded
        df[name] = values
    out = tmp_path / "example.zarrvectors"
    zv_dask.to_zv(df, out, like=EXAMPLE)  # a path: opened by to_zv
    _assert_same_files(EXAMPLE, out)


@pytest.mark.parametrize("compressor, shard, levels", [
    ("zstd", 2, 2), ("blosc", None, 2), ("zstd", (2, 3, 2), 1),
], ids=["sharded-zstd", "blosc", "sharded232-zstd-l1"])
def test_copies_of_compressed_and_sharded_reference_stores_are_byte_equal(
        tmp_path, compressor, shard, levels):
    pos, attrs, _ = sample(400, np.random.default_rng(5), lo=-450.0, hi=550.0)
    (tmp_path / "ref").mkdir()
    (tmp_path / "copy").mkdir()
    ref = reference(tmp_path / "ref" / "pts.zarrvectors", pos, attrs, levels=levels,
                    chunk_shape=(200.0,) * 3, bin_shape=(100.0,) * 3,
                    compressor=compressor, shard_shape=shard)
    src = zv_dask.open_zv(ref)
    layout = layout_of(src.metadata, src.url)
    assert layout["shard_shape"] == (None if shard is None else
                                     tuple([shard] * 3 if isinstance(shard, int) else shard))
    assert layout["compressor"] != "none" and layout["levels"] == levels
    df = src.to_dask_dataframe(level=0).repartition(npartitions=3)
    out = tmp_path / "copy" / "pts.zarrvectors"
    zv_dask.to_zv(df, out, like=src)
    _assert_same_files(ref, out)
    assert _counts(zv_dask.open_zv(out)) == _counts(src)


@pytest.mark.parametrize("compressor, shard", [("zstd", 2), (None, (2, 3, 2))],
                         ids=["s2-zstd", "s232-plain"])
def test_copies_of_stores_with_sharded_coarse_levels_are_byte_equal(tmp_path, compressor,
                                                                    shard):
    from zarr_vectors.sharding import shard_store

    pos, attrs, _ = sample(400, np.random.default_rng(7), lo=-450.0, hi=550.0)
    (tmp_path / "ref").mkdir()
    (tmp_path / "copy").mkdir()
    ref = reference(tmp_path / "ref" / "pts.zarrvectors", pos, attrs, levels=3,
                    chunk_shape=(200.0,) * 3, bin_shape=(100.0,) * 3,
                    compressor=compressor, shard_shape=shard)
    shard_store(str(ref), shard_shape=shard)  # coarse levels repacked into shards
    src = zv_dask.open_zv(ref)
    layout = layout_of(src.metadata, src.url)
    assert layout["shard_levels"] and layout["levels_codecs"][0]["name"] == "sharding_indexed"
    out = tmp_path / "copy" / "pts.zarrvectors"
    zv_dask.to_zv(src.to_dask_dataframe(level=0).repartition(npartitions=3), out, like=src)
    blobs = _assert_same_files(ref, out)
    assert {("1", "vertices"), ("2", "vertices")} <= _kinds(blobs)
    assert _counts(zv_dask.open_zv(out)) == _counts(src)


def test_keywords_given_with_like_win(tmp_path):
    src = zv_dask.open_zv(EXAMPLE)
    df = src.to_dask_dataframe(level=0)
    out = tmp_path / "one.zarrvectors"
    copy = zv_dask.to_zv(df, out, like=src, levels=1, compressor="zstd", dtype="float64")
    assert copy.levels == [0]
    assert copy.chunk_shape == src.chunk_shape and copy.bin_shape == src.bin_shape
    assert [list(b) for b in copy.bounding_box] == [list(b) for b in src.bounding_box]
    v0 = json.loads((out / "0" / "vertices" / "zarr.json").read_text())
    assert v0["codecs"][1]["name"] == "zstd" and v0["attributes"]["dtype"] == "float64"
    np.testing.assert_array_equal(copy.read(level=0)["positions"],
                                  src.read(level=0)["positions"].astype(np.float64))
    # an option that no longer fits what like= gave names both, and where one came from
    with pytest.raises(WriteInputError) as ei:
        zv_dask.to_zv(df, tmp_path / "bad.zarrvectors", like=src, chunk_shape=300)
    msg = str(ei.value)
    assert "bin_shape" in msg and "chunk_shape" in msg and f"like={src.url}" in msg
    assert not (tmp_path / "bad.zarrvectors").exists()


def test_points_outside_like_bounds_say_where_the_bounds_came_from(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2500.0], "y": [1.0, 1.0], "z": [1.0, 1.0]})
    with pytest.raises(WriteInputError) as ei:
        zv_dask.to_zv(df, tmp_path / "o.zarrvectors", like=EXAMPLE)
    assert "outside bounds" in str(ei.value) and "bounds taken from like=" in str(ei.value)


def test_without_like_chunk_shape_is_required_and_defaults_stay(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    with pytest.raises(WriteInputError, match="chunk_shape is required.*like=STORE"):
        zv_dask.to_zv(df, tmp_path / "o.zarrvectors")
    s = zv_dask.to_zv(df, tmp_path / "d.zarrvectors", chunk_shape=10)
    assert s.levels == [0] and s.read(level=0)["positions"].dtype == np.float32


def _edited_example(tmp_path, rel, edit):
    dst = tmp_path / "edited.zarrvectors"
    shutil.copytree(EXAMPLE, dst)
    doc = json.loads((dst / rel).read_text())
    edit(doc)
    (dst / rel).write_text(json.dumps(doc))
    return dst


def _dot_keys(tmp_path):
    def edit(doc):
        doc["chunk_key_encoding"] = {"name": "default", "configuration": {"separator": "."}}
    return _edited_example(tmp_path, "0/vertex_fragments/zarr.json", edit)


def _compressed_coarse_level(tmp_path):
    def edit(doc):
        doc["codecs"].append({"name": "zstd", "configuration": {"level": 0, "checksum": False}})
    return _edited_example(tmp_path, "1/vertices/zarr.json", edit)


def _coarse_attribute(tmp_path):
    """Level 1 with an ``intensity`` array (documents only: the check reads metadata)."""
    dst = tmp_path / "attrs.zarrvectors"
    shutil.copytree(EXAMPLE, dst)
    shutil.copytree(dst / "0" / "vertex_attributes", dst / "1" / "vertex_attributes",
                    ignore=lambda d, names: [n for n in names if n not in ("zarr.json",
                                                                            "intensity")])
    return dst


@pytest.mark.parametrize("kind", ["streamlines", "graph", "skeleton", "mesh"])
def test_object_geometries_are_refused(tmp_path, kind):
    df = pd.DataFrame({"x": [1.0], "y": [1.0], "z": [1.0]})
    out = tmp_path / "o.zarrvectors"
    with pytest.raises(WriteInputError, match="point clouds only") as ei:
        zv_dask.to_zv(df, out, like=zv_dask.example_store(kind))
    assert "like=" in str(ei.value) and "cannot copy" in str(ei.value)
    assert not out.exists()


def _shard_index_first(tmp_path):
    """Level-0 arrays sharded with the index at the start (to_zv puts it at the end)."""
    dst = tmp_path / "start.zarrvectors"
    shutil.copytree(EXAMPLE, dst)
    for doc_path in (dst / "0").rglob("zarr.json"):
        doc = json.loads(doc_path.read_text())
        if doc.get("node_type") != "array" or "links" in doc_path.parts:
            continue
        doc["chunk_grid"]["configuration"]["chunk_shape"] = [2, 2, 2]
        doc["codecs"] = [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [1, 1, 1], "codecs": doc["codecs"],
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                             {"name": "crc32c"}], "index_location": "start"}}]
        doc_path.write_text(json.dumps(doc))
    return dst


@pytest.mark.parametrize("make, words", [
    (_shard_index_first, "level-0 codecs"),
    (_dot_keys, "chunk keys"),
    (_compressed_coarse_level, "coarse levels plain"),
    (_coarse_attribute, "level 1 carries attributes"),
], ids=["shard-index-first", "dot-keys", "compressed-coarse-level", "coarse-attribute"])
def test_layouts_the_writer_does_not_make_are_refused(tmp_path, make, words):
    like = make(tmp_path)
    out = tmp_path / "o.zarrvectors"
    df = zv_dask.open_zv(EXAMPLE).to_dask_dataframe(level=0)
    with pytest.raises(WriteInputError, match=words):
        zv_dask.to_zv(df, out, like=like)
    assert not out.exists()


def test_convert_like_copies_an_exported_store_byte_for_byte(tmp_path, capsys):
    rows = tmp_path / "rows"
    assert main(["export", EXAMPLE, str(rows), "--scheduler", "sync"]) == 0
    out = tmp_path / "example.zarrvectors"
    capsys.readouterr()
    assert main(["convert", str(rows), str(out), "--like", EXAMPLE, "--scheduler", "sync"]) == 0
    assert "level 2: 63 vertices" in capsys.readouterr().out
    _assert_same_files(EXAMPLE, out)


def test_convert_like_refusal_is_one_line_in_cli_words(tmp_path, capsys):
    src = tmp_path / "p.parquet"
    pd.DataFrame({"x": [1.0], "y": [2.0], "z": [3.0]}).to_parquet(src)
    rc = main(["convert", str(src), str(tmp_path / "o.zarrvectors"), "--like",
               zv_dask.example_store("mesh"), "--scheduler", "sync"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and err.startswith("zv-dask: error: ")
    assert "(--like)" in err and "--chunk-shape ..., --levels ..." in err
    assert "like=" not in err and "chunk_shape" not in err
    rc = main(["convert", str(src), str(tmp_path / "o.zarrvectors"), "--scheduler", "sync"])
    err = capsys.readouterr().err
    assert rc == 1 and "--chunk-shape is required" in err and "--like STORE" in err


def test_dask_frame_of_several_partitions_copies_the_same(tmp_path):
    src = zv_dask.open_zv(EXAMPLE)
    pdf = src.to_dask_dataframe(level=0).compute()
    out = tmp_path / "example.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(pdf, npartitions=4, sort=False), out, like=src)
    _assert_same_files(EXAMPLE, out)


@pytest.mark.parametrize("module", ["zv_dask.write.like", "zv_dask.cli.common"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
