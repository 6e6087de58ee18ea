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

# refuse only above both: this many bytes and max_overhead times the rows' bytes
OVERHEAD_FLOOR = 256 * 2 ** 20
DEFAULT_MAX_OVERHEAD = 100
_FRAME = 8           # uint32 1, uint32 nbytes before every cell payload
_FRAG_HEADER = 20    # 16-byte header + the one uint32 csr offset
_LINK_HEADER = 16    # int64 K=1, int64 offset 0
_DOC = 1024          # one array document without its nonempty_chunks list
_GROUP_DOC = 512     # a group (level, links) document


def _bins_touching(bpc: int, factor: int) -> int:
    """Most level-k bins (``factor`` base bins wide) meeting one chunk of ``bpc`` bins."""
    if bpc % factor == 0:
        return bpc // factor
    if factor % bpc == 0:
        return 1
    return (bpc - 1) // factor + 2


def level_sizes(spec, chunk_rows: np.ndarray) -> list:
    """Upper bounds ``[(non-empty chunks, rows)]`` per level.

    Level 0 is exact.  A level-k metavertex is one occupied bin of ``2**k`` base bins:
    no more than the rows of level k-1, nor than the bins meeting each occupied chunk.
    """
    chunk_rows = np.asarray(chunk_rows, np.int64)
    out = [(len(chunk_rows), int(chunk_rows.sum()))]
    for k in range(1, spec.levels):
        per_chunk = math.prod(_bins_touching(b, 2 ** k) for b in spec.bins_per_chunk)
        rows = min(out[-1][1], int(np.minimum(chunk_rows, per_chunk).sum()))
        out.append((min(out[0][0], rows), rows))
    return out


def row_bytes(spec) -> int:
    """Bytes of one input row as stored: positions and every attribute."""
    b = spec.ndim * np.dtype(spec.dtype).itemsize
    for at in spec.attributes:
        b += np.dtype(at.dtype).itemsize * max(1, at.width)
    return b


def layout_bytes(spec, chunk_rows, key_chars: int = 0) -> int:
    """An upper bound of the bytes ``to_zv`` writes for ``spec``, uncompressed.

    ``chunk_rows`` are the rows of each non-empty level-0 chunk; ``key_chars`` the
    longest dotted chunk key (sizes the ``nonempty_chunks`` lists; 0: from ``spec``).
    """
    sizes = level_sizes(spec, chunk_rows)
    if not key_chars:
        key_chars = spec.ndim * (len(str(max(abs(int(v)) for v in spec.grid()[0]
                                             + tuple(spec.grid()[1])))) + 2)
    entry = key_chars + 10  # '"a.b.c",' plus the indent of an indented JSON list
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
        # links +1 (fine cells) and -1 (coarse cells): one record per fine row each way
        total += 2 * nf * 16 + (cf + ck) * (_FRAME + _LINK_HEADER)
        total += 4 * _DOC + (2 * ck + cf + ck) * entry
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


def check_overhead(spec, chunk_rows, max_overhead, store: str,
                   floor: int = OVERHEAD_FLOOR) -> int:
    """Refuse a layout far larger than its rows (before anything is written); return
    the estimate."""
    est = layout_bytes(spec, chunk_rows)
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
            "(or none), or pass max_overhead=None (zv-dask convert --max-overhead none) to "
            "write it anyway", store=store)
    return est
