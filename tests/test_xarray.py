"""xarray: read_zv, the zarr_vectors backend engine, the object dataset."""

from __future__ import annotations

import numpy as np
import pytest

import zv_dask

xr = pytest.importorskip("xarray")


def _assert_equals_read(ds, r, store, level):
    np.testing.assert_array_equal(ds.positions.values, r["positions"])
    assert ds.positions.dtype == r["positions"].dtype
    assert ds.sizes["vertex"] == len(r["positions"]) and list(ds.axis.values) == list(store.axes)
    for name, v in r["attributes"].items():
        np.testing.assert_array_equal(ds[name].values, v)
    assert set(ds.data_vars) == {"positions", *r["attributes"]}
    if "object_ids" in r:
        np.testing.assert_array_equal(ds.object_id.values, r["object_ids"])
    else:
        assert "object_id" not in ds.coords
    assert ("owner_count" in ds.coords) == ("owner_count" in r)
    if "owner_count" in r:
        np.testing.assert_array_equal(ds.owner_count.values, r["owner_count"])
    assert ds.attrs["level"] == level and ds.attrs["zv_version"].startswith("0.9")


@pytest.mark.parametrize("name", ["points_pyramid", "streamlines", "points_2d",
                                  "points_f64_zstd", "points_sharded", "points_by_gene"])
def test_read_zv_equals_read(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    for level in store.levels:
        ds = zv_dask.read_zv(store_path(name), level=level)
        _assert_equals_read(ds, store.read(level=level), store, level)
        # one block per chunk, exact lengths
        assert ds.positions.data.numblocks[0] == len(store.chunks(level))
        assert not np.isnan(ds.positions.data.chunks[0]).any()


@pytest.mark.parametrize("name", ["points_pyramid", "streamlines", "points_f64_zstd"])
def test_read_zv_bbox_exact_lengths(store_path, name):
    store = zv_dask.open_zv(store_path(name))
    lo, hi = store.bounding_box
    box = (lo + 0.21 * (hi - lo), lo + 0.77 * (hi - lo))
    ds = zv_dask.read_zv(store, level=0, bbox=box)
    _assert_equals_read(ds, store.read(level=0, bbox=box), store, 0)
    assert ds.attrs["bbox_min"] == list(box[0])


def test_multicolumn_and_categorical(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    ds = zv_dask.read_zv(store, level=0, attributes=["rgb", "region", "fa"])
    assert ds.rgb.dims == ("vertex", "channel") and ds.sizes["channel"] == 3
    assert ds.region.dtype == object and ds.region.attrs["categories"]
    s = zv_dask.open_zv(store_path("streamlines"))
    assert zv_dask.read_zv(s).tangent.dims == ("vertex", "channel")


def test_open_dataset_engine_and_datatree(store_path):
    path = store_path("streamlines")
    store = zv_dask.open_zv(path)
    ds = xr.open_dataset(path, engine="zarr_vectors", level=1)
    _assert_equals_read(ds, store.read(level=1), store, 1)
    box = ([100, 100, 100], [1500, 1200, 1800])
    ds = xr.open_dataset(path, engine="zarr_vectors", level=0, bbox=box, attributes=["fa"],
                         drop_variables=["positions"])
    assert set(ds.data_vars) == {"fa"}
    np.testing.assert_array_equal(ds.fa.values, store.read(level=0, bbox=box)["attributes"]["fa"])
    tree = xr.open_datatree(path, engine="zarr_vectors")
    assert sorted(tree.children) == [str(lv) for lv in store.levels]
    for lv in store.levels:
        np.testing.assert_array_equal(tree[str(lv)].positions.values,
                                      store.read(level=lv)["positions"])
    assert tree.attrs["geometry_type"] == "streamline"
    assert xr.backends.list_engines()["zarr_vectors"].guess_can_open(path)


def test_building_reads_no_chunk_data(store_path, counting):
    path = "zvcount://" + store_path("streamlines")
    store = zv_dask.open_zv(path)
    counting.clear()
    ds = zv_dask.read_zv(store, level=0)
    ds2 = xr.open_dataset(path, engine="zarr_vectors", level=1)
    got = [p for op, p in counting if op == "get"]
    assert all(p.endswith("zarr.json") for p in got), got  # open_dataset re-opens the store
    assert ds.sizes["vertex"] == store.vertex_count(0) and ds2.sizes["vertex"] > 0


def test_isel_sel_touch_only_needed_blocks(store_path, counting):
    path = "zvcount://" + store_path("streamlines")
    store = zv_dask.open_zv(path)
    ds = zv_dask.read_zv(store, level=0)
    bounds = np.r_[0, np.cumsum(ds.positions.data.chunks[0])]
    a, b = int(bounds[10]) + 1, int(bounds[12]) + 2  # rows in blocks 10, 11 and 12
    counting.clear()
    part = ds.isel(vertex=slice(a, b)).positions.values
    got = {p for op, p in counting if op == "get" and "/0/vertices/c/" in p}
    assert len(got) == 3
    np.testing.assert_array_equal(part, store.read(level=0)["positions"][a:b])
    counting.clear()
    sel = ds.sel(vertex=[a, b + 50]).fa.values
    got = {p for op, p in counting if op == "get" and "/0/vertex_attributes/fa/c/" in p}
    assert len(got) == 2 and not [p for op, p in counting if "/tangent/" in p]
    np.testing.assert_array_equal(sel, store.read(level=0)["attributes"]["fa"][[a, b + 50]])


def test_objects_dataset(store_path):
    path = store_path("web_graph")
    ds = zv_dask.read_zv(path, objects=True)
    df = zv_dask.open_zv(path).objects().compute()
    assert ds.object_id.values.tolist() == df.index.tolist() == [2, 7, 12]
    assert ds["size"].dtype == np.float64 and ds["size"].attrs["absent_sentinel"] == -2**31
    np.testing.assert_array_equal(ds["size"].values, df["size"].astype("float64").to_numpy())
    np.testing.assert_array_equal(ds["score"].values, df["score"].to_numpy())
    assert float(ds.sel(object_id=12)["score"]) == 2.0
    s = zv_dask.open_zv(store_path("streamlines"))
    d2 = zv_dask.read_zv(s, level=2, objects=True)
    np.testing.assert_array_equal(d2.mean_fa.values, s.objects(level=2).compute().mean_fa.to_numpy())


def test_read_zv_without_xarray_says_how_to_install_it():
    """xarray is optional: ``import zv_dask`` works without it and ``read_zv`` raises a
    ZVError naming the package (run where xarray cannot be imported)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['xarray'] = None\n"
        "import zv_dask\n"
        "store = zv_dask.example_store()\n"
        "for call in (lambda: zv_dask.read_zv(store),\n"
        "             lambda: zv_dask.read_zv(zv_dask.example_store('streamlines'), objects=True)):\n"
        "    try:\n"
        "        call()\n"
        "    except zv_dask.MissingDependencyError as e:\n"
        "        assert isinstance(e, (zv_dask.ZVError, ImportError)), type(e)\n"
        "        print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all("pip install xarray" in line for line in lines), lines
    assert "read_zv needs xarray" in lines[0] and "objects=True" in lines[1]
