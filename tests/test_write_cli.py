"""``zv-dask convert``: Parquet/CSV in, the same store as ``to_zv``; export then convert
gives back the same store."""

from __future__ import annotations

import numpy as np

import zv_dask
from zv_dask.cli import main
from writehelpers import files, sample


def _dirs(tmp_path, *names):
    out = []
    for n in names:
        (tmp_path / n).mkdir()
        out.append(tmp_path / n / "pts.zarrvectors")  # same name: the ome block names the store
    return out


def test_convert_parquet_equals_to_zv(tmp_path, capsys):
    _, _, df = sample(1500, np.random.default_rng(21), multi=False)
    src = tmp_path / "src"
    src.mkdir()
    half = len(df) // 2
    df.iloc[:half].to_parquet(src / "a.parquet")
    df.iloc[half:].to_parquet(src / "b.parquet")
    direct, converted = _dirs(tmp_path, "direct", "converted")
    zv_dask.to_zv(df, direct, chunk_shape=300, levels=2)
    rc = main(["convert", str(src), str(converted), "--chunk-shape", "300", "--levels", "2",
               "--scheduler", "sync"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "level 0: 1500 vertices" in out
    assert files(converted) == files(direct)


def test_export_then_convert_gives_back_the_same_store(tmp_path, capsys):
    _, _, df = sample(1200, np.random.default_rng(22))
    first, again = _dirs(tmp_path, "first", "again")
    zv_dask.to_zv(df, first, chunk_shape=250, bin_shape=125, levels=3)
    exported = tmp_path / "exported"
    assert main(["export", str(first), str(exported), "--scheduler", "sync"]) == 0
    rc = main(["convert", str(exported), str(again), "--chunk-shape", "250", "--bin-shape",
               "125", "--levels", "3", "--scheduler", "sync"])
    assert rc == 0, capsys.readouterr()
    assert files(again) == files(first)


def test_convert_csv_with_bounds_and_refusal_of_an_existing_target(tmp_path, capsys):
    rng = np.random.default_rng(23)
    csv = tmp_path / "pts.csv"
    xy = rng.uniform(-50, 50, (400, 2))
    csv.write_text("x,y,w\n" + "\n".join(f"{a},{b},{i}" for i, (a, b) in enumerate(xy)))
    out = tmp_path / "csv.zarrvectors"
    args = ["convert", str(csv), str(out), "--chunk-shape", "25", "--bounds", "-100", "-100",
            "100", "100", "--scheduler", "sync"]
    assert main(args) == 0
    s = zv_dask.open_zv(out)
    lo, hi = s.bounding_box
    assert list(lo) == [-100, -100] and list(hi) == [100, 100]
    got = s.read()
    np.testing.assert_allclose(got["positions"][np.argsort(got["attributes"]["w"])],
                               xy.astype(np.float32))
    capsys.readouterr()
    assert main(args) == 3  # OUT refused, as export refuses it
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
