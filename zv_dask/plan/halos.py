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
from zv_dask.plan.cellindex import CellIndex, ranges as _ranges
from zv_dask.plan.cellindex import pad as reach_pad

_BLOCK = 1 << 22  # elements of one (queries x cells) distance block
_SCAN = 2048  # grids up to this many cells are scanned: cheaper than index look-ups


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

    def __post_init__(self):
        object.__setattr__(self, "index", CellIndex(self.spatial, self.lo, self.hi))

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

    def cells_near(self, lo, hi, reach: float) -> np.ndarray:
        """Grid indices (sorted) of a superset of the cells whose box lies within
        ``reach`` of the box ``[lo, hi]`` on every axis: an index look-up, not a scan."""
        if len(self) <= _SCAN:
            return np.arange(len(self))
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        pad = reach_pad(lo, hi, reach)
        return self.index.cells_in(*self.index.rank_range(lo - reach - pad, hi + reach + pad))


def level_grid(lm: LevelMeta, coords, lengths) -> NeighbourGrid:
    """The :class:`NeighbourGrid` of a level from its planned cells (presence order,
    as ``store.read`` concatenates them) and their rows.

    Examples
    --------
    >>> # grid = level_grid(lm, lm.presence.coords(), rows_per_cell); grid.lo, grid.hi
    """
    coords = np.asarray(coords, np.int64).reshape(-1, lm.rank)
    lead = lm.rank - len(lm.chunk_shape)
    lo, hi = _axis_boxes(_select.cell_rule(lm), coords[:, lead:])
    lengths = np.asarray(lengths, np.int64).reshape(len(coords))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    keep = lengths > 0  # a listed cell without rows cannot hold a neighbour
    return NeighbourGrid(coords[keep], lo[keep], hi[keep], starts[keep], lengths[keep],
                         _select.cell_rule(lm))


def _axis_boxes(rule, cells: np.ndarray):
    """:func:`~zv_dask.plan.select.cell_boxes` of each cell, computed once per distinct
    cell number of each axis (a box's side depends on that axis's number only)."""
    cols = [np.unique(cells[:, d], return_inverse=True) for d in range(cells.shape[1])]
    width = max([len(u) for u, _ in cols], default=0)
    table = np.stack([np.resize(u, width) for u, _ in cols], 1) if width else cells
    lo, hi = _select.cell_boxes(rule, table)
    d = np.arange(cells.shape[1])
    inv = np.stack([i.reshape(-1) for _, i in cols], 1) if cols else cells
    return lo[inv, d], hi[inv, d]


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
    """Index of the nearest cell box (smallest index on ties).

    Few points or cells: blockwise over all boxes.  Else a KD-tree over the box
    centres bounds each point's nearest box distance by its nearest centre's ``u``;
    every box that near has its centre within ``u`` plus the largest half diagonal,
    so the exact distances of those candidates decide, as the scan would.
    """
    out = np.empty(len(points), np.int64)
    if len(points) * len(grid) <= _BLOCK:
        return box_distances(points, grid.lo, grid.hi).argmin(1) if len(points) else out
    from scipy.spatial import cKDTree  # a planning helper only; searches need scipy anyway

    centre = (grid.lo + grid.hi) / 2
    half = float(np.sqrt((((grid.hi - grid.lo) / 2) ** 2).sum(1)).max())
    tree = cKDTree(centre)
    step = max(1, _BLOCK // 64)
    for s in range(0, len(points), step):
        p = points[s:s + step]
        u, _ = tree.query(p)
        balls = tree.query_ball_point(p, (u + half) * (1 + 1e-9) + 1e-300)
        counts = np.fromiter((len(b) for b in balls), np.int64, len(balls))
        cand = np.fromiter((c for b in balls for c in b), np.int64, int(counts.sum()))
        who = np.repeat(np.arange(len(p)), counts)
        gap = np.maximum(np.maximum(grid.lo[cand] - p[who], p[who] - grid.hi[cand]), 0.0)
        d = np.sqrt((gap * gap).sum(-1))
        order = np.lexsort((cand, d, who))
        first = np.searchsorted(who[order], np.arange(len(p)))
        out[s:s + step] = cand[order[first]]
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
                 exclude: np.ndarray | None = None, reaching: bool = False):
    """Indices of the cells (grid order) whose box lies within ``reach[i]`` (closed)
    of some ``points[i]``, leaving out the cells flagged in ``exclude``; with
    ``reaching`` also the mask of the points that reach one of them.

    A first cut by the queries' common box, looked up in the grid's index, keeps
    the (queries x cells) work to the cells near the group.

    Examples
    --------
    >>> g = NeighbourGrid(np.array([[0], [2]]), np.array([[0.0], [2.0]]),
    ...                   np.array([[1.0], [3.0]]), np.array([0, 5]), np.array([5, 5]), None)
    >>> cells_needed(g, np.array([[0.5]]), np.array([1.5])).tolist()
    [0, 1]
    """
    points = np.asarray(points, np.float64)
    reach = np.asarray(reach, np.float64)
    none = np.zeros(0, np.int64)
    if not len(points) or not len(grid):
        return (none, np.zeros(len(points), bool)) if reaching else none
    far = float(reach.max())
    lo, hi = points.min(0), points.max(0)
    cand = grid.cells_near(lo, hi, far)
    near = box_distances(np.zeros((1, lo.size)), grid.lo[cand] - hi, grid.hi[cand] - lo)[0] <= far
    if exclude is not None:
        near &= ~exclude[cand]
    cand = cand[near]
    hit = np.zeros(len(cand), bool)
    reached = np.zeros(len(points), bool)
    step = max(1, _BLOCK // max(len(cand), 1))
    for s in range(0, len(points) if len(cand) else 0, step):
        within = boxes_within(points[s:s + step], grid.lo[cand], grid.hi[cand],
                              reach[s:s + step])
        hit |= within.any(0)
        reached[s:s + step] = within.any(1)
    return (cand[hit], reached) if reaching else cand[hit]


def first_cells_for(grid: NeighbourGrid, points: np.ndarray, k: int,
                    exclude: np.ndarray) -> np.ndarray:
    """Unread cells, nearest (to the queries' common box) first, until they hold at
    least ``k`` more rows: what to read when too few neighbours have been found.

    The candidates come from index look-ups around the box, widened until they hold
    ``k`` rows and then to the distance of the cell that reaches ``k``: the same
    cells as sorting every unread cell, without the sort.

    Examples
    --------
    >>> g = NeighbourGrid(np.array([[0], [2]]), np.array([[0.0], [2.0]]),
    ...                   np.array([[1.0], [3.0]]), np.array([0, 5]), np.array([5, 5]), None)
    >>> first_cells_for(g, np.array([[0.5]]), 3, np.array([True, False])).tolist()
    [1]
    """
    points = np.asarray(points, np.float64)
    lo, hi = points.min(0), points.max(0)
    index = grid.index
    a, b = index.rank_range(lo, hi)
    a, b = np.minimum(a, b), np.maximum(a, b)  # a box between cells: the ranks around it
    widen, whole = 1, max(index.shape, default=0)
    while True:
        cand = index.cells_in(a - widen, b + widen)
        cand = cand[~exclude[cand]]
        if grid.lengths[cand].sum() >= k or widen > whole:
            break
        widen *= 2
    if len(cand) and grid.lengths[cand].sum() >= k:
        cand, d = _by_distance(grid, cand, lo, hi)
        enough = int(np.searchsorted(np.cumsum(grid.lengths[cand]), k))
        cand = grid.cells_near(lo, hi, float(d[enough]))  # every cell as near as that one
        cand = cand[~exclude[cand]]
    cand, _ = _by_distance(grid, cand, lo, hi)
    enough = np.searchsorted(np.cumsum(grid.lengths[cand]), k) + 1
    return np.sort(cand[:enough])


def _by_distance(grid, cand, lo, hi):
    """``cand`` (sorted) ordered by box distance to the box ``[lo, hi]``, ties in order."""
    d = box_distances(np.zeros((1, lo.size)), grid.lo[cand] - hi, grid.hi[cand] - lo)[0]
    order = np.argsort(d, kind="stable")
    return cand[order], d[order]


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
    cells = np.flatnonzero(keep)
    found = _pair_candidates(grid, cells, radius)
    if found is None:
        return _pair_tasks_scan(grid, radius, keep)
    owner, other = found
    ok = (other > owner) & keep[other]
    owner, other = owner[ok], other[ok]
    d = _pair_gaps(grid, owner, other)
    owner, other = owner[d <= radius], other[d <= radius]
    order = np.lexsort((other, owner))
    owner, other = owner[order], other[order]
    cuts = np.searchsorted(owner, cells, "left"), np.searchsorted(owner, cells, "right")
    return [(int(c), other[s:e]) for c, s, e in zip(cells.tolist(), *cuts)]


def _pair_gaps(grid, owner, other) -> np.ndarray:
    """Box distance of each (owner, other) cell pair, as :func:`box_distances` has it."""
    gap = np.maximum(np.maximum(grid.lo[other] - grid.hi[owner], -(grid.hi[other] -
                                                                   grid.lo[owner])), 0.0)
    return np.sqrt((gap * gap).sum(-1))


_LOOKUPS = 1 << 24  # index look-ups of one pair plan; more: scan instead


def _pair_candidates(grid, cells, radius):
    """(owner, other) cell pairs, a superset of the pairs whose boxes lie within
    ``radius`` on every axis: per owner the index runs of its neighbourhood (a few
    look-ups per cell), or ``None`` when that would take more than a scan."""
    index = grid.index
    if index.keys is None or not len(cells):
        return None if len(cells) else (cells, cells)
    lo, hi = grid.lo[cells], grid.hi[cells]
    pad = reach_pad(lo, hi, radius)
    a, b = index.rank_range(lo - radius - pad, hi + radius + pad)
    width = (b - a + 1)[:, :-1].max(0) if a.shape[1] > 1 else np.zeros(0, np.int64)
    outer = int(np.prod(width))
    if len(cells) * outer > _LOOKUPS:
        return None
    steps = np.stack([g.ravel() for g in np.meshgrid(*[np.arange(w) for w in width],
                                                      indexing="ij")], 1) \
        if len(width) else np.zeros((1, 0), np.int64)
    head = a[:, None, :-1] + steps[None]                       # (cells, outer, D-1)
    ok = np.all(head <= b[:, None, :-1], -1)
    who = np.broadcast_to(np.arange(len(cells))[:, None], ok.shape)[ok]
    head = head[ok]
    first = np.ravel_multi_index((*head.T, a[who, -1]), index.shape)
    last = first + (b[who, -1] - a[who, -1])
    s = np.searchsorted(index.keys, first, "left")
    e = np.searchsorted(index.keys, last, "right")
    owner = np.repeat(cells[who], np.maximum(e - s, 0))
    return owner, index.order[_ranges(s, e)]


def _pair_tasks_scan(grid, radius, keep) -> list:
    """:func:`pair_tasks` by scanning the later cells of each cell (no index)."""
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
        out.append((c, later[_pair_gaps(grid, np.full(len(later), c), later) <= radius]))
    return out
