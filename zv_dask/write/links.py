"""Explicit ``links/0`` records (graph edges, mesh faces) placed as the reference's
``write_links`` places them, and their cell files.  Pure: no IO, no dask.

A record of ``L`` endpoints ``(chunk, row in chunk)``: when every endpoint is in one
cell it keeps its input order and goes to the intra array ``0.0...0`` (flat rows, with a
one-range ``link_fragments`` cell); otherwise its endpoints are sorted by ``(chunk,
row)``, the first one's cell holds it, the array is named by the other endpoints'
offsets, and column 0 is the Lehmer code restoring the input order.  Within a cell,
records keep input (edge/face) order.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from zv_dask.format import encode as E


def lehmer_codes(sigma: np.ndarray) -> np.ndarray:
    """Lehmer code of each row permutation ``sigma`` (M, L)."""
    m, n = sigma.shape
    code = np.zeros(m, np.int64)
    for i in range(n):
        smaller_after = (sigma[:, i + 1:] < sigma[:, i:i + 1]).sum(axis=1)
        code += smaller_after * factorial(n - 1 - i)
    return code


def place_records(chunks: np.ndarray, vi: np.ndarray) -> tuple:
    """``(source cell (M, D), offsets (M, L-1, D), placed rows (M, L), perm (M,), intra (M,))``
    of records with endpoint cells ``chunks`` (M, L, D) and rows ``vi`` (M, L)."""
    m, width, d = chunks.shape
    intra = (chunks == chunks[:, :1, :]).all(axis=(1, 2))
    sigma = _endpoint_order(chunks, vi)
    sigma = np.where(intra[:, None], np.arange(width)[None, :], sigma)
    rows = np.arange(m)[:, None]
    placed_c, placed_v = chunks[rows, sigma], vi[rows, sigma]
    src = placed_c[:, 0, :]
    return src, placed_c[:, 1:, :] - src[:, None, :], placed_v, lehmer_codes(sigma), intra


def _endpoint_order(chunks: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """Per record, its endpoints sorted by ``(cell, row)`` (stable): an (M, L) argsort of
    one int64 key when cells and rows fit one, else a lexsort of every endpoint."""
    m, width, d = chunks.shape
    flat = chunks.reshape(-1, d)
    if m:
        lo, span = flat.min(axis=0), flat.max(axis=0) - flat.min(axis=0) + 1
        rows = int(vi.max()) + 1 if vi.size else 1
        if int(np.prod(span.astype(object))) * rows < 2 ** 62 and vi.min() >= 0:
            cell = np.ravel_multi_index(tuple((flat - lo).T), tuple(int(x) for x in span))
            key = (cell * rows + vi.reshape(-1)).reshape(m, width)
            return np.argsort(key, axis=1, kind="stable")
    rec = np.repeat(np.arange(m, dtype=np.int64), width)
    order = np.lexsort([vi.reshape(-1)] + [flat[:, a] for a in range(d - 1, -1, -1)] + [rec])
    return order.reshape(m, width) - (np.arange(m, dtype=np.int64) * width)[:, None]


def segment_name(offsets: np.ndarray) -> str:
    """``0.+1.0`` (one other endpoint) or ``0.0.0_+1.0.0`` (several)."""
    return "_".join(E.offsets_segment(o) for o in offsets)


def link_cells(src, offsets, placed_v, perm, intra, seq, attrs: dict, origin,
               compressor=None) -> tuple:
    """Cell files of the records (any subset, whole cells), and ``[(segment, cell key,
    records)]``.  ``seq`` is each record's input position (their order in a cell);
    ``attrs`` maps a link attribute name to its (M,) or (M, C) values."""
    m = len(seq)
    if m == 0:
        return {}, []
    d = src.shape[1]
    flat = offsets.reshape(m, -1)
    lo = flat.min(axis=0)
    span = flat.max(axis=0) - lo + 1
    if float(np.prod(span.astype(np.float64))) < 2.0 ** 62:  # one int64 key per record
        _, first, seg_inv = np.unique(np.ravel_multi_index(tuple((flat - lo).T), span),
                                      return_index=True, return_inverse=True)
        uniq = flat[first]
    else:  # pragma: no cover - offsets spanning more than 2**62 cells
        uniq, seg_inv = np.unique(flat, axis=0, return_inverse=True)
    seg_inv = seg_inv.reshape(-1)
    seg_ids = [segment_name(u.reshape(offsets.shape[1:])) for u in uniq]  # a few names
    order = np.lexsort([seq] + [src[:, a] for a in range(d - 1, -1, -1)] + [seg_inv])
    key = np.concatenate([seg_inv[:, None], src], axis=1)[order]
    cuts = np.flatnonzero((key[1:] != key[:-1]).any(axis=1)) + 1
    blobs, cells = {}, []
    for a, b in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [m]))):
        i = order[a:b]
        seg, coord = str(seg_ids[seg_inv[i[0]]]), src[i[0]]
        if intra[i[0]]:
            body = E.rows_payload(placed_v[i], "<i8")
            blobs["0/" + E.cell_path("link_fragments", coord, origin)] = E.frame(
                E.fragment_index([len(i)]), compressor)
        else:
            body = E.ragged_links(np.concatenate([perm[i][:, None], placed_v[i]], axis=1))
        blobs["0/" + E.cell_path(f"links/0/{seg}", coord, origin)] = E.frame(body, compressor)
        for name, values in attrs.items():
            blobs["0/" + E.cell_path(f"link_attributes/{name}/0/{seg}", coord, origin)] = \
                E.frame(E.rows_payload(values[i], values.dtype), compressor)
        cells.append((seg, E.cell_key(coord), int(b - a)))
    return blobs, cells

