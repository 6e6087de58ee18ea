"""An index of a level's non-empty cells by spatial cell number: the cells whose box
meets a box, in a few sorted look-ups instead of a scan of every cell (pure)."""

from __future__ import annotations

import numpy as np


def pad(lo, hi, reach):
    """A margin far above the rounding of ``lo - reach`` and ``hi + reach``: look-ups
    widened by it can only list more cells, which the exact tests then drop.

    Examples
    --------
    >>> float(pad(np.array(1e6), np.array(2e6), 5.0)) < 1e-2
    True
    """
    return 1e-9 * (np.abs(lo) + np.abs(hi) + reach) + 1e-300


class CellIndex:
    """The non-empty cells sorted by their spatial cell numbers, for range look-ups.

    Per spatial axis ``values[d]`` are the distinct cell numbers (sorted) and
    ``lo[d]``/``hi[d]`` their boxes on that axis (a cell's box on an axis depends on
    its number there only, and grows with it).  A cell's key is the row-major number
    of its ranks among those values; ``order`` lists the cells by key (equal keys, as
    with a leading attribute axis, in grid order).  ``keys`` is ``None`` when the
    ranks' product would overflow int64 (look-ups then scan all cells).

    Examples
    --------
    >>> cells = np.array([[0, 0], [0, 3], [2, 1]])
    >>> ix = CellIndex(cells, cells * 10.0, cells * 10.0 + 9.0)
    >>> ix.cells_in(*ix.rank_range(np.array([-5.0, -5.0]), np.array([25.0, 12.0]))).tolist()
    [0, 2]
    """

    def __init__(self, spatial: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        self.values, self.lo, self.hi, ranks = [], [], [], []
        for d in range(lo.shape[1]):
            u, first, inv = np.unique(spatial[:, d], return_index=True, return_inverse=True)
            self.values.append(u)
            self.lo.append(lo[first, d])
            self.hi.append(hi[first, d])
            ranks.append(inv.reshape(-1))
        self.ranks = np.stack(ranks, 1) if ranks else np.zeros((0, 0), np.int64)
        self.shape = tuple(len(u) for u in self.values)
        self.keys = self.order = None
        if len(spatial) and float(np.prod(np.asarray(self.shape, np.float64))) < 2.0 ** 62:
            keys = np.ravel_multi_index(self.ranks.T, self.shape)
            self.order = np.argsort(keys, kind="stable")
            self.keys = keys[self.order]

    def rank_range(self, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        """Per axis the inclusive ranks of the cells whose box meets ``[lo, hi]``
        (``lo``/``hi`` (..., D)); empty where the first exceeds the second."""
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        a = np.stack([np.searchsorted(self.hi[d], lo[..., d], "left")
                      for d in range(len(self.shape))], -1)
        b = np.stack([np.searchsorted(self.lo[d], hi[..., d], "right") - 1
                      for d in range(len(self.shape))], -1)
        return a, b

    def cells_in(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Grid indices (sorted) of the cells with ranks in ``[a, b]`` on every axis."""
        a = np.maximum(np.asarray(a, np.int64), 0)
        b = np.minimum(np.asarray(b, np.int64), np.asarray(self.shape) - 1)
        span = b - a + 1
        if (span <= 0).any():
            return np.zeros(0, np.int64)
        outer = int(np.prod(span[:-1]))
        if self.keys is None or outer > len(self.order) // 8 + 16:
            inside = np.all((self.ranks >= a) & (self.ranks <= b), 1)
            return np.flatnonzero(inside)
        grids = np.meshgrid(*[np.arange(x, y + 1) for x, y in zip(a[:-1], b[:-1])],
                            indexing="ij")
        head = [g.ravel() for g in grids]
        first = np.ravel_multi_index((*head, np.full(outer, a[-1])), self.shape)
        return np.sort(self._runs(first, first + (b[-1] - a[-1])))

    def _runs(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Grid indices of the cells with keys in any ``[first[i], last[i]]``."""
        s = np.searchsorted(self.keys, first, "left")
        e = np.searchsorted(self.keys, last, "right")
        return self.order[ranges(s, e)]


def ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, e)`` of each pair, vectorised.

    Examples
    --------
    >>> ranges(np.array([0, 5]), np.array([2, 8])).tolist()
    [0, 1, 5, 6, 7]
    """
    n = np.maximum(ends - starts, 0)
    total = int(n.sum())
    if not total:
        return np.zeros(0, np.int64)
    offset = np.repeat(starts - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    return np.arange(total, dtype=np.int64) + offset
