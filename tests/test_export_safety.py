"""``zv-dask export`` never deletes what it did not write: OUT that is, holds or lies
inside the store is refused; ``--overwrite`` replaces only a previous export (the files
its partition index lists) and never other files.  Real reference-written stores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zv_dask
from zv_dask.cli import main
from zv_dask.cli.outdir import store_relation

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")

NOTES = "field notes: keep me\n"


def tree(root: Path) -> dict:
    """{relative path: bytes} of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def data(store_path, tmp_path):
    """data/cells.zarrvectors (a copy of a reference-written store) + data/notes.txt."""
    d = tmp_path / "data"
    d.mkdir()
    shutil.copytree(store_path("points_2d"), d / "cells.zarrvectors")
    (d / "notes.txt").write_text(NOTES)
    return d


def run(args, capsys):
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def assert_refused(rc, err, *words):
    assert rc == 3, err
    assert err.startswith("zv-dask: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    for w in words:
        assert w in err


@pytest.mark.parametrize("overwrite", [False, True])
def test_out_holding_the_store_is_refused_and_nothing_is_deleted(data, capsys, overwrite):
    before = tree(data)
    rc, err = run(["export", data / "cells.zarrvectors", data]
                  + (["--overwrite"] if overwrite else []), capsys)
    assert_refused(rc, err, "holds the store", str(data))
    assert tree(data) == before  # the store and notes.txt, byte for byte
    r = zv_dask.open_zv(str(data / "cells.zarrvectors")).read()
    assert r["vertex_count"] > 0


@pytest.mark.parametrize("spell", ["same", "slash", "dotdot", "file_url", "symlink"])
def test_out_equal_to_the_store_however_spelled_is_refused(data, capsys, spell):
    store = data / "cells.zarrvectors"
    out = {"same": str(store), "slash": str(store) + "/",
           "dotdot": str(data / "x" / ".." / "cells.zarrvectors"),
           "file_url": "file://" + str(store), "symlink": str(data / "alias")}[spell]
    if spell == "symlink":
        os.symlink(store, data / "alias")
    before = tree(store)
    rc, err = run(["export", store, out, "--overwrite"], capsys)
    assert_refused(rc, err, "is the store")
    assert tree(store) == before


def test_out_inside_the_store_is_refused_and_writes_nothing(data, capsys):
    store = data / "cells.zarrvectors"
    before = tree(store)
    for out in (store / "export", store / "0" / "deeper"):
        rc, err = run(["export", store, out], capsys)
        assert_refused(rc, err, "lies inside the store")
    assert tree(store) == before


def test_overwrite_replaces_only_the_previous_export(data, tmp_path, capsys):
    import dask.dataframe as dd

    store = data / "cells.zarrvectors"
    out = tmp_path / "out"
    assert run(["export", store, out, "--level", 0], capsys)[0] == 0
    first = json.loads((out / "_zv_partitions.json").read_text())
    n0 = len(first["partitions"])
    (out / "notes.txt").write_text(NOTES)
    (out / "sub").mkdir()
    (out / "sub" / "keep.bin").write_bytes(b"\x00\x01")

    rc, err = run(["export", store, out], capsys)  # no --overwrite: refused
    assert_refused(rc, err, "not empty", "--overwrite")
    assert len(list(out.glob("part.*.parquet"))) == n0

    box = ([-1000, -1000], [-1, -1])
    assert run(["export", store, out, "--level", 1, "--overwrite", "--bbox", *box[0], *box[1]],
               capsys)[0] == 0
    s = zv_dask.open_zv(str(store))
    index = json.loads((out / "_zv_partitions.json").read_text())
    parts = sorted(p.name for p in out.glob("part.*.parquet"))
    assert parts == [p["file"] for p in index["partitions"]]
    assert len(parts) == len(s.chunks(1, box)) < n0  # stale level-0 parts are gone
    assert (out / "notes.txt").read_text() == NOTES
    assert (out / "sub" / "keep.bin").read_bytes() == b"\x00\x01"
    got = dd.read_parquet([str(out / p) for p in parts]).compute()
    want = s.to_dask_dataframe(level=1, bbox=box).compute()
    np.testing.assert_array_equal(got["x"].to_numpy(), want["x"].to_numpy())


@pytest.mark.parametrize("index", [None, "not json", {"format": "something else", "partitions": []},
                                   {"format": "zv_dask parquet export 1",
                                    "partitions": [{"file": "../victim.txt"}]},
                                   {"format": "zv_dask parquet export 1",
                                    "partitions": [{"file": "notes.txt"}]}])
def test_overwrite_refuses_a_directory_that_is_not_an_export(data, tmp_path, capsys, index):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text(NOTES)
    (out / "part.000000.parquet").write_bytes(b"not mine")
    (tmp_path / "victim.txt").write_text(NOTES)
    if index is not None:
        text = index if isinstance(index, str) else json.dumps(index)
        (out / "_zv_partitions.json").write_text(text)
    before = tree(tmp_path / "out")
    rc, err = run(["export", data / "cells.zarrvectors", out, "--overwrite"], capsys)
    assert_refused(rc, err, "holds no zv-dask export", "never other files")
    assert tree(out) == before and (tmp_path / "victim.txt").read_text() == NOTES


def test_a_file_the_new_export_would_overwrite_is_refused(data, tmp_path, capsys):
    store = data / "cells.zarrvectors"
    out = tmp_path / "out"
    box = ["--bbox", -1000, -1000, -500, -500]  # a corner: few chunks
    assert run(["export", store, out, *box], capsys)[0] == 0
    n = len(json.loads((out / "_zv_partitions.json").read_text())["partitions"])
    n_all = len(zv_dask.open_zv(str(store)).chunks(0))
    assert n < n_all
    stranger = out / f"part.{n_all - 1:06d}.parquet"
    stranger.write_bytes(b"someone else's file")
    before = tree(out)
    rc, err = run(["export", store, out, "--overwrite"], capsys)
    assert_refused(rc, err, stranger.name, "did not write")
    assert tree(out) == before  # the previous export was not removed either


def test_out_that_is_a_file_is_refused(data, capsys):
    rc, err = run(["export", data / "cells.zarrvectors", data / "notes.txt", "--overwrite"],
                  capsys)
    assert_refused(rc, err, "not a directory")
    assert (data / "notes.txt").read_text() == NOTES


def test_a_bad_query_deletes_nothing(data, tmp_path, capsys):
    store = data / "cells.zarrvectors"
    out = tmp_path / "out"
    assert run(["export", store, out], capsys)[0] == 0
    before = tree(out)
    rc, err = run(["export", store, out, "--overwrite", "--columns", "nope"], capsys)
    assert rc == 1 and "unknown columns ['nope']" in err
    assert tree(out) == before


def test_urls_are_compared_normalised(data, capsys):
    """memory:// store and OUT: the same rules after URL normalisation."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = "/h4safety"
    fs.put(str(data / "cells.zarrvectors"), f"{root}/data/cells.zarrvectors", recursive=True)
    fs.pipe(f"{root}/data/notes.txt", NOTES.encode())
    try:
        n_before = len(fs.find(root))
        url = f"memory://{root}/data/cells.zarrvectors"
        for out, word in [(f"memory://{root}/data/", "holds the store"),
                          (f"memory://{root}/data/./cells.zarrvectors/", "is the store"),
                          (f"memory://{root}/data/cells.zarrvectors/x/..", "is the store"),
                          (f"memory://{root}/data/cells.zarrvectors/0/out", "lies inside")]:
            rc, err = run(["export", url, out, "--overwrite"], capsys)
            assert_refused(rc, err, word)
        assert len(fs.find(root)) == n_before and fs.cat(f"{root}/data/notes.txt") == NOTES.encode()
        assert run(["export", url, f"memory://{root}/elsewhere"], capsys)[0] == 0
        assert fs.exists(f"{root}/elsewhere/_zv_partitions.json")
    finally:
        fs.rm(root, recursive=True)


def test_store_relation_rules():
    assert store_relation("s3://b/data", "s3://b/data/cells.zarrvectors/") == "holds"
    assert store_relation("s3://b/data/cells.zarrvectors/", "s3://b/data/cells.zarrvectors") == "is"
    assert store_relation("s3://b/data/cells.zarrvectors/a", "s3://b/data/cells.zarrvectors") \
        == "inside"
    assert store_relation("s3://b/data/cells.zarrvectors2", "s3://b/data/cells.zarrvectors") \
        is None  # a shared name prefix is not containment
    assert store_relation("gs://b/data", "s3://b/data/cells.zarrvectors") is None


def test_refusal_from_the_command_line_exit_code_and_message(data):
    r = subprocess.run([sys.executable, "-m", "zv_dask", "export", str(data / "cells.zarrvectors"),
                        str(data), "--overwrite"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert r.stderr.startswith("zv-dask: error: OUT ") and "holds the store" in r.stderr
    assert (data / "notes.txt").read_text() == NOTES


def test_an_interrupted_export_is_still_replaced(store_path, tmp_path, capsys):
    """A failing export leaves its index, so --overwrite can replace what it wrote."""
    import shutil

    copy = tmp_path / "damaged.zarrvectors"
    shutil.copytree(store_path("points_2d"), copy)
    blobs = sorted(p for p in (copy / "0" / "vertices" / "c").rglob("*") if p.is_file())
    blobs[-1].write_bytes(b"\x07" * 5)  # the last chunk fails to decode
    out = tmp_path / "out"
    (tmp_path / "keep.txt").write_text(NOTES)
    rc, err = run(["export", copy, out, "--scheduler", "sync"], capsys)
    assert rc == 1 and "chunk (" in err
    assert (out / "_zv_partitions.json").exists()
    (out / "notes.txt").write_text(NOTES)
    shutil.copyfile(store_path("points_2d") + "/0/vertices/c/" +
                    str(blobs[-1].relative_to(copy / "0" / "vertices" / "c")), blobs[-1])
    assert run(["export", copy, out, "--overwrite"], capsys)[0] == 0
    index = json.loads((out / "_zv_partitions.json").read_text())
    assert sorted(p.name for p in out.glob("part.*.parquet")) == \
        [p["file"] for p in index["partitions"]]
    assert (out / "notes.txt").read_text() == NOTES
