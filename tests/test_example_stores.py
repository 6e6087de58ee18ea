"""The example stores shipped in ``zv_dask/data``: one per geometry, each opening with the
geometry it claims, and their points, objects, edges and faces equal to what the reference
``zarr-vectors`` readers answer on the same store."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import zv_dask

warnings.filterwarnings("ignore", module="zarr_vectors")

KINDS = {"points": "point_cloud", "streamlines": "streamline", "graph": "graph",
         "skeleton": "skeleton", "mesh": "mesh"}


def _pairs(a):
    return set(map(tuple, np.asarray(a).tolist()))


def test_the_default_is_the_points_store_the_cli_uses():
    path = zv_dask.example_store()
    assert path == zv_dask.example_store("points")
    assert Path(path) == Path(zv_dask.__file__).parent / "data" / "example.zarrvectors"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_opens_with_its_geometry(kind):
    s = zv_dask.open_zv(zv_dask.example_store(kind))
    assert s.geometry_type == KINDS[kind]
    assert s.spatial_dims == 3
    total = s.vertex_count(0)
    assert 500 <= total <= 5000  # small, as documented
    assert len(s.read(level=0)["positions"]) == total
    if kind in ("points", "streamlines"):  # the pyramids the reference can build
        assert len(s.levels) >= 2
        assert s.vertex_count(s.levels[-1]) < total


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(zv_dask.ZVError) as info:
        zv_dask.example_store("polygon")
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "'polygon'" in msg and all(repr(k) in msg for k in KINDS)


def test_points_equal_read_points():
    from zarr_vectors.types.points import read_points

    path = zv_dask.example_store()
    r = zv_dask.open_zv(path).read(level=0)
    ref = read_points(path)
    np.testing.assert_array_equal(np.sort(r["positions"], axis=0), np.sort(ref["positions"], axis=0))
    assert set(r["attributes"]) == {"intensity", "label", "region"}
    # coarse levels carry positions only: the docs read attributes at level 0
    assert zv_dask.open_zv(path).attributes_at(1) == {}


@pytest.mark.parametrize("level", [0, 1])
def test_streamlines_equal_read_polylines(level):
    from zarr_vectors.types.polylines import read_polylines

    path = zv_dask.example_store("streamlines")
    s = zv_dask.open_zv(path)
    r = s.read_objects(level=level)
    ref = read_polylines(path, level=level)
    assert r["object_ids"].tolist() == list(ref["object_ids"])
    for k in range(len(r["object_ids"])):
        np.testing.assert_array_equal(r["positions"][r["offsets"][k]:r["offsets"][k + 1]],
                                      np.concatenate(ref["polylines"][k]))
    objs = s.objects().compute()
    assert list(objs.index) == list(range(40))
    assert (objs["length"].to_numpy() >= 20).all()
    if level == 0:
        np.testing.assert_array_equal(r["attributes"]["fa"], ref["vertex_attributes"]["fa"])
        assert (objs["length"].to_numpy() == np.diff(r["offsets"])).all()


@pytest.mark.parametrize("kind", ["graph", "skeleton"])
def test_edges_equal_read_graph(kind):
    from zarr_vectors.types.graphs import read_graph

    path = zv_dask.example_store(kind)
    s = zv_dask.open_zv(path)
    e = s.edges().compute()
    ref = read_graph(path)
    pos = s.read()["positions"]
    np.testing.assert_array_equal(ref["positions"], pos)
    got = e[["source", "target"]].to_numpy()
    assert len(got) == len(ref["edges"]) > 0 and _pairs(got) == _pairs(ref["edges"])
    owner = s.read()["object_ids"]
    assert (owner[got[:, 0]] == owner[got[:, 1]]).all()  # edges stay inside an object
    if kind == "graph":
        d = np.linalg.norm(pos[got[:, 0]] - pos[got[:, 1]], axis=1).astype(np.float32)
        np.testing.assert_allclose(e["length"].to_numpy(), d, rtol=1e-6)
        assert s.objects().compute()["cluster_size"].tolist() == [200, 200, 200]
    else:  # two trees: every node but the two roots is a child exactly once
        assert len(np.unique(got[:, 0])) == len(got) == s.vertex_count(0) - 2


def test_faces_equal_read_mesh():
    from zarr_vectors.types.meshes import read_mesh

    path = zv_dask.example_store("mesh")
    s = zv_dask.open_zv(path)
    f = np.asarray(s.faces())
    ref = read_mesh(path)
    np.testing.assert_array_equal(ref["vertices"], s.read()["positions"])
    assert f.shape == ref["faces"].shape == (1840, 3) and _pairs(f) == _pairs(ref["faces"])
    owner = s.read()["object_ids"]
    assert (owner[f] == owner[f[:, :1]]).all()
    assert sorted(s.objects().compute().index) == [0, 1]


def test_example_store_docstring_examples_run():
    import doctest

    result = doctest.testmod(zv_dask, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
