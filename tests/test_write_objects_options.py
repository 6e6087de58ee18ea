"""to_zv(geometry=..., compressor="zstd" | bin_shape=...): the store write_polylines /
write_graph / write_mesh (same options, then building.build_fragment_owner_index)
makes, file for file: with zstd level-0 cells, links/0, link_fragments, link attributes,
object ids and object attributes compressed, the owner column plain; with a bin_shape
the root's base_bin_shape (object cells keep one fragment per run or object); readers
give back the input."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from zarr_vectors.building import build_fragment_owner_index
from zarr_vectors.types.graphs import read_graph, write_graph
from zarr_vectors.types.meshes import read_mesh, write_mesh
from zarr_vectors.types.polylines import read_polylines, write_polylines

import zv_dask
from zv_dask.errors import WriteInputError
from writehelpers import assert_same_store, assert_valid

N = 300
CHUNK = (100, 100, 100)
OPTIONS = pytest.mark.parametrize("kw", [{"compressor": "zstd"},
                                         {"bin_shape": 25, "compressor": "zstd"},
                                         {"bin_shape": (50, 100, 20)}], ids=["zstd", "bin+zstd", "bin"])


def _ref_kw(kw):
    b = kw.get("bin_shape")
    return dict(kw, bin_shape=(b,) * 3 if isinstance(b, int) else b) if b else kw


def _vertices(rng):
    pos = rng.uniform(-50, 300, (N, 3))
    oids = rng.integers(0, 5, N)
    w = rng.random(N).astype(np.float32)
    df = pd.DataFrame(pos, columns=list("xyz"))
    df["object_id"], df["w"] = oids, w
    return pos, oids, w, df


def _same(ref, ours):
    build_fragment_owner_index(str(ref))
    assert_same_store(ref, ours)
    assert_valid(ours)


@OPTIONS
def test_streamlines_same_store(tmp_path, kw):
    rng = np.random.default_rng(1)
    lines = [np.cumsum(rng.normal(0, 30, (int(rng.integers(1, 40)), 3)), 0) + 200
             for _ in range(50)]
    fa = [rng.random(len(p)).astype(np.float32) for p in lines]
    length = np.array([len(p) for p in lines], np.int32)
    ref = tmp_path / "ref" / "s.zarrvectors"
    write_polylines(str(ref), lines, chunk_shape=CHUNK, vertex_attributes={"fa": fa},
                    object_attributes={"length": length}, **_ref_kw(kw))
    df = pd.DataFrame(np.concatenate(lines), columns=list("xyz"))
    df["object_id"] = np.repeat(np.arange(len(lines)), [len(p) for p in lines])
    df["fa"] = np.concatenate(fa)
    ours = tmp_path / "ours" / "s.zarrvectors"
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3, sort=False), ours, chunk_shape=100,
                  geometry="streamline", **kw,
                  object_attributes=pd.DataFrame({"length": length}))
    _same(ref, ours)
    back = read_polylines(str(ours))
    for got, want in zip(back["polylines"], lines):
        np.testing.assert_array_equal(np.concatenate(got), np.asarray(want, np.float32))
    ours = zv_dask.open_zv(ours).read_objects()
    np.testing.assert_array_equal(ours["positions"], np.concatenate(lines).astype(np.float32))
    np.testing.assert_array_equal(ours["attributes"]["fa"], np.concatenate(fa))


@OPTIONS
@pytest.mark.parametrize("kind", ["graph", "skeleton"])
def test_graphs_same_store(tmp_path, kind, kw):
    rng = np.random.default_rng(2)
    pos, oids, w, df = _vertices(rng)
    if kind == "graph":
        edges = rng.integers(0, N, (400, 2))
    else:  # one tree per object: each vertex's parent is an earlier vertex of its object
        oids = np.sort(oids)
        df["object_id"] = oids
        first = np.searchsorted(oids, oids)
        child = np.flatnonzero(np.arange(N) > first)
        edges = np.stack([child, rng.integers(first[child], child)], 1)
    ln = rng.random(len(edges)).astype(np.float32)
    ref = tmp_path / "ref" / "g.zarrvectors"
    write_graph(str(ref), pos, edges, chunk_shape=CHUNK, object_ids=oids, kind=kind,
                vertex_attributes={"w": w}, link_attributes={"len": ln}, **_ref_kw(kw))
    ours = tmp_path / "ours" / "g.zarrvectors"
    e = pd.DataFrame({"source": edges[:, 0], "target": edges[:, 1], "len": ln})
    zv_dask.to_zv(dd.from_pandas(df, npartitions=3, sort=False), ours, chunk_shape=100,
                  geometry=kind, edges=dd.from_pandas(e, npartitions=2, sort=False), **kw)
    _same(ref, ours)
    back = read_graph(str(ours))
    assert len(back["edges"]) == len(edges)
    if kind == "graph":  # a skeleton's edges() are the tree's, without link attributes
        assert sorted(zv_dask.open_zv(ours).edges().compute()["len"]) == sorted(ln)


@OPTIONS
def test_mesh_same_store(tmp_path, kw):
    rng = np.random.default_rng(3)
    pos, oids, w, df = _vertices(rng)
    faces = np.stack([rng.permutation(N)[:3] for _ in range(300)])
    ref = tmp_path / "ref" / "m.zarrvectors"
    write_mesh(str(ref), pos, faces, chunk_shape=CHUNK, object_ids=oids,
               vertex_attributes={"w": w}, **_ref_kw(kw))
    ours = tmp_path / "ours" / "m.zarrvectors"
    zv_dask.to_zv(df, ours, chunk_shape=100, geometry="mesh", **kw,
                  faces=pd.DataFrame(faces, columns=["v0", "v1", "v2"]))
    _same(ref, ours)
    back = read_mesh(str(ours))
    p = np.asarray(pos, np.float32)
    assert (sorted(tuple(map(tuple, back["vertices"][f])) for f in back["faces"])
            == sorted(tuple(map(tuple, p[f])) for f in faces))


@pytest.mark.parametrize("compressor", ["blosc", [{"name": "gzip", "configuration": {"level": 5}}]])
def test_other_compressors_refused_for_objects(tmp_path, compressor):
    df = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0], "object_id": [0, 0]})
    with pytest.raises(WriteInputError, match="compressor other than 'zstd'"):
        zv_dask.to_zv(df, tmp_path / "s.zarrvectors", chunk_shape=100, geometry="streamline",
                      compressor=compressor)
    assert not (tmp_path / "s.zarrvectors").exists()
