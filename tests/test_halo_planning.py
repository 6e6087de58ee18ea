"""Halo planning through the grid's cell index answers as scanning every cell does,
on synthetic presence lists (pure planning: no store)."""

from __future__ import annotations

import numpy as np
import pytest

from zv_dask.plan import halos
from zv_dask.plan.select import CellRule, cell_boxes


def _grid(seed, n_cells, side, lead=0, bins=False):
    """A random presence list of ``n_cells`` spatial cells in a ``side``^3 block with a
    negative origin; with ``lead`` a leading attribute axis repeats some cells."""
    rng = np.random.default_rng(seed)
    cube = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    spatial = cube[np.sort(rng.choice(len(cube), n_cells, replace=False))] - side // 3
    if lead:
        spatial = np.concatenate([spatial, spatial[rng.random(len(spatial)) < 0.4]])
        head = np.repeat(np.arange(2), [n_cells, len(spatial) - n_cells])[:, None]
        coords = np.concatenate([head, spatial], 1)
    else:
        coords = spatial
    rule = CellRule(np.full(3, 7.0), np.full(3, 2.5), np.full(3, 3)) if bins \
        else CellRule(np.full(3, 7.0))
    lo, hi = cell_boxes(rule, spatial)
    lengths = rng.integers(0, 6, len(coords))
    lengths[0] = 1
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return halos.NeighbourGrid(coords, lo, hi, starts, lengths, rule), rng


CASES = [dict(seed=1, n_cells=300, side=12), dict(seed=2, n_cells=60, side=30),
         dict(seed=3, n_cells=400, side=10, lead=1), dict(seed=4, n_cells=250, side=14, bins=True)]


@pytest.mark.parametrize("case", CASES)
def test_cells_needed_equals_a_scan(case):
    grid, rng = _grid(**case)
    span = 7.0 * case["side"]
    for _ in range(40):
        centre = rng.uniform(-span / 2, span, 3)
        q = centre + rng.normal(0, rng.choice([0.5, 5.0, 30.0]), (int(rng.integers(1, 20)), 3))
        reach = rng.uniform(0, rng.choice([1.0, 10.0, 1e3]), len(q))
        exclude = rng.random(len(grid)) < 0.3
        want = np.flatnonzero(halos.boxes_within(q, grid.lo, grid.hi, reach).any(0) & ~exclude)
        assert halos.cells_needed(grid, q, reach, exclude).tolist() == want.tolist()


@pytest.mark.parametrize("case", CASES)
def test_first_cells_for_equals_sorting_every_cell(case):
    grid, rng = _grid(**case)
    span = 7.0 * case["side"]
    for _ in range(40):
        q = rng.uniform(-span, 2 * span, (int(rng.integers(1, 5)), 3))
        k = int(rng.integers(1, 80))
        exclude = rng.random(len(grid)) < 0.5
        lo, hi = q.min(0), q.max(0)
        d = halos.box_distances(np.zeros((1, 3)), grid.lo - hi, grid.hi - lo)[0]
        cand = np.flatnonzero(~exclude)
        cand = cand[np.argsort(d[cand], kind="stable")]
        want = np.sort(cand[:np.searchsorted(np.cumsum(grid.lengths[cand]), k) + 1])
        assert halos.first_cells_for(grid, q, k, exclude).tolist() == want.tolist()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("radius", [0.5, 7.0, 20.0])
def test_pair_tasks_equal_all_pairs_of_boxes(case, radius):
    grid, rng = _grid(**case)
    bbox = (np.full(3, -10.0), np.full(3, 30.0))
    for box in (None, bbox):
        keep = np.ones(len(grid), bool) if box is None else \
            np.all((grid.lo <= box[1]) & (grid.hi >= box[0]), 1)
        want = []
        for c in np.flatnonzero(keep):
            later = np.flatnonzero(keep[c + 1:]) + c + 1
            d = halos.box_distances(np.zeros((1, 3)), grid.lo[later] - grid.hi[c],
                                    grid.hi[later] - grid.lo[c])[0]
            want.append((int(c), later[d <= radius].tolist()))
        got = [(c, h.tolist()) for c, h in halos.pair_tasks(grid, radius, box)]
        assert got == want


def test_pair_tasks_without_the_index_scan_alike(monkeypatch):
    grid, _ = _grid(**CASES[0])
    want = [(c, h.tolist()) for c, h in halos.pair_tasks(grid, 9.0)]
    monkeypatch.setattr(halos, "_LOOKUPS", 0)   # too many look-ups: the scan instead
    assert [(c, h.tolist()) for c, h in halos.pair_tasks(grid, 9.0)] == want


@pytest.mark.parametrize("case", CASES)
def test_home_cells_equal_a_scan(case):
    grid, rng = _grid(**case)
    span = 7.0 * case["side"]
    # enough points that the nearest box of those in empty cells goes through the tree
    q = np.concatenate([rng.uniform(-span, 2 * span, (halos._BLOCK // len(grid) + 2000, 3)),
                        np.round(rng.uniform(-span, span, (2000, 3)) / 7.0) * 7.0])
    home = halos.home_cells(grid, q)
    d = halos.box_distances(q, grid.lo, grid.hi)
    rest = d[np.arange(len(q)), home] > 0          # not in a listed cell: the nearest box
    assert rest.sum() * len(grid) > halos._BLOCK    # (through the tree of box centres)
    assert np.array_equal(home[rest], d[rest].argmin(1))
