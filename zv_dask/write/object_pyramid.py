"""The coarse levels of a polyline/streamline store from the rows of whole blocks, as
``build_pyramid(factors=[(2, 1)] * (levels - 1))`` then
``building.build_fragment_owner_index()`` make them.  Pure: no IO, no dask.

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


def coarse_levels(spec: WriteSpec, pos: np.ndarray, oid: np.ndarray,
                  vidx: np.ndarray) -> tuple:
    """``(BlockResult of levels >= 1 and the level-0 ``+1`` links, entries)`` of the rows
    of whole blocks; ``entries[k - 1]`` lists level k's manifest entries as a dict of
    arrays ``oid, vstart, frag, c0..`` (``vstart``: the level-0 rank of the first vertex
    the entry stands for, so sorting by ``(oid, vstart)`` gives manifest order)."""
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
