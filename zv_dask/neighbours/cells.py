"""The rows a search has read so far: positions, level-wide vertex ids, columns."""

from __future__ import annotations

import numpy as np

from zv_dask.errors import MissingDependencyError, StoreReadError
from zv_dask.plan.halos import NeighbourGrid
from zv_dask.read.level import attr_key, decode_categorical_columns


def kdtree_class():
    """scipy's ``cKDTree``, or :class:`MissingDependencyError` saying how to get it."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        raise MissingDependencyError(
            "neighbour searches need scipy: pip install scipy "
            "(or pip install 'zv_dask[neighbours]')") from None
    return cKDTree


def kdtree(points):
    """A KD-tree of one task's rows.  Sliding-midpoint splits without node compaction
    build about 3x faster than scipy's default at a chunk's size, and a task's tree
    is queried only by its group, so the build dominates."""
    return kdtree_class()(points, balanced_tree=False, compact_nodes=False)


class CellSource:
    """Picklable: loads cells of one level as float64 positions and the requested
    columns (axis names or attributes; a C-wide attribute gives ``name_0..``).

    ``reader`` is anything with the :meth:`LevelReader.load` signature (the level
    reader inside tasks, the store's chunk cache in eager calls).
    """

    def __init__(self, reader, axes, attributes, columns, in_task: bool = False):
        self.reader = reader
        self.axes = tuple(axes)
        self.attributes = list(attributes)
        self.columns = list(columns)
        self.in_task = in_task

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("zv_dask.CellSource", tokenize(self.reader), self.axes,
                [a.name for a in self.attributes], self.columns)

    def load(self, coords) -> list[tuple[np.ndarray, dict]]:
        coords = [tuple(int(x) for x in c) for c in coords]
        if not coords:
            return []
        kw = {"in_task": True} if self.in_task else {}
        cells = self.reader.load(coords, self.attributes, True, False, **kw)
        out = []
        for cols in cells:
            pos = cols["positions"]  # float64 when kept: the rows a search keeps
            values = decode_categorical_columns(
                {a.name: cols[attr_key(a.name)] for a in self.attributes}, self.attributes)
            picked = {}
            for name in self.columns:
                if name in self.axes:
                    picked[name] = np.asarray(pos[:, self.axes.index(name)], np.float64)
                else:
                    v = values[name]
                    if v.ndim == 2:
                        picked.update({f"{name}_{i}": v[:, i] for i in range(v.shape[1])})
                    else:
                        picked[name] = v
            out.append((pos, picked))
        return out


class Gathered:
    """Cells read so far for one task, concatenated on demand."""

    def __init__(self, grid: NeighbourGrid, source: CellSource, store=None, level=None):
        self.grid = grid
        self.source = source
        self.loaded = np.zeros(len(grid), bool)
        self.parts: list = []
        self._cache = None
        self.n_rows = 0
        self.store, self.level = store, level

    def add(self, cells, box=None) -> int:
        """Read ``cells`` not read yet; with ``box`` (closed ``(lo, hi)``) keep only
        their rows inside it.  Returns the row where the new rows start."""
        start = self.n_rows
        cells = np.asarray(cells, np.int64)
        cells = cells[~self.loaded[cells]]
        if not len(cells):
            return start
        self.loaded[cells] = True
        for c, (pos, cols) in zip(cells.tolist(),
                                  self.source.load(self.grid.coords[cells].tolist())):
            if len(pos) != self.grid.lengths[c]:
                raise StoreReadError(
                    f"the chunk holds {len(pos)} rows but held {int(self.grid.lengths[c])} "
                    "when the search was planned; the store changed: open it again",
                    store=self.store, level=self.level, array="vertices",
                    chunk=self.grid.coords[c])
            ids = self.grid.starts[c] + np.arange(len(pos), dtype=np.int64)
            if box is not None:
                keep = in_box(pos, *box)
                pos, ids = pos[keep], ids[keep]
                cols = {n: v[keep] for n, v in cols.items()}
            self.parts.append((np.asarray(pos, np.float64), ids, cols))
            self.n_rows += len(pos)
        self._cache = None
        return start

    def _concat(self):
        if self._cache is None:
            D = self.grid.lo.shape[1]
            if not self.parts:
                self._cache = (np.zeros((0, D)), np.zeros(0, np.int64), {})
            else:
                pos = np.concatenate([p for p, _, _ in self.parts])
                ids = np.concatenate([i for _, i, _ in self.parts])
                names = list(self.parts[0][2])
                cols = {n: np.concatenate([c[n] for _, _, c in self.parts]) for n in names}
                self._cache = (pos, ids, cols)
        return self._cache

    @property
    def positions(self) -> np.ndarray:
        return self._concat()[0]

    @property
    def ids(self) -> np.ndarray:
        return self._concat()[1]

    def columns(self, rows: np.ndarray) -> dict:
        return {n: v[rows] for n, v in self._concat()[2].items()}

    def column_names(self) -> list:
        return list(self._concat()[2])


def in_box(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows inside a closed box (float64 bounds: float32 rows compare exactly)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    mask = (p[:, 0] >= lo[0]) & (p[:, 0] <= hi[0])
    for a in range(1, p.shape[1]):
        mask &= (p[:, a] >= lo[a]) & (p[:, a] <= hi[a])
    return mask
