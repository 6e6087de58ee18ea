"""Exact neighbour searches of one query group (or one cell, for the self-join).

A group starts with the cells its queries fall in or touch, searches them with a
KD-tree, and reads more cells only while some query's ``k``-th distance reaches a
cell not read yet (:func:`zv_dask.plan.halos.cells_needed`): the answer is the
whole level's, from a neighbourhood of chunks.
"""

from __future__ import annotations

import numpy as np

from zv_dask.neighbours.cells import Gathered, in_box, kdtree
from zv_dask.plan import halos

def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return np.sqrt((d * d).sum(-1))


def _merge(best_d, best_r, d, r, ids, keep):
    """The ``keep`` best (distance, then vertex id) of two candidate lists per query."""
    if not np.isfinite(best_d[:, 0]).any():  # nothing found before: the new lists are it
        return d, r
    cd = np.concatenate([best_d, d], 1)
    cr = np.concatenate([best_r, r], 1)
    big = np.iinfo(np.int64).max
    cid = np.where(cr >= 0, ids[np.maximum(cr, 0)], big)
    order = np.lexsort((cid, cd), axis=1)[:, :keep]
    return np.take_along_axis(cd, order, 1), np.take_along_axis(cr, order, 1)


def _reach_box(points, reach, active):
    """The closed box of every row within ``reach`` of an active query, or ``None``
    (keep all rows) while an active query has no finite reach yet."""
    if not active.any() or not np.isfinite(reach[active]).all():
        return None
    far = float(reach[active].max())
    qa = points[active]
    lo, hi = qa.min(0), qa.max(0)
    pad = halos.reach_pad(lo, hi, far)
    return lo - far - pad, hi + far + pad


def _search_new(got, points, best_d, best_r, reach, new, kk, active=None):
    """Read the ``new`` cells (their rows within reach of the ``active`` queries, by
    default those that can reach one of them) and fold those rows into the
    candidates of those queries."""
    grid = got.grid
    finite = np.isfinite(reach)
    if active is None:
        active = np.ones(len(points), bool)
        if finite.any():
            active[finite] = halos.boxes_within(points[finite], grid.lo[new], grid.hi[new],
                                                reach[finite]).any(1)
    start = got.add(new, _reach_box(points, reach, active))
    act = np.flatnonzero(active)
    n_new = got.n_rows - start
    if not n_new or not len(act):
        return best_d, best_r
    pos, ids = got.positions, got.ids
    m = min(kk, n_new)
    bound = np.where(finite[act], np.nextafter(reach[act], np.inf) * (1 + 1e-9), np.inf)
    d, i = kdtree(pos[start:]).query(points[act], k=list(range(1, m + 1)),
                                     distance_upper_bound=np.max(bound))
    hit = i < n_new
    r = np.where(hit, start + np.minimum(i, n_new - 1), -1)
    d = np.where(hit, d, np.inf)
    if m < kk:
        d = np.concatenate([d, np.full((len(act), kk - m), np.inf)], 1)
        r = np.concatenate([r, np.full((len(act), kk - m), -1, np.int64)], 1)
    best_d, best_r = best_d.copy(), best_r.copy()
    best_d[act], best_r[act] = _merge(best_d[act], best_r[act], d, r, ids, kk)
    return best_d, best_r


def nearest_group(got: Gathered, points: np.ndarray, query_rows: np.ndarray, k: int,
                  max_distance=None, home: int | None = None) -> dict:
    """The ``k`` nearest vertices of each query, ties to the smaller vertex id.

    Reads the cells the queries fall in (or the group's ``home`` cell), then,
    while some query's ``k``-th distance reaches an unread cell, those cells (only
    their rows within reach); each step builds a KD-tree over the new rows only and
    merges the candidates.

    Returns columns ``query`` (from ``query_rows``), ``rank``, ``vertex_id``,
    ``distance`` and the source's columns, sorted by query then rank; queries with
    no vertex within ``max_distance`` have no row.

    Examples
    --------
    >>> # got = Gathered(grid, source); nearest_group(got, pts, np.arange(len(pts)), k=2)
    """
    points = np.asarray(points, np.float64)
    grid, Q, kk = got.grid, len(points), k + 1
    best_d, best_r = np.full((Q, kk), np.inf), np.full((Q, kk), -1, np.int64)
    reach = np.full(Q, np.inf if max_distance is None else float(max_distance))
    new = np.asarray([home], np.int64) if home is not None else \
        halos.cells_needed(grid, points, np.zeros(Q))
    settled, active = False, None
    while len(new):
        best_d, best_r = _search_new(got, points, best_d, best_r, reach, new, kk, active)
        if settled:  # ``new`` held every cell within every query's (shrinking) reach
            break
        reach = best_d[:, k - 1].copy()
        if max_distance is not None:
            reach = np.minimum(reach, max_distance)
        finite = np.isfinite(reach)
        settled = bool(finite.all())
        needed, reached = halos.cells_needed(grid, points[finite], reach[finite], got.loaded,
                                             reaching=True)
        active = ~finite  # the queries without k neighbours yet, and those reaching a new cell
        active[finite] = reached
        new = [needed]
        if not settled and not got.loaded.all():
            new.append(halos.first_cells_for(grid, points[~finite], k, got.loaded))
        new = np.unique(np.concatenate(new)).astype(np.int64)
    pos, ids = got.positions, got.ids
    if not len(pos) or not Q:
        return _empty(got)
    rows = best_r
    dist = np.where(rows >= 0, _distances(pos[np.maximum(rows, 0)], points[:, None, :]), np.inf)
    tied = np.flatnonzero(np.isfinite(dist[:, k]) & (dist[:, k] <= dist[:, :k].max(1)))
    if len(tied):  # a tie at the k-th distance: the smaller ids among all that tie win
        tree = kdtree(pos)
        for q in tied.tolist():
            ball = np.asarray(tree.query_ball_point(points[q], dist[q, :k].max() * (1 + 1e-12)),
                              np.int64)
            bd = _distances(pos[ball], points[q])
            pick = ball[np.lexsort((ids[ball], bd))][:k]
            rows[q, :k], dist[q, :k] = pick, _distances(pos[pick], points[q])
    rows, dist = rows[:, :k], dist[:, :k]
    big = np.iinfo(np.int64).max
    order = np.lexsort((np.where(rows >= 0, ids[np.maximum(rows, 0)], big), dist), axis=1)
    rows = np.take_along_axis(rows, order, 1).ravel()
    dist = np.take_along_axis(dist, order, 1).ravel()
    q = np.repeat(np.asarray(query_rows, np.int64), k)
    rank = np.tile(np.arange(k, dtype=np.int64), Q)
    keep = rows >= 0
    if max_distance is not None:
        keep &= dist <= max_distance
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
    balls = kdtree(pos).query_ball_point(points, radius)
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
    lo, hi = grid.lo[cell] - radius, grid.hi[cell] + radius
    home, near = None, []
    for pos, ids, _ in got.parts:
        if ids[0] == grid.starts[cell]:
            home = (pos, ids)
            continue
        inside = in_box(pos, lo, hi)  # a superset; the trees decide
        if inside.any():
            near.append((pos[inside], ids[inside]))
    if bbox is not None:
        blo, bhi = (np.asarray(b, np.float64) for b in bbox)
        home, *near = [(p[m], i[m]) for p, i in [home] + near
                       for m in [np.all((p >= blo) & (p <= bhi), 1)]]
    hp, hid = home
    tree = kdtree(hp)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    i0, i1 = [hid[pairs[:, 0]]], [hid[pairs[:, 1]]]
    dist = [_distances(hp[pairs[:, 0]], hp[pairs[:, 1]])]
    if near:
        np_, nid = (np.concatenate(x) for x in zip(*near))
        cross = tree.sparse_distance_matrix(kdtree(np_), radius, output_type="ndarray")
        i0.append(hid[cross["i"]])
        i1.append(nid[cross["j"]])
        dist.append(_distances(hp[cross["i"]], np_[cross["j"]]))
    a, b, dist = np.concatenate(i0), np.concatenate(i1), np.concatenate(dist)
    v0, v1 = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((v1, v0))
    return {"vertex_id_0": v0[order], "vertex_id_1": v1[order], "distance": dist[order]}


def _empty(got: Gathered, rank: bool = True) -> dict:
    out = {"query": np.zeros(0, np.int64)}
    if rank:
        out["rank"] = np.zeros(0, np.int64)
    out.update({"vertex_id": np.zeros(0, np.int64), "distance": np.zeros(0)})
    return out
