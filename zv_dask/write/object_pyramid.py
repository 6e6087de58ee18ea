"""The coarse levels of an object store (polylines, streamlines, graphs, skeletons,
meshes) from the rows of whole blocks, as ``build_pyramid(factors=[(2, 1)] * (levels - 1))``
then ``building.build_fragment_owner_index()`` make them.  Pure: no IO, no dask.

Level 1 coarsens each object's level-0 vertices in its manifest order.  For polylines
that is the vertex order; a graph or mesh manifest lists one fragment per cell in
coordinate order, each holding the object's rows of that cell in row order, so a vertex's
rank is the rows of the object's earlier cells (:func:`fragment_starts`, from the
pre-pass) plus its rank in its cell.  Coarse levels hold vertices only (no edges or
faces), as the reference writes them.

Level k (k >= 1) bins the level k-1 vertices with ``floor(p / bin_k)`` (positions in
level 0's dtype: float32 as the reference, float64 kept so large coordinates stay put);
each occupied bin is one metavertex at the mean of the level k-1 vertices it holds, each
counted as often as it appears in the level k-1 manifests (once at level 0), stored in
that dtype in the chunk of that mean, ordered in its chunk as ``np.unique`` orders the
bin keys; one fragment per metavertex.  An object's level-k manifest is its level
k-1 manifest mapped to metavertices with consecutive repeats removed.  The owner column
holds the one object naming a metavertex, ``-2`` when several do.

Why one block's rows are enough: every coarse bin nests in one block (as for points), so
a metavertex's fine vertices, and every manifest entry naming it, are in the block's task;
two consecutive vertices of an object in different blocks map to different metavertices,
so removing repeats needs only the vertices of the block.
"""

from __future__ import annotations

import numpy as np

from zv_dask.format import encode as E
from zv_dask.write.block import BlockResult, _check_nested, _links, _putter
from zv_dask.write.objects import polyline_chunks
from zv_dask.write.plan import WriteSpec

SHARED = -2


def coarse_levels(spec: WriteSpec, pos: np.ndarray, oid: np.ndarray, vidx: np.ndarray,
                  fstart: np.ndarray | None = None) -> tuple:
    """The coarse levels of the rows of whole blocks.

    Parameters
    ----------
    spec : WriteSpec
        The store being written.
    pos, oid, vidx : numpy.ndarray
        Positions ``(N, D)`` in ``spec.dtype``, object id and rank of each row within its
        object (polylines) or its row (graphs, meshes; ordering the object's rows in a cell).
    fstart : numpy.ndarray, optional
        Graphs and meshes: the manifest rank of the first row of each row's fragment
        (:func:`fragment_starts`); a row's rank is that plus its rank in the fragment.

    Returns
    -------
    tuple
        ``(BlockResult of levels >= 1 and the level-0 "+1" links, entries)``;
        ``entries[k - 1]`` lists level k's manifest entries as a dict of arrays ``oid,
        vstart, frag, c0..`` (``vstart``: the level-0 rank of the first vertex the entry
        stands for, so sorting by ``(oid, vstart)`` gives manifest order).
    """
    d = spec.ndim
    origin = spec.grid()[0]
    out = BlockResult({}, [])
    entries = []
    chunks = polyline_chunks(pos, spec)
    # level-0 rows in cell order, as build_polyline_block orders them
    order = np.lexsort([vidx, oid] + [chunks[:, a] for a in range(d - 1, -1, -1)])
    fine_chunks, fine_pos = chunks[order], pos[order].astype(spec.dtype, copy=False)
    n = len(order)
    new_cell = np.ones(n, bool)
    if n > 1:
        new_cell[1:] = (fine_chunks[1:] != fine_chunks[:-1]).any(axis=1)
    starts = np.flatnonzero(new_cell)
    fine_vi = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    # manifest entries of level 0: one per vertex, in object order
    e_oid, e_v = oid[order], vidx[order]
    if fstart is not None:  # a fragment is an object's rows of one cell, in row order
        new_frag = new_cell.copy()
        if n > 1:
            new_frag[1:] |= e_oid[1:] != e_oid[:-1]
        first = np.flatnonzero(new_frag)
        e_v = fstart[order] + np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))
    by_obj = np.lexsort([e_v, e_oid])
    e_oid, e_v, e_ref = e_oid[by_obj], e_v[by_obj], by_obj.astype(np.int64)
    cont = np.zeros(n, bool)  # entry follows the one before it in its object
    if n > 1:
        cont[1:] = (e_oid[1:] == e_oid[:-1]) & (e_v[1:] == e_v[:-1] + 1)
    for level in range(1, spec.levels):
        fine_pos, fine_chunks, fine_vi, e_ref, keep = _coarsen(
            spec, level, fine_pos, fine_chunks, fine_vi, e_ref, cont, e_oid, origin, out)
        e_oid, e_v, cont = e_oid[keep], e_v[keep], cont[keep]
        table = {"oid": e_oid, "vstart": e_v, "frag": fine_vi[e_ref]}
        table.update({f"c{a}": fine_chunks[e_ref, a] for a in range(d)})
        entries.append(table)
    return out, entries


def fragment_pairs(oid: np.ndarray, chunks: np.ndarray) -> tuple:
    """``(pairs (K, 1 + D), rows of each, pair of each row)``: the distinct
    ``(object id, cell)`` of some rows, sorted by object id then cell coordinates."""
    keys = np.concatenate([oid.reshape(-1, 1), chunks], axis=1).astype(np.int64)
    n = len(keys)
    order = np.lexsort(keys.T[::-1]) if n else np.zeros(0, np.int64)
    s = keys[order]
    new = np.ones(n, bool)
    if n > 1:
        new[1:] = (s[1:] != s[:-1]).any(axis=1)
    first = np.flatnonzero(new)
    which = np.empty(n, np.int64)
    which[order] = np.cumsum(new) - 1
    return s[first], np.diff(np.append(first, n)).astype(np.int64), which


def fragment_starts(pairs: list, rows: list) -> list:
    """Per partition, the manifest rank of the first row of each of its fragments.

    Parameters
    ----------
    pairs, rows : list of numpy.ndarray
        Per partition, :func:`fragment_pairs`'s pairs and rows (a fragment, an object's
        rows of one cell, may span partitions).

    Returns
    -------
    list of numpy.ndarray
        Per partition, aligned with its pairs: the rows of the object's cells that come
        before the pair's cell in coordinate order (its manifest order).
    """
    if not pairs:
        return []
    allp = np.concatenate(pairs)
    u, n, which = fragment_pairs(allp[:, 0], allp[:, 1:])
    total = np.bincount(which, weights=np.concatenate(rows), minlength=len(u)).astype(np.int64)
    before = np.cumsum(total) - total
    new_obj = np.ones(len(u), bool)
    new_obj[1:] = u[1:, 0] != u[:-1, 0]
    first = np.flatnonzero(new_obj)
    before -= np.repeat(before[first], np.diff(np.append(first, len(u))))
    cuts = np.cumsum([0] + [len(p) for p in pairs])
    return [before[which[a:b]] for a, b in zip(cuts[:-1], cuts[1:])]


def _coarsen(spec, level, fine_pos, fine_chunks, fine_vi, e_ref, cont, e_oid, origin, out):
    """Level ``level`` from the level-1 rows (chunk-major) and their manifest entries."""
    d = spec.ndim
    m_fine = len(fine_pos)
    b = fine_pos / np.asarray(spec.level_bin(level), np.float64)
    np.floor(b, out=b)
    bins = b.astype(np.int64)
    del b
    void = np.dtype((np.void, 8 * d))
    _, inv = np.unique(np.ascontiguousarray(bins).view(void).ravel(), return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    del bins
    m = int(inv.max()) + 1 if len(inv) else 0
    weight = np.bincount(e_ref, minlength=m_fine)  # appearances in the finer manifests
    counts = np.bincount(inv, weights=weight, minlength=m)
    cent = np.empty((m, d), fine_pos.dtype)
    for a in range(d):
        cent[:, a] = np.bincount(inv, weights=weight * fine_pos[:, a].astype(np.float64),
                                 minlength=m) / np.maximum(counts, 1)
    mv_chunks = np.floor(cent / np.asarray(spec.chunk_shape, np.float64)).astype(np.int64)
    _check_nested(spec, fine_chunks, mv_chunks, inv)
    order = np.lexsort([np.arange(m)] + [mv_chunks[:, a] for a in range(d - 1, -1, -1)])
    rank = np.empty(m, np.int64)
    rank[order] = np.arange(m)
    mv_vi = np.empty(m, np.int64)
    # entries mapped to metavertices (chunk-major numbering), repeats dropped
    e_mv = rank[inv[e_ref]]
    keep = np.ones(len(e_mv), bool)
    if len(e_mv) > 1:
        keep[1:] = ~(cont[1:] & (e_mv[1:] == e_mv[:-1]))
    k_mv, k_oid = e_mv[keep], e_oid[keep]
    lo = np.full(m, np.iinfo(np.int64).max, np.int64)
    hi = np.full(m, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(lo, k_mv, k_oid)
    np.maximum.at(hi, k_mv, k_oid)
    owner = np.where(lo == hi, lo, SHARED).astype("<i8")
    sorted_chunks = mv_chunks[order]
    cuts = np.flatnonzero((sorted_chunks[1:] != sorted_chunks[:-1]).any(axis=1)) + 1
    for a, z in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [m]))):
        mv_vi[order[a:z]] = np.arange(z - a)
        put = _putter(out, level, sorted_chunks[a], origin, None)
        put("vertices", E.rows_payload(cent[order[a:z]], cent.dtype), z - a)
        put("vertex_fragments", E.fragment_index(np.ones(z - a, np.int64)))
        put("fragment_attributes/object_id", owner[a:z].tobytes())
    parent_chunks, parent_vi = mv_chunks[inv], mv_vi[inv]
    _links(out, level - 1, "+1", fine_chunks, parent_chunks, fine_vi, parent_vi, origin)
    _links(out, level, "-1", parent_chunks, fine_chunks, parent_vi, fine_vi, origin)
    return cent[order], sorted_chunks, mv_vi[order], k_mv, keep
