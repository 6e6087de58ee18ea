"""How many bytes a ``to_zv`` layout takes, known from the pre-pass.  Pure: no IO, no dask.

The format gives every level-0 chunk one fragment per bin, empty bins included, so a
fine ``bin_shape`` costs ``16 B x bins per chunk`` in every non-empty chunk whatever the
points: 200 points can take gigabytes.  :func:`layout_bytes` bounds the store's size
(all levels, documents included, before compression) from the non-empty level-0 chunks
and their row counts; :func:`check_overhead` refuses a layout far larger than its rows.
"""

from __future__ import annotations

import math

import numpy as np

from zv_dask.errors import WriteInputError
from zv_dask.write.grid import unique_rows

# refuse only above both: this many bytes and max_overhead times the rows' bytes
OVERHEAD_FLOOR = 256 * 2 ** 20
DEFAULT_MAX_OVERHEAD = 100
_FRAME = 8           # uint32 1, uint32 nbytes before every cell payload
_FRAG_HEADER = 20    # 16-byte header + the one uint32 csr offset
_LINK_HEADER = 16    # int64 K=1, int64 offset 0
_DOC = 900           # one array document without its nonempty_chunks list
_GROUP_DOC = 512     # a group (level, links) document


def _bins_touching(bpc: int, factor: int) -> int:
    """Most level-k bins (``factor`` base bins wide) meeting one chunk of ``bpc`` bins."""
    if bpc % factor == 0:
        return bpc // factor
    if factor % bpc == 0:
        return 1
    return (bpc - 1) // factor + 2


def _link_files(bpc, factor: int, fine_cells: int, fine_rows: int) -> tuple:
    """Most link files and link arrays (offsets) of one direction between levels."""
    if all(b % factor == 0 for b in bpc):   # coarse bins nest in the fine chunk
        return fine_cells, 1
    if all(factor % b == 0 for b in bpc):   # a coarse bin is whole fine chunks
        return fine_cells, min(fine_cells, math.prod(2 * (factor // b) - 1 for b in bpc))
    n_off = math.prod(2 * math.ceil(factor / b) + 1 for b in bpc)
    return min(fine_rows, fine_cells * 2 ** len(bpc)), min(fine_cells, n_off)


def level_sizes(spec, chunk_rows: np.ndarray, chunks=None) -> list:
    """Upper bounds ``[(non-empty chunks, rows)]`` per level.

    Level 0 is exact.  A level-k metavertex is one occupied bin of ``2**k`` base bins:
    no more than the rows of level k-1, nor than the bins meeting each occupied chunk,
    nor (bins made of whole chunks, given their coordinates) the distinct such bins.
    """
    chunk_rows = np.asarray(chunk_rows, np.int64)
    out = [(len(chunk_rows), int(chunk_rows.sum()))]
    bpc = np.asarray(spec.bins_per_chunk, np.int64)
    for k in range(1, spec.levels):
        f = 2 ** k
        per_chunk = math.prod(_bins_touching(int(b), f) for b in bpc)
        rows = min(out[-1][1], int(np.minimum(chunk_rows, per_chunk).sum()))
        if chunks is not None and len(chunks) and ((f % bpc) == 0).all():
            rows = min(rows, len(unique_rows(np.floor_divide(chunks * bpc, f))[1]))
        out.append((min(out[0][0], rows), rows))
    return out


def key_chars(chunks) -> int:
    """Length of the longest dotted key of ``chunks`` (bounded axis by axis)."""
    if chunks is None or not len(chunks):
        return 0
    return sum(max(len(str(int(c.min()))), len(str(int(c.max())))) for c in np.asarray(chunks).T) \
        + np.asarray(chunks).shape[1] - 1


def row_bytes(spec) -> int:
    """Bytes of one input row as stored: positions and every attribute."""
    b = spec.ndim * np.dtype(spec.dtype).itemsize
    for at in spec.attributes:
        b += np.dtype(at.dtype).itemsize * max(1, at.width)
    return b


def layout_bytes(spec, chunk_rows, chunks=None) -> int:
    """An upper bound of the bytes ``to_zv`` writes for ``spec``, uncompressed.

    ``chunk_rows`` are the rows of each non-empty level-0 chunk and ``chunks`` (optional,
    tightens the bound) their coordinates, as the pre-pass finds them.
    """
    sizes = level_sizes(spec, chunk_rows, chunks)
    width = key_chars(chunks) or spec.ndim * (len(str(max(
        abs(int(v)) for v in spec.grid()[0] + tuple(spec.grid()[1])))) + 2)
    entry = width + 10  # '"a.b.c",' plus the indent of an indented JSON list
    nbins = math.prod(spec.bins_per_chunk)
    frag0 = _FRAME + _FRAG_HEADER + 8 * math.ceil(nbins / 64) + 16 * nbins
    c0, n0 = sizes[0]
    n_attr = len(spec.attributes)
    total = n0 * row_bytes(spec) + c0 * (frag0 + _FRAME * (1 + n_attr))
    if spec.shard_shape is not None:  # a shard index (16 B per cell) per shard and array
        total += c0 * (2 + n_attr) * (16 * math.prod(spec.shard_shape) + 4)
    total += (2 + n_attr) * (_DOC + c0 * entry)
    for k in range(1, len(sizes)):
        (cf, nf), (ck, nk) = sizes[k - 1], sizes[k]
        total += ck * (2 * _FRAME + _FRAG_HEADER + 8) + nk * (4 * spec.ndim + 16) + nk // 8 + 8
        # links +1 and -1: one record per fine row each way, a file per (cell, offset)
        files, arrays = _link_files(spec.bins_per_chunk, 2 ** k, cf, nf)
        total += 2 * nf * 16 + 2 * files * (_FRAME + _LINK_HEADER)
        total += (2 + 2 * arrays) * _DOC + (2 * ck + 2 * files) * entry  # level, links docs
    return int(total + (3 * spec.levels + 2) * _GROUP_DOC)


def over_limit(estimate: int, input_bytes: int, max_overhead,
               floor: int = OVERHEAD_FLOOR) -> bool:
    """True when a layout is refused: above ``floor`` bytes *and* ``max_overhead``
    times the input's bytes (``max_overhead=None``: never)."""
    if max_overhead is None:
        return False
    return estimate > floor and estimate > float(max_overhead) * input_bytes


def check_max_overhead(max_overhead, store: str):
    """``None`` or a positive number."""
    if max_overhead is None:
        return None
    ok = isinstance(max_overhead, (int, float, np.integer, np.floating)) \
        and not isinstance(max_overhead, bool) and math.isfinite(max_overhead) and max_overhead > 0
    if not ok:
        raise WriteInputError(f"max_overhead must be a number > 0 or None, got {max_overhead!r}",
                              store=store)
    return float(max_overhead)


def check_overhead(spec, chunk_rows, max_overhead, store: str, chunks=None,
                   floor: int = OVERHEAD_FLOOR) -> int:
    """Refuse a layout far larger than its rows (before anything is written); return
    the estimate."""
    est = layout_bytes(spec, chunk_rows, chunks)
    n = int(np.asarray(chunk_rows, np.int64).sum())
    inp = n * row_bytes(spec)
    if over_limit(est, inp, max_overhead, floor):
        nbins = math.prod(spec.bins_per_chunk)
        raise WriteInputError(
            f"this layout would write about {est / 2**20:,.1f} MiB for {n} rows of "
            f"{inp / 2**20:,.3f} MiB ({est / max(inp, 1):,.0f}x, more than max_overhead="
            f"{max_overhead:g}): every one of the {len(chunk_rows)} non-empty level-0 chunks "
            f"stores a 16-byte fragment for each of its {nbins} bins (bin_shape "
            f"{spec.base_bin} in chunk_shape {spec.chunk_shape}). Use a larger bin_shape "
            "(or none), or pass max_overhead=None to write it anyway", store=store)
    return est
