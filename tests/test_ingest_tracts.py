"""Tractograms: dipy's TRK files (from its wheel), TCK written by nibabel and TRX written
by trx-python round-trip exactly through ``read_trk``/``read_tck``/``read_trx`` and
``zv-dask convert``: every streamline in order, value for value against nibabel's load
(float32 as stored), read back by the reference ``read_polylines`` and by zv_dask, the
store valid; per-point and per-streamline data kept; partitioning changes nothing; a
truncated TRK / bad TCK gives one error line naming the file and position."""

from __future__ import annotations

import importlib.metadata
import json

import nibabel as nib
import numpy as np
import pytest
from zarr_vectors.types.polylines import read_polylines

import zv_dask
from zv_dask.cli import main
from zv_dask.errors import InputFileError
from writehelpers import assert_valid


def dipy_file(name: str) -> str:
    found = [f for f in importlib.metadata.files("dipy") if f.name == name]
    return str(found[0].locate())


def lines_of(rng, n, scale=40.0):
    return [np.cumsum(rng.normal(0, 1, (int(rng.integers(2, 30)), 3)), axis=0).astype("f4")
            + np.float32(scale) for _ in range(n)]


def write_trk_with_data(path, rng, n=25):
    """A TRK with a rotated, scaled affine, two scalars (one of 3 values) and properties."""
    lines = lines_of(rng, n)
    fa = [rng.random((len(s), 1)).astype("f4") for s in lines]
    rgb = [rng.random((len(s), 3)).astype("f4") for s in lines]
    aff = np.array([[0, -1.5, 0, 90], [2, 0, 0, -126], [0, 0, 2.5, -72], [0, 0, 0, 1]], "f4")
    tg = nib.streamlines.Tractogram(
        lines, data_per_point={"fa": fa, "rgb": rgb},
        data_per_streamline={"len": np.array([[len(s)] for s in lines], "f4"),
                             "w": rng.random((n, 2)).astype("f4")},
        affine_to_rasmm=np.eye(4))
    hdr = {"voxel_to_rasmm": aff, "voxel_sizes": (1.5, 2.0, 2.5), "dimensions": (60, 70, 40),
           "voxel_order": "RAS"}
    nib.streamlines.TrkFile(tg, header=hdr).save(str(path))
    return nib.streamlines.load(str(path))


def assert_store_holds(path, tractogram, attrs=()):
    """Both readers give every streamline of ``tractogram`` in order, value for value."""
    want = list(tractogram.streamlines)
    assert_valid(path)
    ref = read_polylines(str(path))
    assert len(ref["polylines"]) == len(want)
    for got, w in zip(ref["polylines"], want):
        np.testing.assert_array_equal(np.concatenate(got), w)
    ours = zv_dask.open_zv(path).read_objects()
    assert list(ours["object_ids"]) == list(range(len(want)))
    assert ours["positions"].dtype == np.float32
    np.testing.assert_array_equal(ours["positions"], tractogram.streamlines.get_data())
    np.testing.assert_array_equal(np.diff(ours["offsets"]), [len(s) for s in want])
    for name in attrs:
        data = getattr(tractogram, "tractogram", tractogram).data_per_point[name].get_data()
        got = np.asarray(ours["attributes"][name]).reshape(len(data), -1)
        np.testing.assert_array_equal(got, data)
    return ours


@pytest.mark.parametrize("name", ["tracks300.trk", "EuDX_small_25.trk"])
def test_dipy_trk_round_trips_exactly(tmp_path, name):
    path = dipy_file(name)
    t = nib.streamlines.load(path)
    src = zv_dask.read_trk(path, streamlines_per_partition=37)
    assert src.vertices.npartitions == -(-len(t.streamlines) // 37)
    out = tmp_path / "t.zarrvectors"
    zv_dask.to_zv(src, out, chunk_shape=20)
    assert_store_holds(out, t)
    facts = json.loads((out / "zarr.json").read_text())["attributes"]["zv_dask_source"]
    assert facts["format"] == "trk" and facts["streamline_count"] == len(t.streamlines)
    np.testing.assert_array_equal(facts["files"][0]["voxel_to_rasmm"],
                                  t.header["voxel_to_rasmm"])
    assert facts["files"][0]["dimensions"] == [int(v) for v in t.header["dimensions"]]


def test_trk_scalars_properties_and_affine_round_trip(tmp_path):
    t = write_trk_with_data(tmp_path / "d.trk", np.random.default_rng(3))
    one = zv_dask.read_trk(tmp_path / "d.trk", streamlines_per_partition=None)
    many = zv_dask.read_trk(tmp_path / "d.trk", streamlines_per_partition=4)
    a, b = one.vertices.compute(), many.vertices.compute()
    assert one.vertices.npartitions == 1 and many.vertices.npartitions == 7
    assert a.columns.tolist() == ["x", "y", "z", "object_id", "fa", "rgb_0", "rgb_1", "rgb_2"]
    np.testing.assert_array_equal(a.to_numpy(), b.reset_index(drop=True).to_numpy())
    np.testing.assert_array_equal(a[["x", "y", "z"]].to_numpy(), t.streamlines.get_data())
    dps = t.tractogram.data_per_streamline
    table = many.object_attributes
    np.testing.assert_array_equal(table["len"].to_numpy(), dps["len"][:, 0])
    np.testing.assert_array_equal(table[["w_0", "w_1"]].to_numpy(), dps["w"])
    out = tmp_path / "d.zarrvectors"
    store = zv_dask.to_zv(many, out, chunk_shape=30)
    assert_store_holds(out, t, attrs=("fa", "rgb"))
    back = store.objects().compute()
    np.testing.assert_array_equal(back["w_1"].to_numpy(), dps["w"][:, 1])
    assert (back["file_index"] == 0).all()
    facts = json.loads((out / "zarr.json").read_text())["attributes"]["zv_dask_source"]
    assert facts["files"][0]["voxel_sizes"] == [1.5, 2.0, 2.5]


def test_a_list_of_files_numbers_objects_across_files(tmp_path):
    rng = np.random.default_rng(5)
    ts = [write_trk_with_data(tmp_path / f"{k}.trk", rng, n) for k, n in enumerate((6, 9))]
    src = zv_dask.read_trk(str(tmp_path / "*.trk"), streamlines_per_partition=4)
    v = src.vertices.compute()
    assert v.object_id.max() == 14
    want = np.concatenate([t.streamlines.get_data() for t in ts])
    np.testing.assert_array_equal(v[["x", "y", "z"]].to_numpy(), want)
    assert src.object_attributes["file_index"].tolist() == [0] * 6 + [1] * 9
    assert [f["streamline_count"] for f in src.source["files"]] == [6, 9]


def test_tck_written_by_nibabel_round_trips(tmp_path):
    rng = np.random.default_rng(7)
    lines = lines_of(rng, 40, scale=-20.0)
    nib.streamlines.save(nib.streamlines.Tractogram(lines, affine_to_rasmm=np.eye(4)),
                         str(tmp_path / "a.tck"))
    t = nib.streamlines.load(str(tmp_path / "a.tck"))
    one = zv_dask.read_tck(tmp_path / "a.tck", streamlines_per_partition=None)
    many = zv_dask.read_tck(tmp_path / "a.tck", streamlines_per_partition=3)
    np.testing.assert_array_equal(one.vertices.compute().to_numpy(),
                                  many.vertices.compute().to_numpy())
    out = tmp_path / "a.zarrvectors"
    zv_dask.to_zv(many, out, chunk_shape=10)
    assert_store_holds(out, t)


def write_trx(path, rng, n=30):
    from trx.trx_file_memmap import TrxFile, save

    lines = lines_of(rng, n)
    tg = nib.streamlines.Tractogram(
        lines, data_per_point={"fa": [rng.random((len(s), 1)).astype("f4") for s in lines],
                               "dir": [rng.random((len(s), 3)).astype("f4") for s in lines]},
        data_per_streamline={"score": rng.random((n, 1)).astype("f4")},
        affine_to_rasmm=np.eye(4))
    ref = nib.Nifti1Image(np.zeros((64, 64, 32), "u1"), np.diag([2.0, 2.0, 3.0, 1.0]))
    trx = TrxFile.from_tractogram(tg, reference=ref)
    save(trx, str(path))
    trx.close()
    return tg


def test_trx_written_by_trx_python_round_trips(tmp_path):
    from trx.trx_file_memmap import load

    tg = write_trx(tmp_path / "a.trx", np.random.default_rng(11))
    one = zv_dask.read_trx(tmp_path / "a.trx", streamlines_per_partition=None)
    many = zv_dask.read_trx(tmp_path / "a.trx", streamlines_per_partition=7)
    a, b = one.vertices.compute(), many.vertices.compute()
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    trx = load(str(tmp_path / "a.trx"))
    try:
        np.testing.assert_array_equal(a[["x", "y", "z"]].to_numpy(), trx.streamlines._data)
        np.testing.assert_array_equal(a["fa"].to_numpy(), trx.data_per_vertex["fa"]._data[:, 0])
        np.testing.assert_array_equal(many.object_attributes["score"].to_numpy(),
                                      trx.data_per_streamline["score"][:, 0])
    finally:
        trx.close()
    out = tmp_path / "a.zarrvectors"
    store = zv_dask.to_zv(many, out, chunk_shape=25)
    assert_store_holds(out, tg, attrs=("fa", "dir"))
    assert store.objects().compute()["score"].tolist() == many.object_attributes[
        "score"].tolist()
    facts = many.source["files"][0]
    assert facts["dimensions"] == [64, 64, 32] and facts["voxel_to_rasmm"][2][2] == 3.0


def test_convert_picks_the_reader_by_extension(tmp_path, capsys):
    src = dipy_file("tracks300.trk")
    out = tmp_path / "c.zarrvectors"
    assert main(["convert", src, str(out), "--chunk-shape", "25", "--scheduler", "sync"]) == 0
    assert "300 streamlines" in capsys.readouterr().err
    assert_store_holds(out, nib.streamlines.load(src))
    write_trx(tmp_path / "b.trx", np.random.default_rng(2))
    assert main(["convert", str(tmp_path / "b.trx"), str(tmp_path / "b.zv"),
                 "--chunk-shape", "25", "--scheduler", "sync"]) == 0
    data = (tmp_path / "b.trx").read_bytes()
    (tmp_path / "b.bin").write_bytes(data)
    assert main(["convert", str(tmp_path / "b.bin"), str(tmp_path / "c.zv"), "--format", "trx",
                 "--chunk-shape", "25", "--scheduler", "sync"]) == 0


def test_a_truncated_trk_is_one_error_line(tmp_path, capsys):
    data = open(dipy_file("tracks300.trk"), "rb").read()
    (tmp_path / "cut.trk").write_bytes(data[:len(data) // 2])
    with pytest.raises(InputFileError, match=r"cut.trk is truncated.*streamline \d+ at byte"):
        zv_dask.read_trk(tmp_path / "cut.trk")
    assert main(["convert", str(tmp_path / "cut.trk"), str(tmp_path / "o.zv"),
                 "--chunk-shape", "25"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.trk" in err[0] and "byte" in err[0]


def test_a_bad_tck_is_one_error_line(tmp_path, capsys):
    lines = lines_of(np.random.default_rng(1), 5)
    nib.streamlines.save(nib.streamlines.Tractogram(lines, affine_to_rasmm=np.eye(4)),
                         str(tmp_path / "a.tck"))
    data = (tmp_path / "a.tck").read_bytes()
    (tmp_path / "bad.tck").write_bytes(data[:-12])  # no end-of-file marker
    with pytest.raises(InputFileError, match=r"bad.tck is a bad TCK file.*after streamline 4 "
                                             r"\(byte \d+\)"):
        zv_dask.read_tck(tmp_path / "bad.tck")
    (tmp_path / "odd.tck").write_bytes(data[:-5])
    assert main(["convert", str(tmp_path / "odd.tck"), str(tmp_path / "o.zv"),
                 "--chunk-shape", "25"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "odd.tck" in err[0] and "triplets" in err[0]


def test_a_trk_without_its_streamline_count_is_read_to_the_end(tmp_path):
    data = bytearray(open(dipy_file("tracks300.trk"), "rb").read())
    data[988:992] = np.int32(0).tobytes()  # n_count: 0 means "read until the end"
    (tmp_path / "n0.trk").write_bytes(bytes(data))
    t = nib.streamlines.load(str(tmp_path / "n0.trk"))
    src = zv_dask.read_trk(tmp_path / "n0.trk", streamlines_per_partition=64)
    assert src.source["streamline_count"] == len(t.streamlines) == 300
    np.testing.assert_array_equal(src.vertices.compute()[["x", "y", "z"]].to_numpy(),
                                  t.streamlines.get_data())


@pytest.mark.parametrize("module, suffix", [("nibabel", "trk"), ("trx", "trx")])
def test_a_missing_package_names_the_extra(tmp_path, module, suffix):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    src = dipy_file("tracks300.trk") if suffix == "trk" else str(tmp_path / "a.trx")
    if suffix == "trx":
        write_trx(tmp_path / "a.trx", np.random.default_rng(0), 3)
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from zv_dask.cli import main\n"
            f"sys.exit(main(['convert', {src!r}, {str(tmp_path / 'o.zv')!r}, "
            "'--chunk-shape', '10']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "zv_dask[tractography]" in r.stderr
