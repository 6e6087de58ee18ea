"""Exact neighbour searches of one query group (or one cell, for the self-join).

A group starts with the cells its queries fall in or touch, searches them with a
KD-tree, and reads more cells only while some query's ``k``-th distance reaches a
cell not read yet (:func:`zv_dask.plan.halos.cells_needed`): the answer is the
whole level's, from a neighbourhood of chunks.
"""

from __future__ import annotations

import numpy as np

from zv_dask.neighbours.cells import Gathered, kdtree_class
from zv_dask.plan import halos

RESULT_KEYS = ("query", "rank", "vertex_id", "distance")


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return np.sqrt((d * d).sum(-1))


def _grow_nearest(got: Gathered, points: np.ndarray, k: int, max_distance) -> None:
    """Read cells until every query's ``k`` nearest (within ``max_distance``) are in."""
    cKDTree = kdtree_class()
    grid = got.grid
    got.add(halos.cells_needed(grid, points, np.zeros(len(points))))
    while True:
        n = len(got.positions)
        reach = np.full(len(points), np.inf)
        if n >= k:
            d, _ = cKDTree(got.positions).query(points, k=[k])
            reach = d[:, 0]
        if max_distance is not None:
            reach = np.minimum(reach, max_distance)
        finite = np.isfinite(reach)
        new = [halos.cells_needed(grid, points[finite], reach[finite], got.loaded)]
        if not finite.all() and not got.loaded.all():
            new.append(halos.first_cells_for(grid, points[~finite], k - n if n < k else k,
                                             got.loaded))
        new = np.unique(np.concatenate(new))
        if not len(new):
            return
        got.add(new)


def nearest_group(got: Gathered, points: np.ndarray, query_rows: np.ndarray, k: int,
                  max_distance=None) -> dict:
    """The ``k`` nearest vertices of each query, ties to the smaller vertex id.

    Returns columns ``query`` (from ``query_rows``), ``rank``, ``vertex_id``,
    ``distance`` and the source's columns, sorted by query then rank; queries with
    no vertex within ``max_distance`` have no row.

    Examples
    --------
    >>> # got = Gathered(grid, source); nearest_group(got, pts, np.arange(len(pts)), k=2)
    """
    points = np.asarray(points, np.float64)
    _grow_nearest(got, points, k, max_distance)
    pos, ids = got.positions, got.ids
    n = len(pos)
    if not n or not len(points):
        return _empty(got)
    kk = min(k + 1, n)
    tree = kdtree_class()(pos)
    _, idx = tree.query(points, k=list(range(1, kk + 1)))
    rows = idx[:, :k]
    dist = _distances(pos[rows], points[:, None, :])
    if kk > k:  # a tie at the k-th distance: the smaller ids among all that tie win
        nxt = _distances(pos[idx[:, k]], points)
        for q in np.flatnonzero(nxt <= dist.max(1)):
            ball = np.asarray(tree.query_ball_point(points[q], dist[q].max() * (1 + 1e-12)),
                              np.int64)
            bd = _distances(pos[ball], points[q])
            pick = ball[np.lexsort((ids[ball], bd))][:k]
            rows[q], dist[q] = pick, _distances(pos[pick], points[q])
    order = np.lexsort((ids[rows], dist), axis=1)
    rows = np.take_along_axis(rows, order, 1)
    dist = np.take_along_axis(dist, order, 1)
    q = np.repeat(np.asarray(query_rows, np.int64), rows.shape[1])
    rank = np.tile(np.arange(rows.shape[1], dtype=np.int64), len(points))
    rows, dist = rows.ravel(), dist.ravel()
    keep = slice(None) if max_distance is None else dist <= max_distance
    rows = rows[keep]
    return {"query": q[keep], "rank": rank[keep], "vertex_id": ids[rows],
            "distance": dist[keep], **got.columns(rows)}


def within_group(got: Gathered, points: np.ndarray, query_rows: np.ndarray,
                 radius: float) -> dict:
    """Every (query, vertex) pair at distance ``<= radius``, by query then vertex id.

    Examples
    --------
    >>> # within_group(Gathered(grid, source), pts, np.arange(len(pts)), radius=50.0)
    """
    points = np.asarray(points, np.float64)
    got.add(halos.cells_needed(got.grid, points, np.full(len(points), radius)))
    pos, ids = got.positions, got.ids
    if not len(pos) or not len(points):
        return _empty(got, rank=False)
    balls = kdtree_class()(pos).query_ball_point(points, radius)
    counts = np.fromiter((len(b) for b in balls), np.int64, len(balls))
    rows = np.fromiter((r for b in balls for r in b), np.int64, int(counts.sum()))
    qpos = np.repeat(np.arange(len(points)), counts)
    order = np.lexsort((ids[rows], qpos))
    rows, qpos = rows[order], qpos[order]
    return {"query": np.asarray(query_rows, np.int64)[qpos], "vertex_id": ids[rows],
            "distance": _distances(pos[rows], points[qpos]), **got.columns(rows)}


def pairs_cell(got: Gathered, cell: int, halo: np.ndarray, radius: float, bbox=None) -> dict:
    """Pairs ``vertex_id_0 < vertex_id_1`` at distance ``<= radius`` whose smaller id
    lies in ``cell``; ``halo`` are the later cells that can hold the other end
    (:func:`zv_dask.plan.halos.pair_tasks`).  With ``bbox`` both ends lie in it.

    Examples
    --------
    >>> # pairs_cell(Gathered(grid, source), 0, np.array([1]), radius=5.0)
    """
    grid = got.grid
    got.add(np.concatenate([[cell], halo]).astype(np.int64))
    pos, ids = got.positions, got.ids
    home = (ids >= grid.starts[cell]) & (ids < grid.starts[cell] + grid.lengths[cell])
    near = halos.box_distances(pos, grid.lo[cell][None], grid.hi[cell][None])[:, 0] <= radius
    keep = home | near
    if bbox is not None:
        lo, hi = (np.asarray(b, np.float64) for b in bbox)
        keep &= np.all((pos >= lo) & (pos <= hi), 1)
    sel = np.flatnonzero(keep)
    empty = {"vertex_id_0": np.zeros(0, np.int64), "vertex_id_1": np.zeros(0, np.int64),
             "distance": np.zeros(0)}
    if len(sel) < 2:
        return empty
    p = pos[sel]
    pairs = kdtree_class()(p).query_pairs(radius, output_type="ndarray")
    if not len(pairs):
        return empty
    a, b = sel[pairs[:, 0]], sel[pairs[:, 1]]
    mine = home[a] | home[b]
    a, b = a[mine], b[mine]
    i0, i1 = np.minimum(ids[a], ids[b]), np.maximum(ids[a], ids[b])
    order = np.lexsort((i1, i0))
    return {"vertex_id_0": i0[order], "vertex_id_1": i1[order],
            "distance": _distances(pos[a], pos[b])[order]}


def _empty(got: Gathered, rank: bool = True) -> dict:
    out = {"query": np.zeros(0, np.int64)}
    if rank:
        out["rank"] = np.zeros(0, np.int64)
    out.update({"vertex_id": np.zeros(0, np.int64), "distance": np.zeros(0)})
    return out
