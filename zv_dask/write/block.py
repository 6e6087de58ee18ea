"""One block of rows -> the cell files of every level under it.  Pure: no IO, no dask.

A block is ``spec.block_chunks`` level-0 chunks per axis, sized so that every coarse
bin, coarse chunk and fine chunk of the pyramid lies inside one block.  So one task
builds level 0 and then each coarse level from the finer one, exactly as the
reference's ``write_points`` + ``build_pyramid(factors=[(2, 1)] * (levels - 1))``:

* level 0: rows sorted by chunk, then bin (fragment), then input order; one range
  fragment per bin, empty bins included;
* level k: level k-1 positions (in the level-0 dtype) binned with ``floor(p / bin_k)``,
  one metavertex per occupied bin at the float64 centroid stored in that dtype, ordered inside
  its chunk as ``np.unique`` orders the raw bytes of the int64 bin coordinates; one
  fragment per metavertex; ``links/+1`` at level k-1 (fine row -> parent) and
  ``links/-1`` at level k (parent -> fine row), grouped by chunk offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zv_dask.format import encode as E
from zv_dask.write.plan import WriteSpec, level0_chunks


@dataclass
class BlockResult:
    """Cell files (relative path -> bytes) and what they hold, for the level documents."""

    blobs: dict
    cells: list          # (level, array, dotted coord, rows or records)


def _groups(keys: np.ndarray):
    """Start/stop of runs of equal rows in an already sorted (N, K) key array."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.any(keys[1:] != keys[:-1], axis=1) if keys.ndim == 2 else keys[1:] != keys[:-1]
    starts = np.concatenate(([0], np.flatnonzero(change) + 1))
    return starts, np.concatenate((starts[1:], [n]))


def build_block(spec: WriteSpec, pos: np.ndarray, attrs: dict, seq: np.ndarray) -> BlockResult:
    """Encode every cell of every level for the rows of one block, or of several whole
    blocks at once (each block's cells are the same either way).

    ``pos`` is ``(N, D)`` in ``spec.dtype``; ``attrs`` maps attribute names to arrays in
    their stored dtype (codes for categoricals), ``(N,)`` or ``(N, C)``; ``seq`` gives
    the input order.
    """
    origin = spec.grid()[0]
    out = BlockResult({}, [])
    chunks, frag = level0_chunks(pos, spec)
    n = len(pos)
    # rows in input order (a local write's blocks): a stable sort of one int64 key of
    # (chunk, bin) is the lexsort of (chunk, bin, seq), at a fraction of the time
    lin = None
    if n and (n < 2 or bool((seq[1:] >= seq[:-1]).all())):
        lin = _linear_key([chunks[:, a] for a in range(spec.ndim)] + [frag])
    keyed = lin is not None
    if keyed:
        order = _stable_order(lin)
        starts, stops = _groups(lin[order])
        del lin
    else:
        keys = [seq, frag] + [chunks[:, a] for a in range(spec.ndim - 1, -1, -1)]
        order = np.lexsort(keys) if n else np.zeros(0, np.int64)
        del keys
    chunks, frag, pos = np.take(chunks, order, axis=0), frag[order], np.take(pos, order, axis=0)
    if not keyed:
        starts, stops = _groups(chunks)
    else:  # runs of equal (chunk, bin): keep the chunk boundaries only
        first = np.concatenate(([True], np.any(chunks[starts[1:]] != chunks[starts[1:] - 1],
                                               axis=1))) if len(starts) else np.zeros(0, bool)
        starts = starts[first]
        stops = np.concatenate((starts[1:], [n])) if len(starts) else starts
    nbins = int(np.prod(spec.bins_per_chunk))
    vi = np.zeros(len(pos), np.int64)
    for a, b in zip(starts, stops):
        coord = chunks[a]
        vi[a:b] = np.arange(b - a)
        put = _putter(out, 0, coord, origin, spec.compressor)
        put("vertices", E.rows_payload(pos[a:b], spec.dtype), b - a)
        put("vertex_fragments", E.fragment_index(np.bincount(frag[a:b], minlength=nbins)))
        for at in spec.attributes:
            put(f"vertex_attributes/{at.name}", E.rows_payload(attrs[at.name][order[a:b]], at.dtype))
    del frag, order, attrs, seq  # level 0 is encoded: only positions go on
    # coarse levels keep level 0's dtype: float32 is the reference's, and float64 stays
    # float64 so that large coordinates (UTM) are not moved across chunk faces
    fine_pos = pos.astype(spec.dtype, copy=False)
    for level in range(1, spec.levels):
        fine_pos, chunks, vi = _coarsen(spec, level, fine_pos, chunks, vi, origin, out)
    return out


def _putter(out: BlockResult, level: int, coord, origin, compressor):
    key = E.cell_key(coord)
    # "<level>/<array>/c/<i>/<j>/..." with the index part made once for the cell's arrays
    head, tail = E.cell_path("|", coord, origin).split("|")

    def put(array, payload, count=None):
        out.blobs[f"{level}/{head}{array}{tail}"] = E.frame(payload, compressor)
        if count is not None:
            out.cells.append((level, array, key, int(count)))
    return put


def _coarsen(spec: WriteSpec, level: int, fine_pos, fine_chunks, fine_vi, origin, out):
    """Level ``level`` from the rows of ``level - 1`` (given in chunk-major order)."""
    n = len(fine_pos)
    d = spec.ndim
    if n == 0:
        return fine_pos, fine_chunks, fine_vi
    b = fine_pos / np.asarray(spec.level_bin(level), np.float64)
    np.floor(b, out=b)
    bins = b.astype(np.int64)
    del b
    inv = _byte_order_inverse(bins)
    del bins
    m = int(inv.max()) + 1
    counts = np.bincount(inv, minlength=m)
    cent = np.empty((m, d), fine_pos.dtype)
    for a in range(d):
        cent[:, a] = np.bincount(inv, weights=fine_pos[:, a].astype(np.float64), minlength=m) / counts
    mv_chunks = np.floor(cent / np.asarray(spec.chunk_shape, np.float64)).astype(np.int64)
    _check_nested(spec, fine_chunks, mv_chunks, inv)
    order = np.lexsort([np.arange(m)] + [mv_chunks[:, a] for a in range(d - 1, -1, -1)])
    mv_vi = np.empty(m, np.int64)
    starts, stops = _groups(mv_chunks[order])
    for a, b in zip(starts, stops):
        mv_vi[order[a:b]] = np.arange(b - a)
        coord = mv_chunks[order[a]]
        put = _putter(out, level, coord, origin, None)
        put("vertices", E.rows_payload(cent[order[a:b]], cent.dtype), b - a)
        put("vertex_fragments", E.fragment_index(np.ones(b - a, np.int64)))
    parent_chunks, parent_vi = np.take(mv_chunks, inv, axis=0), mv_vi[inv]
    # +1 at the fine level: (fine row, parent) in the fine cell
    _links(out, level - 1, "+1", fine_chunks, parent_chunks, fine_vi, parent_vi, origin)
    # -1 at the coarse level: (parent, fine row) in the parent's cell, fine order kept
    _links(out, level, "-1", parent_chunks, fine_chunks, parent_vi, fine_vi, origin)
    return cent[order], mv_chunks[order], mv_vi[order]


def _links(out, level, delta, src_chunks, trg_chunks, src_vi, trg_vi, origin):
    """Records grouped by (source cell, offset), input order kept inside a group."""
    d = src_chunks.shape[1]
    lin = _linear_key([src_chunks[:, a] for a in range(d)]
                      + [(lambda a=a: trg_chunks[:, a] - src_chunks[:, a]) for a in range(d)])
    if lin is None:  # pragma: no cover - key space too wide for one int64
        key = np.concatenate([src_chunks, trg_chunks - src_chunks], axis=1)
        order = np.lexsort(key.T[::-1])
        starts, stops = _groups(key[order])
    else:  # one int64 per row sorts like the (2D)-column lexsort, at a fraction of memory
        order = _stable_order(lin)
        starts, stops = _groups(lin[order])
        del lin
    rows = np.empty((len(order), 2), "<i8")
    rows[:, 0], rows[:, 1] = src_vi[order], trg_vi[order]
    for a, b in zip(starts, stops):
        i = order[a]
        coord, off = src_chunks[i], trg_chunks[i] - src_chunks[i]
        array = f"links/{delta}/{E.offsets_segment(off)}"
        out.blobs[f"{level}/" + E.cell_path(array, coord, origin)] = E.frame(E.ragged_links(rows[a:b]))
        out.cells.append((level, array, E.cell_key(coord), int(b - a)))


def _stable_order(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` of a key in ``[0, 2**16)`` (what
    :func:`_linear_key` gives for a block's few chunks) as numpy's radix sort of 16-bit
    integers; any other key as it is."""
    if len(key) and 0 <= int(key.min()) and int(key.max()) < 1 << 16:
        return np.argsort(key.astype(np.uint16), kind="stable")
    return np.argsort(key, kind="stable")


def _byte_order_inverse(bins: np.ndarray) -> np.ndarray:
    """``np.unique(rows as raw bytes, return_inverse=True)[1]`` of an ``(N, D)`` int64
    array (the reference's metavertex order), as int64: the distinct rows are found on
    one int64 key (a lookup table when its span is small, else a sort), and only they
    are ordered by their bytes."""
    n, d = bins.shape
    lin = _linear_key([bins[:, a] for a in range(d)]) if n else None
    void = np.dtype((np.void, 8 * d))
    if lin is None:  # empty, or a key space too wide for one int64
        _, inv = np.unique(np.ascontiguousarray(bins).view(void).ravel(), return_inverse=True)
        return inv.reshape(-1).astype(np.int64)
    span = int(lin.max()) + 1
    if span <= 4 * n + 4096:
        seen = np.zeros(span, bool)
        seen[lin] = True
        ulin = np.flatnonzero(seen)
        table = np.empty(span, np.int64)
        table[ulin] = np.arange(len(ulin))
        rank = table[lin]
    else:
        ulin, rank = np.unique(lin, return_inverse=True)
        rank = rank.reshape(-1)
    m = len(ulin)
    rows = np.empty((m, d), np.int64)
    rows[rank] = bins  # rows of one rank are equal: any of them will do
    by_bytes = np.argsort(rows.view(void).ravel(), kind="stable")
    place = np.empty(m, np.int64)
    place[by_bytes] = np.arange(m)
    return place[rank]


def _linear_key(cols):
    """Mixed-radix int64 of integer columns (first column most significant), ordered as
    their lexicographic order; None when the ranges do not fit in 62 bits.  A column may
    be a callable making it (one temporary column at a time)."""
    n = len(cols[0]) if not callable(cols[0]) else len(cols[0]())
    lin = np.zeros(n, np.int64)
    if n == 0:
        return lin
    span = 1
    for c in cols:
        c = c() if callable(c) else c
        lo, hi = int(c.min()), int(c.max())
        r = hi - lo + 1
        span *= r
        if span >= 1 << 62:
            return None
        lin *= r
        lin += c
        lin -= lo
    return lin


def _check_nested(spec: WriteSpec, fine_chunks, mv_chunks, inv):
    """Every metavertex lies in the block of its fine rows (the rows of several blocks
    may be coarsened together: bins nest in blocks, so each block's result is its own)."""
    m = np.asarray(spec.block_chunks, np.int64)
    lo = np.floor_divide(fine_chunks.min(axis=0), m)
    if (lo == np.floor_divide(fine_chunks.max(axis=0), m)).all():
        # one block (the usual case): every metavertex has fine rows, so each must be in it
        outside = np.floor_divide(mv_chunks, m) != lo
    else:
        outside = np.floor_divide(mv_chunks[inv], m) != np.floor_divide(fine_chunks, m)
    if outside.any():  # pragma: no cover - rounding guard
        from zv_dask.errors import WriteInputError

        raise WriteInputError(
            "a coarse metavertex fell outside the block of its fine rows (floating-point "
            "rounding at a block face); choose "
            "chunk and bin shapes that are powers of two multiples of each other, write "
            "one level, or shift the coordinates towards 0", store=spec.store_name)
