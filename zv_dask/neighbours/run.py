"""A whole query set, group by group, into one pandas frame (a task's or an eager
call's work): checking the input, grouping queries by home cell, the result frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zv_dask.errors import ColumnNotFoundError, QueryError
from zv_dask.neighbours import search
from zv_dask.neighbours.cells import Gathered
from zv_dask.plan import halos


def query_points(points, axes, store=None, level=None) -> np.ndarray:
    """``points`` (an (N, D) array or a pandas frame with the axis columns) as float64;
    :class:`QueryError` for a wrong number of axes, missing columns or NaN/inf."""
    axes = list(axes)
    if isinstance(points, pd.DataFrame):
        missing = [a for a in axes if a not in points.columns]
        if missing:
            raise ColumnNotFoundError(
                f"the query frame lacks the axis column(s) {missing}; it has "
                f"{list(points.columns)} (give one column per axis {axes})",
                store=store, level=level)
        arr = points[axes].to_numpy(np.float64)
    else:
        arr = np.asarray(points, np.float64)
        if arr.ndim == 1 and arr.size == len(axes):
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != len(axes):
            raise QueryError(
                f"query points must be an (N, {len(axes)}) array, one column per axis "
                f"{axes}; got shape {arr.shape}", store=store, level=level)
    bad = ~np.isfinite(arr).all(1)
    if bad.any():
        raise QueryError(
            f"{int(bad.sum())} query point(s) are NaN or infinite (first at row "
            f"{int(np.flatnonzero(bad)[0])}); drop or fill them first", store=store, level=level)
    return arr


def result_frame(parts: list, meta: pd.DataFrame) -> pd.DataFrame:
    """Concatenate result dicts into a frame with ``meta``'s columns and dtypes."""
    cols = {}
    for name, dtype in meta.dtypes.items():
        arrays = [p[name] for p in parts if name in p and len(p[name])]
        cols[name] = (np.concatenate(arrays) if arrays else np.zeros(0, dtype)).astype(
            dtype, copy=False)
    return pd.DataFrame(cols, columns=list(meta.columns))


def run_nearest(grid, source, points, query_rows, k, max_distance, meta, store=None,
                level=None) -> pd.DataFrame:
    """``nearest`` of a query set: one :class:`Gathered` search per home-cell group."""
    def search_group(got, pts, rows, home):
        return search.nearest_group(got, pts, rows, k, max_distance, home)

    return _by_group(grid, source, points, query_rows, search_group, meta, store, level,
                     ["query", "rank"])


def run_within(grid, source, points, query_rows, radius, meta, store=None,
               level=None) -> pd.DataFrame:
    """``within`` of a query set, group by group."""
    def search_group(got, pts, rows, home):
        return search.within_group(got, pts, rows, radius)

    return _by_group(grid, source, points, query_rows, search_group, meta, store, level,
                     ["query", "vertex_id"])


def _by_group(grid, source, points, query_rows, search_group, meta, store, level, by):
    """Group the queries by home cell, search each group with its own
    :class:`Gathered`, and concatenate the results sorted ``by``."""
    points = np.asarray(points, np.float64)
    query_rows = np.asarray(query_rows, np.int64)
    parts = []
    for home, rows in halos.group_queries(halos.home_cells(grid, points)):
        got = Gathered(grid, source, store, level)
        parts.append(search_group(got, points[rows], query_rows[rows], home))
    return _sorted(result_frame(parts, meta), by)


class _RunCells:
    """A source that keeps each cell a run of pair tasks loads until its last task
    is done: a run reads every cell once, holding a halo's window of cells."""

    def __init__(self, source, tasks):
        self.source = source
        self.left: dict = {}
        for c, h in tasks:
            for cell in [c, *np.asarray(h).tolist()]:
                self.left[int(cell)] = self.left.get(int(cell), 0) + 1
        self.kept: dict = {}

    def load_cells(self, grid, cells) -> list:
        cells = [int(c) for c in cells]
        todo = [c for c in cells if c not in self.kept]
        for c, part in zip(todo, self.source.load(grid.coords[todo].tolist())):
            self.kept[c] = part
        out = [self.kept[c] for c in cells]
        for c in cells:
            self.left[c] -= 1
            if self.left[c] <= 0:
                self.kept.pop(c, None)
        return out


class _CellsOf:
    """The ``load(coords)`` face of a :class:`_RunCells` for one grid."""

    def __init__(self, run: _RunCells, grid):
        self.run, self.grid = run, grid
        self.index = {tuple(c): i for i, c in enumerate(grid.coords.tolist())}

    def load(self, coords) -> list:
        return self.run.load_cells(self.grid, [self.index[tuple(c)] for c in coords])


def run_pairs(grid, source, tasks, radius, bbox, meta, store=None, level=None) -> pd.DataFrame:
    """The self-join over some ``(cell, halo)`` tasks of :func:`halos.pair_tasks`,
    each cell read once for the run."""
    cells = _CellsOf(_RunCells(source, tasks), grid)
    parts = [search.pairs_cell(Gathered(grid, cells, store, level), c, h, radius, bbox)
             for c, h in tasks]
    return _sorted(result_frame(parts, meta), ["vertex_id_0", "vertex_id_1"])


def batches(tasks, grid, rows: int = 1 << 19) -> list:
    """Consecutive pair tasks in runs of about ``rows`` home rows (one dask task each)."""
    out, run, n = [], [], 0
    for t in tasks:
        run.append(t)
        n += int(grid.lengths[t[0]])
        if n >= rows:
            out.append(run)
            run, n = [], 0
    if run:
        out.append(run)
    return out


def _sorted(df: pd.DataFrame, by: list) -> pd.DataFrame:
    if len(df) < 2:
        return df.reset_index(drop=True)
    return df.sort_values(by, kind="stable", ignore_index=True)
