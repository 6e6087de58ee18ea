"""Bytes of one cell -> numpy.  Pure: no IO, no zarr, no dask.

Decoders raise :class:`DecodeProblem` with a short message; the caller, who knows
the store, level, array and chunk, turns it into a :class:`~zv_dask.errors.ChunkDecodeError`.
"""

from __future__ import annotations

import struct

import numpy as np

from ._frames import DecodeProblem, decode_byte_codecs, strip_vlen_frame  # noqa: F401

FRAGMENT_MAGIC = 0x5A564647
# Fragments a manifest's range blocks may name when the level records no vertex
# count to bound them (each expands to 8 * (sid_ndim + 1) bytes).
_MAX_BLOCK_FRAGMENTS = 1 << 22
_FRAGMENT_HEADER = struct.Struct("<IHHII")


def decode_vertices(payload, dtype: np.dtype, ndim: int) -> np.ndarray:
    """Raw vertex payload -> (N, ndim) array of the stored dtype (zero-copy)."""
    row = dtype.itemsize * ndim
    if len(payload) % row:
        raise DecodeProblem(
            f"{len(payload)} bytes is not a whole number of {ndim}-D {dtype} rows "
            f"({row} bytes each)"
        )
    return np.frombuffer(payload, dtype).reshape(-1, ndim)


def decode_attribute(payload, dtype: np.dtype, n_rows: int | None, width: int = 1) -> np.ndarray:
    """Raw attribute payload -> (N,) or (N, C).

    With ``n_rows`` the width comes from the byte count (row_shape can lie); without
    it (no vertex chunk fetched) ``width`` is trusted.
    """
    if len(payload) % dtype.itemsize:
        raise DecodeProblem(f"{len(payload)} bytes is not a whole number of {dtype} values")
    values = np.frombuffer(payload, dtype)
    if n_rows is None:
        if len(values) % width:
            raise DecodeProblem(f"{len(values)} values are not a whole number of rows of width {width}")
        return values if width == 1 else values.reshape(-1, width)
    if n_rows == 0:
        if len(values):
            raise DecodeProblem(f"{len(values)} values for a chunk with no vertex rows")
        return values
    if len(values) % n_rows or len(values) == 0:
        raise DecodeProblem(
            f"{len(values)} values are not a whole number of rows for {n_rows} vertices"
        )
    w = len(values) // n_rows
    return values if w == 1 else values.reshape(n_rows, w)


def decode_categories(codes: np.ndarray, categories: tuple, fill_code=None) -> np.ndarray:
    """Dictionary codes -> category values (object array; missing codes -> None)."""
    cats = np.empty(len(categories) + 1, dtype=object)
    cats[:-1] = list(categories)
    cats[-1] = None
    idx = codes.astype(np.int64, copy=True)
    bad = (idx < 0) | (idx >= len(categories))
    if fill_code is not None:
        missing = idx == int(fill_code)
        bad &= ~missing
        idx[missing] = len(categories)
    if bad.any():
        raise DecodeProblem(
            f"category code {int(idx[bad][0])} is outside the {len(categories)} categories"
        )
    return cats[idx]


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


def decode_manifest(blob, sid_ndim: int, max_fragments: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One object manifest -> (coords (M, sid_ndim), fragment (M,)), expanded, in order.

    The blocks are walked once to check their structure and count the fragments they
    name; a range block (mode 1) naming more than ``max_fragments`` (or the default
    cap) is refused before anything is expanded.
    """
    mv = memoryview(blob).cast("B")
    if len(mv) == 0:
        return np.zeros((0, sid_ndim), np.int64), np.zeros(0, np.int64)
    if len(mv) < 4:
        raise DecodeProblem(f"manifest of {len(mv)} bytes has no block count")
    (nb,) = struct.unpack_from("<I", mv, 0)
    stride = 8 * sid_ndim + 9
    if 4 + nb * stride == len(mv):  # fast path: every block mode 0
        rec = np.frombuffer(mv, np.uint8, nb * stride, 4).reshape(nb, stride)
        if nb == 0 or not rec[:, 8 * sid_ndim].any():
            coords = rec[:, : 8 * sid_ndim].copy().view("<i8").reshape(nb, sid_ndim)
            frags = rec[:, 8 * sid_ndim + 1:].copy().view("<i8").reshape(nb)
            return coords.astype(np.int64), frags.astype(np.int64)
    if 4 + nb * (8 * sid_ndim + 5) > len(mv):  # the smallest block is mode 2 with n = 0
        raise DecodeProblem(f"manifest says {nb} blocks but holds {len(mv)} bytes")
    limit = _MAX_BLOCK_FRAGMENTS if max_fragments is None else int(max_fragments)
    blocks = []  # (offset of coords, mode, a, b): walked first, expanded after the checks
    off = 4
    ranged = 0
    try:
        for _ in range(nb):
            at = off
            off += 8 * sid_ndim
            mode = mv[off]
            off += 1
            if mode == 0:
                (f,) = struct.unpack_from("<q", mv, off)
                off += 8
                blocks.append((at, 0, f, 1))
            elif mode == 1:
                st, c = struct.unpack_from("<qq", mv, off)
                off += 16
                ranged += max(c, 0)
                if c < 0 or c > limit or ranged > limit:
                    raise DecodeProblem(
                        f"manifest range block names {c} fragments (at most {limit} fit "
                        "the level)")
                blocks.append((at, 1, st, c))
            elif mode == 2:
                (n,) = struct.unpack_from("<I", mv, off)
                off += 4
                if off + 8 * n > len(mv):
                    raise DecodeProblem("manifest explicit block runs past the end")
                blocks.append((at, 2, off, n))
                off += 8 * n
            else:
                raise DecodeProblem(f"manifest block mode {mode} is unknown (expected 0, 1 or 2)")
        if off != len(mv):
            raise DecodeProblem(f"manifest has {len(mv) - off} bytes after its last block")
        coords, frags = [], []
        for at, mode, x, c in blocks:
            cc = struct.unpack_from(f"<{sid_ndim}q", mv, at)
            if mode == 0:
                fl = np.array([x], np.int64)
            elif mode == 1:
                fl = np.arange(x, x + c, dtype=np.int64)
            else:
                fl = np.frombuffer(mv, "<i8", c, x).astype(np.int64)
            coords.append(np.broadcast_to(np.asarray(cc, np.int64), (len(fl), sid_ndim)))
            frags.append(fl)
    except (struct.error, IndexError):
        raise DecodeProblem(f"manifest of {len(mv)} bytes is truncated") from None
    if not frags:
        return np.zeros((0, sid_ndim), np.int64), np.zeros(0, np.int64)
    return np.concatenate(coords).astype(np.int64), np.concatenate(frags)


def row_owners(rows: np.ndarray, frags: np.ndarray, frag_owner_ids: np.ndarray,
               frag_owner_frag: np.ndarray, n_rows: int,
               n_fragments: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (smallest owner id, number of distinct owners) for one cell.

    ``rows``/``frags`` pair every row with each fragment containing it;
    ``frag_owner_frag``/``frag_owner_ids`` pair every fragment with each object
    whose manifest lists it.  Rows no object references get (-1, 0).  A row outside
    the chunk, or (with ``n_fragments``) a manifest naming a fragment the cell does
    not have, is an error: dropping it would lose rows silently.
    """
    owner = np.full(n_rows, -1, np.int64)
    count = np.zeros(n_rows, np.int64)
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n_rows):
        raise DecodeProblem(f"the fragment index references row {int(rows.max())} of a chunk "
                            f"with {n_rows} rows")
    if n_fragments is not None and len(frag_owner_frag) and (
            int(frag_owner_frag.min()) < 0 or int(frag_owner_frag.max()) >= n_fragments):
        raise DecodeProblem(f"a manifest names fragment {int(frag_owner_frag.max())} but the "
                            f"chunk has {n_fragments} fragments")
    if len(frag_owner_frag) == 0 or len(rows) == 0:
        return owner, count
    order = np.argsort(frag_owner_frag, kind="stable")
    of, oid = frag_owner_frag[order], frag_owner_ids[order]
    lo = np.searchsorted(of, frags, "left")
    hi = np.searchsorted(of, frags, "right")
    n = hi - lo
    r = np.repeat(rows, n)
    o = oid[_ranges_concat(lo, n)]
    if len(r) == 0:
        return owner, count
    pairs = np.unique(np.stack([r, o], 1), axis=0)  # sorted by row, then id
    first = np.concatenate([[True], pairs[1:, 0] != pairs[:-1, 0]])
    owner[pairs[first, 0]] = pairs[first, 1]
    np.add.at(count, pairs[:, 0], 1)
    return owner, count


class OwnerTable:
    """Which objects reference which fragment of which cell, for one level.

    Built once per level from all manifests; ``for_cell`` gives a cell's slice, which
    is what a per-chunk task carries.
    """

    __slots__ = ("cell", "frag", "oid")

    def __init__(self, cell: np.ndarray, frag: np.ndarray, oid: np.ndarray):
        order = np.lexsort((oid, frag, cell))
        self.cell, self.frag, self.oid = cell[order], frag[order], oid[order]

    @classmethod
    def from_manifests(cls, blobs, object_ids, sid_ndim: int, shape, origin,
                       max_fragments: int | None = None) -> "OwnerTable":
        """Decode every manifest; ``object_ids[r]`` is the id of manifest row ``r``.

        A row that is absent (``None``/``b""``, zarr's fill value: its chunk object is
        missing or was truncated) is an error; an empty manifest is 4 zero bytes.
        """
        cells, frags, oids = [], [], []
        shape = np.asarray(shape, np.int64)
        origin = np.asarray(origin, np.int64)
        for row, blob in enumerate(blobs):
            if blob is None or len(blob) == 0:
                raise DecodeProblem(f"manifest row {row} (object {int(object_ids[row])}) is "
                                    "absent (0 bytes; an empty manifest is 4 zero bytes)")
            try:
                cc, ff = decode_manifest(blob, sid_ndim, max_fragments)
            except DecodeProblem as exc:
                raise DecodeProblem(f"manifest row {row} (object {int(object_ids[row])}): {exc}") from None
            if len(cc) == 0:
                continue
            idx = cc - origin
            ok = ((idx >= 0) & (idx < shape)).all(1)
            if not ok.all():
                bad = tuple(cc[np.flatnonzero(~ok)[0]].tolist())
                raise DecodeProblem(
                    f"manifest row {row} (object {int(object_ids[row])}) references chunk "
                    f"{bad} outside the grid")
            cells.append(np.ravel_multi_index(idx.T, tuple(shape)))
            frags.append(ff)
            oids.append(np.full(len(ff), int(object_ids[row]), np.int64))
        if not cells:
            z = np.zeros(0, np.int64)
            return cls(z, z, z)
        return cls(np.concatenate(cells).astype(np.int64), np.concatenate(frags),
                   np.concatenate(oids))

    def for_cell(self, linear: int) -> tuple[np.ndarray, np.ndarray]:
        """(fragment, object id) pairs of one cell."""
        a = np.searchsorted(self.cell, linear, "left")
        b = np.searchsorted(self.cell, linear, "right")
        return self.frag[a:b], self.oid[a:b]

    def __len__(self) -> int:
        return len(self.cell)
