"""to_zv(geometry="graph" | "skeleton" | "mesh", levels > 1): the store write_graph /
write_mesh, then build_pyramid(factors=[(2, 1)] * (levels - 1)), then
building.build_fragment_owner_index make for the same input, file for file and byte for
byte (coarse vertices included); validate(level=5) clean; the coarse levels hold
vertices and object index only (no edges, no faces); both readers give the same
vertices at every level, and ours gives each object's vertices in the order of the
reference's manifests."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from zarr_vectors.building import build_fragment_owner_index
from zarr_vectors.core.arrays import read_chunk_vertices, read_object_manifest_rows
from zarr_vectors.core.store import get_resolution_level, open_store
from zarr_vectors.multiresolution.coarsen import build_pyramid
from zarr_vectors.types.graphs import read_graph, write_graph
from zarr_vectors.types.meshes import read_mesh, write_mesh

import zv_dask
from writehelpers import assert_same_store, assert_valid, files, forest


def _cloud(rng, n, ndim=3, objects=6, lo=-60.0, hi=340.0):
    pos = rng.uniform(lo, hi, (n, ndim))
    oids = rng.integers(0, objects, n)  # objects interleaved across rows and partitions
    return pos, oids


def _frame(pos, oids=None, attrs=None):
    df = pd.DataFrame(pos, columns=list("xyz"[: pos.shape[1]]))
    if oids is not None:
        df["object_id"] = oids
    for name, a in (attrs or {}).items():
        df[name] = a
    return df


def _pyramid(path, levels):
    build_pyramid(str(path), factors=[(2, 1)] * (levels - 1))
    build_fragment_owner_index(str(path))
    return path


def _manifest_positions(path, level, ndim):
    """Per object id, its level-``level`` vertices as the reference's manifests list them."""
    root = open_store(str(path), mode="r")
    group = get_resolution_level(root, level)
    ids, manifests = read_object_manifest_rows(group)
    cache = {}
    out = {}
    for oid, manifest in zip(ids.tolist(), manifests):
        parts = []
        for cc, frag in manifest:
            if cc not in cache:
                cache[cc] = read_chunk_vertices(group, cc, ndim=ndim)
            parts.append(np.asarray(cache[cc][frag]).reshape(-1, ndim))
        out[oid] = np.concatenate(parts) if parts else np.zeros((0, ndim))
    return out


def _check_readers(path, levels, geometry, pos, oids, ndim=3):
    """Every level: the reference reader's vertices are ours, in stored order; coarse
    levels have no records; our objects follow the reference's manifests; level 0 holds
    each object's input vertices."""
    ours = zv_dask.open_zv(path)
    assert ours.levels == list(range(levels))
    for lv in range(levels):
        if geometry == "mesh":
            ref = read_mesh(str(path), level=lv)
            verts, n_records = ref["vertices"], len(ref["faces"])
        else:
            ref = read_graph(str(path), level=lv)
            verts, n_records = ref["positions"], len(ref["edges"])
        stored = ours.to_dask_dataframe(level=lv)[list("xyz"[:ndim])].compute().to_numpy()
        np.testing.assert_array_equal(verts, stored)
        assert (n_records > 0) == (lv == 0)
        got = ours.read_objects(level=lv)
        want = _manifest_positions(path, lv, ndim)
        assert list(got["object_ids"]) == sorted(want)
        for k, oid in enumerate(got["object_ids"]):
            a, b = got["offsets"][k], got["offsets"][k + 1]
            np.testing.assert_array_equal(got["positions"][a:b], want[oid])
            if lv == 0:
                mine = np.asarray(pos[oids == oid], np.float32)
                assert sorted(map(tuple, got["positions"][a:b])) == sorted(map(tuple, mine))
            else:  # consecutive repeats are merged at coarse levels
                assert b - a < 2 or (got["positions"][a + 1:b] != got["positions"][a:b - 1]
                                     ).any(axis=1).all()


@pytest.mark.parametrize("levels, kw", [
    (2, {}),
    (4, {"compressor": "zstd", "bin_shape": 25}),
], ids=["2", "4-zstd-bin"])
def test_graph_same_store_as_build_pyramid(tmp_path, levels, kw):
    rng = np.random.default_rng(20 + levels)
    n = 300
    pos, oids = _cloud(rng, n)
    edges = rng.integers(0, n, (300, 2))
    w = rng.random(n).astype(np.float32)
    ln = rng.random(len(edges)).astype(np.float32)
    oattrs = {"size": np.bincount(oids).astype(np.float32),
              "kind": rng.integers(0, 3, 6).astype(np.int32)}
    b = kw.get("bin_shape")
    ref_kw = dict(kw, bin_shape=(b,) * 3) if b else kw
    ref = tmp_path / "ref" / "g.zarrvectors"
    write_graph(str(ref), pos, edges, chunk_shape=(50, 50, 50), object_ids=oids,
                vertex_attributes={"w": w}, link_attributes={"len": ln},
                object_attributes=oattrs, **ref_kw)
    _pyramid(ref, levels)
    ours = tmp_path / "ours" / "g.zarrvectors"
    e = pd.DataFrame({"source": edges[:, 0], "target": edges[:, 1], "len": ln})
    out = zv_dask.to_zv(dd.from_pandas(_frame(pos, oids, {"w": w}), npartitions=4, sort=False),
                        ours, chunk_shape=50, geometry="graph", levels=levels,
                        edges=dd.from_pandas(e, npartitions=3, sort=False),
                        object_attributes=pd.DataFrame(oattrs), **kw)
    assert out.levels == list(range(levels))
    assert_same_store(ref, ours, coarse_tolerance=False)
    assert_valid(ours)
    _check_readers(ours, levels, "graph", pos, oids)
    assert any(k.startswith(f"{levels - 1}/links/-1/") for k in files(ours))
    coarse = [k for k in files(ours) if not k.startswith("0/") and "/" in k]
    assert coarse and not any(k.split("/")[1] in ("link_fragments", "link_attributes",
                                                  "vertex_attributes")
                              or k.split("/")[1:3] == ["links", "0"] for k in coarse)


@pytest.mark.parametrize("levels", [2, 4])
def test_mesh_same_store_as_build_pyramid(tmp_path, levels):
    rng = np.random.default_rng(30 + levels)
    n = 300
    pos, oids = _cloud(rng, n, objects=4)
    faces = np.stack([rng.permutation(n)[:3] for _ in range(200)])
    ref = tmp_path / "ref" / "m.zarrvectors"
    write_mesh(str(ref), pos, faces, chunk_shape=(50, 50, 50), object_ids=oids)
    _pyramid(ref, levels)
    ours = tmp_path / "ours" / "m.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(_frame(pos, oids), npartitions=5, sort=False), ours,
                  chunk_shape=50, geometry="mesh", levels=levels,
                  faces=pd.DataFrame(faces, columns=["v0", "v1", "v2"]))
    assert_same_store(ref, ours, coarse_tolerance=False)
    assert_valid(ours)
    _check_readers(ours, levels, "mesh", pos, oids)


@pytest.mark.parametrize("levels", [2, 3])
def test_skeleton_same_store_as_build_pyramid(tmp_path, levels):
    rng = np.random.default_rng(40 + levels)
    pos, edges, oids = forest(rng, (90, 60, 120, 40))
    r = rng.random(len(edges)).astype(np.float32)
    oattrs = {"cable": rng.random(4).astype(np.float64)}
    ref = tmp_path / "ref" / "k.zarrvectors"
    write_graph(str(ref), pos, edges, chunk_shape=(40, 40, 40), object_ids=oids,
                kind="skeleton", link_attributes={"r": r}, object_attributes=oattrs)
    _pyramid(ref, levels)
    ours = tmp_path / "ours" / "k.zarrvectors"
    e = pd.DataFrame({"source": edges[:, 0], "target": edges[:, 1], "r": r})
    zv_dask.to_zv(dd.from_pandas(_frame(pos, oids), npartitions=3, sort=False), ours,
                  chunk_shape=40, geometry="skeleton", levels=levels,
                  edges=dd.from_pandas(e, npartitions=2, sort=False),
                  object_attributes=pd.DataFrame(oattrs))
    assert_same_store(ref, ours, coarse_tolerance=False)
    assert_valid(ours)
    _check_readers(ours, levels, "skeleton", pos, oids)


@pytest.mark.parametrize("geometry", ["graph", "mesh"])
def test_two_dimensional_one_object_one_partition_equals_many(tmp_path, geometry):
    """2-D, no object_id column (one object 0): one partition and six give the
    reference's store."""
    rng = np.random.default_rng(50)
    n = 300
    pos = rng.uniform(-90.0, 210.0, (n, 2))
    ref = tmp_path / "ref" / "p.zarrvectors"
    if geometry == "graph":
        recs = rng.integers(0, n, (400, 2))
        write_graph(str(ref), pos, recs, chunk_shape=(30, 30))
        kw = {"edges": recs}
    else:
        recs = np.stack([rng.permutation(n)[:3] for _ in range(300)])
        write_mesh(str(ref), pos, recs, chunk_shape=(30, 30))
        kw = {"faces": recs}
    _pyramid(ref, 3)
    df = _frame(pos)
    one, many = tmp_path / "one" / "p.zarrvectors", tmp_path / "many" / "p.zarrvectors"
    zv_dask.to_zv(df, one, chunk_shape=30, geometry=geometry, levels=3, **kw)
    zv_dask.to_zv(dd.from_pandas(df, npartitions=6, sort=False), many, chunk_shape=30,
                  geometry=geometry, levels=3, **kw)
    assert files(one) == files(many)
    assert_same_store(ref, one, coarse_tolerance=False)
    assert_valid(one)
    _check_readers(one, 3, geometry, pos, np.zeros(n, np.int64), ndim=2)


def test_float64_graph_valid_and_read_back(tmp_path):
    """float64 level 0 (the reference's link pass misreads float64 levels, so no byte
    comparison here): valid, level 0 reads back exactly in float64, coarse levels as
    the reference reads them."""
    rng = np.random.default_rng(60)
    n = 300
    pos, oids = _cloud(rng, n, objects=3)
    edges = rng.integers(0, n, (300, 2))
    path = tmp_path / "g.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(_frame(pos, oids), npartitions=3, sort=False), path,
                  chunk_shape=50, geometry="graph", levels=3, dtype="float64", edges=edges)
    assert_valid(path)
    store = zv_dask.open_zv(path)
    got = store.read_objects()
    for k, oid in enumerate(got["object_ids"]):
        a, b = got["offsets"][k], got["offsets"][k + 1]
        assert got["positions"].dtype == np.float64
        assert sorted(map(tuple, got["positions"][a:b])) == sorted(map(tuple, pos[oids == oid]))
    for lv in (1, 2):
        np.testing.assert_array_equal(read_graph(str(path), level=lv)["positions"],
                                      store.to_dask_dataframe(level=lv)[list("xyz")]
                                      .compute().to_numpy())
        coarse = store.read_objects(level=lv)
        want = _manifest_positions(path, lv, 3)
        for k, oid in enumerate(coarse["object_ids"]):
            a, b = coarse["offsets"][k], coarse["offsets"][k + 1]
            np.testing.assert_array_equal(coarse["positions"][a:b], want[oid])


def test_on_a_cluster_same_store_as_local(tmp_path):
    """On a LocalCluster (p2p shuffles and merges, tasks in worker processes) the mesh
    pyramid is the local write's, file for file."""
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(70)
    n = 200
    pos, oids = _cloud(rng, n, objects=3)
    faces = np.stack([rng.permutation(n)[:3] for _ in range(150)])
    ddf = dd.from_pandas(_frame(pos, oids), npartitions=2, sort=False)
    local, remote = tmp_path / "local" / "m.zarrvectors", tmp_path / "remote" / "m.zarrvectors"
    zv_dask.to_zv(ddf, local, chunk_shape=100, geometry="mesh", levels=3, faces=faces)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        zv_dask.to_zv(ddf, remote, chunk_shape=100, geometry="mesh", levels=3, faces=faces)
    assert files(remote) == files(local)
    assert_valid(remote)
