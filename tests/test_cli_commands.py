"""``zv-dask stats`` and ``zv-dask export`` run as real subprocesses on reference-written
stores: printed statistics against numpy on the eager read, exported Parquet against
``to_dask_dataframe``, and the exit codes and messages of bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import zv_dask

# dask's parquet reader uses a pandas keyword that pandas 3.1 deprecates; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")

STAT_NAMES = ["count", "mean", "std", "min", "max", "sum"]


def zv(*args, env=None, check=True):
    """Run ``python -m zv_dask ARGS``; returns the CompletedProcess."""
    r = subprocess.run([sys.executable, "-m", "zv_dask", *map(str, args)], capture_output=True,
                       text=True, env=env, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    return r


def parse_stats(stdout: str) -> dict:
    """{column: {stat: value}} from the printed table (header line starts with 'column')."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["column"])
    assert lines[start].split()[1:] == STAT_NAMES
    table = {}
    for line in lines[start + 1:]:
        name, *values = line.split()
        table[name] = dict(zip(STAT_NAMES, map(float, values)))
    return table


def assert_stats_match(table: dict, columns: dict):
    """Printed statistics equal numpy's on the same values (10 significant digits shown)."""
    assert sorted(table) == sorted(columns)
    for name, v in columns.items():
        v = np.asarray(v, np.float64)
        got = table[name]
        assert got["count"] == len(v), name
        expect = {"mean": v.mean(), "std": v.std(ddof=1), "min": v.min(), "max": v.max(),
                  "sum": v.sum()}
        for stat, value in expect.items():
            assert np.isclose(got[stat], value, rtol=1e-8, atol=1e-9), (name, stat)


def numeric_columns(r: dict, axes) -> dict:
    cols = {ax: r["positions"][:, d] for d, ax in enumerate(axes)}
    for name, v in r["attributes"].items():
        if v.dtype.kind == "O":
            continue  # categorical: stats skips it
        if v.ndim == 2:
            cols.update({f"{name}_{i}": v[:, i] for i in range(v.shape[1])})
        else:
            cols[name] = v
    for key, v in r.items():  # per-row extras: object_ids, owner counts, ...
        if key not in ("positions", "attributes") and isinstance(v, np.ndarray) \
                and v.shape == (len(r["positions"]),):
            cols["object_id" if key == "object_ids" else key] = v
    return cols


def frames_equal(got: pd.DataFrame, expect: pd.DataFrame):
    """Same columns, same rows in the same order; categoricals compared by value."""
    assert list(got.columns) == list(expect.columns)
    assert len(got) == len(expect)
    for c in expect.columns:
        a, b = got[c], expect[c]
        if isinstance(b.dtype, pd.CategoricalDtype) or isinstance(a.dtype, pd.CategoricalDtype):
            assert a.astype(object).tolist() == b.astype(object).tolist(), c
        else:
            assert a.dtype == b.dtype, c
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy(), err_msg=c)


# --------------------------------------------------------------------------- stats


def test_stats_example_store_default_equals_numpy():
    r = zv("stats")
    store = zv_dask.open_zv(zv_dask.example_store())
    full = store.read(level=0)
    assert_stats_match(parse_stats(r.stdout), numeric_columns(full, store.axes))
    assert "skipped (not numeric): region" in r.stdout
    assert "example.zarrvectors" in r.stdout


def test_stats_bbox_columns_on_pyramid_fixture(store_path):
    path = store_path("points_pyramid")
    store = zv_dask.open_zv(path)
    lo, hi = [250, 0, 100], [1200.5, 1500, 2000]
    r = zv("stats", path, "--bbox", *lo, *hi, "--columns", "fa", "z,rgb_1", "label")
    part = store.read(level=0, bbox=(lo, hi))
    assert 0 < len(part["positions"]) < store.vertex_count(0)
    cols = numeric_columns(part, store.axes)
    expect = {c: cols[c] for c in ("fa", "z", "rgb_1", "label")}
    assert_stats_match(parse_stats(r.stdout), expect)


def test_stats_target_resolution_negative_bbox_2d(store_path):
    path = store_path("points_2d")
    store = zv_dask.open_zv(path)
    level = store.select_level(250)
    assert level > 0
    box = ([-700, -8e2], [600, 500])
    r = zv("stats", path, "--target-resolution", 250, "--bbox", *box[0], *box[1])
    part = store.read(target_resolution=250, bbox=box)
    assert_stats_match(parse_stats(r.stdout), numeric_columns(part, store.axes))
    assert f"level  {level} " in r.stdout


def test_stats_level_with_process_scheduler(store_path):
    path = store_path("points_sharded")
    store = zv_dask.open_zv(path)
    r = zv("stats", path, "--level", 1, "--scheduler", "processes")
    full = store.read(level=1)
    assert_stats_match(parse_stats(r.stdout), numeric_columns(full, store.axes))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stats_on_distributed_scheduler_address(store_path):
    from distributed import LocalCluster

    path = store_path("points_pyramid")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None, silence_logs=50) as cluster:
        r = zv("stats", path, "--columns", "intensity", "x", "--scheduler",
               cluster.scheduler_address)
    full = zv_dask.open_zv(path).read(level=0)
    expect = {"intensity": full["attributes"]["intensity"], "x": full["positions"][:, 0]}
    assert_stats_match(parse_stats(r.stdout), expect)
    assert "100% Completed" in r.stderr  # distributed's progress bar went to stderr


def test_unreachable_scheduler_is_a_clear_error():
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s")
    r = zv("stats", "--scheduler", f"tcp://127.0.0.1:{_free_port()}", env=env, check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("zv-dask: error: cannot reach the dask scheduler")
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- export


def test_export_example_store_round_trips(tmp_path):
    out = tmp_path / "example_parquet"
    r = zv("export", zv_dask.example_store(), out)
    store = zv_dask.open_zv(zv_dask.example_store())
    expect = store.to_dask_dataframe().compute().reset_index(drop=True)

    import dask.dataframe as dd

    got = dd.read_parquet(str(out)).compute().reset_index(drop=True)
    frames_equal(got, expect)
    files = sorted(p.name for p in out.glob("*.parquet"))
    assert len(files) == len(store.chunks(0)) and f"wrote {len(files)} Parquet files" in r.stdout


def test_export_bbox_columns_partition_index(store_path, tmp_path):
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    path = store_path("points_pyramid")
    store = zv_dask.open_zv(path)
    lo, hi = [0, 400, 0], [1100, 2000, 900]
    out = tmp_path / "box"
    zv("export", path, out, "--bbox", *lo, *hi, "--columns", "x", "y", "z", "region", "rgb_2")
    ddf = store.to_dask_dataframe(bbox=(lo, hi))[["x", "y", "z", "region", "rgb_2"]]
    frames_equal(dd.read_parquet(str(out)).compute().reset_index(drop=True),
                 ddf.compute().reset_index(drop=True))

    index = json.loads((out / "_zv_partitions.json").read_text())
    table = store.partitions(bbox=(lo, hi))
    assert index["level"] == 0 and index["bbox"] == [lo, hi]
    assert len(index["partitions"]) == len(table)
    for i, part in enumerate(index["partitions"]):
        assert tuple(part["chunk"]) == table.iloc[i]["chunk"]
        df = pq.read_table(out / part["file"]).to_pandas()
        expect = ddf.partitions[i].compute()  # file i is partition i
        np.testing.assert_array_equal(df["x"].to_numpy(), expect["x"].to_numpy())
        for ax in "xyz":  # rows lie in the recorded closed chunk box
            assert ((df[ax] >= part[f"{ax}_min"]) & (df[ax] <= part[f"{ax}_max"])).all()
    meta = pq.read_metadata(out / index["partitions"][0]["file"]).metadata
    assert json.loads(meta[b"zv_dask"])["level"] == 0


def test_export_level_with_object_ids_and_overwrite(store_path, tmp_path):
    import dask.dataframe as dd

    path = store_path("points_2d")
    store = zv_dask.open_zv(path)
    out = tmp_path / "objects"
    zv("export", path, out, "--level", 0, "--columns", "v")
    r = zv("export", path, out, check=False)
    assert r.returncode == 3 and "not empty" in r.stderr and "--overwrite" in r.stderr
    zv("export", path, out, "--level", 1, "--overwrite")
    got = dd.read_parquet(str(out)).compute().reset_index(drop=True)
    frames_equal(got, store.to_dask_dataframe(level=1).compute().reset_index(drop=True))
    assert "object_id" in got.columns and len(list(out.glob("*.parquet"))) == len(store.chunks(1))


def test_export_of_an_empty_box_keeps_the_schema(tmp_path, capsys):
    import dask.dataframe as dd

    from zv_dask.cli import main

    out = tmp_path / "empty"
    assert main(["export", zv_dask.example_store(), str(out), "--bbox", "5000", "5000", "5000",
                 "6000", "6000", "6000", "--columns", "x", "label"]) == 0
    assert "wrote 1 Parquet file " in capsys.readouterr().out
    got = dd.read_parquet(str(out)).compute()
    assert len(got) == 0 and list(got.columns) == ["x", "label"]
    index = json.loads((out / "_zv_partitions.json").read_text())
    assert index["partitions"] == [{"file": "part.000000.parquet", "chunk": None}]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, code, message", [
    (["stats", "{missing}"], 1, "nothing exists"),
    (["stats", "--bbox", "0", "0", "0", "1", "1"], 2, "--bbox needs 6 numbers for this 3-D"),
    (["stats", "--level", "1", "--target-resolution", "300"], 2, "not allowed with argument"),
    (["export", "{missing}", "{out}"], 1, "nothing exists"),
])
def test_bad_input_exit_codes(tmp_path, args, code, message):
    args = [a.format(missing=tmp_path / "missing.zarrvectors", out=tmp_path / "out")
            for a in args]
    r = zv(*args, check=False)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    prefix = "zv-dask: error: " if code == 1 else "usage: zv-dask"
    assert r.stderr.startswith(prefix)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, code, message", [
    (["stats", "--bbox", "0", "0", "5", "1", "1", "1"], 1, "lo > hi"),
    (["stats", "--bbox=0,0,0,1,1,x1"], 2, "--bbox values must be numbers"),
    (["stats", "--level", "9"], 1, "no such level"),
    (["stats", "--columns", "nope"], 1, "unknown columns ['nope']"),
    (["stats", "--columns", "region"], 1, "not numeric"),
    (["stats", "--scheduler", "fast"], 2, "use threads, processes, sync"),
    (["export"], 2, "the following arguments are required: STORE, OUT"),
    (["export", "{example}", "{out}", "--format", "csv"], 2, "invalid choice: 'csv'"),
])
def test_bad_input_in_process(tmp_path, capsys, args, code, message):
    """The same entry point, called in-process (argparse exits with SystemExit(2))."""
    from zv_dask.cli import main

    args = [a.format(example=zv_dask.example_store(), out=tmp_path / "out") for a in args]
    try:
        rc = main(args)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code and message in err
    assert err.startswith("zv-dask: error: " if code == 1 else "usage: zv-dask")
    assert not (tmp_path / "out").exists()


def test_bbox_count_checked_against_2d_store(store_path):
    r = zv("stats", store_path("points_2d"), "--bbox", 0, 0, 0, 1, 1, 1, check=False)
    assert r.returncode == 2 and "--bbox needs 4 numbers for this 2-D store" in r.stderr


def test_help_lists_commands_and_documents_partition_index():
    top = zv("--help").stdout
    assert all(c in top for c in ("info", "stats", "export", "exit codes"))
    export_help = zv("export", "--help").stdout
    assert "_zv_partitions.json" in export_help and "x_min" in export_help
    assert Path(zv_dask.example_store()).exists()


# --------------------------------------------------------------------------- errors, commands


def test_a_damaged_chunk_is_one_line_not_a_traceback(store_path, tmp_path):
    import shutil

    copy = tmp_path / "damaged.zarrvectors"
    shutil.copytree(store_path("points_2d"), copy)
    blob = sorted(p for p in (copy / "0" / "vertices" / "c").rglob("*") if p.is_file())[0]
    blob.write_bytes(b"\x07" * 5)  # non-empty, but no valid vlen header
    for args in (["stats", copy], ["export", copy, tmp_path / "out"]):
        r = zv(*args, check=False)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        # a progress bar may precede it on a slow machine; the error is one line, last
        errors = [line for line in r.stderr.splitlines() if "error" in line]
        assert errors == [r.stderr.rstrip("\n").splitlines()[-1]]
        assert errors[0].startswith("zv-dask: error: store ") and "chunk (" in errors[0]
        assert "level 0" in errors[0]


def test_duplicate_columns_are_a_usage_of_the_query_not_a_crash(tmp_path):
    r = zv("stats", "--columns", "x", "x", check=False)
    assert r.returncode == 1 and "named more than once" in r.stderr
    assert "Traceback" not in r.stderr
    r = zv("export", zv_dask.example_store(), tmp_path / "o", "--columns", "x,label,x",
           check=False)
    assert r.returncode == 1 and "named more than once" in r.stderr
    assert not (tmp_path / "o").exists()


def test_help_documents_exit_codes_and_export_safety():
    top = zv("--help").stdout
    for code in ("0 success", "1 zv_dask error", "2 usage error", "3 export refused"):
        assert code in top
    assert "never other" in zv("export", "--help").stdout


def test_error_line_is_one_line():
    from zv_dask.cli import error_line

    exc = zv_dask.QueryError("first\nsecond", store="s.zarrvectors", level=2)
    assert error_line(exc) == "zv-dask: error: store s.zarrvectors, level 2: first second"


def test_commands_are_modules_with_one_interface(monkeypatch, capsys):
    """Every command is a module in cli.COMMANDS exposing NAME, OPENS_STORE,
    add_parser(subparsers) and run(args, store); a new one needs only that entry."""
    import types

    from zv_dask import cli

    for module in cli.COMMANDS:
        assert isinstance(module.NAME, str) and isinstance(module.OPENS_STORE, bool)
        assert callable(module.add_parser) and callable(module.run)
    assert [m.NAME for m in cli.COMMANDS] == ["info", "stats", "export", "convert", "index"]

    extra = types.ModuleType("zv_dask._cli_probe")
    extra.NAME, extra.OPENS_STORE = "probe", False

    def add_parser(sub):
        p = sub.add_parser("probe", help="echo a word")
        p.add_argument("word")
        return p

    def run(args, store):
        assert store is None
        if args.word == "bad":
            raise zv_dask.QueryError("bad word")
        return f"probe {args.word}"

    extra.add_parser, extra.run = add_parser, run
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + (extra,))
    assert cli.main(["probe", "hello"]) == 0 and capsys.readouterr().out == "probe hello\n"
    assert cli.main(["probe", "bad"]) == 1
    assert capsys.readouterr().err == "zv-dask: error: bad word\n"
    assert "probe" in cli.build_parser().format_help()
