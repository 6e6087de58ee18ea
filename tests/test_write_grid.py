"""``to_zv`` on sparse and huge grids, the size estimate, float64 pyramids.

* cost follows the points and the non-empty chunks, not the grid's cells;
* cell indices beyond int64 are refused with the numbers;
* a layout far larger than its rows (one fragment per bin) is refused before anything
  is written, unless ``max_overhead=None``;
* float64 pyramids link every fine vertex to its metavertex (the reference drops some).
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask.cli import main
from zv_dask.errors import WriteInputError
from zv_dask.write import estimate as E
from zv_dask.write import grid as G
from zv_dask.write import plan as P
from writehelpers import files, reference, rows_sorted

MB = 2 ** 20


def _disk(path) -> int:
    return sum(len(b) for b in files(path).values())


def _write_traced(df, path, **kw):
    tracemalloc.start()
    try:
        zv_dask.to_zv(df, path, **kw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _nonempty(path, level=0) -> list:
    doc = json.loads(open(os.path.join(path, str(level), "vertices", "zarr.json")).read())
    return doc["attributes"]["nonempty_chunks"], doc["shape"]


# ----------------------------------------------------------------------------- rule 5


def test_two_points_thirty_million_chunks_apart(tmp_path):
    pos = np.array([[3e7, 0.0, 0.0], [0.0, 0.0, 0.0]])
    path = str(tmp_path / "far.zarrvectors")
    peak = _write_traced(pd.DataFrame(pos, columns=list("xyz")), path, chunk_shape=1)
    assert peak < 200 * MB, f"peak {peak / MB:.0f} MB for 2 points"
    keys, shape = _nonempty(path)
    assert sorted(keys) == ["0.0.0", "30000000.0.0"] and shape == [30_000_001, 1, 1]
    back = zv_dask.open_zv(path).read()
    np.testing.assert_array_equal(rows_sorted(back["positions"]), rows_sorted(pos))


@pytest.mark.parametrize("kw", [dict(levels=1), dict(levels=3), dict(levels=2, shard_shape=2)])
def test_trillion_cell_grid_with_a_pyramid_and_shards(tmp_path, kw):
    # 10^4 chunks per axis: 10^12 cells, 4 of them occupied
    pos = np.array([[0.5, 0.5, 0.5], [9999.5, 9999.5, 9999.5], [9999.2, 0.5, 5000.5],
                    [0.7, 0.7, 0.7]])
    df = pd.DataFrame(pos, columns=list("xyz"))
    df["w"] = np.arange(4, dtype=np.int32)
    path = str(tmp_path / "huge.zarrvectors")
    peak = _write_traced(df, path, chunk_shape=1, **kw)
    assert peak < 200 * MB, f"peak {peak / MB:.0f} MB for 4 points"
    keys, shape = _nonempty(path)
    assert shape == [10_000] * 3 and len(keys) == 3
    store = zv_dask.open_zv(path)
    if "shard_shape" in kw:  # one shard object per occupied shard; zarr's reader sizes
        # its shard index by the grid, so level 0 is checked on disk here
        shards = sorted(k for k in files(path) if k.startswith("0/vertices/c/"))
        assert shards == ["0/vertices/c/0/0/0", "0/vertices/c/4999/0/2500",
                          "0/vertices/c/4999/4999/4999"]
    for level in range(kw["levels"]):
        if level == 0 and "shard_shape" in kw:
            continue
        back = store.read(level=level)
        if level == 0:
            got = np.column_stack([back["positions"], back["attributes"]["w"]])
            np.testing.assert_array_equal(rows_sorted(got),
                                          rows_sorted(np.column_stack([pos.astype(np.float32), np.arange(4)])))
        else:  # the two points sharing a coarse bin become one metavertex
            assert back["vertex_count"] == 3


def test_sparse_write_equals_the_reference(tmp_path):
    # the sparse keys change nothing in the store: byte for byte the reference's
    pos = np.array([[0.5, 0.5, 0.5], [2e5 + 0.5, 0.5, 3.5], [-7e4, 9.0, 0.25]])
    ref, ours = tmp_path / "ref", tmp_path / "ours"
    ref.mkdir(), ours.mkdir()
    reference(ref / "s.zarrvectors", pos, {}, levels=2, chunk_shape=(1.0,) * 3)
    zv_dask.to_zv(pd.DataFrame(pos, columns=list("xyz")), ours / "s.zarrvectors",
                  chunk_shape=1, levels=2)
    a, b = files(ref / "s.zarrvectors"), files(ours / "s.zarrvectors")
    assert sorted(a) == sorted(b)
    for k in a:
        if k.endswith("zarr.json"):
            assert json.loads(a[k]) == json.loads(b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("pos,kw,words", [
    ([[1e30, 0, 0], [0, 0, 0]], dict(chunk_shape=1), ["'x'", "1.0000000150474662e+30",
                                                      "chunk_shape 1.0", "1.000e+30"]),
    ([[0, 0, 0]], dict(chunk_shape=5, bounds=([-1e300] * 3, [1e300] * 3)),
     ["'x'", "-1e+300", "chunk_shape 5.0", "-2.000e+299"]),
    ([[1, 1, 1], [0, 0, 0]], dict(chunk_shape=1e-300), ["'x'", "1.0", "1e-300", "1.000e+300"]),
    ([[0, 0, 4e12]], dict(chunk_shape=1, bin_shape=1e-7, bounds=([0] * 3, [1, 1, 5e12])),
     ["bin_shape", "bins per chunk", "larger bin_shape"]),
])
def test_indices_beyond_int64_are_refused_with_the_numbers(tmp_path, pos, kw, words):
    target = tmp_path / "never.zarrvectors"
    df = pd.DataFrame(np.asarray(pos, float), columns=list("xyz"))
    with pytest.raises(WriteInputError) as ei:
        zv_dask.to_zv(df, target, **kw)
    msg = str(ei.value)
    assert str(target) in msg
    for w in words:
        assert w in msg, (w, msg)
    assert not target.exists()


def test_convert_with_a_tiny_chunk_is_an_error_line_not_a_traceback(tmp_path, capsys):
    src = tmp_path / "p.parquet"
    pd.DataFrame([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], columns=list("xyz")).to_parquet(src)
    out = tmp_path / "o.zarrvectors"
    rc = main(["convert", str(src), str(out), "--chunk-shape", "1e-300", "--scheduler", "sync"])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err and "beyond the int64 range" in err
    assert not out.exists()


# ----------------------------------------------------------------------------- rule 6


def _tiny_bins(n=200, seed=2):
    return pd.DataFrame(np.random.default_rng(seed).uniform(-10, 10, (n, 3)),
                        columns=list("xyz"))


@pytest.mark.parametrize("ratio", [128, 512])
def test_tiny_bins_are_refused_before_anything_is_written(tmp_path, ratio):
    target = tmp_path / "s.zarrvectors"
    with pytest.raises(WriteInputError) as ei:
        zv_dask.to_zv(_tiny_bins(), target, chunk_shape=5, bin_shape=5 / ratio)
    msg = str(ei.value)
    # 16 B per bin in each non-empty chunk: ratio**3 bins, ~60 chunks
    expected = 16 * ratio ** 3 * 60 / MB
    est = float(msg.split("about ")[1].split(" MiB")[0].replace(",", ""))
    assert expected * 0.9 < est < expected * 1.2, msg
    assert "max_overhead=None" in msg and "--max-overhead" not in msg
    assert f"{ratio ** 3} bins" in msg and str(target) in msg
    assert not target.exists()


def test_refusal_of_an_existing_target_under_overwrite_clears_nothing(tmp_path):
    target = tmp_path / "s.zarrvectors"
    zv_dask.to_zv(_tiny_bins(20), target, chunk_shape=5)
    before = files(target)
    with pytest.raises(WriteInputError, match="max_overhead"):
        zv_dask.to_zv(_tiny_bins(), target, chunk_shape=5, bin_shape=5 / 128, overwrite=True)
    assert files(target) == before


def _spec_and_rows(df, chunk, bins, levels, attrs=()):
    pos = df[list("xyz")].to_numpy().astype(np.float32)
    spec = P.WriteSpec(store_name="s", axes=("x", "y", "z"), chunk_shape=(float(chunk),) * 3,
                       bin_shape=None if bins is None else (float(bins),) * 3,
                       bounds=(tuple(pos.min(0).astype(float)), tuple(pos.max(0).astype(float))),
                       levels=levels, attributes=attrs)
    return (spec,) + G.chunk_counts(pos, *G.binning(spec.chunk_shape, spec.bin_shape))


@pytest.mark.parametrize("n,hi,chunk,ratio,levels,attr,slack", [
    (200, 10, 5, 8, 1, False, 1.1), (200, 10, 5, 16, 3, True, 1.1),
    (3000, 900, 250, 4, 2, True, 1.1), (50, 1e6, 1, 1, 1, False, 1.1),
    (20000, 900, 50, 2, 1, True, 1.1),
    # coarse bins wider than chunks: up to 7**3 link offsets per level are counted
    (3000, 900, 250, 1, 3, False, 1.5)])
def test_estimate_bounds_the_bytes_written(tmp_path, n, hi, chunk, ratio, levels, attr, slack):
    rng = np.random.default_rng(n + ratio)
    df = pd.DataFrame(rng.uniform(-hi, hi, (n, 3)), columns=list("xyz"))
    attrs = ()
    if attr:
        df["w"] = rng.random(n).astype(np.float32)
        attrs = (P.AttrSpec("w", ("w",), "float32"),)
    bins = None if ratio == 1 else chunk / ratio
    path = tmp_path / "s.zarrvectors"
    zv_dask.to_zv(df, path, chunk_shape=chunk, bin_shape=bins, levels=levels)
    spec, chunks, rows = _spec_and_rows(df, chunk, bins, levels, attrs)
    est, written = E.layout_bytes(spec, rows, chunks), _disk(path)
    assert written <= est <= slack * written, (est, written)


def test_decision_needs_both_thresholds_and_none_disables_it():
    assert E.over_limit(1001, 10, 100, floor=1000)
    assert not E.over_limit(1000, 1, 100, floor=1000)      # not above the floor
    assert not E.over_limit(5000, 50, 100, floor=1000)     # not above 100x the input
    assert E.over_limit(5001, 50, 100, floor=1000)
    assert not E.over_limit(10 ** 15, 1, None, floor=1000)
    assert E.over_limit(3000, 1000, 2.5, floor=0)


def test_check_overhead_with_explicit_thresholds():
    spec, _, rows = _spec_and_rows(_tiny_bins(50), 5, 5 / 16, 1)
    est = E.layout_bytes(spec, rows)
    with pytest.raises(WriteInputError, match=r"max_overhead=100"):
        E.check_overhead(spec, rows, 100, "s", floor=est - 1)
    assert E.check_overhead(spec, rows, 100, "s", floor=est) == est
    assert E.check_overhead(spec, rows, None, "s", floor=0) == est


def test_max_overhead_none_writes_a_refused_layout(tmp_path):
    # ~20 chunks of 128**3 bins: gigabytes uncompressed, little on disk with zstd
    df = _tiny_bins(20, seed=4)
    kw = dict(chunk_shape=5, bin_shape=5 / 128, compressor="zstd")
    with pytest.raises(WriteInputError, match="max_overhead"):
        zv_dask.to_zv(df, tmp_path / "refused.zarrvectors", **kw)
    assert not (tmp_path / "refused.zarrvectors").exists()
    path = tmp_path / "s.zarrvectors"
    zv_dask.to_zv(df, path, max_overhead=None, **kw)
    back = zv_dask.open_zv(path).read()
    np.testing.assert_array_equal(rows_sorted(back["positions"]),
                                  rows_sorted(df.to_numpy().astype(np.float32)))
    spec, _, rows = _spec_and_rows(df, 5, 5 / 128, 1)
    assert E.layout_bytes(spec, rows) > E.OVERHEAD_FLOOR > _disk(path)


def test_max_overhead_option_is_checked_and_reaches_the_cli(tmp_path, capsys):
    for bad in (0, -1, "lots", True, float("nan")):
        with pytest.raises(WriteInputError, match="max_overhead must be"):
            zv_dask.to_zv(_tiny_bins(5), tmp_path / "x.zarrvectors", chunk_shape=5,
                          max_overhead=bad)
    src = tmp_path / "p.parquet"
    _tiny_bins(20, seed=4).to_parquet(src)
    out = tmp_path / "o.zarrvectors"
    base = ["convert", str(src), str(out), "--chunk-shape", "5", "--bin-shape", str(5 / 128),
            "--compressor", "zstd", "--scheduler", "sync"]
    assert main(base) != 0
    err = capsys.readouterr().err
    assert "pass --max-overhead none" in err and "max_overhead=" not in err and not out.exists()
    assert main(base + ["--max-overhead", "none"]) == 0, capsys.readouterr().err
    assert zv_dask.open_zv(out).vertex_count(0) == 20


# ----------------------------------------------------------------------------- rule 12


def _cells(root, prefix):
    """``{chunk index tuple: bytes}`` of one grid array (zarr indices)."""
    out = {}
    base = os.path.join(root, prefix, "c")
    for dp, _, fs in os.walk(base):
        for f in fs:
            rel = os.path.relpath(os.path.join(dp, f), base)
            out[tuple(int(i) for i in rel.split(os.sep))] = open(os.path.join(dp, f), "rb").read()
    return out


def _parents(root, ndim=3):
    """Fine (chunk, row) -> coarse (chunk, row) from level 0's ``links/+1`` files."""
    out = {}
    link_root = os.path.join(root, "0", "links", "+1")
    for seg in os.listdir(link_root):
        if seg == "zarr.json":
            continue
        off = tuple(0 if s == "0" else int(s) for s in seg.split("."))
        for idx, blob in _cells(root, f"0/links/+1/{seg}").items():
            (n,) = struct.unpack_from("<I", blob, 4)
            rec = np.frombuffer(blob[8 + 16: 8 + n], "<i8").reshape(-1, 2)
            for fine, coarse in rec:
                key = (idx, int(fine))
                assert key not in out, f"fine vertex {key} has two parents"
                out[key] = (tuple(i + o for i, o in zip(idx, off)), int(coarse))
    return out


def _rows(root, level, dtype, ndim=3):
    return {idx: np.frombuffer(b[8:], dtype).reshape(-1, ndim)
            for idx, b in _cells(root, f"{level}/vertices").items()}


def test_float64_pyramid_links_every_fine_vertex_to_its_metavertex(tmp_path):
    P3 = np.random.default_rng(3).uniform(-300, 900, (3000, 3))
    (tmp_path / "ours").mkdir()
    ours = str(tmp_path / "ours" / "s.zarrvectors")  # same name: the ome block names it
    zv_dask.to_zv(pd.DataFrame(P3, columns=list("xyz")), ours, chunk_shape=250, levels=3,
                  dtype="float64")
    fine, coarse, parents = _rows(ours, 0, "<f8"), _rows(ours, 1, "<f8"), _parents(ours)
    assert len(parents) == sum(len(r) for r in fine.values()) == 3000
    # numpy's answer: level-1 bins of the float64 positions, their float64 centroids
    members: dict = {}
    for (cidx, row), (pidx, prow) in parents.items():
        p = fine[cidx][row]
        members.setdefault((pidx, prow), []).append(p)
        members[(pidx, prow)].append(tuple(np.floor(p / 500.0).astype(np.int64)))
    for (pidx, prow), items in members.items():
        pts, bins = np.array(items[0::2]), set(items[1::2])
        assert len(bins) == 1, "one metavertex holds rows of two level-1 bins"
        np.testing.assert_allclose(coarse[pidx][prow], pts.mean(axis=0), rtol=1e-12)
    assert len(members) == sum(len(r) for r in coarse.values())  # no orphan metavertex
    n_back = sum((len(b) - 8 - 16) // 16 for b in
                 sum((list(_cells(ours, f"1/links/-1/{s}").values())
                      for s in os.listdir(os.path.join(ours, "1/links/-1")) if s != "zarr.json"),
                     []))
    assert n_back == 3000

    # the known differences: the reference's float64 pyramid stores coarse levels as
    # float32 and links fewer fine vertices; level 0 is the reference's, byte for byte
    ref = tmp_path / "ref"
    ref.mkdir()
    reference(ref / "s.zarrvectors", P3, {}, levels=3, chunk_shape=(250.0,) * 3,
              dtype="float64")
    ref_parents = _parents(str(ref / "s.zarrvectors"))
    assert len(ref_parents) < 3000
    a, b = files(ref / "s.zarrvectors"), files(ours)
    level0 = [k for k in a if k.startswith("0/") and "/links/" not in k]
    assert sorted(level0) == sorted(k for k in b if k.startswith("0/") and "/links/" not in k)
    for k in level0:
        if k.endswith("zarr.json"):
            assert json.loads(a[k]) == json.loads(b[k]), k
        else:
            assert a[k] == b[k], k
    # coarse metavertices are the reference's to float32 precision
    for level in (1, 2):
        got = np.concatenate(list(_rows(ours, level, "<f8").values()))
        want = np.concatenate(list(_rows(str(ref / "s.zarrvectors"), level, "<f4").values()))
        np.testing.assert_allclose(rows_sorted(got), rows_sorted(want.astype(np.float64)),
                                   rtol=1e-6)
