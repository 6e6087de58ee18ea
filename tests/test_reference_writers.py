"""Every store the reference writer produces opens, and reads what its readers read:
``rechunk`` outputs (leading non-spatial chunk axes), streaming skeleton stores with a
coordinate offset, stores after ``remove_resolution_level``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import zv_dask
from zv_dask import errors as E
from zv_dask import stats
from zvfixtures import BOUNDS3, _streamlines, reference_level

warnings.filterwarnings("ignore", module="zarr_vectors")


def assert_level_equals_reference(store, path, level):
    """Rows, attributes, owners, chunk keys and per-chunk counts equal the reference."""
    ref = reference_level(str(path), level)
    got = store.read(level=level)
    np.testing.assert_array_equal(got["positions"], ref["positions"])
    assert got["positions"].dtype == ref["positions"].dtype
    for n, values in ref["attributes"].items():
        np.testing.assert_array_equal(got["attributes"][n], values)
    if "owner" in ref:
        np.testing.assert_array_equal(got["object_ids"], ref["owner"])
    assert store.chunks(level) == [tuple(k) for k in ref["chunk_keys"].tolist()]
    counts = [len(d["positions"]) for _, d in store.iter_chunks(level=level, attributes=[])]
    np.testing.assert_array_equal(counts, ref["chunk_counts"])
    assert int(np.asarray(stats.count(store, level=level).compute()
                          if store.vertex_count(level) is None
                          else stats.count(store, level=level))) == len(ref["positions"])
    return ref


def _sorted_rows(a):
    a = np.asarray(a, np.float64)
    return a[np.lexsort(a.T[::-1])]


@pytest.fixture(scope="module")
def polylines(tmp_path_factory):
    from zarr_vectors import building as B

    path = tmp_path_factory.mktemp("rechunk") / "lines.zarrvectors"
    lines = _streamlines(np.random.default_rng(7), 6)
    B.write_polylines(str(path), lines, chunk_shape=(500.0,) * 3, bounds=BOUNDS3,
                      vertex_attributes={"fa": [np.linspace(0, 1, len(x)).astype(np.float32)
                                                for x in lines]})
    return path


@pytest.mark.parametrize("by, kw, lead", [
    ("object_id", {"bins": [0, 2, 5]}, 3),
    ("spatial", {"spatial_chunk_shape": (1000.0,) * 3}, 1),
])
def test_rechunk_outputs_open_and_read_like_the_reference(polylines, tmp_path, by, kw, lead):
    from zarr_vectors import building as B
    from zarr_vectors.types.points import read_points

    out = tmp_path / f"{by}.zarrvectors"
    B.rechunk(str(polylines), B.RechunkSpec(by=by, **kw), output=str(out))
    store = zv_dask.open_zv(out)
    lm = store.metadata.levels[0]
    assert lm.rank == 4 and lm.chunk_attribute is None and lm.presence.shape[0] == lead
    assert {k[0] for k in store.chunks(0)} <= set(range(lead))
    assert_level_equals_reference(store, out, 0)
    got = store.read(level=0)
    ref = read_points(str(out))
    np.testing.assert_array_equal(_sorted_rows(got["positions"]),
                                  _sorted_rows(ref["positions"]))
    # whole objects: the reference's polyline reader, object by object, value for value
    from zarr_vectors.types.polylines import read_polylines

    ref = read_polylines(str(out))
    mine = store.read_objects()
    np.testing.assert_array_equal(mine["object_ids"], ref["object_ids"])
    for i, segments in enumerate(ref["polylines"]):
        want = np.concatenate([np.asarray(x).reshape(-1, 3) for x in segments])
        np.testing.assert_array_equal(
            mine["positions"][mine["offsets"][i]:mine["offsets"][i + 1]], want)


def _skeleton(path, offset, finish_index: bool):
    from zarr_vectors import building as B

    root, g = B.init_skeleton_store(str(path), chunk_shape=(10.0,) * 3,
                                    bounds=([0.0] * 3, [40.0] * 3), ndim=3,
                                    attribute_dtypes={"radius": "float32"},
                                    coordinate_offset=offset)
    rng = np.random.default_rng(3)
    manifests = {}
    for sid, cc in [(0, (0, 0, 0)), (1, (1, 2, 3)), (1, (2, 2, 3))]:
        pos = (np.asarray(cc) * 10 + rng.uniform(0, 10, (5, 3))).astype(np.float32)
        records, _ = B.write_skeleton_chunk(g, cc, [{
            "segment_id": sid, "positions": pos, "edges": np.array([[1, 0], [2, 1], [3, 2]]),
            "attributes": {"radius": rng.random(5).astype(np.float32)}}])
        for seg, c, f in records:
            manifests.setdefault(int(seg), []).append((tuple(c), int(f)))
    if finish_index:
        B.write_object_index(g, manifests, sid_ndim=3)
    B.finalize_skeleton_store(root)
    return root


@pytest.mark.parametrize("finish_index", [True, False], ids=["with-index", "index-not-built"])
def test_streaming_skeleton_with_offset_bin_shape_by_reference_rule(tmp_path, finish_index):
    from zarr_vectors import building as B

    path = tmp_path / "skel.zarrvectors"
    root = _skeleton(path, (1000, 2000, 3000), finish_index)
    want = B.get_level_bin_shape(B.read_root_metadata(root), B.read_level_metadata(root, 0))
    store = zv_dask.open_zv(path)
    assert store.bin_shape_at(0) == tuple(want) == (10.0, 10.0, 10.0)
    assert store.vertex_count(0) is None  # the streaming writer records 0 and keeps it
    if finish_index:
        ref = assert_level_equals_reference(store, path, 0)
        assert set(np.unique(ref["owner"]).tolist()) == {0, 1}
    else:  # no object index yet: positions and attributes still read
        assert store.metadata.levels[0].object_index is None
        got = store.read(level=0)
        g = B.get_resolution_level(B.open_store(str(path)), 0)
        keys = [tuple(int(x) for x in c) for c in B.list_chunk_keys(g)]
        want = np.concatenate([np.asarray(B.read_chunk_vertex_buffer(g, cc, ndim=3))
                               .reshape(-1, 3) for cc in keys])
        np.testing.assert_array_equal(got["positions"], want)


def test_bin_shapes_follow_reference_on_pyramids(store_path):
    from zarr_vectors import building as B

    for name in ("points_pyramid", "points_2d", "streamlines"):
        path = store_path(name)
        root = B.open_store(path)
        rmeta = B.read_root_metadata(root)
        store = zv_dask.open_zv(path)
        for lv in store.levels:
            want = B.get_level_bin_shape(rmeta, B.read_level_metadata(root, lv))
            assert store.bin_shape_at(lv) == pytest.approx(tuple(want), rel=0, abs=0), (name, lv)


def test_removed_resolution_level_warns_and_the_rest_opens(store_path, tmp_path):
    import shutil

    from zarr_vectors import building as B

    path = tmp_path / "pyr.zarrvectors"
    shutil.copytree(store_path("points_pyramid"), path)
    B.remove_resolution_level(B.open_store(str(path), mode="r+"), 2)
    with pytest.warns(UserWarning, match="lists level 2 but its group"):
        store = zv_dask.open_zv(path)
    assert store.levels == [0, 1, 3]
    for lv in store.levels:
        assert_level_equals_reference(store, path, lv)
    with pytest.raises(E.LevelNotFoundError, match="level 2"):
        store.read(level=2)
