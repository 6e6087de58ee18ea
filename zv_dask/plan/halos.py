"""Pure halo planning for neighbour searches: which non-empty cells a query can need.

Everything here comes from metadata: the level's presence list, its cell rule (the
exact closed float64 box of each cell, :func:`~zv_dask.plan.select.cell_boxes`) and
the rows per cell.  Empty cells are never listed, so empty regions cost nothing.

A search that has found, for query ``q``, a ``k``-th distance ``d`` among the cells
it has read needs only the unread cells whose box lies within ``d`` of ``q``
(every row of a cell lies in its box); :func:`cells_needed` names them.  Distances
tie at ``d``, so a cell exactly ``d`` away is needed too (ties go to the smaller
vertex id, which may live there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zv_dask.format.metadata import LevelMeta
from zv_dask.plan import select as _select

_BLOCK = 1 << 22  # elements of one (queries x cells) distance block


@dataclass(frozen=True, eq=False)
class NeighbourGrid:
    """The non-empty cells of a level, as a neighbour search sees them.

    ``coords`` (K, rank) are the presence list's cells in its (level-wide row) order;
    ``lo``/``hi`` (K, D) their closed spatial boxes; ``starts`` the level-wide row of
    each cell's first vertex (row order of ``store.read``) and ``lengths`` its rows.
    """

    coords: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    rule: _select.CellRule

    @property
    def spatial(self) -> np.ndarray:
        return self.coords[:, self.coords.shape[1] - self.lo.shape[1]:]

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def n_vertices(self) -> int:
        return int(self.lengths.sum())

    def __dask_tokenize__(self):
        from hashlib import sha1

        h = sha1()
        for a in (self.coords, self.lo, self.hi, self.starts, self.lengths):
            h.update(np.ascontiguousarray(a).tobytes())
        return ("zv_dask.NeighbourGrid", h.hexdigest())


def level_grid(lm: LevelMeta, coords, lengths) -> NeighbourGrid:
    """The :class:`NeighbourGrid` of a level from its planned cells (presence order,
    as ``store.read`` concatenates them) and their rows.

    Examples
    --------
    >>> # grid = level_grid(lm, lm.presence.coords(), rows_per_cell); grid.lo, grid.hi
    """
    coords = np.asarray(coords, np.int64).reshape(-1, lm.rank)
    lead = lm.rank - len(lm.chunk_shape)
    lo, hi = _select.cell_boxes(_select.cell_rule(lm), coords[:, lead:])
    lengths = np.asarray(lengths, np.int64).reshape(len(coords))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    keep = lengths > 0  # a listed cell without rows cannot hold a neighbour
    return NeighbourGrid(coords[keep], lo[keep], hi[keep], starts[keep], lengths[keep],
                         _select.cell_rule(lm))


def box_distances(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point (N, D) to each closed box (K, D): (N, K).

    Examples
    --------
    >>> box_distances(np.array([[3.0, 0.0]]), np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]))
    array([[2.]])
    """
    p = np.asarray(points, np.float64)[:, None, :]
    gap = np.maximum(np.maximum(lo[None] - p, p - hi[None]), 0.0)
    return np.sqrt((gap * gap).sum(-1))


def boxes_within(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, reach) -> np.ndarray:
    """(N, K) mask: box k lies within ``reach[n]`` (closed) of point n.

    Compares squared gaps (no square roots), widened by a few ulps so that rounding
    can only add a box, never drop one.

    Examples
    --------
    >>> boxes_within(np.array([[3.0, 0.0]]), np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]),
    ...              np.array([2.0])).tolist()
    [[True]]
    """
    p = np.asarray(points, np.float64)[:, None, :]
    gap = np.maximum(np.maximum(lo[None] - p, p - hi[None]), 0.0)
    r = np.asarray(reach, np.float64)[:, None]
    return (gap * gap).sum(-1) <= r * r * (1 + 1e-12)


def _nearest_box(points: np.ndarray, grid: NeighbourGrid) -> np.ndarray:
    """Index of the nearest cell box (smallest index on ties), blockwise in memory."""
    out = np.empty(len(points), np.int64)
    step = max(1, _BLOCK // max(len(grid), 1))
    for s in range(0, len(points), step):
        out[s:s + step] = box_distances(points[s:s + step], grid.lo, grid.hi).argmin(1)
    return out


def home_cells(grid: NeighbourGrid, points: np.ndarray) -> np.ndarray:
    """The cell a query belongs to: the non-empty cell whose box holds it, else
    (an empty cell, outside the store's bounds) the nearest non-empty cell.

    Examples
    --------
    >>> from zv_dask.plan.select import CellRule
    >>> g = NeighbourGrid(np.array([[0], [2]]), np.array([[0.0], [2.0]]),
    ...                   np.array([[1.0], [3.0]]), np.array([0, 5]), np.array([5, 5]),
    ...                   CellRule(np.array([1.0])))
    >>> home_cells(g, np.array([[0.5], [2.9], [9.0], [-4.0]])).tolist()
    [0, 1, 1, 0]
    """
    points = np.asarray(points, np.float64)
    home = np.full(len(points), -1, np.int64)
    if not len(grid) or not len(points):
        return home
    # the cell a writer puts the point in, looked up among the non-empty cells by
    # their row-major number in the box of the non-empty cells
    inside = np.zeros(len(points), bool)
    first, last = grid.spatial.min(0), grid.spatial.max(0)
    shape = last - first + 1
    keys = np.ravel_multi_index((grid.spatial - first).T, shape)
    order = np.argsort(keys, kind="stable")  # the first of equal keys: the smaller index
    sorted_keys = keys[order]
    for cells in _select.writer_cells(grid.rule, points):
        ok = ~inside & np.all((cells >= first) & (cells <= last), 1)
        key = np.ravel_multi_index((cells[ok] - first).T, shape)
        at = np.minimum(np.searchsorted(sorted_keys, key), len(keys) - 1)
        hit = sorted_keys[at] == key
        idx = np.flatnonzero(ok)[hit]
        home[idx], inside[idx] = order[at[hit]], True
    rest = np.flatnonzero(~inside)
    if len(rest):
        home[rest] = _nearest_box(points[rest], grid)
    return home


def group_queries(home: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``[(cell, query rows)]``: the queries of each home cell, cells in grid order.

    Examples
    --------
    >>> [(c, q.tolist()) for c, q in group_queries(np.array([1, 0, 1]))]
    [(0, [1]), (1, [0, 2])]
    """
    order = np.argsort(home, kind="stable")
    cells, starts = np.unique(home[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    return [(int(c), order[s:e]) for c, s, e in zip(cells, starts, ends)]


def cells_needed(grid: NeighbourGrid, points: np.ndarray, reach: np.ndarray,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the cells (grid order) whose box lies within ``reach[i]`` (closed)
    of some ``points[i]``, leaving out the cells flagged in ``exclude``.

    A first cut by the queries' common box keeps the (queries x cells) work to the
    cells near the group.

    Examples
    --------
    >>> g = NeighbourGrid(np.array([[0], [2]]), np.array([[0.0], [2.0]]),
    ...                   np.array([[1.0], [3.0]]), np.array([0, 5]), np.array([5, 5]), None)
    >>> cells_needed(g, np.array([[0.5]]), np.array([1.5])).tolist()
    [0, 1]
    """
    points = np.asarray(points, np.float64)
    reach = np.asarray(reach, np.float64)
    if not len(points) or not len(grid):
        return np.zeros(0, np.int64)
    far = float(reach.max())
    lo, hi = points.min(0), points.max(0)
    near = box_distances(np.zeros((1, lo.size)), grid.lo - hi, grid.hi - lo)[0] <= far
    if exclude is not None:
        near &= ~exclude
    cand = np.flatnonzero(near)
    if not len(cand):
        return cand
    hit = np.zeros(len(cand), bool)
    step = max(1, _BLOCK // len(cand))
    for s in range(0, len(points), step):
        hit |= boxes_within(points[s:s + step], grid.lo[cand], grid.hi[cand],
                            reach[s:s + step]).any(0)
    return cand[hit]


def first_cells_for(grid: NeighbourGrid, points: np.ndarray, k: int,
                    exclude: np.ndarray) -> np.ndarray:
    """Unread cells, nearest (to the queries' common box) first, until they hold at
    least ``k`` more rows: what to read when too few neighbours have been found.

    Examples
    --------
    >>> g = NeighbourGrid(np.array([[0], [2]]), np.array([[0.0], [2.0]]),
    ...                   np.array([[1.0], [3.0]]), np.array([0, 5]), np.array([5, 5]), None)
    >>> first_cells_for(g, np.array([[0.5]]), 3, np.array([True, False])).tolist()
    [1]
    """
    points = np.asarray(points, np.float64)
    lo, hi = points.min(0), points.max(0)
    d = box_distances(np.zeros((1, lo.size)), grid.lo - hi, grid.hi - lo)[0]
    cand = np.flatnonzero(~exclude)
    cand = cand[np.argsort(d[cand], kind="stable")]
    enough = np.searchsorted(np.cumsum(grid.lengths[cand]), k) + 1
    return np.sort(cand[:enough])


def pair_tasks(grid: NeighbourGrid, radius: float, bbox=None) -> list[tuple[int, np.ndarray]]:
    """``[(cell, halo cells)]`` of a self-join: each cell meeting ``bbox`` with the
    later cells (grid order) whose box lies within ``radius`` of its box.

    A pair is found by the cell of its smaller vertex id (ids grow with grid order),
    so a halo looks forward only and every pair is found once.

    Examples
    --------
    >>> g = NeighbourGrid(np.array([[0], [1], [5]]), np.array([[0.0], [1.0], [5.0]]),
    ...                   np.array([[0.9], [1.9], [5.9]]), np.array([0, 5, 9]),
    ...                   np.array([5, 4, 2]), None)
    >>> [(c, h.tolist()) for c, h in pair_tasks(g, 0.5)]
    [(0, [1]), (1, []), (2, [])]
    """
    keep = np.ones(len(grid), bool)
    if bbox is not None:
        blo, bhi = (np.asarray(b, np.float64) for b in bbox)
        keep = np.all((grid.lo <= bhi) & (grid.hi >= blo), 1)
    # in grid order the first spatial axis never decreases (without a leading
    # attribute axis), so the later cells a halo can reach end at a searchsorted bound
    first_lo = grid.lo[:, 0]
    ordered = len(grid) < 2 or bool((np.diff(first_lo) >= 0).all())
    out = []
    for c in np.flatnonzero(keep).tolist():
        end = len(grid)
        if ordered:
            end = int(np.searchsorted(first_lo, grid.hi[c, 0] + radius, side="right"))
        later = np.flatnonzero(keep[c + 1:end]) + c + 1
        d = box_distances(np.zeros((1, grid.lo.shape[1])), grid.lo[later] - grid.hi[c],
                          grid.hi[later] - grid.lo[c])[0]
        out.append((c, later[d <= radius]))
    return out
