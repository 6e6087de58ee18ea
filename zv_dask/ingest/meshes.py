"""Meshes: OBJ, STL (ASCII and binary) and PLY with faces -> vertices and triangles.

Parsing is vectorised over the file's bytes (numpy masks and one ``fromstring`` per
record kind; a regular expression for ASCII STL); only a file that does not parse is
walked line by line, to name its bad line.  Faces keep their winding; a polygon of
``k > 3`` vertices becomes the fan ``(v0, v[i], v[i+1])``, ``i = 1 .. k-2`` (right for
the convex polygons exporters write).  A parse gives :class:`MeshPart`: rows in file
order, each row's object (OBJ group) and faces as rows of the file.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zv_dask.errors import InputFileError
from zv_dask.ingest.files import read_bytes

SPACE = np.zeros(256, bool)
SPACE[[9, 10, 11, 12, 13, 32]] = True


@dataclass
class MeshPart:
    """One parsed file: ``vertices`` (x, y, z [, red, green, blue] and local
    ``object_id``), ``faces`` ``(M, 3)`` local rows, object names, polygons fanned."""

    vertices: pd.DataFrame
    faces: np.ndarray
    objects: list
    polygons: int = 0


def fan_triangles(flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Triangles of polygons given as their concatenated vertex lists and lengths
    (each >= 3), winding kept: a ``k``-gon gives ``k - 2`` fan triangles.

    Examples
    --------
    >>> fan_triangles(np.array([0, 1, 2, 3, 5, 6, 7]), np.array([4, 3])).tolist()
    [[0, 1, 2], [0, 2, 3], [5, 6, 7]]
    """
    counts = np.asarray(counts, np.int64)
    first = np.cumsum(counts) - counts
    per = counts - 2
    poly = np.repeat(np.arange(len(counts)), per)
    step = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per) + 1
    base = first[poly]
    return np.stack([flat[base], flat[base + step], flat[base + step + 1]], 1)


def _blank_runs(buf: np.ndarray, mark: int, stop: np.ndarray) -> np.ndarray:
    """``buf`` with every run from a ``mark`` byte up to the next ``stop`` byte blanked."""
    is_mark = buf == mark
    event = is_mark | stop[buf]
    kind = np.int32 if len(buf) < 2**31 else np.int64
    last = np.maximum.accumulate(np.where(event, np.arange(len(buf), dtype=kind), -1))
    inside = (last >= 0) & is_mark[np.maximum(last, 0)]
    out = buf.copy()
    out[inside] = 32
    return out


def _without_inline_comments(buf, starts, ends, first) -> np.ndarray:
    """A copy of ``buf`` with every ``# ...`` after a record blanked (comment lines
    need nothing: their keyword is ``#``)."""
    out = buf.copy()
    hashes = np.flatnonzero(buf == ord("#"))
    line = np.searchsorted(starts, hashes, "right") - 1
    inline = hashes != first[line]
    if inline.any():
        step = np.zeros(len(buf) + 1, np.int8)
        np.add.at(step, hashes[inline], 1)
        np.add.at(step, ends[line[inline]], -1)
        out[np.cumsum(step[:-1], dtype=np.int8) > 0] = 32
    return out


def _record_values(body, starts, ends, selected, dtype, slashes: bool) -> tuple:
    """The numbers of the ``selected`` lines of ``body`` (keywords blanked) and how many
    each line holds; ``slashes``: only the part of a token before its ``/`` counts.
    ``(None, counts)`` when they do not parse."""
    step = np.zeros(len(body) + 1, np.int8)
    step[starts[selected]] += 1
    step[np.minimum(ends[selected] + 1, len(body))] -= 1
    text = body[np.cumsum(step[:-1], dtype=np.int8) > 0]
    if not selected.any():
        return np.zeros(0, dtype), np.zeros(0, np.int64)
    if text[-1] != 10:
        text = np.r_[text, np.uint8(10)]
    if slashes and (text == ord("/")).any():
        text = _blank_runs(text, ord("/"), SPACE)
    blank = SPACE[text]
    token = ~blank & np.r_[True, blank[:-1]]
    breaks = np.flatnonzero(text == 10)
    counts = np.bincount(np.searchsorted(breaks, np.flatnonzero(token)),
                         minlength=len(breaks))
    return _numbers(text, dtype, int(counts.sum())), counts


def _numbers(buf: np.ndarray, dtype, expected: int):
    """The whitespace-separated numbers of ``buf``, or None when they are not
    ``expected`` numbers of ``dtype``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            out = np.fromstring(buf.tobytes(), dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    return out if len(out) == expected else None


def _bad_obj_line(data: bytes, path: str, keyword: bytes, why: str) -> InputFileError:
    """The error naming the first ``keyword`` line of ``data`` whose values do not parse."""
    for number, raw in enumerate(data.split(b"\n"), 1):
        fields = raw.split(b"#", 1)[0].split()
        if not fields or fields[0] != keyword:
            continue
        try:
            for f in fields[1:]:
                (int if keyword == b"f" else float)(f.split(b"/", 1)[0])
            if len(fields) < 4:
                raise ValueError
        except ValueError:
            text = raw.decode("utf-8", "replace").strip()[:120]
            return InputFileError(f"{path} line {number}: {why}: {text!r}; fix or remove "
                                  "the line")
    return InputFileError(f"{path}: {why}; check the file")


def parse_obj(data: bytes, path: str, objects: str = "group") -> MeshPart:
    """Vertices (``v`` lines) and faces (``f`` lines, ``v``, ``v/vt``, ``v//vn`` or
    ``v/vt/vn`` forms, negative indices counting back from the last vertex read) of
    an OBJ file; other records (``vt``, ``vn``, ``l``, ``usemtl``...) are skipped.
    ``objects="group"``: each ``g``/``o`` name (and the records before the first) is
    one object owning the vertices defined under it; ``"file"``: one object.

    Examples
    --------
    >>> part = parse_obj(b"v 0 0 0\\nv 1 0 0\\nv 1 1 0\\nv 0 1 0\\nf 1/1 2/2 3/3 -1\\n",
    ...                  "q.obj")
    >>> part.faces.tolist(), part.polygons
    ([[0, 1, 2], [0, 2, 3]], 1)
    """
    buf = np.frombuffer(data, np.uint8)
    n = len(buf)
    newline = np.flatnonzero(buf == 10)
    starts = np.r_[0, newline + 1]
    ends = np.r_[newline, n]
    solid = np.flatnonzero(~SPACE[buf])
    first = np.r_[solid, n][np.searchsorted(solid, starts)]
    used = first < ends
    c0 = np.where(used, np.r_[buf, 32][np.minimum(first, n)], 32)
    c1 = np.r_[buf, 32, 32][np.minimum(first + 1, n)]
    single = used & SPACE[c1]
    is_v, is_f = single & (c0 == ord("v")), single & (c0 == ord("f"))
    is_g = single & ((c0 == ord("g")) | (c0 == ord("o"))) & (objects == "group")
    body = _without_inline_comments(buf, starts, ends, first)
    body[first[is_v | is_f]] = 32  # the keyword letter

    values, v_count = _record_values(body, starts, ends, is_v, np.float64, slashes=False)
    if values is None or (v_count < 3).any():
        raise _bad_obj_line(data, path, b"v", "a vertex needs 3 numbers")
    at = np.cumsum(v_count) - v_count
    cols = {a: values[at + i] for i, a in enumerate("xyz")}
    if len(v_count) and (v_count == 6).all():  # "v x y z r g b": vertex colours
        cols.update({c: values[at + 3 + i].astype(np.float32)
                     for i, c in enumerate(("red", "green", "blue"))})
    flat, f_count = _record_values(body, starts, ends, is_f, np.int64, slashes=True)
    if flat is None or (f_count < 3).any() or (flat == 0).any():
        raise _bad_obj_line(data, path, b"f", "a face needs 3 or more vertex indices "
                                              "(1-based integers, not 0)")
    seen = (np.cumsum(is_v) - is_v)[is_f]  # vertices read before each face line
    flat = np.where(flat > 0, flat - 1, np.repeat(seen, f_count) + flat)
    n_v = len(v_count)
    bad = (flat < 0) | (flat >= n_v)
    face_lines = np.flatnonzero(is_f)
    poly_of = np.repeat(np.arange(len(f_count)), f_count)
    if bad.any():
        line = int(face_lines[poly_of[np.flatnonzero(bad)[0]]]) + 1
        raise InputFileError(f"{path} line {line}: a face index points past the file's "
                             f"{n_v} vertices; fix the face")
    names, group = _groups(data, starts, ends, first, is_g)
    v_group, f_group = group[is_v], group[is_f]
    wrong = v_group[flat] != f_group[poly_of]
    if wrong.any():
        line = int(face_lines[poly_of[np.flatnonzero(wrong)[0]]]) + 1
        raise InputFileError(f"{path} line {line}: the face uses a vertex defined under "
                             "another g/o group; read the file with objects='file' (one "
                             "object per file)")
    owned, local = np.unique(v_group, return_inverse=True)
    cols["object_id"] = local.astype(np.int64)
    return MeshPart(pd.DataFrame(cols), fan_triangles(flat, f_count),
                    [names[g] for g in owned], int((f_count > 3).sum()))


def _groups(data, starts, ends, first, is_g) -> tuple:
    """Group names (``""`` before the first ``g``/``o``) and every line's group
    index; a name given again continues its group."""
    lines = np.flatnonzero(is_g)
    given = [data[first[i] + 1:ends[i]].decode("utf-8", "replace").strip() for i in lines]
    codes, uniques = pd.factorize(pd.Series(given, dtype=object))
    names = [""] + [str(u) for u in uniques]
    group = np.zeros(len(starts), np.int64)
    if len(lines):
        marker = np.full(len(starts), -1, np.int64)
        marker[lines] = np.arange(len(lines))
        last = np.maximum.accumulate(marker)
        group = np.where(last < 0, 0, (codes + 1)[np.maximum(last, 0)])
    return names, group


BINARY_STL = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)),
                       ("attribute", "<u2")])
_VERTEX = re.compile(rb"\bvertex\s+(\S+)\s+(\S+)\s+(\S+)")
_ENDLOOP = re.compile(rb"\bendloop\b")


def _line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def parse_stl(data: bytes, path: str, merge_vertices: bool = True) -> MeshPart:
    """The triangles of an ASCII or binary STL (binary when the size is 84 + 50 x the
    count in bytes 80..84); normals and attribute bytes are dropped (the winding gives
    the normal).  ``merge_vertices``: bit-identical corners become one vertex (first
    seen order); otherwise three rows per triangle.

    Examples
    --------
    >>> part = parse_stl(b"solid t\\nfacet normal 0 0 1\\nouter loop\\nvertex 0 0 0\\n"
    ...                  b"vertex 1 0 0\\nvertex 0 1 0\\nendloop\\nendfacet\\nendsolid t\\n",
    ...                  "t.stl")
    >>> part.faces.tolist(), part.vertices.x.tolist()
    ([[0, 1, 2]], [0.0, 1.0, 0.0])
    """
    count = int.from_bytes(data[80:84], "little") if len(data) >= 84 else -1
    if len(data) >= 84 and len(data) == 84 + 50 * count:
        corners = np.frombuffer(data, BINARY_STL, count, 84)["vertices"].reshape(-1, 3)
    elif data.lstrip()[:5].lower() == b"solid":
        corners = _ascii_corners(data, path)
    elif len(data) >= 84:
        raise InputFileError(f"{path} is not an ASCII STL and its binary header lists "
                             f"{count} triangles ({84 + 50 * count} bytes) but the file "
                             f"holds {len(data)} bytes: truncated or not STL; re-export it")
    else:
        raise InputFileError(f"{path} is not an STL file (too short); check the file")
    if merge_vertices and len(corners):
        codes = _first_seen_codes(corners)
        top = np.maximum.accumulate(codes)
        corners = corners[np.flatnonzero(np.r_[True, top[1:] > top[:-1]])]
        faces = codes.reshape(-1, 3)
    else:
        faces = np.arange(len(corners), dtype=np.int64).reshape(-1, 3)
    vertices = pd.DataFrame({a: corners[:, i] for i, a in enumerate("xyz")})
    vertices["object_id"] = np.zeros(len(vertices), np.int64)
    return MeshPart(vertices, faces, [""])


def _first_seen_codes(rows: np.ndarray) -> np.ndarray:
    """One code per row, equal for bit-identical rows, numbered in first-seen order
    (hash factorizations of the columns' bits, combined column by column)."""
    bits = np.ascontiguousarray(rows).view(f"u{rows.dtype.itemsize}")
    codes = pd.factorize(bits[:, 0])[0].astype(np.int64)
    for c in range(1, bits.shape[1]):
        more = pd.factorize(bits[:, c])[0].astype(np.int64)
        codes = pd.factorize(codes * (int(more.max()) + 1) + more)[0].astype(np.int64)
    return codes


def _ascii_corners(data: bytes, path: str) -> np.ndarray:
    found = _VERTEX.findall(data)
    try:
        corners = np.array(found, dtype=bytes).reshape(-1, 3).astype(np.float64)
    except ValueError:
        for m in _VERTEX.finditer(data):
            try:
                [float(v) for v in m.groups()]
            except ValueError:
                raise InputFileError(f"{path} line {_line(data, m.start())}: a vertex "
                                     "coordinate is not a number; fix the line") from None
        raise InputFileError(f"{path}: vertices do not parse; check the file") from None
    loops = np.array([m.start() for m in _ENDLOOP.finditer(data)], np.int64)
    where = np.array([m.start() for m in _VERTEX.finditer(data)], np.int64)
    per_loop = np.diff(np.r_[0, np.searchsorted(where, loops)])
    if (per_loop != 3).any() or len(where) != 3 * len(loops):
        bad = np.flatnonzero(per_loop != 3)
        at = int(loops[bad[0]]) if len(bad) else (int(where[3 * len(loops)])
                                                  if len(where) > 3 * len(loops) else 0)
        raise InputFileError(f"{path} line {_line(data, at)}: a facet's loop does not hold "
                             "3 vertices (truncated or not a triangle); fix the facet")
    return corners


def parse_ply_mesh(data: bytes, path: str) -> MeshPart:
    """The vertices (every scalar property, with its PLY type) and faces (the ``face``
    element's ``vertex_indices``/``vertex_index`` lists, fanned) of a PLY file."""
    import io

    from zv_dask.ingest.ply import _plyfile

    plyfile = _plyfile()
    try:
        ply = plyfile.PlyData.read(io.BytesIO(data))
    except (plyfile.PlyParseError, ValueError, EOFError, IndexError) as exc:
        raise InputFileError(f"{path} does not parse as PLY ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); check the file") from None
    names = [e.name for e in ply.elements]
    if "vertex" not in names or "face" not in names:
        raise InputFileError(f"{path} is a PLY without 'vertex' and 'face' elements (it has "
                             f"{', '.join(names) or 'none'}); read its points with read_ply")
    vertex, face = ply["vertex"], ply["face"]
    lists = [p.name for p in face.properties if isinstance(p, plyfile.PlyListProperty)]
    key = next((k for k in ("vertex_indices", "vertex_index") if k in lists), None)
    if key is None:
        raise InputFileError(f"{path}: the face element has no vertex_indices list (it has "
                             f"{', '.join(lists) or 'no lists'}); check the file")
    cols = {p.name: np.asarray(vertex.data[p.name]) for p in vertex.properties
            if not isinstance(p, plyfile.PlyListProperty)}
    polys = face.data[key]
    counts = np.fromiter((len(p) for p in polys), np.int64, len(polys))
    flat = (np.concatenate([np.asarray(p, np.int64) for p in polys]) if len(polys)
            else np.zeros(0, np.int64))
    n = vertex.count
    outside = np.zeros(len(counts), bool)
    outside[np.repeat(np.arange(len(counts)), counts)[(flat < 0) | (flat >= n)]] = True
    bad = np.flatnonzero(outside | (counts < 3))
    if len(bad):
        raise InputFileError(f"{path}: face {int(bad[0])} has fewer than 3 vertices or an "
                             f"index outside the {n} vertices; fix the face")
    vertices = pd.DataFrame(cols)
    vertices["object_id"] = np.zeros(n, np.int64)
    return MeshPart(vertices, fan_triangles(flat, counts), [""], int((counts > 3).sum()))


PARSERS = {"obj": parse_obj, "stl": parse_stl, "ply": parse_ply_mesh}


def parse(kind: str, path: str, storage_options=None, **options) -> MeshPart:
    """Parse one ``kind`` (``obj``, ``stl``, ``ply``) file read from ``path``."""
    return PARSERS[kind](read_bytes(path, storage_options), path, **options)


def summary(path: str, kind: str, storage_options=None, options=None) -> dict:
    """What the builder needs of one file before its tasks (and a check of all of it):
    counts, object names and the vertex columns with their dtypes."""
    part = parse(kind, path, storage_options, **(options or {}))
    return {"path": path, "vertex_count": len(part.vertices), "face_count": len(part.faces),
            "objects": part.objects, "polygons_fanned": part.polygons,
            "columns": [(c, str(t)) for c, t in part.vertices.dtypes.items()]}


class MeshReader:
    """Reads one file in a task: ``reader((path, file_index, row_offset, object_offset))``
    gives its vertices (``what="vertices"``, global ``object_id``) or its faces
    (``what="faces"``: ``v0, v1, v2`` global rows)."""

    def __init__(self, kind: str, what: str, storage_options=None, options=None):
        self.kind, self.what = kind, what
        self.storage_options, self.options = storage_options, dict(options or {})

    def __dask_tokenize__(self):
        return ("MeshReader", self.kind, self.what, sorted(self.options.items()),
                sorted((self.storage_options or {}).items()))

    def __call__(self, part):
        path, _, row_offset, object_offset = part
        mesh = parse(self.kind, path, self.storage_options, **self.options)
        if self.what == "faces":
            return pd.DataFrame(mesh.faces + row_offset, columns=["v0", "v1", "v2"])
        mesh.vertices["object_id"] += object_offset
        return mesh.vertices
