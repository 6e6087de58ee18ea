"""Ingest: LAS/LAZ written by laspy and PLY written by plyfile round-trip exactly through
``read_las``/``read_ply`` and through ``zv-dask convert`` into a store read back by
zv_dask; point ranges give the rows of one partition; bad files give one error line."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import laspy
import numpy as np
import pandas as pd
import plyfile
import pytest

import zv_dask
from zv_dask.cli import main

ROOT = Path(__file__).parents[1]
WKT = 'PROJCS["WGS 84 / UTM zone 33N",GEOGCS["WGS 84",DATUM["WGS_1984"]],UNIT["metre",1]]'
LAS_DTYPES = {"intensity": "uint16", "return_number": "uint8", "number_of_returns": "uint8",
              "classification": "uint8", "user_data": "uint8", "point_source_id": "uint16",
              "gps_time": "float64", "red": "uint16", "green": "uint16", "blue": "uint16"}


def write_las(path, n, point_format=3, *, offsets=(0.0, 0.0, 0.0), scales=(0.001,) * 3,
              span=1_000_000, seed=0, version=None, crs=False):
    """A laspy-written LAS/LAZ (by the suffix) of ``n`` random points; returns the
    integer X/Y/Z and dimensions it holds, as a DataFrame."""
    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=point_format,
                             version=version or ("1.4" if point_format >= 6 else "1.2"))
    header.scales, header.offsets = list(scales), list(offsets)
    if crs:
        header.vlrs.append(laspy.vlrs.known.WktCoordinateSystemVlr(WKT))
    las = laspy.LasData(header, laspy.ScaleAwarePointRecord.zeros(n, header=header))
    las.X, las.Y = rng.integers(0, span, n), rng.integers(0, span, n)
    las.Z = rng.integers(-1000, 50_000, n)
    dims = set(las.point_format.dimension_names)
    las.intensity = rng.integers(0, 65536, n)
    las.return_number = rng.integers(1, 6, n)
    las.number_of_returns = rng.integers(1, 6, n)
    las.classification = rng.integers(0, 32 if point_format < 6 else 256, n)
    las.user_data = rng.integers(0, 256, n)
    las.point_source_id = rng.integers(0, 65536, n)
    if "gps_time" in dims:
        las.gps_time = rng.uniform(0, 1e6, n)
    for c in ("red", "green", "blue"):
        if c in dims:
            las[c] = rng.integers(0, 65536, n)
    las.update_header()
    las.write(str(path))
    out = {"X": np.asarray(las.X), "Y": np.asarray(las.Y), "Z": np.asarray(las.Z)}
    for name in LAS_DTYPES:
        if name in dims:
            out[name] = np.asarray(las[name]).astype(LAS_DTYPES[name])
    return pd.DataFrame(out)


def as_integers(df, scales, offsets):
    """The frame with x/y/z turned back into the file's integer X/Y/Z."""
    out = df.drop(columns=["x", "y", "z"])
    for axis, raw, s, o in zip("xyz", "XYZ", scales, offsets):
        out.insert(0, raw, np.round((df[axis].to_numpy(np.float64) - o) / s).astype(np.int64))
    return out


def same_rows(got, expected):
    """Equal as multisets of rows (a store reorders rows)."""
    cols = list(expected.columns)
    a = got[cols].sort_values(cols, kind="stable").reset_index(drop=True)
    b = expected[cols].sort_values(cols, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    for c in cols:
        if c not in "XYZ":
            assert got[c].dtype == expected[c].dtype, c


def stored(path):
    return zv_dask.open_zv(path).to_dask_dataframe(level=0).compute()


@pytest.mark.parametrize("suffix", [".las", ".laz"])
@pytest.mark.parametrize("point_format", [0, 1, 2, 3, 6, 7])
def test_read_las_gives_every_point_at_the_files_scale(tmp_path, suffix, point_format):
    path = tmp_path / f"pf{point_format}{suffix}"
    offsets, scales = (1000.0, -2000.0, 10.0), (0.01, 0.001, 0.0025)
    expected = write_las(path, 700, point_format, offsets=offsets, scales=scales)
    df = zv_dask.read_las(path)
    got = df.compute()
    assert list(got.columns[:3]) == ["x", "y", "z"] and got.x.dtype == np.float64
    for c, t in LAS_DTYPES.items():
        assert (c in got.columns) == (c in expected.columns), c
    same_rows(as_integers(got, scales, offsets), expected)
    info = zv_dask.source_attributes(df)
    assert info["point_count"] == 700 and info["files"][0]["scales"] == list(scales)
    assert info["files"][0]["offsets"] == list(offsets)


def test_point_ranges_give_the_rows_of_one_partition(tmp_path):
    laz, las = tmp_path / "big.laz", tmp_path / "small.las"
    write_las(laz, 60_000, 3, seed=1)  # laspy writes LAZ chunks of 50,000 points
    write_las(las, 1_000, 1, seed=2)
    whole = zv_dask.read_las(laz, points_per_partition=None)
    ranged = zv_dask.read_las(laz, points_per_partition=20_000)
    assert whole.npartitions == 1 and ranged.npartitions == 2  # rounded up to LAZ chunks
    pd.testing.assert_frame_equal(ranged.compute().reset_index(drop=True),
                                  whole.compute().reset_index(drop=True))
    by7 = zv_dask.read_las(las, points_per_partition=7)
    assert by7.npartitions == 143
    pd.testing.assert_frame_equal(by7.compute().reset_index(drop=True),
                                  zv_dask.read_las(las, None).compute().reset_index(drop=True))


def test_globs_and_lists_of_tiles(tmp_path):
    a = write_las(tmp_path / "t1.laz", 300, 3, seed=3)
    b = write_las(tmp_path / "t2.laz", 200, 3, seed=4)
    df = zv_dask.read_las(str(tmp_path / "t*.laz"))
    both = pd.concat([a, b])
    same_rows(as_integers(df.compute(), (0.001,) * 3, (0.0,) * 3), both)
    listed = zv_dask.read_las([tmp_path / "t2.laz", tmp_path / "t1.laz"])
    assert len(listed.compute()) == 500
    write_las(tmp_path / "t3.laz", 10, 0)
    with pytest.raises(zv_dask.InputFileError, match="t3.laz has dimensions"):
        zv_dask.read_las(str(tmp_path / "t*.laz"))


def test_large_offsets_convert_to_float64_exact_with_scales_and_crs(tmp_path, capsys):
    src = tmp_path / "utm.laz"
    offsets, scales = (500_000.0, 4_000_000.0, 0.0), (0.01, 0.01, 0.01)
    expected = write_las(src, 3_000, 3, offsets=offsets, scales=scales, span=200_000,
                         seed=5, crs=True)
    assert not zv_dask.source_attributes(zv_dask.read_las(src))["float32_exact"]
    out = tmp_path / "utm.zarrvectors"
    rc = main(["convert", str(src), str(out), "--chunk-shape", "256", "--scheduler", "sync"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "float64" in cap.err and "level 0: 3000 vertices" in cap.out
    got = stored(out)
    assert got.x.dtype == np.float64
    same_rows(as_integers(got, scales, offsets), expected)
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]["zv_dask_source"]
    assert attrs["files"][0]["scales"] == list(scales)
    assert attrs["files"][0]["offsets"] == list(offsets)
    assert attrs["files"][0]["crs"] == {"wkt": WKT} and attrs["format"] == "las"


def test_large_offsets_convert_with_a_float64_pyramid(tmp_path, capsys):
    """UTM eastings/northings with ``--levels 3``: every coarse level stays float64 (a
    float32 coarse level would move metavertices across chunk faces), the store is
    valid, the reference reads every level, and level 1 holds numpy's bin centroids."""
    from zarr_vectors.types.points import read_points
    from zarr_vectors.validate import validate

    src = tmp_path / "utm.laz"
    offsets, scales = (500_000.0, 5_000_000.0, 0.0), (0.01, 0.01, 0.01)
    expected = write_las(src, 20_000, 3, offsets=offsets, scales=scales, span=20_000,
                         seed=8)
    out = tmp_path / "utm.zarrvectors"
    rc = main(["convert", str(src), str(out), "--chunk-shape", "64", "--levels", "3",
               "--scheduler", "sync"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    same_rows(as_integers(stored(out), scales, offsets), expected)
    result = validate(str(out), level=5)
    assert result.ok, result
    store = zv_dask.open_zv(out)
    level0 = store.read(level=0)["positions"]
    for level in (1, 2):
        ours = store.read(level=level)["positions"]
        assert ours.dtype == np.float64
        ref = read_points(str(out), level=level)
        np.testing.assert_array_equal(np.sort(ours, axis=0), np.sort(ref["positions"], axis=0))
    # level 1: one metavertex per occupied bin of the level-0 positions, at its mean
    bin1 = np.asarray(store.metadata.levels[1].bin_shape, np.float64)
    keys, inverse = np.unique(np.floor(level0 / bin1).astype(np.int64), axis=0,
                              return_inverse=True)
    means = np.stack([np.bincount(inverse.ravel(), weights=level0[:, a]) /
                      np.bincount(inverse.ravel()) for a in range(3)], axis=1)
    got = store.read(level=1)["positions"]
    assert len(got) == len(keys)
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(means, axis=0), rtol=0, atol=1e-6)


def test_small_coordinates_convert_to_float32_with_a_pyramid(tmp_path, capsys):
    src = tmp_path / "site.las"
    expected = write_las(src, 2_000, 0, scales=(0.001,) * 3, span=500_000, seed=6)
    out = tmp_path / "site.zarrvectors"
    rc = main(["convert", str(src), str(out), "--chunk-shape", "64", "--levels", "2",
               "--scheduler", "sync"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    got = stored(out)
    assert got.x.dtype == np.float32 and "float64" not in cap.err
    same_rows(as_integers(got, (0.001,) * 3, (0.0,) * 3), expected)


def write_ply(path, n, text, seed=0, faces=0, byte_order="="):
    rng = np.random.default_rng(seed)
    v = np.empty(n, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("nx", "f4"),
                           ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("label", "i4")])
    for c in ("x", "y", "z"):
        v[c] = rng.uniform(-50, 50, n).astype("f4")
    v["nx"] = rng.uniform(-1, 1, n)
    for c in ("red", "green", "blue"):
        v[c] = rng.integers(0, 256, n)
    v["label"] = rng.integers(-5, 5, n)
    elements = [plyfile.PlyElement.describe(v, "vertex")]
    if faces:
        f = np.empty(faces, dtype=[("vertex_indices", "i4", (3,))])
        f["vertex_indices"] = rng.integers(0, n, (faces, 3))
        elements.append(plyfile.PlyElement.describe(f, "face"))
    plyfile.PlyData(elements, text=text, byte_order=byte_order).write(str(path))
    return pd.DataFrame({name: v[name] for name in v.dtype.names})


@pytest.mark.parametrize("text,order", [(True, "="), (False, "<"), (False, ">")],
                         ids=["ascii", "binary-little", "binary-big"])
def test_ply_round_trips_through_read_ply_and_convert(tmp_path, capsys, text, order):
    src = tmp_path / "cloud.ply"
    expected = write_ply(src, 900, text, seed=7, byte_order=order)
    got = zv_dask.read_ply(src, rows_per_partition=200)
    assert got.npartitions == (1 if text else 5)
    frame = got.compute().reset_index(drop=True)
    assert str(frame.red.dtype) == "uint8" and str(frame.label.dtype) == "int32"
    pd.testing.assert_frame_equal(frame, expected)
    out = tmp_path / "cloud.zarrvectors"
    rc = main(["convert", str(src), str(out), "--chunk-shape", "16", "--levels", "2",
               "--scheduler", "sync"])
    assert rc == 0, capsys.readouterr().err
    same_rows(stored(out), expected)


def test_ply_faces_are_not_read_and_say_so(tmp_path):
    src = tmp_path / "mesh.ply"
    expected = write_ply(src, 50, False, faces=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = zv_dask.read_ply(src)
    assert [w.category for w in caught] == [zv_dask.ZVWarning]
    assert "face (20) not read" in str(caught[0].message)
    assert df.npartitions == 1  # vertices first but another element: plyfile parses it
    pd.testing.assert_frame_equal(df.compute().reset_index(drop=True), expected)


def _error_line(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("zv-dask: error:")]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bad_inputs_give_one_error_line_naming_the_file(tmp_path, capsys):
    good = tmp_path / "good.las"
    write_las(good, 500, 3)
    whole = good.read_bytes()
    (tmp_path / "cut.las").write_bytes(whole[:5000])
    write_las(tmp_path / "good.laz", 500, 3)
    (tmp_path / "cut.laz").write_bytes((tmp_path / "good.laz").read_bytes()[:3000])
    (tmp_path / "fake.ply").write_text("x y z\n1 2 3\n")
    (tmp_path / "fake.las").write_text("not a las file at all")
    write_ply(tmp_path / "whole.ply", 100, False)
    (tmp_path / "cut.ply").write_bytes((tmp_path / "whole.ply").read_bytes()[:1000])
    for name, words in [("cut.las", "truncated"), ("cut.laz", "do not read"),
                        ("fake.ply", "not a readable PLY"), ("fake.las", "not a readable"),
                        ("cut.ply", "truncated")]:
        out = tmp_path / f"{name}.zarrvectors"
        line = _error_line(capsys, ["convert", str(tmp_path / name), str(out),
                                    "--chunk-shape", "100", "--scheduler", "sync"])
        assert name in line and words in line, line


def test_laz_without_lazrs_names_the_package(tmp_path):
    src = tmp_path / "t.laz"
    write_las(src, 100, 1)
    # a fresh interpreter where lazrs (and laszip) cannot be imported
    code = ("import sys; sys.modules['lazrs'] = None; sys.modules['laszip'] = None\n"
            "from zv_dask.cli import main\n"
            f"sys.exit(main(['convert', {str(src)!r}, {str(tmp_path / 'o.zv')!r}, "
            "'--chunk-shape', '10']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "t.laz" in r.stderr and "pip install lazrs" in r.stderr


def test_format_is_forced_and_store_attributes_keep_the_formats_keys(tmp_path, capsys):
    src = tmp_path / "points.bin"
    expected = write_ply(src, 100, False, seed=8)
    out = tmp_path / "forced.zarrvectors"
    rc = main(["convert", str(src), str(out), "--format", "ply", "--chunk-shape", "50",
               "--scheduler", "sync"])
    assert rc == 0, capsys.readouterr().err
    same_rows(stored(out), expected)
    with pytest.raises(zv_dask.WriteInputError, match="may not set"):
        zv_dask.to_zv(expected, tmp_path / "x.zarrvectors", chunk_shape=50,
                      store_attributes={"zarr_vectors": {}})


def test_float64_ply_coordinates_are_stored_as_float64(tmp_path, capsys):
    rng = np.random.default_rng(9)
    v = np.empty(300, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("alpha", "u1")])
    for c in ("x", "y", "z"):
        v[c] = rng.uniform(6e6, 6.001e6, 300)
    v["alpha"] = rng.integers(0, 256, 300)
    src = tmp_path / "geo.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(src))
    out = tmp_path / "geo.zarrvectors"
    rc = main(["convert", str(src), str(out), "--chunk-shape", "100", "--scheduler", "sync"])
    cap = capsys.readouterr()
    assert rc == 0 and "float64 coordinates" in cap.err, cap.err
    got = stored(out)
    assert got.x.dtype == np.float64
    same_rows(got, pd.DataFrame({n: v[n] for n in v.dtype.names}))


@pytest.mark.parametrize("point_format", [3, 7])
def test_column_projection_reads_the_same_values(tmp_path, point_format):
    """``df[cols]`` reaches the reader (LAZ formats 6-10 then decode only those layers)."""
    src = tmp_path / "p.laz"
    write_las(src, 2_000, point_format, seed=10)
    df = zv_dask.read_las(src, points_per_partition=None)
    whole = df.compute()
    for cols in (["x", "y", "z"], ["gps_time", "x"], ["red", "classification", "z"]):
        got = df[cols].compute()
        assert list(got.columns) == cols
        pd.testing.assert_frame_equal(got, whole[cols])
    ply = tmp_path / "c.ply"
    write_ply(ply, 50, False)
    frame = zv_dask.read_ply(ply)
    pd.testing.assert_frame_equal(frame[["blue", "x"]].compute(),
                                  frame.compute()[["blue", "x"]])


def test_laz_tiles_on_s3_convert_with_storage_options(tmp_path, capsys):
    from s3server import ACCESS_KEY, SECRET_KEY, MotoServer

    server = MotoServer()
    try:
        server.client().create_bucket(Bucket="tiles")
        (tmp_path / "up").mkdir()
        a = write_las(tmp_path / "up" / "a.laz", 400, 7, seed=11)
        b = write_las(tmp_path / "up" / "b.laz", 300, 7, seed=12)
        server.upload("tiles", tmp_path / "up", "city")
        out = tmp_path / "city.zarrvectors"
        rc = main(["convert", "s3://tiles/city/*.laz", str(out), "--chunk-shape", "100",
                   "--scheduler", "sync", "--storage-option", f"endpoint_url={server.url}",
                   "--storage-option", f"key={ACCESS_KEY}",
                   "--storage-option", f"secret={SECRET_KEY}"])
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        assert "2 LAS files: 700 points" in cap.err
        same_rows(as_integers(stored(out), (0.001,) * 3, (0.0,) * 3), pd.concat([a, b]))
    finally:
        server.stop()
