"""Polylines and streamlines of one block -> cell files, and the object-wide tables
(manifests, cross-chunk links) built from every block's fragments.  Pure: no IO, no dask.

As the reference's ``write_polylines``: each polyline is cut into runs of consecutive
vertices sharing a chunk (``floor(p / chunk_shape)`` of the stored positions); each run is
one fragment of its cell; a cell's fragments are ordered by object id, then by the
object's vertex order.  An object's manifest lists its runs in vertex order, and each
pair of consecutive runs gets one undirected ``links/0`` bridge record (last row of run
k, first row of run k+1), stored canonically in the smaller endpoint's cell with its
permutation index.

Vertex order: every row carries its object id and its rank among that object's rows
(``VIDX_COLUMN``, the frame's order, counted across partitions by the pre-pass), so a
cell orders its rows by ``(object id, rank)`` and a jump in rank starts a new fragment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from zv_dask.format import encode as E
from zv_dask.write.columns import check_name
from zv_dask.write.plan import WriteSpec

OID_COLUMN = "_zv_oid"
VIDX_COLUMN = "_zv_vidx"
FSTART_COLUMN = "_zv_fstart"  # graph/mesh pyramids: manifest rank of the fragment's first row
# one row per fragment: owner, its first vertex rank, cell, local fragment, first row, rows
FRAGMENT_COLUMNS = ("oid", "vstart", "frag", "first", "n")


@dataclass
class ObjectBlock:
    """Cell files (relative path -> bytes) and the fragments of one block."""

    blobs: dict
    fragments: pd.DataFrame
    local: pd.DataFrame | None = None


def fragment_meta(ndim: int) -> pd.DataFrame:
    cols = {c: pd.Series(dtype="int64") for c in FRAGMENT_COLUMNS}
    cols.update({f"c{a}": pd.Series(dtype="int64") for a in range(ndim)})
    return pd.DataFrame(cols)


def polyline_chunks(pos: np.ndarray, spec: WriteSpec) -> np.ndarray:
    """Chunk of each row as ``write_polylines``: ``floor(p / chunk_shape)`` in float64."""
    return np.floor(pos / np.asarray(spec.chunk_shape, np.float64)).astype(np.int64)


def build_polyline_block(spec: WriteSpec, pos: np.ndarray, attrs: dict, oid: np.ndarray,
                         vidx: np.ndarray, runs: bool = True,
                         encode: bool = True) -> ObjectBlock:
    """Encode the level-0 cells of one block's rows and list their fragments.

    ``pos`` ``(N, D)`` in ``spec.dtype``; ``attrs`` name -> rows in their stored dtype;
    ``oid`` the object id and ``vidx`` the rank of each row within its object.  With
    ``runs=False`` (graphs, meshes: ``vidx`` is the global row) an object has one
    fragment per cell, and ``local`` lists each row's ``(vidx, row in its cell)``."""
    d = spec.ndim
    chunks = polyline_chunks(pos, spec)
    order = np.lexsort([vidx, oid] + [chunks[:, a] for a in range(d - 1, -1, -1)])
    chunks, oid, vidx = chunks[order], oid[order], vidx[order]
    n = len(order)
    new_cell = np.ones(n, bool)
    new_frag = np.ones(n, bool)
    if n > 1:
        new_cell[1:] = (chunks[1:] != chunks[:-1]).any(axis=1)
        new_frag[1:] = new_cell[1:] | (oid[1:] != oid[:-1])
        if runs:
            new_frag[1:] |= vidx[1:] != vidx[:-1] + 1
    cell_start = np.flatnonzero(new_cell)
    cell_stop = np.append(cell_start[1:], n)
    frag_start = np.flatnonzero(new_frag)
    frag_n = np.diff(np.append(frag_start, n))
    # per fragment: its cell, its number in that cell and its first row in that cell
    frag_cell = np.searchsorted(cell_start, frag_start, side="right") - 1
    first_frag_of_cell = np.searchsorted(frag_start, cell_start)
    local_frag = np.arange(len(frag_start)) - first_frag_of_cell[frag_cell]
    local_first = frag_start - cell_start[frag_cell]
    blobs = _cell_blobs(spec, pos, attrs, order, chunks, oid, cell_start, cell_stop,
                        frag_start, frag_n, first_frag_of_cell) if encode else {}
    table = {"oid": oid[frag_start], "vstart": vidx[frag_start], "frag": local_frag,
             "first": local_first, "n": frag_n}
    table.update({f"c{a}": chunks[frag_start, a] for a in range(d)})
    out = ObjectBlock(blobs, pd.DataFrame(table).astype("int64"))
    if not runs:
        local = np.arange(n) - np.repeat(cell_start, cell_stop - cell_start)
        cols = {"seq": vidx, "local": local, "fstart": new_frag.astype(np.int64)}
        cols.update({f"c{a}": chunks[:, a] for a in range(d)})
        out.local = pd.DataFrame(cols).astype("int64")
    return out


def _cell_blobs(spec, pos, attrs, order, chunks, oid, cell_start, cell_stop, frag_start,
                frag_n, first_frag_of_cell) -> dict:
    """The cell files: each column gathered and encoded once for the block, then cut
    at the cells' row ranges (one fancy index per column, not one per cell)."""
    origin = [int(o) for o in spec.grid()[0]]
    columns = [("vertices", E.rows_payload(pos[order], spec.dtype), spec.compressor)]
    columns += [(f"vertex_attributes/{at.name}",
                 E.rows_payload(attrs[at.name][order], at.dtype), spec.compressor)
                for at in spec.attributes]
    width = [len(raw) // max(len(order), 1) for _, raw, _ in columns]
    # the owner column (building.build_fragment_owner_index): one id per fragment
    owners = np.ascontiguousarray(oid[frag_start], "<i8").tobytes()
    frag_stop = np.append(first_frag_of_cell[1:], len(frag_start))
    blobs = {}
    for c, (a, b) in enumerate(zip(cell_start.tolist(), cell_stop.tolist())):
        where = "/c/" + "/".join(str(x - o) for x, o in zip(chunks[a].tolist(), origin))
        fa, fb = int(first_frag_of_cell[c]), int(frag_stop[c])
        for (array, raw, compressor), w in zip(columns, width):
            blobs["0/" + array + where] = E.frame(raw[a * w:b * w], compressor)
        blobs["0/vertex_fragments" + where] = E.frame(E.fragment_index(frag_n[fa:fb]),
                                                      spec.compressor)
        blobs["0/fragment_attributes/object_id" + where] = E.frame(owners[fa * 8:fb * 8])
    return blobs


# ----------------------------------------------------------------------------- object-wide


def sort_fragments(frags: pd.DataFrame, ndim: int, by_cell: bool = False) -> dict:
    """The fragment table in manifest order: by object id, then vertex rank (polylines)
    or cell coordinates (graphs and meshes, whose manifests list cells in order)."""
    cols = ["oid", "vstart", "frag", "first", "n"] + [f"c{a}" for a in range(ndim)]
    arr = {c: frags[c].to_numpy(np.int64) for c in cols}
    keys = ([arr[f"c{a}"] for a in range(ndim - 1, -1, -1)] if by_cell else [arr["vstart"]])
    order = np.lexsort(keys + [arr["oid"]])
    return {c: v[order] for c, v in arr.items()}


def manifest_blobs(t: dict, ndim: int, object_ids: np.ndarray) -> list:
    """One manifest blob per object of ``object_ids`` (sorted): ``uint32 B`` then B mode-0
    blocks ``int64 coord[D], uint8 0, int64 fragment``."""
    block = np.dtype([("c", "<i8", (ndim,)), ("m", "u1"), ("f", "<i8")])
    rec = np.zeros(len(t["oid"]), block)
    rec["c"] = np.stack([t[f"c{a}"] for a in range(ndim)], axis=1) if len(rec) else 0
    rec["f"] = t["frag"]
    raw = rec.tobytes()
    size = block.itemsize
    starts = np.searchsorted(t["oid"], object_ids, side="left")
    stops = np.searchsorted(t["oid"], object_ids, side="right")
    return [np.uint32(b - a).tobytes() + raw[a * size:b * size] for a, b in zip(starts, stops)]


def bridge_links(t: dict, ndim: int) -> dict:
    """``{(offsets segment, source coord): (M, 3) int64 rows [perm, vi0, vi1]}`` of the
    bridges between consecutive runs of each object, placed as ``write_links`` places
    undirected records: endpoints in ``(coord, vi)`` order, input order kept per bucket."""
    same = t["oid"][1:] == t["oid"][:-1]
    a = np.flatnonzero(same)          # run a -> run a + 1
    if len(a) == 0:
        return {}
    b = a + 1
    ca = np.stack([t[f"c{k}"][a] for k in range(ndim)], axis=1)
    cb = np.stack([t[f"c{k}"][b] for k in range(ndim)], axis=1)
    va = t["first"][a] + t["n"][a] - 1
    vb = t["first"][b]
    # swap when (cb, vb) sorts before (ca, va), lexicographically
    diff = cb != ca
    first_diff = np.argmax(diff, axis=1)
    rows = np.arange(len(a))
    less = np.where(diff.any(axis=1), cb[rows, first_diff] < ca[rows, first_diff], vb < va)
    src = np.where(less[:, None], cb, ca)
    trg = np.where(less[:, None], ca, cb)
    v0, v1 = np.where(less, vb, va), np.where(less, va, vb)
    key = np.concatenate([src, trg - src], axis=1)
    order = np.lexsort([rows] + [key[:, k] for k in range(2 * ndim - 1, -1, -1)])
    ks = key[order]
    cuts = np.flatnonzero((ks[1:] != ks[:-1]).any(axis=1)) + 1
    out = {}
    for s, e in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(order)]))):
        i = order[s:e]
        seg = E.offsets_segment(trg[i[0]] - src[i[0]])
        recs = np.stack([less[i].astype(np.int64), v0[i], v1[i]], axis=1)
        out[(seg, tuple(int(x) for x in src[i[0]]))] = recs
    return out


def align_object_attributes(table, object_ids: np.ndarray, store: str) -> dict:
    """``object_attributes=`` (a DataFrame indexed by object id) as ``{name: (O,) values}``
    in the rows of ``object_ids``; an object without a row gets the "absent" sentinel.
    Refused: ids that are no object of the vertices, repeated ids, non-numeric columns."""
    from zv_dask.errors import WriteInputError
    from zv_dask.write.object_documents import absent_value

    if table is None:
        return {}
    if not isinstance(table, pd.DataFrame):
        raise WriteInputError(f"object_attributes must be a pandas DataFrame indexed by "
                              f"object_id, got {type(table).__name__}", store=store)
    idx = table.index
    if getattr(idx.dtype, "kind", "O") not in "iu":
        raise WriteInputError(f"object_attributes must be indexed by integer object ids, "
                              f"its index has dtype {idx.dtype}", store=store)
    ids = idx.to_numpy(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise WriteInputError("object_attributes has repeated object ids in its index; "
                              "give one row per object", store=store)
    at = np.minimum(np.searchsorted(object_ids, ids), max(len(object_ids) - 1, 0))
    unknown = ids[(object_ids[at] != ids)] if len(object_ids) else ids
    if len(unknown):
        raise WriteInputError(f"object_attributes has {len(unknown)} object ids with no "
                              f"vertices (e.g. {int(unknown[0])}); drop those rows",
                              store=store)
    out = {}
    for name in table.columns:
        s = table[name]
        dt = s.dtype
        if not isinstance(dt, np.dtype) or dt.kind not in "iuf" or dt.itemsize < 1:
            raise WriteInputError(
                f"object attribute {name!r} has dtype {dt}; object attributes are numpy "
                "integers or floats: convert it (e.g. astype('float32')) or leave it out",
                store=store)
        check_name(name, store, "object attribute", "object_attributes")
        values = np.full(len(object_ids), absent_value(dt), dt)
        values[at] = s.to_numpy()
        out[name] = values
    return out
