"""Object ingest: navis's sample SWC neurons (one a forest) and OBJ meshes, our own
forests, STL written by numpy and trimesh and PLY meshes written by plyfile round-trip
exactly through read_swc/read_obj/read_stl/read_ply_mesh, to_zv and ``zv-dask convert``:
every node and parent link, every face with its winding, read back by the reference
readers (read_graph, read_mesh) and by ours, validator clean; bad lines are refused
naming file and line."""

from __future__ import annotations

import importlib.metadata
import json

import navis
import numpy as np
import pandas as pd
import plyfile
import pytest
import trimesh
from zarr_vectors.types.graphs import read_graph
from zarr_vectors.types.meshes import read_mesh

import zv_dask
from zv_dask.cli import main
from zv_dask.errors import InputFileError
from writehelpers import assert_valid


def navis_files(folder: str) -> list:
    """The sample files navis's wheel ships (found through its metadata, no network)."""
    dist = importlib.metadata.distribution("navis")
    return sorted(str(dist.locate_file(f)) for f in dist.files
                  if str(f).startswith(f"navis/data/{folder}/"))


def as_points(pos, records) -> list:
    """Records as tuples of endpoint positions (float32), in their order (winding)."""
    p = np.asarray(pos, np.float32)
    return sorted(tuple(map(tuple, p[r])) for r in np.asarray(records))


def numpy_swc(path):
    """A plain numpy parse: (ids, types, xyz, radius, parents)."""
    t = np.loadtxt(path, comments="#", ndmin=2)
    return (t[:, 0].astype(int), t[:, 1].astype(int), t[:, 2:5], t[:, 5],
            t[:, 6].astype(int))


def stored_nodes(store) -> pd.DataFrame:
    """(object, node id, parent node id, x, y, z, radius, type) from our readers."""
    rows = store.to_dask_dataframe().compute().reset_index(drop=True)
    e = store.edges().compute()
    parent = np.full(len(rows), -1)
    parent[e.source.to_numpy()] = rows.node_id.to_numpy()[e.target.to_numpy()]
    rows["parent"] = parent
    return rows


def test_navis_neurons_round_trip_every_node_and_parent_link(tmp_path):
    paths = navis_files("swc")
    assert len(paths) == 5
    src = zv_dask.read_swc(paths)
    assert src.vertices.npartitions == 5
    out = tmp_path / "neurons.zarrvectors"
    store = zv_dask.to_zv(src, out, chunk_shape=5000)
    assert_valid(out)
    rows = stored_nodes(store)
    table = src.object_attributes
    forest = [n for n, p in enumerate(paths) if len(navis.read_swc(p).root) > 1]
    assert len(forest) == 1  # navis ships one neuron with two roots
    assert table.file_index.tolist() == sorted([0, 1, 2, 3, 4, forest[0]])
    got_objects = store.objects(attributes=["file_index", "tree_index",
                                            "root_node_id"]).compute()
    for c in ("file_index", "tree_index", "root_node_id"):
        assert got_objects[c].tolist() == table[c].tolist()
    rows["file"] = table.file_index.to_numpy()[rows.object_id.to_numpy()]
    expected_edges = []
    for i, path in enumerate(paths):
        nodes = navis.read_swc(path).nodes
        ids, types, xyz, radius, parents = numpy_swc(path)
        np.testing.assert_array_equal(nodes.node_id, ids)
        np.testing.assert_array_equal(nodes.parent_id, parents)
        mine = rows[rows.file == i].sort_values("node_id")
        order = np.argsort(ids)
        np.testing.assert_array_equal(mine.node_id, ids[order])
        np.testing.assert_array_equal(mine.parent, parents[order])
        np.testing.assert_array_equal(mine[list("xyz")].to_numpy(),
                                      xyz[order].astype(np.float32))
        np.testing.assert_array_equal(mine.radius, radius[order])
        np.testing.assert_array_equal(mine.type, types[order])
        # trees: one object per root, the root's id recorded
        objs = table[table.file_index == i]
        assert sorted(objs.root_node_id) == sorted(ids[parents < 0])
        row = {n: k for k, n in enumerate(ids)}
        child = np.flatnonzero(parents >= 0)
        expected_edges.append(np.stack([xyz[child], xyz[[row[p] for p in parents[child]]]], 1))
    expected = sorted(tuple(map(tuple, e)) for e in
                      np.concatenate(expected_edges).astype(np.float32))
    back = read_graph(str(out))
    assert as_points(back["positions"], back["edges"]) == expected
    assert sorted(map(tuple, np.asarray(back["positions"], np.float32).tolist())) == \
        sorted(map(tuple, rows[list("xyz")].to_numpy(np.float32).tolist()))
    whole = store.read_objects()  # whole trees, each with its own nodes
    sizes = np.bincount(src.vertices.object_id.compute())
    np.testing.assert_array_equal(np.diff(whole["offsets"]), sizes)
    for o in (0, len(sizes) - 1):
        mine = rows[rows.object_id == o]
        got = whole["positions"][whole["offsets"][o]:whole["offsets"][o + 1]]
        assert sorted(map(tuple, got.tolist())) == \
            sorted(map(tuple, mine[list("xyz")].to_numpy(np.float32).tolist()))
    root = json.loads((out / "zarr.json").read_text())["attributes"]["zv_dask_source"]
    assert [f["path"] for f in root["files"]] == paths
    assert [f["trees"] for f in root["files"]] == [2 if i == forest[0] else 1
                                                   for i in range(5)]


def test_navis_meshes_round_trip_every_face_with_its_winding(tmp_path):
    paths = navis_files("obj")
    assert len(paths) == 5
    src = zv_dask.read_obj(paths)
    out = tmp_path / "meshes.zarrvectors"
    store = zv_dask.to_zv(src, out, chunk_shape=10000)
    assert_valid(out)
    expected_v, expected_f, off = [], [], 0
    for path in paths:
        mesh = trimesh.load(path, process=False, maintain_order=True)
        expected_v.append(np.asarray(mesh.vertices))
        expected_f.append(np.asarray(mesh.faces) + off)
        off += len(mesh.vertices)
    pos, faces = np.concatenate(expected_v), np.concatenate(expected_f)
    expected = as_points(pos, faces)
    back = read_mesh(str(out))
    assert as_points(back["vertices"], back["faces"]) == expected
    rows = store.to_dask_dataframe()[list("xyz")].compute().to_numpy()
    assert as_points(rows, np.asarray(store.faces())) == expected
    # each file is one object: its faces stay within its vertices
    oid = store.to_dask_dataframe()["object_id"].compute().to_numpy()
    f = np.asarray(store.faces())
    assert (oid[f] == oid[f[:, :1]]).all() and len(np.unique(oid)) == 5
    whole = store.read_objects()
    np.testing.assert_array_equal(np.diff(whole["offsets"]), [len(v) for v in expected_v])
    assert src.object_attributes.file_index.tolist() == [0, 1, 2, 3, 4]


FOREST = """# a forest: comments, blank lines, a child before its parent
# id type x y z r parent

3 3 2.5 0 0 0.5 2
1 1 0 0 0 2.0 -1
2 3 1.5 0 0 1.0 1   # trailing comment
20 1 100 100 100 3 -1
21 2 101 100 100 1 20
22 2 102 100 100 1 21
23 2 101 101 100 1 21
"""


def test_own_forest_files_by_glob_give_trees_rows_and_edges(tmp_path):
    (tmp_path / "a.swc").write_text(FOREST)
    (tmp_path / "b.swc").write_text("1 1 7 7 7 1 -1\n2 1 8 7 7 1 1\n")
    src = zv_dask.read_swc(str(tmp_path / "*.swc"))
    v = src.vertices.compute()
    assert v.node_id.tolist() == [3, 1, 2, 20, 21, 22, 23, 1, 2]
    assert v.object_id.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert v.x.tolist() == [2.5, 0, 1.5, 100, 101, 102, 101, 7, 8]
    assert str(v.type.dtype) == "int32" and v.radius.tolist()[:3] == [0.5, 2.0, 1.0]
    e = src.edges.compute()
    assert e.values.tolist() == [[0, 2], [2, 1], [4, 3], [5, 4], [6, 4], [8, 7]]
    t = src.object_attributes
    assert t.to_dict("list") == {"file_index": [0, 0, 1], "tree_index": [0, 1, 0],
                                 "root_node_id": [1, 20, 1]}
    out = tmp_path / "forest.zarrvectors"
    store = zv_dask.to_zv(src, out, chunk_shape=50)
    assert_valid(out)
    rows = stored_nodes(store)
    got = sorted(zip(rows.object_id, rows.node_id, rows.parent))
    assert got == sorted(zip(v.object_id, v.node_id,
                             [2, -1, 1, -1, 20, 21, 21, -1, 1]))


@pytest.mark.parametrize("line, number, words", [
    ("4 3 1 2 3 1", 5, "6 fields"),
    ("4 3 1 2 3 1 2 9", 5, "8 fields"),
    ("4 3 1 two 3 1 2", 5, "not a number"),
    ("4.5 3 1 2 3 1 2", 5, "integers"),
    ("2 3 1 2 3 1 1", 5, "used twice"),
    ("4 3 1 2 3 1 99", 5, "parent 99"),
])
def test_malformed_swc_lines_name_file_and_line(tmp_path, capsys, line, number, words):
    path = tmp_path / "bad.swc"
    path.write_text("# header\n1 1 0 0 0 1 -1\n2 3 1 0 0 1 1\n3 3 2 0 0 1 2\n" + line + "\n")
    with pytest.raises(InputFileError, match=f"bad.swc line {number}: .*{words}"):
        zv_dask.read_swc(path)
    rc = main(["convert", str(path), str(tmp_path / "o.zarrvectors"), "--chunk-shape", "10",
               "--scheduler", "sync"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("zv-dask: error:")]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert f"line {number}" in lines[0] and "bad.swc" in lines[0]


def test_fsspec_urls_and_lists(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/zv-ingest/a.swc", "w") as f:
        f.write(FOREST)
    with fs.open("/zv-ingest/b.obj", "w") as f:
        f.write(GROUPS)
    local = tmp_path / "c.swc"
    local.write_text("1 1 7 7 7 1 -1\n")
    try:
        src = zv_dask.read_swc(["memory://zv-ingest/*.swc", str(local)])
        assert src.object_attributes.file_index.tolist() == [0, 0, 1]
        assert len(src.vertices.compute()) == 8
        mesh = zv_dask.read_obj("memory://zv-ingest/b.obj")
        assert mesh.faces.compute().values.tolist() == [[0, 1, 2], [0, 2, 3], [4, 6, 5]]
    finally:
        fs.rm("/zv-ingest", recursive=True)
    with pytest.raises(zv_dask.QueryError, match="objects must be"):
        zv_dask.read_obj(local, objects="groups")


def test_swc_cycle_is_refused(tmp_path):
    path = tmp_path / "loop.swc"
    path.write_text("1 1 0 0 0 1 -1\n2 3 1 0 0 1 3\n3 3 2 0 0 1 2\n")
    with pytest.raises(InputFileError, match="line 2: node 2 lies on a cycle"):
        zv_dask.read_swc(path)


GROUPS = """# two groups, texture and normal forms, a quad and negative indices
mtllib x.mtl
o first
v 0 0 0
v 1 0 0  # a trailing comment
v 1 1 0
v 0 1 0
vt 0 0
vn 0 0 1
f 1/1/1 2/1/1 3/1/1 4/1/1
g second
v 5 5 5
v 6 5 5
v 5 6 5
usemtl red
f -3//1 -1//1 -2//1 # the tip
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_obj_groups_forms_negative_indices_and_fanned_quads(tmp_path, newline):
    path = tmp_path / "groups.obj"
    path.write_bytes(GROUPS.replace("\n", newline).encode())
    src = zv_dask.read_obj(path)
    v, f = src.vertices.compute(), src.faces.compute()
    assert v.object_id.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert f.values.tolist() == [[0, 1, 2], [0, 2, 3], [4, 6, 5]]
    info = src.source["files"][0]
    assert info["objects"] == ["first", "second"] and info["polygons_fanned"] == 1
    one = zv_dask.read_obj(path, objects="file").vertices.compute()
    assert one.object_id.tolist() == [0] * 7
    out = tmp_path / "groups.zarrvectors"
    store = zv_dask.to_zv(src, out, chunk_shape=4)
    assert_valid(out)
    pos = v[list("xyz")].to_numpy()
    back = read_mesh(str(out))
    assert as_points(back["vertices"], back["faces"]) == as_points(pos, f.values)
    rows = store.to_dask_dataframe()[list("xyz")].compute().to_numpy()
    assert as_points(rows, np.asarray(store.faces())) == as_points(pos, f.values)
    # every vertex first, then groups of faces: refused per group, read per file
    shared = tmp_path / "shared.obj"
    shared.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\ng a\nf 1 2 3\n")
    with pytest.raises(InputFileError, match="shared.obj line 5: .*objects='file'"):
        zv_dask.read_obj(shared)
    assert zv_dask.read_obj(shared, objects="file").faces.compute().values.tolist() == \
        [[0, 1, 2]]


@pytest.mark.parametrize("text, number, words", [
    ("v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n", 2, "3 numbers"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", 4, "face needs"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", 4, "face needs"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", 4, "past the file's 3 vertices"),
])
def test_malformed_obj_lines_name_file_and_line(tmp_path, text, number, words):
    path = tmp_path / "bad.obj"
    path.write_text(text)
    with pytest.raises(InputFileError, match=f"bad.obj line {number}: .*{words}"):
        zv_dask.read_obj(path)


def _torus():
    mesh = trimesh.creation.torus(major_radius=10, minor_radius=3)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces)


def test_stl_binary_and_ascii_give_the_same_mesh_winding_kept(tmp_path, capsys):
    pos, faces = _torus()
    tri = np.zeros(len(faces), [("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    tri["v"] = pos[faces]
    (tmp_path / "torus_bin.stl").write_bytes(bytes(80) + np.uint32(len(faces)).tobytes()
                                             + tri.tobytes())
    trimesh.Trimesh(pos, faces, process=False).export(tmp_path / "torus_ascii.stl",
                                                      file_type="stl_ascii")
    expected = as_points(pos, faces)
    for name in ("torus_bin.stl", "torus_ascii.stl"):
        src = zv_dask.read_stl(tmp_path / name)
        v, f = src.vertices.compute(), src.faces.compute().values
        assert len(v) == len(pos)  # corners merged back into shared vertices
        assert as_points(v[list("xyz")].to_numpy(), f) == expected
        raw = zv_dask.read_stl(tmp_path / name, merge_vertices=False)
        assert len(raw.vertices) == 3 * len(faces)
        out = tmp_path / f"{name}.zarrvectors"
        rc = main(["convert", str(tmp_path / name), str(out), "--chunk-shape", "8",
                   "--scheduler", "sync"])
        assert rc == 0, capsys.readouterr().err
        assert_valid(out)
        back = read_mesh(str(out))
        assert as_points(back["vertices"], back["faces"]) == expected
    whole = (tmp_path / "torus_bin.stl").read_bytes()
    (tmp_path / "cut.stl").write_bytes(whole[:-10])
    with pytest.raises(InputFileError, match="cut.stl .*truncated"):
        zv_dask.read_stl(tmp_path / "cut.stl")
    text = (tmp_path / "torus_ascii.stl").read_text().splitlines()
    cut = [ln for k, ln in enumerate(text) if k != 4]  # the first facet loses a vertex
    (tmp_path / "short.stl").write_text("\n".join(cut) + "\n")
    with pytest.raises(InputFileError, match=r"short.stl line \d+: a facet's loop"):
        zv_dask.read_stl(tmp_path / "short.stl")


@pytest.mark.parametrize("text", [False, True], ids=["binary", "ascii"])
def test_ply_mesh_written_by_plyfile_round_trips(tmp_path, capsys, text):
    rng = np.random.default_rng(3)
    n = 60
    v = np.empty(n, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"),
                     ("green", "u1"), ("blue", "u1")])
    for c in "xyz":
        v[c] = rng.uniform(0, 20, n)
    for c in ("red", "green", "blue"):
        v[c] = rng.integers(0, 256, n)
    polys = [rng.permutation(n)[:k] for k in rng.integers(3, 6, 40)]
    f = np.empty(len(polys), [("vertex_indices", object)])
    f["vertex_indices"] = [p.astype(np.int32) for p in polys]
    path = tmp_path / "mesh.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex"),
                     plyfile.PlyElement.describe(f, "face")], text=text).write(str(path))
    fan = [[p[0], p[i], p[i + 1]] for p in polys for i in range(1, len(p) - 1)]
    src = zv_dask.read_ply_mesh(path)
    got = src.vertices.compute()
    assert str(got.red.dtype) == "uint8"
    np.testing.assert_array_equal(got.red, v["red"])
    assert src.faces.compute().values.tolist() == fan
    out = tmp_path / "mesh.zarrvectors"
    rc = main(["convert", str(path), str(out), "--chunk-shape", "5", "--scheduler", "sync"])
    assert rc == 0, capsys.readouterr().err
    assert_valid(out)
    pos = np.stack([v[c] for c in "xyz"], 1)
    back = read_mesh(str(out))
    assert as_points(back["vertices"], back["faces"]) == as_points(pos, fan)
    store = zv_dask.open_zv(out)
    assert store.geometry_type == "mesh"
    rows = store.to_dask_dataframe().compute()
    assert sorted(zip(rows.x, rows.red)) == sorted(zip(v["x"], v["red"]))
    points = tmp_path / "points.zarrvectors"  # --format ply-points: the old vertices path
    with pytest.warns(zv_dask.ZVWarning, match="read_ply_mesh"):
        rc = main(["convert", str(path), str(points), "--format", "ply-points",
                   "--chunk-shape", "5", "--scheduler", "sync"])
    assert rc == 0 and zv_dask.open_zv(points).geometry_type == "point_cloud"


def test_convert_picks_swc_and_obj_by_extension_and_format(tmp_path, capsys):
    (tmp_path / "a.swc").write_text(FOREST)
    out = tmp_path / "a.zarrvectors"
    assert main(["convert", str(tmp_path / "a.swc"), str(out), "--chunk-shape", "50",
                 "--scheduler", "sync"]) == 0
    err = capsys.readouterr().err
    assert "read 1 SWC files: 7 vertices, 2 trees in 1 partitions" in err
    assert zv_dask.open_zv(out).geometry_type == "skeleton"
    (tmp_path / "groups.txt").write_text(GROUPS)
    out = tmp_path / "g.zarrvectors"
    assert main(["convert", str(tmp_path / "groups.txt"), str(out), "--format", "obj",
                 "--chunk-shape", "4", "--scheduler", "sync"]) == 0
    store = zv_dask.open_zv(out)
    assert store.geometry_type == "mesh" and len(np.asarray(store.faces())) == 3


@pytest.mark.parametrize("folder, fmt, chunk, levels", [
    ("swc", "swc", "2000", 3), ("obj", "obj", "5000", 2)])
def test_convert_levels_give_the_pyramid_build_pyramid_adds(tmp_path, capsys, folder, fmt,
                                                            chunk, levels):
    """``--levels`` on navis's neurons and meshes: the one-level store our convert makes,
    then the reference's build_pyramid and owner index, file for file; valid; the
    reference reader's coarse vertices are ours."""
    import shutil

    from zarr_vectors.building import build_fragment_owner_index
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    from writehelpers import assert_same_store

    paths = navis_files(folder)
    one, many, ref = (tmp_path / d / "n.zarrvectors" for d in ("one", "many", "ref"))
    for out, lv in ((one, 1), (many, levels)):
        assert main(["convert", *paths, str(out), "--chunk-shape", chunk, "--levels", str(lv),
                     "--scheduler", "sync"]) == 0
    shutil.copytree(one, ref)
    build_pyramid(str(ref), factors=[(2, 1)] * (levels - 1))
    build_fragment_owner_index(str(ref))
    assert_same_store(ref, many, coarse_tolerance=False)
    assert_valid(many)
    store = zv_dask.open_zv(many)
    assert store.levels == list(range(levels))
    top = levels - 1
    back = (read_graph(str(many), level=top)["positions"] if fmt == "swc"
            else read_mesh(str(many), level=top)["vertices"])
    mine = store.to_dask_dataframe(level=top)[list("xyz")].compute().to_numpy()
    np.testing.assert_array_equal(back, mine)
    assert 0 < len(mine) < store.vertex_count(0)
    assert len(store.read_objects(level=top)["object_ids"]) == len(store.read_objects()["object_ids"])
