"""Sparse grid arithmetic of ``to_zv``.  Pure: no IO, no dask.

A grid may have 10^12 cells and hold two points, so nothing here is sized by the grid:
the pre-pass collects the non-empty level-0 chunks (unique coordinates with their row
counts), and the shuffle keys are ranks among the non-empty blocks (or shard groups),
found by binary search over their coordinates.  Cell indices must fit int64; positions,
bounds or shapes that would overflow are refused with the numbers.
"""

from __future__ import annotations

import numpy as np

from zv_dask.errors import WriteInputError

# |bin index| limit: room for the grid shape (hi - lo + 1) and block arithmetic in int64
INDEX_LIMIT = float(2 ** 62)
# a fragment index counts its fragments in a uint32
MAX_BINS_PER_CHUNK = 2 ** 32 - 1


def binning(chunk_shape, bin_shape) -> tuple:
    """``(base bin, bins per chunk)`` for checked shapes (bin None: one bin per chunk)."""
    base = tuple(float(b) for b in (bin_shape if bin_shape is not None else chunk_shape))
    return base, tuple(int(round(c / b)) for c, b in zip(chunk_shape, base))


def check_bins_per_chunk(chunk_shape, bin_shape, store: str) -> None:
    """Refuse more bins per chunk than a fragment index can count."""
    bpc = binning(chunk_shape, bin_shape)[1]
    total = 1
    for b in bpc:
        total *= b  # Python ints: no overflow on the way
    if total > MAX_BINS_PER_CHUNK:
        raise WriteInputError(
            f"bin_shape {tuple(bin_shape)} gives {bpc} bins per chunk of chunk_shape "
            f"{tuple(chunk_shape)}, {total} in all; a chunk holds at most "
            f"{MAX_BINS_PER_CHUNK} bins (one fragment each). Use a larger bin_shape or a "
            "smaller chunk_shape", store=store)


def check_cell_range(bounds, chunk_shape, bin_shape, axes, store: str) -> None:
    """Refuse bounds (the data lie inside them) whose bin index does not fit int64."""
    base = binning(chunk_shape, bin_shape)[0]
    for a, (lo, hi, b) in enumerate(zip(bounds[0], bounds[1], base)):
        for v in (lo, hi):
            idx = float(v) / b
            if not abs(idx) < INDEX_LIMIT:
                what = "bin_shape" if bin_shape is not None else "chunk_shape"
                raise WriteInputError(
                    f"axis {axes[a]!r}: position or bound {float(v)!r} with {what} {b!r} "
                    f"gives cell index {idx:.3e}, beyond the int64 range of a grid index "
                    f"(|index| < 2**62 = {INDEX_LIMIT:.3e}). Use a larger {what} on that "
                    "axis, shift or rescale the coordinates, or drop the outlying rows",
                    store=store)


def chunk_counts(pos: np.ndarray, base_bin, bins_per_chunk) -> tuple:
    """Unique level-0 chunk coordinates ``(C, D)`` and their row counts, of the rows
    with finite positions whose bin index fits (the others are refused later)."""
    d = pos.shape[1] if pos.ndim == 2 else 0
    b = pos.astype(np.float64)
    b /= np.asarray(base_bin, np.float64)
    np.floor(b, out=b)
    ok = (np.abs(b) < INDEX_LIMIT).all(axis=1) if len(b) else np.ones(0, bool)
    bins = b[ok].astype(np.int64)
    del b
    bpc = np.asarray(bins_per_chunk, np.int64)
    chunks = bins if (bpc == 1).all() else np.floor_divide(bins, bpc)
    if len(chunks) == 0:
        return np.zeros((0, d), np.int64), np.zeros(0, np.int64)
    return _unique_counts(chunks)


def _unique_counts(coords: np.ndarray) -> tuple:
    """Unique rows and their counts, in no promised order: an int64 mixed-radix key
    when the coordinate span fits (a counting pass when it is small: the usual case of
    a few thousand chunks), else :func:`unique_rows`."""
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = [int(h) - int(l) + 1 for l, h in zip(lo, hi)]
    total = 1
    for s in span:
        total *= s
    if total >= 1 << 62:
        return unique_rows(coords)
    key = np.zeros(len(coords), np.int64)
    for a, s in enumerate(span):
        key *= s
        key += coords[:, a] - lo[a]
    if total <= max(1 << 20, 4 * len(coords)):
        n = np.bincount(key, minlength=total)
        u = np.flatnonzero(n)
        n = n[u]
    else:
        u, n = np.unique(key, return_counts=True)
    out = np.empty((len(u), len(span)), np.int64)
    for a in range(len(span) - 1, -1, -1):
        u, out[:, a] = np.divmod(u, span[a])
        out[:, a] += lo[a]
    return out, n.astype(np.int64)


def unique_rows(coords: np.ndarray, counts=None) -> tuple:
    """Unique rows of an int64 ``(N, D)`` array (in :func:`as_void` order) and the
    rows (or summed ``counts``) of each."""
    coords = np.ascontiguousarray(coords, np.int64)
    if len(coords) == 0:
        return coords.reshape(0, coords.shape[1] if coords.ndim == 2 else 0), np.zeros(0, np.int64)
    w = None if counts is None else np.asarray(counts, np.float64)
    linear = _linear_keys(coords)
    if linear is None:
        u, inv = np.unique(as_void(coords), return_inverse=True)
        n = np.bincount(inv.reshape(-1), weights=w, minlength=len(u)).astype(np.int64)
        return u.view(np.int64).reshape(len(u), coords.shape[1]), n
    # an int64 sort of N rows, then the few distinct rows put in as_void order
    keys, lo, span = linear
    u, inv = np.unique(keys, return_inverse=True)
    n = np.bincount(inv.reshape(-1), weights=w, minlength=len(u)).astype(np.int64)
    rows = np.stack(np.unravel_index(u, span), axis=1).astype(np.int64) + lo
    order = np.argsort(as_void(rows), kind="stable")
    return np.ascontiguousarray(rows[order]), n[order]


def _linear_keys(coords: np.ndarray):
    """Row-major int64 keys of ``coords`` in their bounding box, with its corner and
    shape; None when the box has 2**62 cells or more."""
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = (hi - lo + 1).astype(object)
    if int(np.prod(span)) >= 2 ** 62:
        return None
    span = tuple(int(x) for x in span)
    return np.ravel_multi_index(tuple((coords - lo).T), span), lo, span


def merge_chunk_counts(parts) -> tuple:
    """One ``(chunks, counts)`` from the per-partition ones (a chunk may span partitions)."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros((0, 0), np.int64), np.zeros(0, np.int64)
    return unique_rows(np.concatenate([p[0] for p in parts]),
                       np.concatenate([p[1] for p in parts]))


def as_void(coords: np.ndarray) -> np.ndarray:
    """One opaque scalar per row: sortable and searchable, whatever the coordinate span."""
    coords = np.ascontiguousarray(coords, np.int64)
    return coords.view(np.dtype((np.void, 8 * coords.shape[1]))).reshape(-1)


def sorted_keys(coords: np.ndarray) -> np.ndarray:
    """The sorted distinct rows of ``coords`` as :func:`as_void` scalars."""
    return np.unique(as_void(coords)) if len(coords) else as_void(coords)


def ranks(keys: np.ndarray, coords: np.ndarray) -> tuple:
    """Rank of each row of ``coords`` among ``keys`` (:func:`sorted_keys`), and whether
    every row was found."""
    v = as_void(coords)
    if len(keys) == 0:
        return np.zeros(len(v), np.int64), len(v) == 0
    rows = keys.view(np.int64).reshape(len(keys), -1)
    coords = np.ascontiguousarray(coords, np.int64)
    linear = _linear_keys(np.concatenate([rows, coords.min(axis=0, keepdims=True),
                                          coords.max(axis=0, keepdims=True)])
                          if len(coords) else rows)
    if linear is None:  # a void search (a memcmp per comparison) only when int64 cannot
        r = np.minimum(np.searchsorted(keys, v), len(keys) - 1)
        return r.astype(np.int64), bool((keys[r] == v).all())
    _, lo, span = linear
    key_lin = np.ravel_multi_index(tuple((rows - lo).T), span)
    by_lin = np.argsort(key_lin)
    sorted_lin = key_lin[by_lin]
    lin = np.ravel_multi_index(tuple((coords - lo).T), span)
    r = np.minimum(np.searchsorted(sorted_lin, lin), len(keys) - 1)
    return by_lin[r].astype(np.int64), bool((sorted_lin[r] == lin).all())


class Ranker:
    """:func:`ranks` against fixed ``keys``, by an int64 mixed-radix key when their
    span fits (a binary search on int64, several times faster than on the opaque row
    scalars), else by :func:`ranks` itself."""

    def __init__(self, keys: np.ndarray):
        self.keys = keys
        self.lin = None
        if len(keys) == 0:
            return
        coords = np.ascontiguousarray(keys).view(np.int64).reshape(len(keys), -1)
        self.lo, self.hi = coords.min(axis=0), coords.max(axis=0)
        self.span = [int(h) - int(lo) + 1 for lo, h in zip(self.lo, self.hi)]
        total = 1
        for s in self.span:
            total *= s
        if total >= 1 << 62:
            return
        lin = self._linear(coords)
        self.perm = np.argsort(lin, kind="stable")
        self.lin = lin[self.perm]

    def _linear(self, coords: np.ndarray) -> np.ndarray:
        key = np.zeros(len(coords), np.int64)
        for a, s in enumerate(self.span):
            key *= s
            key += np.clip(coords[:, a], self.lo[a], self.hi[a]) - self.lo[a]
        return key

    def ranks(self, coords: np.ndarray) -> tuple:
        """Rank of each row of ``coords`` among the keys, and whether every row was found."""
        if self.lin is None:
            return ranks(self.keys, coords)
        coords = np.asarray(coords, np.int64)
        inside = bool(((coords >= self.lo) & (coords <= self.hi)).all()) if len(coords) else True
        key = self._linear(coords)
        at = np.minimum(np.searchsorted(self.lin, key), len(self.lin) - 1)
        return self.perm[at].astype(np.int64), inside and bool((self.lin[at] == key).all())
