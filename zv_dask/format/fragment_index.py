"""``fragment_index_v1`` blobs (``vertex_fragments``, ``link_fragments``) -> fragments.

Pure: no IO, no zarr, no dask.
"""

from __future__ import annotations

import struct

import numpy as np

from zv_dask.format.frames import DecodeProblem

FRAGMENT_MAGIC = 0x5A564647
_FRAGMENT_HEADER = struct.Struct("<IHHII")


class FragmentIndex:
    """A decoded ``fragment_index_v1`` blob (``vertex_fragments``/``link_fragments``).

    Examples
    --------
    >>> fi = FragmentIndex.from_bytes(b"")
    >>> fi.num_fragments
    0
    """

    __slots__ = ("num_fragments", "num_range_fragments", "_is_range", "_range_pos",
                 "_ranges", "_csr", "_indices")

    def __init__(self, is_range, ranges, csr, indices):
        self._is_range = is_range
        self.num_fragments = len(is_range)
        self.num_range_fragments = len(ranges)
        self._ranges = ranges
        self._csr = csr
        self._indices = indices
        # position of fragment f among the ranges (or among the explicit ones)
        cum = np.cumsum(is_range) - is_range
        self._range_pos = np.where(is_range, cum, np.arange(len(is_range)) - cum)

    @classmethod
    def from_bytes(cls, blob, n_rows: int | None = None) -> "FragmentIndex":
        """Decode one blob; with ``n_rows`` (the chunk's vertex rows) every range and
        explicit row is checked to lie inside the chunk before anything is expanded."""
        mv = memoryview(blob).cast("B")
        if len(mv) == 0:
            return cls(np.zeros(0, bool), np.zeros((0, 2), np.int64),
                       np.zeros(1, np.uint32), np.zeros(0, np.int64))
        if len(mv) < 16:
            raise DecodeProblem(f"fragment index of {len(mv)} bytes is shorter than its 16-byte header")
        magic, version, flags, F, R = _FRAGMENT_HEADER.unpack_from(mv, 0)
        if magic != FRAGMENT_MAGIC:
            raise DecodeProblem(f"fragment index magic is {magic:#x}, expected {FRAGMENT_MAGIC:#x}")
        if version != 1 or flags != 0:
            raise DecodeProblem(f"fragment index version {version} flags {flags} (expected 1, 0)")
        if R > F:
            raise DecodeProblem(f"fragment index has {R} range fragments out of {F}")
        if F == 0 and len(mv) == 16:  # writers emit a bare header for a cell with no fragments
            return cls.from_bytes(b"")
        nbm = (F + 7) // 8
        off = 16 + ((nbm + 7) & ~7)
        fixed = off + 16 * R + 4 * (F - R + 1)
        if len(mv) < fixed:
            raise DecodeProblem(f"fragment index of {len(mv)} bytes is truncated (needs >= {fixed})")
        bits = np.unpackbits(np.frombuffer(mv, np.uint8, nbm, 16), bitorder="little")[:F].astype(bool)
        if int(bits.sum()) != R:
            raise DecodeProblem(f"fragment index bitmap marks {int(bits.sum())} ranges, header says {R}")
        ranges = np.frombuffer(mv, "<i8", 2 * R, off).reshape(R, 2)
        off += 16 * R
        csr = np.frombuffer(mv, "<u4", F - R + 1, off)
        off += 4 * (F - R + 1)
        T = int(csr[-1]) if len(csr) else 0
        if len(mv) != off + 8 * T or (len(csr) > 1 and np.any(np.diff(csr.astype(np.int64)) < 0)):
            raise DecodeProblem(
                f"fragment index length {len(mv)} does not match its tables "
                f"(F={F}, R={R}, T={T} -> {off + 8 * T} bytes)"
            )
        if R and ((ranges[:, 1] < 0).any() or (ranges[:, 0] < 0).any()):
            raise DecodeProblem("fragment index has a negative range")
        indices = np.frombuffer(mv, "<i8", T, off)
        if n_rows is not None:
            _check_rows(ranges, indices, int(n_rows))
        return cls(bits, ranges, csr, indices)

    def is_range(self, i: int) -> bool:
        return bool(self._is_range[self._check(i)])

    def range(self, i: int) -> tuple[int, int]:
        """(start, count) of range fragment ``i``."""
        if not self.is_range(i):
            raise ValueError(f"fragment {i} is an explicit index list, not a range; use indices({i})")
        s, c = self._ranges[self._range_pos[i]]
        return int(s), int(c)

    def indices(self, i: int) -> np.ndarray:
        """Chunk-local row indices of fragment ``i``."""
        self._check(i)
        if self._is_range[i]:
            s, c = self._ranges[self._range_pos[i]]
            return np.arange(s, s + c, dtype=np.int64)
        e = self._range_pos[i]
        return np.asarray(self._indices[self._csr[e]:self._csr[e + 1]], np.int64)

    def counts(self) -> np.ndarray:
        """Number of rows of every fragment."""
        out = np.empty(self.num_fragments, np.int64)
        out[self._is_range] = self._ranges[:, 1]
        out[~self._is_range] = np.diff(self._csr.astype(np.int64))
        return out

    def ranges_only(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(starts, counts)`` of every fragment when all are ranges (what every bulk
        writer emits), else ``None``."""
        if self.num_range_fragments != self.num_fragments:
            return None
        return self._ranges[:, 0].astype(np.int64), self._ranges[:, 1].astype(np.int64)

    def tiles(self) -> bool:
        """True when all fragments are ranges that tile ``[0, N)`` in order."""
        if not self._is_range.all():
            return False
        r = self._ranges
        return bool(len(r) == 0 or (r[0, 0] == 0 and np.all(r[1:, 0] == r[:-1, 0] + r[:-1, 1])))

    def row_fragment_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, fragment) pairs covering every fragment, vectorised."""
        counts = self.counts()
        frag = np.repeat(np.arange(self.num_fragments, dtype=np.int64), counts)
        rows = np.empty(len(frag), np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        rpos = np.flatnonzero(self._is_range)
        if len(rpos):
            rows[_ranges_concat(starts[rpos], self._ranges[:, 1])] = _ranges_concat(
                self._ranges[:, 0], self._ranges[:, 1])
        epos = np.flatnonzero(~self._is_range)
        if len(epos):
            rows[_ranges_concat(starts[epos], counts[epos])] = \
                self._indices[int(self._csr[0]):int(self._csr[-1])]
        return rows, frag

    def _check(self, i: int) -> int:
        if not 0 <= i < self.num_fragments:
            raise IndexError(f"fragment {i} out of range (0..{self.num_fragments - 1})")
        return i


# Ranges may overlap (fragments can share rows), but not by more than this factor of
# the chunk's rows: beyond it a tiny blob would expand into gigabytes of row pairs.
_MAX_ROW_REUSE = 16


def _check_rows(ranges: np.ndarray, indices: np.ndarray, n_rows: int) -> None:
    """Every range and explicit row inside ``[0, n_rows)``; total references bounded."""
    if len(ranges):
        start, count = ranges[:, 0], ranges[:, 1]
        bad = (count > n_rows) | (start > n_rows - np.minimum(count, n_rows))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DecodeProblem(
                f"fragment index range {i} covers rows {int(start[i])}..+{int(count[i])} of "
                f"a chunk with {n_rows} rows")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_rows):
        raise DecodeProblem(
            f"fragment index references row {int(indices.max())} of a chunk with {n_rows} rows")
    total = int(ranges[:, 1].sum()) if len(ranges) else 0
    if total > _MAX_ROW_REUSE * n_rows + 1024:
        raise DecodeProblem(
            f"fragment index ranges reference {total} rows of a chunk with {n_rows} rows")


def _ranges_concat(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate arange(s, s+c) for many (s, c) without a Python loop."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    offs = np.repeat(np.asarray(starts, np.int64) - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + offs
