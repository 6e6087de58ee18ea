"""Opening reads metadata only; the metadata equals what the reference says."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import zv_dask
from zvfixtures import READABLE_STORES, reference_level


@pytest.mark.parametrize("name", READABLE_STORES + ["draco_mesh"])
def test_open_reads_only_zarr_json(store_path, counting, name):
    if name == "draco_mesh":
        pytest.importorskip("DracoPy")
    store = zv_dask.open_zv("zvcount://" + store_path(name))
    gets = [p for op, p in counting if op == "get"]
    assert gets and all(p.endswith("/zarr.json") for p in gets), gets
    assert len(gets) == len(set(gets))  # each document once
    # metadata queries afterwards read nothing at all
    counting.clear()
    for lv in store.levels:
        store.vertex_count(lv), store.bin_shape_at(lv), store.chunks(lv), store.attributes_at(lv)
        store.chunks(lv, bbox=(np.zeros(store.spatial_dims), np.full(store.spatial_dims, 900.0)))
    store.select_level(300), store.n_objects, store.bounding_box
    assert counting == []


@pytest.mark.parametrize("name", READABLE_STORES)
def test_metadata_equals_reference(store_path, name):
    from zarr_vectors import building as B

    path = store_path(name)
    store = zv_dask.open_zv(path)
    root = B.open_store(path)
    rmeta = B.read_root_metadata(root)
    assert store.levels == list(B.list_resolution_levels(root))
    assert store.zv_version.startswith("0.9.")
    assert store.spatial_dims == len(rmeta.chunk_shape)
    assert store.chunk_shape == tuple(float(c) for c in rmeta.chunk_shape)
    for lv in store.levels:
        lm = B.read_level_metadata(root, lv)
        assert store.vertex_count(lv) == lm.vertex_count == len(reference_level(path, lv)["positions"])
        assert store.bin_shape_at(lv) == tuple(float(b) for b in B.get_level_bin_shape(rmeta, lm))
        assert store.chunk_shape_at(lv) == tuple(float(c) for c in B.get_level_chunk_shape(rmeta, lm))
        g = B.get_resolution_level(root, lv)
        if "object_index" in g:
            assert store.object_count_at(lv) == len([m for m in B.read_object_manifests(g).values() if len(m)])
        else:
            assert store.object_count_at(lv) is None


def test_example_store_metadata():
    s = zv_dask.open_zv(zv_dask.example_store())
    assert (s.geometry_type, s.spatial_dims, s.axes) == ("point_cloud", 3, ("x", "y", "z"))
    assert s.levels == [0, 1, 2] and s.vertex_count(0) == 5000
    assert s.bin_shape == (125.0, 125.0, 125.0) and s.chunk_shape == (500.0,) * 3
    lo, hi = s.bounding_box
    assert lo.dtype == np.float64 and list(hi) == [2000.0] * 3
    assert s.n_objects is None
    assert s.attributes_at(0)["region"]["categories"] == ["cortex", "ventricle", "white_matter"]


def test_cli_info_example_and_fixture(store_path):
    out = subprocess.run([sys.executable, "-m", "zv_dask", "info"], capture_output=True,
                         text=True, check=True).stdout
    assert "example.zarrvectors" in out and "5000" in out and "region categorical[3]" in out
    path = store_path("streamlines")
    s = zv_dask.open_zv(path)
    out = subprocess.run([sys.executable, "-m", "zv_dask", "info", path], capture_output=True,
                         text=True, check=True).stdout
    for lv in s.levels:
        row = next(line for line in out.splitlines() if line.split()[:1] == [str(lv)])
        assert row.split()[1] == str(s.vertex_count(lv))
        assert row.split()[2] == str(len(s.chunks(lv)))
        assert row.split()[-1] == str(s.object_count_at(lv))
    assert "fa float32" in out


def test_cli_bad_store_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "zv_dask", "info", str(tmp_path / "missing")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "missing" in r.stderr and "nothing exists" in r.stderr and "Traceback" not in r.stderr
