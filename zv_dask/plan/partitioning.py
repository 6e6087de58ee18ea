"""Grouping chunks into partitions (pure: numpy only, no IO, no dask).

``chunks_per_partition=k`` cuts the row-major cell list into runs of ``k``; on a
sharded level into runs of whole shards (:func:`zv_dask.plan.shard_runs.shard_runs`).
``"auto"`` groups neighbouring chunks into partitions of at most about ``target``
rows that are compact boxes: cells are ordered along the Morton (Z-order) curve,
whose aligned runs are aligned boxes, and the whole grid is halved along one axis
after another (one code bit at a time, like a k-d tree) until a block holds at most
``target`` rows.  Every partition is therefore an aligned box of chunks (empty
chunks aside), so a spatial filter can drop whole partitions and the rest lose only
the chunks it misses (:meth:`Partitioning.specs_for` trims groups to any subset of
the cells).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: rows per partition that ``chunks_per_partition="auto"`` aims at (``partition_rows=``)
DEFAULT_PARTITION_ROWS = 1_000_000

_CODE_BITS = 63  # Morton codes live in int64


def row_major_groups(n: int, k: int) -> list[np.ndarray]:
    """Indices ``0..n-1`` cut into runs of ``k`` (the last may be shorter).

    Examples
    --------
    >>> [g.tolist() for g in row_major_groups(5, 2)]
    [[0, 1], [2, 3], [4]]
    """
    k = max(int(k), 1)
    return [np.arange(i, min(i + k, n), dtype=np.int64) for i in range(0, n, k)]


def morton_codes(coords: np.ndarray) -> tuple[np.ndarray, int]:
    """(Z-order code of each row of ``coords`` (K, S) ints, bits per axis).

    Coordinates are shifted to start at 0; when the extent needs more than
    63/S bits per axis the low bits are dropped (ties keep their input order
    under a stable sort, so the order stays a valid one).

    Examples
    --------
    >>> morton_codes(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]))[0].tolist()
    [0, 1, 2, 3]
    """
    c = np.asarray(coords, np.int64)
    k, s = c.shape
    if k == 0 or s == 0:
        return np.zeros(k, np.int64), 0
    cols = np.array(c.T)  # one contiguous row per axis: reductions along rows are fast
    cols -= cols.min(axis=1, keepdims=True)
    bits = max(int(cols.max()).bit_length(), 1)
    limit = _CODE_BITS // s
    if bits > limit:
        cols >>= bits - limit
        bits = limit
    # bit b of axis d goes to b * s + (s - 1 - d): the first axis is the most
    # significant, as in row-major order; bits are spread a byte at a time by a table
    width = min(bits, 8)
    table = np.zeros(1 << width, np.int64)
    for i in range(width):
        table[(np.arange(1 << width) >> i) & 1 == 1] |= 1 << (i * s)
    code = np.zeros(k, np.int64)
    for d, col in enumerate(cols):
        for j in range(0, bits, 8):
            code |= np.take(table, (col >> j) & ((1 << width) - 1)) << (j * s + s - 1 - d)
    return code, bits


def auto_groups(coords: np.ndarray, rows: np.ndarray, target: int, lead: int = 0
                ) -> list[np.ndarray]:
    """Group cells into compact partitions of at most about ``target`` rows.

    Parameters
    ----------
    coords : (K, rank) int array
        Cell coordinates; the first ``lead`` axes are not spatial (chunk_by_attribute):
        cells with different leading coordinates never share a partition.
    rows : (K,) array
        Rows per cell (exact or estimated).
    target : int
        Rows per partition to aim at; a single cell larger than it is a partition alone.
    lead : int
        Number of leading non-spatial axes.

    Returns
    -------
    list of int64 arrays
        Indices into ``coords``, one array per partition, every index exactly once,
        partitions in Morton order, cells inside a partition in Morton order.

    Examples
    --------
    >>> c = np.array([[i, j] for i in range(4) for j in range(4)])
    >>> [len(g) for g in auto_groups(c, np.ones(16), 4)]
    [4, 4, 4, 4]
    """
    c = np.asarray(coords, np.int64).reshape(len(coords), -1)
    k = len(c)
    if k == 0:
        return []
    target = max(float(target), 1.0)
    rows = np.asarray(rows, np.float64).reshape(k)
    code, bits = morton_codes(c[:, lead:])
    keys = [code] + [c[:, a] for a in range(lead - 1, -1, -1)]
    order = np.lexsort(keys)  # leading axes first, then the curve
    code = code[order]
    csum = np.concatenate([[0.0], np.cumsum(rows[order])])
    s = c.shape[1] - lead
    starts = [0]
    if lead:
        lead_key = c[order][:, :lead]
        change = np.flatnonzero((lead_key[1:] != lead_key[:-1]).any(1)) + 1
        starts = [0] + change.tolist()
    bounds = starts + [k]
    groups: list[np.ndarray] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        for i, j in _split(code, csum, a, b, bits * s, target):
            groups.append(order[i:j])
    return groups


def shard_groups(coords: np.ndarray, rows: np.ndarray, target: int, shard_shape,
                 origin, lead: int = 0) -> list[np.ndarray]:
    """:func:`auto_groups` of whole shards: a partition is a compact box of shards
    (about ``target`` rows), so no shard object is read by two tasks.

    ``shard_shape`` is the cells per shard object along each axis, ``origin`` the grid
    origin of the coordinates.  A shard holding more than ``target`` rows is a
    partition alone; along the ``lead`` (non-spatial) axes a shard is split, since
    cells with different leading coordinates never share a partition.

    Returns indices into ``coords`` as :func:`auto_groups` does: partitions in Morton
    order of their shards, cells inside a partition by shard, then in Morton order.

    Examples
    --------
    >>> c = np.array([[i, j] for i in range(4) for j in range(4)])
    >>> [sorted(map(tuple, c[g].tolist())) for g in shard_groups(c, np.ones(16), 6, (2, 2),
    ...                                                          (0, 0))][:2]
    [[(0, 0), (0, 1), (1, 0), (1, 1)], [(0, 2), (0, 3), (1, 2), (1, 3)]]
    """
    c = np.asarray(coords, np.int64).reshape(len(coords), -1)
    if not len(c):
        return []
    step = np.asarray(shard_shape, np.int64).copy()
    step[:lead] = 1
    shard = (c - np.asarray(origin, np.int64)) // step
    keys, inv = np.unique(shard, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    srows = np.bincount(inv, weights=np.asarray(rows, np.float64).reshape(len(c)),
                        minlength=len(keys))
    groups = auto_groups(keys, srows, target, lead)
    # a shard's rank in the partitions' order, then its cells along the curve
    rank = np.empty(len(keys), np.int64)
    gid = np.empty(len(keys), np.int64)
    pos = 0
    for g, members in enumerate(groups):
        rank[members] = np.arange(pos, pos + len(members))
        gid[members] = g
        pos += len(members)
    code, _ = morton_codes(c[:, lead:])
    order = np.lexsort((code, rank[inv]))
    counts = np.bincount(gid[inv], minlength=len(groups))
    return [g for g in np.split(order, np.cumsum(counts)[:-1])]


def _split(code, csum, i: int, j: int, shift: int, target: float) -> list:
    """Runs ``[a, b)`` of the sorted cells ``i..j`` (one aligned block of ``2**shift``
    codes), in curve order.  Each step halves every block still above ``target`` along
    one axis (the next code bit), so every run is an aligned box; all blocks of one
    depth are split at once (vectorised)."""
    a = np.array([i], np.int64)
    b = np.array([j], np.int64)
    done_a, done_b = [], []
    for sh in range(shift, 0, -1):
        big = (csum[b] - csum[a] > target) & (b - a > 1)
        done_a.append(a[~big])
        done_b.append(b[~big])
        a, b = a[big], b[big]
        if not len(a):
            break
        half = ((code[a] >> sh) * 2 + 1) << (sh - 1)  # first code of each upper half
        m = np.searchsorted(code[i:j], half) + i  # sorted within this run only
        a, b = np.concatenate([a, m]), np.concatenate([m, b])
        keep = b > a
        a, b = a[keep], b[keep]
    else:  # blocks above target after the last bit: equal (coarsened) codes
        for x, y in zip(a.tolist(), b.tolist()):
            start = x
            for e in range(x + 1, y + 1):
                if e == y or csum[e + 1] - csum[start] > target:
                    done_a.append(np.array([start]))
                    done_b.append(np.array([e]))
                    start = e
        a = b = np.zeros(0, np.int64)
    done_a.append(a)
    done_b.append(b)
    da, db = np.concatenate(done_a), np.concatenate(done_b)
    order = np.argsort(da, kind="stable")
    return list(zip(da[order].tolist(), db[order].tolist()))


class CellGroups:
    """Partitions as one ``(K, rank)`` array of cells and ``P + 1`` offsets.

    A sequence of partition specs: item ``i`` is the tuple of coordinate tuples of
    partition ``i``, built only when asked for, so a level of 10^6 chunks costs two
    arrays rather than 10^6 tuples; trimming to a subset of cells is vectorised.

    Examples
    --------
    >>> g = CellGroups.row_major(np.array([[0, 0], [0, 1], [1, 0]]), 2)
    >>> len(g), g[0], g[1]
    (2, ((0, 0), (0, 1)), ((1, 0),))
    >>> list(g.keep(np.array([False, True, True])))
    [((0, 1),), ((1, 0),)]
    """

    def __init__(self, cells: np.ndarray, offsets: np.ndarray, rows=None, first=None):
        self.cells = np.ascontiguousarray(_as_rows(cells))
        self.offsets = np.asarray(offsets, np.int64)
        # optional, per cell: its rows and the frame position of its first row
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        self.first = None if first is None else np.asarray(first, np.int64)

    @property
    def labelled(self) -> bool:
        """Whether every cell's row count (hence every row's position) is known."""
        return self.first is not None

    def with_rows(self, rows: np.ndarray) -> "CellGroups":
        """The same groups knowing each cell's ``rows``: a row's label is then its
        position in the frame of all partitions, in order.

        >>> g = CellGroups.row_major(np.array([[0], [1], [2]]), 2).with_rows([3, 0, 4])
        >>> g.labels(0), g.labels(1)
        (((0, 3), (3, 0)), ((3,), (4,)))
        """
        rows = np.asarray(rows, np.int64)
        first = np.concatenate([[0], np.cumsum(rows)[:-1]]) if len(rows) else rows
        return CellGroups(self.cells, self.offsets, rows, first)

    def labels(self, i: int) -> tuple:
        """``(first labels, rows)`` of the cells of partition ``i`` (``labelled`` only)."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return tuple(self.first[a:b].tolist()), tuple(self.rows[a:b].tolist())

    @classmethod
    def row_major(cls, cells: np.ndarray, k: int) -> "CellGroups":
        """Runs of ``k`` cells in the given order."""
        n = len(cells)
        return cls(cells, np.append(np.arange(0, n, max(int(k), 1)), n) if n else [0])

    @classmethod
    def from_groups(cls, groups: list, rank: int) -> "CellGroups":
        """From a list of ``(n_i, rank)`` coordinate arrays (empty ones dropped)."""
        groups = [np.asarray(g, np.int64).reshape(-1, rank) for g in groups if len(g)]
        if not groups:
            return cls(np.zeros((0, rank), np.int64), [0])
        lens = np.fromiter((len(g) for g in groups), np.int64, len(groups))
        return cls(np.concatenate(groups), np.append(0, np.cumsum(lens)))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        a, b = self.offsets[i], self.offsets[i + 1]
        return tuple(map(tuple, self.cells[a:b].tolist()))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def lengths(self) -> np.ndarray:
        """Cells per partition."""
        return np.diff(self.offsets)

    def per_partition(self, values: np.ndarray) -> "PerPartition":
        """``values`` (one per cell) seen as one tuple per partition."""
        return PerPartition(np.asarray(values), self.offsets)

    def keep(self, mask: np.ndarray) -> "CellGroups":
        """The cells where ``mask`` is true, in the same partitions (empty ones dropped)."""
        mask = np.asarray(mask, bool)
        if not len(self.cells):
            return self
        counts = np.add.reduceat(mask.astype(np.int64), self.offsets[:-1])
        counts[self.lengths() == 0] = 0
        counts = counts[counts > 0]
        if not self.labelled:
            return CellGroups(self.cells[mask], np.append(0, np.cumsum(counts)))
        return CellGroups(self.cells[mask], np.append(0, np.cumsum(counts)), self.rows[mask],
                          self.first[mask])

    def digest(self) -> str:
        """A hash of the cells, the groups and the labels."""
        import hashlib

        h = hashlib.sha1(self.cells.tobytes())
        h.update(self.offsets.tobytes())
        if self.labelled:
            h.update(self.rows.tobytes())
            h.update(self.first.tobytes())
        return h.hexdigest()

    def __dask_tokenize__(self):
        return ("zv_dask.CellGroups", self.cells.shape, self.digest())


def _as_rows(cells) -> np.ndarray:
    """``cells`` as a 2-D int64 array (an empty list gives shape ``(0, 0)``)."""
    cells = np.asarray(cells, np.int64)
    if cells.ndim == 2:
        return cells
    return cells.reshape(len(cells), -1) if cells.size else np.zeros((len(cells), 0), np.int64)


class PerPartition:
    """One tuple of values per partition, sliced from a per-cell array on demand."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values = values
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> tuple:
        return tuple(self.values[self.offsets[i]:self.offsets[i + 1]].tolist())


@dataclass(frozen=True, eq=False)
class Partitioning:
    """Partitions as groups of cell coordinates, independent of any one plan.

    Made from a plan's cells; :meth:`specs_for` applies it to those cells or to any
    subset of them (a narrower plan): cells not present are dropped, empty groups
    disappear, and cells the grouping does not know get a partition each.
    """

    groups: tuple  # of (n_i, rank) int64 arrays
    # the cells it was made from: applied to exactly those, no matching is needed
    source: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_indices(cls, cells: np.ndarray, groups: list) -> "Partitioning":
        cells = np.asarray(cells, np.int64)
        return cls(tuple(cells[g] for g in groups), cells)

    def __len__(self) -> int:
        return len(self.groups)

    def __dask_tokenize__(self):
        # deterministic: the same groups give the same token (and the same task keys)
        import hashlib

        h = hashlib.sha1()
        for g in self.groups:
            h.update(np.ascontiguousarray(g, np.int64).tobytes())
            h.update(b"|")
        return ("zv_dask.Partitioning", h.hexdigest())

    def specs_for(self, cells: np.ndarray) -> list[np.ndarray]:
        """The groups restricted to ``cells`` (K, rank): a list of coordinate arrays.

        Examples
        --------
        >>> p = Partitioning((np.array([[0, 0], [0, 1]]), np.array([[1, 0]])))
        >>> [g.tolist() for g in p.specs_for(np.array([[0, 1], [1, 0], [5, 5]]))]
        [[[0, 1]], [[1, 0]], [[5, 5]]]
        """
        cells = np.asarray(cells, np.int64).reshape(len(cells), -1)
        if not self.groups:
            return [cells[i:i + 1] for i in range(len(cells))]
        src = self.source
        if src is not None and src.shape == cells.shape and np.array_equal(src, cells):
            return list(self.groups)
        known = np.concatenate(self.groups)
        gid = np.repeat(np.arange(len(self.groups)), [len(g) for g in self.groups])
        kv, cv = _row_keys(known, cells)
        srt = np.argsort(kv, kind="stable")
        pos = np.clip(np.searchsorted(kv[srt], cv), 0, len(kv) - 1)
        hit = kv[srt][pos] == cv
        member = np.zeros(len(known), bool)
        member[srt[pos[hit]]] = True
        counts = np.bincount(gid[member], minlength=len(self.groups))
        parts = np.split(known[member], np.cumsum(counts)[:-1])
        out = [g for g in parts if len(g)]
        out += [cells[i:i + 1] for i in np.flatnonzero(~hit)]
        return out


def _row_keys(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One comparable int64 key per row of ``a`` and ``b`` (same coordinate space)."""
    both = np.concatenate([a, b]) if len(b) else a
    lo = both.min(0)
    ext = both.max(0) - lo + 1
    if float(np.prod(ext.astype(np.float64))) < 2 ** 62:
        return (np.ravel_multi_index((a - lo).T, ext).astype(np.int64),
                np.ravel_multi_index((b - lo).T, ext).astype(np.int64))
    # huge sparse extents: rank the rows lexicographically instead
    _, inv = np.unique(both, axis=0, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    return inv[:len(a)], inv[len(a):]


def group_boxes(groups: list, lead: int = 0) -> np.ndarray:
    """(P, 2, S) inclusive cell-index box (min, max) of each group's spatial axes."""
    return np.stack([np.stack([g[:, lead:].min(0), g[:, lead:].max(0)]) for g in groups]) \
        if groups else np.zeros((0, 2, 0), np.int64)
