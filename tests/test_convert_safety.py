"""``zv-dask convert`` never deletes its SOURCE or files it did not write, never writes
inside a store, and answers bad input with one ``zv-dask: error:`` line (exit 1) or a
refusal of OUT (exit 3, as ``export``), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask.cli import main
from writehelpers import files

NOTES = "field notes: keep me\n"


@pytest.fixture
def data(tmp_path):
    """data/pts.parquet (1,000 points) and data/notes.txt."""
    d = tmp_path / "data"
    d.mkdir()
    df = pd.DataFrame(np.random.default_rng(0).uniform(0, 100, (1000, 3)), columns=list("xyz"))
    df.to_parquet(d / "pts.parquet")
    (d / "notes.txt").write_text(NOTES)
    return d


def run(capsys, *args):
    rc = main(["convert", *[str(a) for a in args], "--scheduler", "sync"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err == "" or (err.startswith("zv-dask: error: ") and err.count("\n") == 1), err
    return rc, err


@pytest.mark.parametrize("out", ["data", "data/pts.parquet", "data/pts.parquet/x", "."])
def test_out_that_is_holds_or_lies_inside_the_source_is_refused(data, capsys, out, monkeypatch):
    monkeypatch.chdir(data.parent)
    before = files(data)
    rc, err = run(capsys, "data/pts.parquet", out, "--chunk-shape", 25, "--overwrite")
    assert rc == 3 and "SOURCE" in err and "outside the source" in err
    assert files(data) == before


def test_out_inside_a_store_is_refused(data, tmp_path, capsys):
    store = tmp_path / "s.zarrvectors"
    assert run(capsys, data / "pts.parquet", store, "--chunk-shape", 25, "--levels", 2)[0] == 0
    before = files(store)
    for sub, extra in [("0", ["--overwrite"]), ("new", []), ("0/vertices", ["--overwrite"])]:
        rc, err = run(capsys, data / "pts.parquet", store / sub, "--chunk-shape", 25, *extra)
        assert rc == 3 and "lies inside a Zarr Vectors store" in err
    assert files(store) == before and zv_dask.open_zv(store).levels == [0, 1]


def test_out_holding_foreign_files_is_refused_and_a_store_is_replaced(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text(NOTES)
    rc, err = run(capsys, data / "pts.parquet", out, "--chunk-shape", 25, "--overwrite")
    assert rc == 3 and "not a Zarr Vectors store (notes.txt)" in err
    assert "--overwrite replaces only a store" in err and "overwrite=True" not in err
    assert os.listdir(out) == ["notes.txt"]
    store = tmp_path / "s.zarrvectors"
    assert run(capsys, data / "pts.parquet", store, "--chunk-shape", 25)[0] == 0
    rc, err = run(capsys, data / "pts.parquet", store, "--chunk-shape", 25)
    assert rc == 3 and "pass --overwrite" in err
    assert run(capsys, data / "pts.parquet", store, "--chunk-shape", 50, "--overwrite")[0] == 0
    assert zv_dask.open_zv(store).chunk_shape[0] == 50


@pytest.mark.parametrize("source, words", [
    ("missing.parquet", "does not exist"),
    ("nothing-*.parquet", "matches no files"),
    ("bad.parquet", "cannot read SOURCE"),
    ("bad.csv", "cannot read SOURCE"),
    ("empty", "cannot read SOURCE"),
])
def test_a_source_that_cannot_be_read_is_one_error_line(tmp_path, capsys, monkeypatch,
                                                      source, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet\x00\x01")
    (tmp_path / "bad.csv").write_text('x,y\n1,2\n3\n"unterminated\n')
    (tmp_path / "empty").mkdir()
    rc, err = run(capsys, source, "o.zarrvectors", "--chunk-shape", 2)
    assert rc == 1 and words in err and source in err
    assert not (tmp_path / "o.zarrvectors").exists()


@pytest.mark.parametrize("chunk, words", [
    ("0", "--chunk-shape takes positive finite numbers, got 0"),
    ("-5", "got -5"),
    ("nan", "got nan"),
    ("1e-300", "--chunk-shape"),  # the grid's cell indices would overflow
])
def test_an_absurd_chunk_shape_is_one_error_line(data, tmp_path, capsys, chunk, words):
    out = tmp_path / "o.zarrvectors"
    rc, err = run(capsys, data / "pts.parquet", out, "--chunk-shape", chunk)
    err = err.replace(str(tmp_path), "OUT")
    assert rc == 1 and words in err and "chunk_shape" not in err
    assert not out.exists()


def test_the_console_script_prints_one_line_for_a_missing_source(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "zv-dask")
    r = subprocess.run([exe, "convert", str(tmp_path / "nope.parquet"),
                        str(tmp_path / "o.zarrvectors"), "--chunk-shape", "2"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("zv-dask: error: SOURCE ") and r.stderr.count("\n") == 1
    assert "does not exist" in r.stderr and not (tmp_path / "o.zarrvectors").exists()
