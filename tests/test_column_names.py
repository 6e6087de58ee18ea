"""Attributes named like an axis or a column the reader adds (issue 18, rule 9): each
gets a column of its own, named by one rule, in every collection; filters on either
column are exact and only the real axis prunes chunks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from zarr_vectors.types.points import write_points

import zv_dask
from zv_dask.format.levels import attribute_columns

N = 1000


@pytest.fixture
def clashing(tmp_path):
    """A reference store whose attributes are named x, attr_x, owner_count, object_id,
    positions and a 2-column ``y``."""
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 10, (N, 3))
    attrs = {"x": np.full(N, 1000.0), "attr_x": np.arange(N, dtype=np.float64),
             "owner_count": np.ones(N), "object_id": np.arange(N, dtype=np.int32),
             "positions": np.full(N, 7.0), "y": rng.random((N, 2))}
    p = tmp_path / "clash.zarrvectors"
    write_points(str(p), pos, chunk_shape=(5, 5, 5), vertex_attributes=attrs)
    return str(p)


def _open(path):
    return zv_dask.open_zv(path)


def test_the_rule_is_collision_free_and_order_independent():
    got = attribute_columns(("x", "y"), [("x", 1), ("attr_x", 1), ("a", 2), ("a_0", 1)])
    assert got == attribute_columns(("x", "y"), [("a_0", 1), ("a", 2), ("attr_x", 1), ("x", 1)])
    assert got == {"a": ["a_0", "a_1"], "a_0": ["attr_a_0"], "attr_x": ["attr_x"],
                   "x": ["attr_attr_x"]}
    every = [c for cols in got.values() for c in cols]
    assert len(every) == len(set(every)) and not {"x", "y"} & set(every)


def test_dataframe_columns_and_one_warning_per_handle(clashing):
    s = _open(clashing)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ddf = s.to_dask_dataframe()
        s.to_dask_dataframe()
    said = [x for x in w if issubclass(x.category, zv_dask.ZVWarning)]
    assert len(said) == 1 and "'x' -> attr_attr_x" in str(said[0].message)
    assert clashing in str(said[0].message)
    cols = list(ddf.columns)
    assert cols[:3] == ["x", "y", "z"] and len(cols) == len(set(cols))
    names = s.column_names(0)
    assert names["x"] == ["attr_attr_x"] and names["attr_x"] == ["attr_x"]
    assert names["owner_count"] == ["attr_owner_count"]
    assert names["object_id"] == ["attr_object_id"]
    assert names["positions"] == ["attr_positions"] and names["y"] == ["y_0", "y_1"]
    full = ddf.compute()
    r = s.read()
    np.testing.assert_array_equal(np.sort(full.x.to_numpy()), np.sort(r["positions"][:, 0]))
    assert (full.attr_attr_x == 1000.0).all() and (full.attr_owner_count == 1.0).all()
    np.testing.assert_array_equal(np.sort(full.attr_x.to_numpy()), np.arange(N))


def test_filters_on_the_axis_and_the_renamed_column_are_exact(clashing):
    s = _open(clashing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zv_dask.ZVWarning)
        ddf = s.to_dask_dataframe()
        auto = s.to_dask_dataframe(chunks_per_partition="auto", partition_rows=200)
    full = ddf.compute()
    for frame in (ddf, auto):
        assert len(frame[frame.x > 5]) == int((full.x > 5).sum()) > 0
        assert len(frame[frame.x > 500]) == int((full.x > 500).sum()) == 0
        assert len(frame[frame.attr_attr_x > 500]) == N
        assert len(frame[frame.attr_owner_count == 1.0]) == N
        assert len(frame[(frame.attr_x < 10) & (frame.x < 5)]) == \
            int(((full.attr_x < 10) & (full.x < 5)).sum())
    # only the real axis prunes: a filter on the attribute keeps every partition
    assert ddf[ddf.attr_attr_x > 500].optimize().npartitions == ddf.npartitions
    assert ddf[ddf.x > 5].optimize().npartitions < ddf.npartitions


def test_selection_is_by_stored_name_and_arrays_and_xarray_follow(clashing):
    s = _open(clashing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zv_dask.ZVWarning)
        ddf = s.to_dask_dataframe(attributes=["x", "owner_count"])
        # a selection does not change names: x is attr_attr_x as in the whole frame
        assert sorted(ddf.columns) == ["attr_attr_x", "attr_owner_count", "x", "y", "z"]
        assert (ddf.compute().attr_attr_x == 1000.0).all()
        with pytest.raises(zv_dask.ArrayNotFoundError) as err:  # ask by the stored name
            s.to_dask_dataframe(attributes=["attr_owner_count"])
        assert "'owner_count'" in str(err.value)
        a = s.to_dask_array("owner_count").compute()
        assert a.shape == (N,) and (a == 1.0).all()
        np.testing.assert_array_equal(s.to_dask_array("attr_positions").compute(),
                                      np.full(N, 7.0))
        assert s.to_dask_array("positions").compute().shape == (N, 3)
        ds = zv_dask.read_zv(s)
    assert ds.positions.shape == (N, 3)
    assert ds.attr_positions.attrs["stored_name"] == "positions"
    assert (ds.attr_attr_x.values == 1000.0).all() and (ds.attr_owner_count.values == 1).all()
    assert ds.y.shape == (N, 2)  # y_0, y_1 clash with nothing
    r = s.read()
    assert (r["attributes"]["x"] == 1000.0).all()  # read() keeps the stored names


def test_an_owner_count_attribute_computes(clashing):
    # it used to be taken for the reader's own owner_count and need an object index
    s = _open(clashing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zv_dask.ZVWarning)
        got = s.to_dask_dataframe(attributes=["owner_count"]).compute()
    assert len(got) == N and (got.attr_owner_count == 1.0).all()
    assert "owner_count" not in got.columns
