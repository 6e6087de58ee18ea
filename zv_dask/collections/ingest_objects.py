"""Object sources of foreign files: ``read_swc``, ``read_obj``, ``read_stl``, ``read_ply_mesh``.

Every file is parsed once at build time, in parallel tasks that return only its counts
(so global object ids and vertex rows are known, and a bad line fails before anything
is written), then once more in each task of the frames: one partition per file for the
vertices and one for its edges or faces.  The result is an
:class:`~zv_dask.ingest.source.ObjectSource` that ``to_zv`` writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zv_dask.errors import InputFileError, QueryError
from zv_dask.ingest import meshes as M
from zv_dask.ingest import swc as S
from zv_dask.ingest.files import expand_paths
from zv_dask.ingest.source import ObjectSource


def _summaries(function, paths, *args) -> list:
    """``function(path, *args)`` of every file, in parallel dask tasks."""
    import dask

    return list(dask.compute(*[dask.delayed(function, pure=True)(p, *args) for p in paths]))


def _parts(files: list, objects_per_file: list) -> list:
    """``(path, file index, first global row, first global object id)`` per file."""
    rows = np.cumsum([0] + [f["vertex_count"] for f in files])
    objs = np.cumsum([0] + list(objects_per_file))
    return [(f["path"], i, int(rows[i]), int(objs[i])) for i, f in enumerate(files)]


def _frames(reader_of, parts, vertex_meta, record_meta, label) -> tuple:
    import dask.dataframe as dd

    def frame(what, meta):
        return dd.from_map(reader_of(what), parts, meta=meta, label=f"{label}-{what}",
                           enforce_metadata=False)

    return frame("vertices", vertex_meta), frame(record_meta[0], record_meta[1])


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0, t) for c, t in columns})


def read_swc(paths, storage_options=None) -> ObjectSource:
    """Read SWC neurons into a skeleton :class:`~zv_dask.ingest.source.ObjectSource`.

    Each tree is one object: a file holding a forest (several roots, parent ``-1``)
    gives one object per root, numbered across the files in file and root-line order.
    Vertices keep the file's row order with ``x, y, z`` (float64 as parsed), vertex
    attributes ``radius`` (float64), ``type`` (int32) and ``node_id`` (int64, the SWC id);
    edges are ``(child row, parent row)`` as global vertex rows.  Object attributes
    (numbers only): ``file_index`` (into ``source["files"]``, which holds the paths),
    ``tree_index`` (the tree's rank in its file) and ``root_node_id`` (the SWC id of its
    root: the neuron id of the tree).  One partition per file.

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Files, globs (``"neurons/*.swc"``) or fsspec URLs.
    storage_options : dict, optional
        fsspec options of remote ``paths``.

    Returns
    -------
    ObjectSource

    Raises
    ------
    InputFileError
        A malformed line (not 7 numbers, non-integer id, type or parent), a repeated
        node id, a parent not in the file, or a cycle; the message names file and line.

    Examples
    --------
    >>> import os, tempfile, zv_dask
    >>> path = os.path.join(tempfile.mkdtemp(), "forest.swc")
    >>> _ = open(path, "w").write("# id type x y z r parent\\n1 1 0 0 0 2 -1\\n"
    ...                           "2 3 5 0 0 1 1\\n10 1 50 50 50 2 -1\\n11 3 55 50 50 1 10\\n")
    >>> src = zv_dask.read_swc(path)
    >>> src.object_attributes.root_node_id.tolist(), src.edges.compute().values.tolist()
    ([1, 10], [[1, 0], [3, 2]])
    """
    files = _summaries(S.summary, expand_paths(paths, "SWC file", storage_options),
                       storage_options)
    parts = _parts(files, [len(f["root_ids"]) for f in files])
    vertices, edges = _frames(lambda what: S.SwcReader(what, storage_options), parts,
                              _empty(S.VERTEX_COLUMNS + (("object_id", "int64"),)),
                              ("edges", _empty([("source", "int64"), ("target", "int64")])),
                              "read-swc")
    table = pd.DataFrame({
        "file_index": np.repeat(np.arange(len(files)), [len(f["root_ids"]) for f in files]),
        "tree_index": np.concatenate([np.arange(len(f["root_ids"])) for f in files]),
        "root_node_id": np.concatenate([f["root_ids"] for f in files]).astype(np.int64)})
    table.index.name = "object_id"
    source = {"format": "swc", "vertex_count": int(sum(f["vertex_count"] for f in files)),
              "object_count": len(table),
              "files": [{"path": f["path"], "vertex_count": f["vertex_count"],
                         "trees": len(f["root_ids"])} for f in files]}
    return ObjectSource("skeleton", vertices, edges=edges, object_attributes=table,
                        source=source)


def _read_meshes(kind, paths, what, storage_options, options=None) -> ObjectSource:
    """The mesh source of ``kind`` files (see :func:`read_obj`)."""
    options = dict(options or {})
    files = _summaries(M.summary, expand_paths(paths, what, storage_options), kind,
                       storage_options, options)
    columns = files[0]["columns"]
    for f in files[1:]:
        if f["columns"] != columns:
            raise InputFileError(f"{f['path']} has vertex columns {[c for c, _ in f['columns']]}"
                                 f" but {files[0]['path']} has {[c for c, _ in columns]}; "
                                 "convert files with the same properties together")
    parts = _parts(files, [len(f["objects"]) for f in files])
    vertices, faces = _frames(
        lambda w: M.MeshReader(kind, w, storage_options, options), parts, _empty(columns),
        ("faces", _empty([(c, "int64") for c in ("v0", "v1", "v2")])), f"read-{kind}")
    table = pd.DataFrame({
        "file_index": np.repeat(np.arange(len(files)), [len(f["objects"]) for f in files]),
        "group_index": np.concatenate([np.arange(len(f["objects"])) for f in files])})
    table.index.name = "object_id"
    source = {"format": kind, "vertex_count": int(sum(f["vertex_count"] for f in files)),
              "face_count": int(sum(f["face_count"] for f in files)),
              "object_count": len(table),
              "files": [{k: f[k] for k in ("path", "vertex_count", "face_count", "objects",
                                           "polygons_fanned")} for f in files]}
    return ObjectSource("mesh", vertices, faces=faces, object_attributes=table, source=source)


def read_obj(paths, objects="group", storage_options=None) -> ObjectSource:
    """Read Wavefront OBJ meshes into a mesh :class:`~zv_dask.ingest.source.ObjectSource`.

    ``v`` lines are the vertices (``x, y, z`` float64 as parsed; ``v x y z r g b``
    colours as float32 ``red, green, blue`` when every vertex has them), ``f`` lines the
    faces in their winding (forms ``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``; negative
    indices count back from the last vertex read).  A polygon of ``k > 3`` vertices is
    fan-triangulated, ``(v0, v[i], v[i+1])``, winding kept (``source["files"][i]
    ["polygons_fanned"]`` counts them).  ``vt``, ``vn``, lines, materials are skipped.
    Object attributes: ``file_index`` (into ``source["files"]``) and ``group_index``
    (into that file's ``objects``, the group names).  One partition per file.

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Files, globs or fsspec URLs.
    objects : {"group", "file"}, default "group"
        ``"group"``: each ``g``/``o`` group is one object owning the vertices listed
        under it (records before the first group form the group ``""``); a face using
        another group's vertex is refused.  ``"file"``: one object per file.
    storage_options : dict, optional
        fsspec options of remote ``paths``.

    Returns
    -------
    ObjectSource

    Raises
    ------
    InputFileError
        A ``v`` or ``f`` line that does not parse, a face index outside the vertices,
        or (``objects="group"``) a face across groups; the message names file and line.

    Examples
    --------
    >>> import os, tempfile, zv_dask
    >>> path = os.path.join(tempfile.mkdtemp(), "two.obj")
    >>> _ = open(path, "w").write("o a\\nv 0 0 0\\nv 1 0 0\\nv 0 1 0\\nf 1 2 3\\n"
    ...                           "o b\\nv 5 5 5\\nv 6 5 5\\nv 5 6 5\\nf -3 -1 -2\\n")
    >>> src = zv_dask.read_obj(path)
    >>> src.faces.compute().values.tolist(), src.source["files"][0]["objects"]
    ([[0, 1, 2], [3, 5, 4]], ['a', 'b'])
    """
    if objects not in ("group", "file"):
        raise QueryError(f"read_obj: objects must be 'group' or 'file', got {objects!r}")
    return _read_meshes("obj", paths, "OBJ file", storage_options, {"objects": objects})


def read_stl(paths, merge_vertices=True, storage_options=None) -> ObjectSource:
    """Read STL meshes (ASCII or binary) into a mesh
    :class:`~zv_dask.ingest.source.ObjectSource`, one object per file.

    A file is binary when its size is 84 + 50 bytes per triangle of the count it holds
    (bytes 80..84), otherwise ASCII (``solid ... facet ... vertex x y z``).  Binary
    positions are float32 as stored, ASCII ones float64 as parsed; facet normals and
    the attribute bytes are dropped (the winding, kept, gives the normal).

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Files, globs or fsspec URLs.
    merge_vertices : bool, default True
        Corners with bit-identical positions become one vertex (in first-seen order),
        so triangles share vertices; False keeps three rows per triangle, as stored.
    storage_options : dict, optional
        fsspec options of remote ``paths``.

    Returns
    -------
    ObjectSource

    Raises
    ------
    InputFileError
        A truncated binary STL, a vertex that is not a number or a facet without 3
        vertices (naming file and line), or a file that is not STL.

    Examples
    --------
    >>> import os, tempfile, numpy as np, zv_dask
    >>> tri = np.zeros(2, [("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    >>> tri["v"] = [[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[1, 0, 0], [1, 1, 0], [0, 1, 0]]]
    >>> path = os.path.join(tempfile.mkdtemp(), "quad.stl")
    >>> _ = open(path, "wb").write(bytes(80) + np.uint32(2).tobytes() + tri.tobytes())
    >>> src = zv_dask.read_stl(path)
    >>> src.faces.compute().values.tolist(), len(src.vertices)
    ([[0, 1, 2], [1, 3, 2]], 4)
    """
    return _read_meshes("stl", paths, "STL file", storage_options,
                        {"merge_vertices": bool(merge_vertices)})


def read_ply_mesh(paths, storage_options=None) -> ObjectSource:
    """Read PLY meshes (a ``vertex`` and a ``face`` element, ASCII or binary) into a
    mesh :class:`~zv_dask.ingest.source.ObjectSource`, one object per file.

    Every scalar vertex property is a column with its PLY type (``red, green, blue``
    stay uint8); faces are the ``vertex_indices`` (or ``vertex_index``) lists in their
    winding, polygons fan-triangulated as in :func:`read_obj`.  For the vertices of a
    PLY as a point cloud use :func:`~zv_dask.read_ply`.  One task per file (plyfile
    parses the whole file); needs plyfile (``zv_dask[mesh]``).

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        Files, globs or fsspec URLs, all with the same vertex properties.
    storage_options : dict, optional
        fsspec options of remote ``paths``.

    Returns
    -------
    ObjectSource

    Raises
    ------
    InputFileError
        Not a PLY with vertices and faces, or a face with fewer than 3 vertices or an
        index outside them (naming file and face).
    MissingDependencyError
        plyfile is missing.

    Examples
    --------
    >>> import os, tempfile, numpy as np, plyfile, zv_dask
    >>> v = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)],
    ...              dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    >>> f = np.array([([0, 1, 2, 3],)], dtype=[("vertex_indices", "i4", (4,))])
    >>> path = os.path.join(tempfile.mkdtemp(), "quad.ply")
    >>> plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex"),
    ...                  plyfile.PlyElement.describe(f, "face")]).write(path)
    >>> zv_dask.read_ply_mesh(path).faces.compute().values.tolist()
    [[0, 1, 2], [0, 2, 3]]
    """
    return _read_meshes("ply", paths, "PLY file", storage_options)


def ply_has_faces(paths, storage_options=None) -> bool:
    """Whether any of the PLY files has a non-empty ``face`` element (headers only)."""
    from zv_dask.ingest import ply as P

    return any(dict(P.read_header(p, storage_options).other_elements).get("face", 0) > 0
               for p in expand_paths(paths, "PLY file", storage_options))
