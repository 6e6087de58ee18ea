"""Object manifests -> (cell, fragment) pairs, and which objects own each row.

Pure: no IO, no zarr, no dask.
"""

from __future__ import annotations

import struct

import numpy as np

from zv_dask.format.fragment_index import _ranges_concat
from zv_dask.format.frames import DecodeProblem

# Fragments a manifest's range blocks may name when the level records no vertex
# count to bound them (each expands to 8 * (sid_ndim + 1) bytes).
_MAX_BLOCK_FRAGMENTS = 1 << 22


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
    is what a per-chunk task carries.  Entries are sorted by cell, and keep their
    given order within a cell (a stable sort: a radix sort when the cell numbers fit
    16 bits).  Built by :meth:`from_manifests` it also keeps the decoded manifests
    (:meth:`manifests`), so whoever built it needs not decode them again.
    """

    __slots__ = ("cell", "frag", "oid", "entries")

    def __init__(self, cell: np.ndarray, frag: np.ndarray, oid: np.ndarray, entries=None):
        small = len(cell) and 0 <= int(cell.min()) and int(cell.max()) < 1 << 16
        order = np.argsort(cell.astype(np.uint16) if small else cell, kind="stable")
        self.cell, self.frag, self.oid = cell[order], frag[order], oid[order]
        self.entries = entries  # (row, coords, fragment) in manifest-row order, or None

    @classmethod
    def from_manifests(cls, blobs, object_ids, sid_ndim: int, shape, origin,
                       max_fragments: int | None = None) -> "OwnerTable":
        """Decode every manifest; ``object_ids[r]`` is the id of manifest row ``r``.

        Vectorised (:func:`zv_dask.format.owners.decode_manifest_rows`: numpy over the
        concatenated blobs, no Python loop per object).  A row that is absent
        (``None``/``b""``, zarr's fill value: its chunk object is missing or was
        truncated) is an error; an empty manifest is 4 zero bytes.
        """
        from zv_dask.format.owners import cell_numbers, decode_manifest_rows

        ids = np.asarray(object_ids, np.int64)
        row, coords, frags = decode_manifest_rows(blobs, sid_ndim, max_fragments, ids)
        cells = cell_numbers(row, coords, shape, origin, ids)
        return cls(cells, frags, ids[row] if len(row) else np.zeros(0, np.int64),
                   (row, coords, frags))

    def manifests(self, rows) -> list | None:
        """Decoded manifests ``[(coords, fragments), ...]`` of manifest rows, from the
        kept entries (``None`` when the table was not built from manifests)."""
        if self.entries is None:
            return None
        row, coords, frags = self.entries
        rows = np.asarray(rows, np.int64)
        a, b = np.searchsorted(row, rows, "left"), np.searchsorted(row, rows, "right")
        return [(coords[i:j], frags[i:j]) for i, j in zip(a.tolist(), b.tolist())]

    def for_cell(self, linear: int) -> tuple[np.ndarray, np.ndarray]:
        """(fragment, object id) pairs of one cell."""
        a = np.searchsorted(self.cell, linear, "left")
        b = np.searchsorted(self.cell, linear, "right")
        return self.frag[a:b], self.oid[a:b]

    def __len__(self) -> int:
        return len(self.cell)
