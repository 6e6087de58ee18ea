"""Objects: object attributes, whole objects from manifests, object-restricted frames.

Answers come from zarr-vectors' own readers (``read_polylines``) and decoders
(manifests and fragment indexes through ``zarr_vectors.building``)."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pytest
import zarr

import zv_dask
from zvfixtures import reference_level

warnings.filterwarnings("ignore", module="zarr_vectors")


@lru_cache(maxsize=None)
def reference_objects(path: str, level: int) -> dict:
    """{object id: row numbers (into reference_level positions) in manifest order}."""
    from zarr_vectors import building as B

    ref = reference_level(path, level)
    g = B.get_resolution_level(B.open_store(path), level)
    keys = [tuple(int(x) for x in c) for c in ref["chunk_keys"].tolist()]
    starts = dict(zip(keys, np.r_[0, np.cumsum(ref["chunk_counts"])][:-1].tolist()))
    frag_rows = {}
    out = {}
    for oid, entries in B.read_object_manifests(g).items():
        rows = []
        for cc, f in entries:
            cc = tuple(int(x) for x in cc)
            if cc not in frag_rows:
                fi = B.read_vertex_fragment_index(g, cc)
                frag_rows[cc] = [np.arange(fi.range(i)[0], sum(fi.range(i))) if fi.is_range(i)
                                 else np.asarray(fi.indices(i)) for i in range(fi.num_fragments)]
            rows.append(starts[cc] + frag_rows[cc][int(f)])
        out[int(oid)] = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return out


def _object_attribute(path, level, name):
    return zarr.open_array(f"{path}/{level}/object_attributes/{name}", mode="r")[:]


def _check_against_reference(path, r, level, attrs=True):
    ref = reference_level(path, level)
    objs = reference_objects(path, level)
    for k, oid in enumerate(r["object_ids"].tolist()):
        rows = objs.get(oid, np.zeros(0, np.int64))
        a, b = r["offsets"][k], r["offsets"][k + 1]
        np.testing.assert_array_equal(r["positions"][a:b], ref["positions"][rows])
        if attrs:
            for name, v in r["attributes"].items():
                np.testing.assert_array_equal(v[a:b], ref["attributes"][name][rows])
        if "owner_count" in r:
            np.testing.assert_array_equal(r["owner_count"][a:b], ref["nowners"][rows])


# --------------------------------------------------------------------------- objects()


@pytest.mark.parametrize("level", [0, 1, 2])
def test_objects_frame_streamlines(store_path, level):
    path = store_path("streamlines")
    s = zv_dask.open_zv(path)
    ddf = s.objects(level=level)
    assert list(ddf.columns) == ["mean_fa"] and ddf.index.name == "object_id"
    df = ddf.compute()
    ids = zarr.open_array(f"{path}/{level}/object_index/object_ids", mode="r")[:]
    np.testing.assert_array_equal(df.index.to_numpy(), ids)
    np.testing.assert_array_equal(df["mean_fa"].to_numpy(), _object_attribute(path, level, "mean_fa"))
    if level == 2:  # objects dropped by pyramid sparsity: absent (NaN) values
        present = {int(o) for o in s.read_objects(level=2)["object_ids"]}
        assert df["mean_fa"].isna().to_numpy().tolist() == [int(o) not in present for o in ids]


def test_objects_nullable_ints_and_multicolumn(store_path, tmp_path):
    s = zv_dask.open_zv(store_path("web_graph"))
    df = s.objects().compute()
    assert df.index.tolist() == [2, 7, 12]
    assert str(df["size"].dtype) == "Int32"
    assert df["size"].isna().tolist() == [False, True, False]
    assert df["size"].iloc[0] == 120
    assert df["score"].dtype == np.float32 and np.isnan(df["score"].iloc[1])
    assert list(s.objects(attributes=["score"]).columns) == ["score"]
    assert len(s.objects(attributes=[]).compute().columns) == 0
    with pytest.raises(zv_dask.ArrayNotFoundError):
        s.objects(attributes=["nope"])
    # 2-column object attribute -> name_0, name_1 (reference writer, points with objects)
    from zarr_vectors import building as B

    p = tmp_path / "obj2.zarrvectors"
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 1000, (200, 3)).astype(np.float32)
    B.write_points(str(p), pos, chunk_shape=(500.0,) * 3, bounds=([0.0] * 3, [1000.0] * 3),
                   object_ids=np.arange(200) % 4 * 3,
                   object_attributes={"c": np.arange(8, dtype=np.uint16).reshape(4, 2)})
    df2 = zv_dask.open_zv(p).objects().compute()
    assert list(df2.columns) == ["c_0", "c_1"] and str(df2["c_0"].dtype) == "UInt16"
    np.testing.assert_array_equal(df2[["c_0", "c_1"]].to_numpy(int), np.arange(8).reshape(4, 2))


def test_objects_reads_no_vertex_blob(store_path, counting):
    s = zv_dask.open_zv("zvcount://" + store_path("streamlines"))
    counting.clear()
    ddf = s.objects()
    assert not [p for op, p in counting if op == "get"]  # building reads nothing
    ddf.compute()
    got = [p for op, p in counting if op == "get"]
    assert got and all("/object_index/object_ids/" in p or "/object_attributes/" in p
                       for p in got), got


def test_objects_refused_without_index(store_path):
    s = zv_dask.open_zv(store_path("points_pyramid"))
    with pytest.raises(zv_dask.ArrayNotFoundError):
        s.objects()
    with pytest.raises(zv_dask.ArrayNotFoundError):
        s.read_objects()


# --------------------------------------------------------------------------- read_objects()


@pytest.mark.parametrize("level", [0, 1, 2])
def test_read_objects_equals_read_polylines(store_path, level):
    from zarr_vectors.types.polylines import read_polylines

    path = store_path("streamlines")
    s = zv_dask.open_zv(path)
    r = s.read_objects(level=level)
    ref = read_polylines(path, level=level)
    assert r["object_ids"].tolist() == list(ref["object_ids"])
    assert r["offsets"][-1] == ref["vertex_count"] == len(r["positions"])
    for k in range(len(r["object_ids"])):
        np.testing.assert_array_equal(r["positions"][r["offsets"][k]:r["offsets"][k + 1]],
                                      np.concatenate(ref["polylines"][k]))
    if level == 0:
        np.testing.assert_array_equal(r["attributes"]["fa"], ref["vertex_attributes"]["fa"])
        # read_polylines drops the 3-column tangent (row_shape says scalar); we keep it
        assert r["attributes"]["tangent"].shape == (len(r["positions"]), 3)
        assert "owner_count" not in r
    else:
        assert r["owner_count"].max() > 1  # coarse levels share metavertices
    _check_against_reference(path, r, level)


def test_read_objects_after_attribute_filter(store_path):
    from zarr_vectors.types.polylines import read_polylines

    path = store_path("streamlines")
    s = zv_dask.open_zv(path)
    objs = s.objects()
    ids = objs.index[objs.mean_fa > objs.mean_fa.quantile(0.7)].compute().tolist()
    assert 3 <= len(ids) < 40
    ids = ids[::-1]  # caller's order is kept
    r = s.read_objects(ids, attributes=["fa"])
    ref = read_polylines(path, object_ids=ids)
    want = dict(zip(ref["object_ids"], ref["polylines"]))
    assert r["object_ids"].tolist() == ids and sorted(want) == sorted(ids)
    for k, oid in enumerate(ids):
        np.testing.assert_array_equal(r["positions"][r["offsets"][k]:r["offsets"][k + 1]],
                                      np.concatenate(want[oid]))
    assert list(r["attributes"]) == ["fa"]
    _check_against_reference(path, r, 0)


def test_read_objects_fetches_only_their_chunks(store_path, counting):
    path = store_path("streamlines")
    s = zv_dask.open_zv("zvcount://" + path)
    oid = 11
    from zarr_vectors import building as B

    g = B.get_resolution_level(B.open_store(path), 0)
    cells = {tuple(int(x) for x in cc) for cc, _ in B.read_object_manifests(g)[oid]}
    counting.clear()
    r = s.read_objects([oid], attributes=["fa"])
    got = [p for op, p in counting if op == "get"]
    for arr in ("vertices", "vertex_fragments", "vertex_attributes/fa"):
        read_cells = {tuple(int(x) for x in p.split(f"/0/{arr}/c/")[1].split("/"))
                      for p in got if f"/0/{arr}/c/" in p}
        assert read_cells == cells, arr  # origin is 0 here: idx == coord
    assert not [p for p in got if "/tangent/" in p]
    assert len(got) == 3 * len(cells) + len([p for p in got if "/object_index/" in p])
    assert len(r["positions"]) == r["offsets"][-1] > 0


def test_read_objects_errors_and_empty(store_path):
    s = zv_dask.open_zv(store_path("streamlines"))
    with pytest.raises(zv_dask.QueryError, match="12345"):
        s.read_objects([0, 12345])
    r = s.read_objects([])
    assert r["positions"].shape == (0, 3) and r["offsets"].tolist() == [0]
    assert r["attributes"]["tangent"].shape == (0, 3)
    # an object dropped from level 2 reads as zero rows
    dropped = [o for o in range(40) if o not in set(s.read_objects(level=2)["object_ids"].tolist())]
    r = s.read_objects([dropped[0], 0], level=2)
    assert r["offsets"][1] == 0


@pytest.mark.parametrize("name", ["web_graph", "tree_skeleton", "tri_mesh", "points_2d",
                                  "edge_cases"])
def test_read_objects_other_geometries(store_path, name):
    path = store_path(name)
    s = zv_dask.open_zv(path)
    for level in s.levels:
        r = s.read_objects(level=level)
        assert len(r["offsets"]) == len(r["object_ids"]) + 1
        _check_against_reference(path, r, level)
        if level == 0 and name in ("web_graph", "tree_skeleton", "tri_mesh"):
            # level 0: every row belongs to exactly one object
            assert r["offsets"][-1] == s.vertex_count(0)


def test_read_owner_count_equals_reference(store_path):
    for name in ("streamlines", "points_2d"):
        path = store_path(name)
        s = zv_dask.open_zv(path)
        for level in s.levels:
            r = s.read(level=level)
            ref = reference_level(path, level)
            np.testing.assert_array_equal(r["object_ids"], ref["owner"])
            shared = s.metadata.levels[level].shared_fragments
            assert ("owner_count" in r) == shared
            if shared:
                np.testing.assert_array_equal(r["owner_count"], ref["nowners"])
                df = s.to_dask_dataframe(level=level).compute()
                np.testing.assert_array_equal(df["owner_count"].to_numpy(), ref["nowners"])
            else:
                assert "owner_count" not in s.to_dask_dataframe(level=level).columns


# --------------------------------------------------------------------------- dataframe


@pytest.mark.parametrize("level", [0, 1])
def test_dataframe_restricted_to_objects(store_path, counting, level):
    path = store_path("streamlines")
    s = zv_dask.open_zv("zvcount://" + path)
    ids = [4, 17, 30]
    r = s.read_objects(ids, level=level)
    ddf = s.to_dask_dataframe(level=level, object_ids=ids)
    from zarr_vectors import building as B

    g = B.get_resolution_level(B.open_store(path), level)
    mans = B.read_object_manifests(g)
    cells = sorted({tuple(int(x) for x in cc) for o in ids for cc, _ in mans[o]})
    assert ddf.npartitions == len(cells) < len(s.chunks(level))
    counting.clear()
    df = ddf.compute()
    got = {p for op, p in counting if op == "get" and f"/{level}/vertices/c/" in p}
    assert len(got) == len(cells)
    # the same rows as read_objects (each stored row once, even when shared by two)
    ref = reference_level(path, level)
    objs = reference_objects(path, level)
    rows = np.unique(np.concatenate([objs[o] for o in ids]))
    np.testing.assert_array_equal(df[["x", "y", "z"]].to_numpy(), ref["positions"][rows])
    assert set(df["object_id"].unique()) <= set(ids)
    # object_id = smallest selected owner of the row
    owners = {}
    for o in ids:
        for row in objs[o].tolist():
            owners[row] = min(owners.get(row, o), o)
    np.testing.assert_array_equal(df["object_id"].to_numpy(), [owners[x] for x in rows.tolist()])
    pos = np.unique(r["positions"], axis=0)
    np.testing.assert_array_equal(np.unique(df[["x", "y", "z"]].to_numpy(), axis=0), pos)
    # with a bbox on top
    box = ([0, 0, 0], [1000, 2000, 2000])
    d2 = s.to_dask_dataframe(level=level, object_ids=ids, bbox=box).compute()
    np.testing.assert_array_equal(d2[["x", "y", "z"]].to_numpy(),
                                  df[["x", "y", "z"]].to_numpy()[df["x"].to_numpy() <= 1000])


# --------------------------------------------------------------------------- edges, faces


def _pairs(a):
    return set(map(tuple, np.asarray(a).tolist()))


@pytest.mark.parametrize("name", ["web_graph", "tree_skeleton"])
def test_edges_equal_read_graph(store_path, counting, name):
    from zarr_vectors.types.graphs import read_graph

    path = store_path(name)
    s = zv_dask.open_zv("zvcount://" + path)
    counting.clear()
    ddf = s.edges()
    assert not [p for op, p in counting if op == "get" and not p.endswith("zarr.json")]
    e = ddf.compute()
    ref = read_graph(path)
    pos = s.read()["positions"]
    np.testing.assert_array_equal(ref["positions"], pos)  # same global vertex numbering
    got = e[["source", "target"]].to_numpy()
    assert len(got) == len(ref["edges"]) and _pairs(got) == _pairs(ref["edges"])  # ordered pairs
    if name == "web_graph":
        # link attribute: the writer's input was |p[a] - p[b]| for every edge
        d = np.linalg.norm(pos[got[:, 0]] - pos[got[:, 1]], axis=1).astype(np.float32)
        np.testing.assert_allclose(e["length"].to_numpy(), d, rtol=1e-6)
        assert list(s.edges(attributes=[]).columns) == ["source", "target"]
        assert ddf.npartitions < len(s.chunks(0)) * 2
    else:
        # a tree: every vertex but one root per object is a child exactly once
        assert len(np.unique(got[:, 0])) == len(got) == s.vertex_count(0) - 2
    # bbox: edges with both endpoints inside, same ids
    box = ([300, 300, 300], [1300, 1500, 1400])
    eb = s.edges(bbox=box).compute()[["source", "target"]].to_numpy()
    inside = np.all((pos >= box[0]) & (pos <= box[1]), axis=1)
    want = got[inside[got[:, 0]] & inside[got[:, 1]]]
    assert len(eb) == len(want) > 0 and _pairs(eb) == _pairs(want)


def test_edges_with_object_membership(store_path):
    # edges of one graph component join vertices of that object only
    s = zv_dask.open_zv(store_path("web_graph"))
    e = s.edges().compute()
    owner = s.read()["object_ids"]
    assert (owner[e.source.to_numpy()] == owner[e.target.to_numpy()]).all()
    r = s.read_objects([7], attributes=["degree"])
    ids7 = np.flatnonzero(owner == 7)
    np.testing.assert_array_equal(r["positions"], s.read()["positions"][ids7])
    deg = np.bincount(e[["source", "target"]].to_numpy().ravel(), minlength=len(owner))
    np.testing.assert_array_equal(r["attributes"]["degree"], deg[ids7])


def test_faces_equal_read_mesh_with_winding(store_path, counting):
    from zarr_vectors.types.meshes import read_mesh

    path = store_path("tri_mesh")
    s = zv_dask.open_zv("zvcount://" + path)
    counting.clear()
    f = s.faces()
    assert not [p for op, p in counting if op == "get" and not p.endswith("zarr.json")]
    f = f.compute()
    ref = read_mesh(path)
    np.testing.assert_array_equal(ref["vertices"], s.read()["positions"])
    assert f.shape == ref["faces"].shape and _pairs(f) == _pairs(ref["faces"])
    # winding: every face's normal points out of its sphere (the input was built so)
    pos = s.read()["positions"].astype(np.float64)
    owner = s.read()["object_ids"]
    centers = {o: pos[owner == o].mean(0) for o in np.unique(owner)}
    n = np.cross(pos[f[:, 1]] - pos[f[:, 0]], pos[f[:, 2]] - pos[f[:, 0]])
    out = pos[f].mean(1) - np.stack([centers[o] for o in owner[f[:, 0]]])
    sign = np.sign((n * out).sum(1))
    assert len(np.unique(sign)) == 1  # one consistent orientation, as written
    # faces of one object use that object's vertices only
    assert (owner[f] == owner[f[:, :1]]).all()


def test_connectivity_refusals(store_path):
    g = zv_dask.open_zv(store_path("web_graph"))
    with pytest.raises(zv_dask.QueryError, match="edges"):
        g.faces()
    with pytest.raises(zv_dask.ArrayNotFoundError):
        g.edges(level=1)  # pyramid level: a metavertex cloud
    with pytest.raises(zv_dask.ArrayNotFoundError):
        g.edges(attributes=["nope"])
    with pytest.raises(zv_dask.QueryError, match="read_objects"):
        zv_dask.open_zv(store_path("streamlines")).edges()
