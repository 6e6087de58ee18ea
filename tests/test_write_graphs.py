"""to_zv(geometry="graph" | "mesh"): the store write_graph / write_mesh (then
building.build_fragment_owner_index) makes for the same vertices and edges or faces,
file for file; the reference readers and ours give back the input records (direction and
winding kept); records to rows that do not exist refused before anything is written."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from zarr_vectors.building import build_fragment_owner_index
from zarr_vectors.types.graphs import read_graph, write_graph
from zarr_vectors.types.meshes import read_mesh, write_mesh

import zv_dask
from zv_dask.errors import WriteInputError
from writehelpers import assert_same_store, assert_valid, files, forest

N = 300


@pytest.fixture
def verts():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-50, 300, (N, 3))
    oids = rng.integers(0, 6, N)
    w = rng.random(N).astype(np.float32)
    df = pd.DataFrame(pos, columns=list("xyz"))
    df["object_id"], df["w"] = oids, w
    return rng, pos, oids, w, df


def _as_points(pos, records):
    """Records as tuples of endpoint positions (rows differ between input and store)."""
    p = np.asarray(pos, np.float32)
    return sorted(tuple(map(tuple, p[r])) for r in np.asarray(records))


def test_graph_same_store_as_write_graph(tmp_path, verts):
    rng, pos, oids, w, df = verts
    edges = rng.integers(0, N, (500, 2))
    ln = rng.random(500).astype(np.float32)
    ref = tmp_path / "ref" / "g.zarrvectors"
    write_graph(str(ref), pos, edges, chunk_shape=(100, 100, 100), object_ids=oids,
                vertex_attributes={"w": w}, link_attributes={"len": ln})
    build_fragment_owner_index(str(ref))
    ours = tmp_path / "ours" / "g.zarrvectors"
    e = pd.DataFrame({"source": edges[:, 0], "target": edges[:, 1], "len": ln})
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3, sort=False), ours, chunk_shape=100,
                  geometry="graph", edges=dd.from_pandas(e, npartitions=2, sort=False))
    assert_same_store(ref, ours)
    assert_valid(ours)
    back = read_graph(str(ours))
    assert _as_points(back["positions"], back["edges"]) == _as_points(pos, edges)
    store = zv_dask.open_zv(ours)
    got = store.edges().compute()
    rows = store.to_dask_dataframe()[list("xyz")].compute().to_numpy()  # global row order
    assert _as_points(rows, got[["source", "target"]].to_numpy()) == _as_points(pos, edges)
    assert sorted(got["len"]) == sorted(ln)


def test_mesh_same_store_as_write_mesh_winding_kept(tmp_path, verts):
    rng, pos, oids, w, df = verts
    faces = np.stack([rng.permutation(N)[:3] for _ in range(400)])
    # faces inside one cell too: the intra array
    cell = np.floor(pos / 100).astype(int)
    same = [i for i in range(N) if (cell[i] == cell[0]).all()][:3]
    faces = np.concatenate([faces, [same, same[::-1]]])
    ref = tmp_path / "ref" / "m.zarrvectors"
    write_mesh(str(ref), pos, faces, chunk_shape=(100, 100, 100), object_ids=oids,
               vertex_attributes={"w": w})
    build_fragment_owner_index(str(ref))
    ours = tmp_path / "ours" / "m.zarrvectors"
    zv_dask.to_zv(df, ours, chunk_shape=100, geometry="mesh",
                  faces=pd.DataFrame(faces, columns=["v0", "v1", "v2"]))
    assert_same_store(ref, ours)
    assert_valid(ours)
    back = read_mesh(str(ours))
    assert _as_points(back["vertices"], back["faces"]) == _as_points(pos, faces)
    store = zv_dask.open_zv(ours)
    rows = store.to_dask_dataframe()[list("xyz")].compute().to_numpy()
    assert _as_points(rows, np.asarray(store.faces())) == _as_points(pos, faces)


def test_graph_without_object_ids_is_one_object(tmp_path, verts):
    rng, pos, oids, w, df = verts
    edges = rng.integers(0, N, (50, 2))
    ref = tmp_path / "ref" / "g.zarrvectors"
    write_graph(str(ref), pos, edges, chunk_shape=(100, 100, 100))
    build_fragment_owner_index(str(ref))
    ours = tmp_path / "ours" / "g.zarrvectors"
    zv_dask.to_zv(df[list("xyz")], ours, chunk_shape=100, geometry="graph", edges=edges)
    assert_same_store(ref, ours)


def test_skeleton_same_store_as_write_graph_kind_skeleton(tmp_path):
    rng = np.random.default_rng(4)
    pos, edges, oids = forest(rng, (80, 50, 70))
    w = rng.random(len(pos)).astype(np.float32)
    r = rng.random(len(edges)).astype(np.float32)
    ref = tmp_path / "ref" / "k.zarrvectors"
    write_graph(str(ref), pos, edges, chunk_shape=(100, 100, 100), object_ids=oids,
                kind="skeleton", vertex_attributes={"w": w}, link_attributes={"r": r})
    build_fragment_owner_index(str(ref))
    df = pd.DataFrame(pos, columns=list("xyz"))
    df["object_id"], df["w"] = oids, w
    e = pd.DataFrame({"source": edges[:, 0], "target": edges[:, 1], "r": r})
    ours = tmp_path / "ours" / "k.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3, sort=False), ours, chunk_shape=100,
                  geometry="skeleton", edges=dd.from_pandas(e, npartitions=2, sort=False))
    assert_same_store(ref, ours)
    assert_valid(ours)


def test_skeleton_tree_read_back_by_both_readers(tmp_path):
    """One tree: the depth-first order covers every vertex, so both readers give the
    input child -> parent edges.  (With several trees the reference orders only the
    first depth-first and its reader then joins the others' roots to a previous row;
    the store is still the reference's own, as the test above shows.)"""
    rng = np.random.default_rng(6)
    pos, edges, oids = forest(rng, sizes=(150,))
    df = pd.DataFrame(pos, columns=list("xyz"))
    df["object_id"] = oids
    ours = tmp_path / "tree.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3, sort=False), ours, chunk_shape=100,
                  geometry="skeleton", edges=edges)
    assert_valid(ours)
    back = read_graph(str(ours))
    assert _as_points(back["positions"], back["edges"]) == _as_points(pos, edges)
    store = zv_dask.open_zv(ours)
    rows = store.to_dask_dataframe()[list("xyz")].compute().to_numpy()
    got = store.edges().compute()[["source", "target"]].to_numpy()
    assert _as_points(rows, got) == _as_points(pos, edges)


def _existing(tmp_path):
    target = tmp_path / "deep" / "s.zarrvectors"
    df = pd.DataFrame(np.random.default_rng(9).uniform(0, 200, (10, 3)), columns=list("xyz"))
    zv_dask.to_zv(df, target, chunk_shape=100, geometry="graph", edges=np.array([[0, 1]]))
    return target, files(tmp_path)


@pytest.mark.parametrize("kw, match", [
    ({"geometry": "graph", "edges": np.array([[0, 1], [2, 10]])}, "vertex row 10"),
    ({"geometry": "graph", "edges": np.array([[0, -1]])}, "vertex row -1"),
    ({"geometry": "graph", "edges": pd.DataFrame({"source": [0.0], "target": [1.0]})},
     "integers"),
    ({"geometry": "graph", "edges": pd.DataFrame({"a": [0], "b": [1]})}, "source"),
    ({"geometry": "graph"}, "needs edges="),
    ({"geometry": "mesh", "faces": np.array([[0, 1, 10]])}, "vertex row 10"),
    ({"geometry": "mesh", "faces": np.array([[0, 1]])}, r"\(M, 3\)"),
    ({"geometry": "skeleton", "edges": np.array([[1, 0], [3, 2]]),
      "object_attributes": None}, "object 0 has .* roots"),
])
@pytest.mark.parametrize("levels", [1, 3])
def test_bad_records_refused_before_writing(tmp_path, kw, match, levels):
    target, before = _existing(tmp_path)
    df = pd.DataFrame(np.random.default_rng(3).uniform(0, 200, (10, 3)), columns=list("xyz"))
    kw.pop("object_attributes", None)
    df["object_id"] = 0  # one object
    with pytest.raises(WriteInputError, match=match) as ei:
        zv_dask.to_zv(df, target, chunk_shape=100, overwrite=True, levels=levels, **kw)
    assert files(tmp_path) == before
    assert str(target) in str(ei.value)


def test_graph_and_lines_on_a_cluster_with_p2p(tmp_path, verts):
    """The same stores written on a distributed LocalCluster (p2p shuffles and merges)."""
    from distributed import Client, LocalCluster

    rng, pos, oids, w, df = verts
    edges = rng.integers(0, N, (200, 2))
    lines = pd.DataFrame(np.cumsum(rng.normal(0, 30, (N, 3)), axis=0) + 200,
                         columns=list("xyz"))
    lines["object_id"] = np.sort(rng.integers(0, 20, N))
    local_g, local_l = tmp_path / "a" / "g.zarrvectors", tmp_path / "a" / "l.zarrvectors"
    zv_dask.to_zv(df, local_g, chunk_shape=100, geometry="graph", edges=edges)
    zv_dask.to_zv(lines, local_l, chunk_shape=100, geometry="streamline")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        zv_dask.to_zv(dd.from_pandas(df, npartitions=3, sort=False),
                      tmp_path / "b" / "g.zarrvectors", chunk_shape=100, geometry="graph",
                      edges=dd.from_pandas(pd.DataFrame(edges, columns=["source", "target"]),
                                           npartitions=2, sort=False))
        zv_dask.to_zv(dd.from_pandas(lines, npartitions=3, sort=False),
                      tmp_path / "b" / "l.zarrvectors", chunk_shape=100, geometry="streamline")
    assert files(local_g) == files(tmp_path / "b" / "g.zarrvectors")
    assert files(local_l) == files(tmp_path / "b" / "l.zarrvectors")
