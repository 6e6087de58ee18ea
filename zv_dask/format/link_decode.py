"""Link cells -> int64 records and endpoints in input order.  Pure: no IO."""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from zv_dask.format.link_meta import LinkArray


def decode_records(payload, link: LinkArray) -> np.ndarray:
    """One link cell -> (M, W) int64 rows (W = L, plus 1 with has_perm)."""
    W = link.width + int(link.has_perm)
    mv = memoryview(payload).cast("B")
    if link.intra:
        data = mv
    else:
        if len(mv) < 8:
            raise ValueError(f"ragged link blob of {len(mv)} bytes has no group count")
        (K,) = struct.unpack_from("<q", mv, 0)
        if K < 0 or 8 + 8 * K > len(mv):
            raise ValueError(f"ragged link blob says {K} groups but holds {len(mv)} bytes")
        offs = np.frombuffer(mv, "<i8", K, 8)
        base = 8 + 8 * K
        if K and (offs[0] != 0 or np.any(np.diff(offs) < 0) or base + offs[-1] > len(mv)):
            raise ValueError("ragged link blob has inconsistent group offsets")
        data = mv[base:]
    if len(data) % (8 * W):
        raise ValueError(f"{len(data)} bytes is not a whole number of {W}-wide int64 records")
    return np.frombuffer(data, "<i8").reshape(-1, W).astype(np.int64)


def lehmer_permutations(codes: np.ndarray, L: int) -> np.ndarray:
    """Lehmer codes -> (M, L) permutations: ``original[perm[i]] = stored[i]``."""
    codes = np.asarray(codes, np.int64)
    if len(codes) and (codes.min() < 0 or codes.max() >= math.factorial(L)):
        raise ValueError(f"permutation code outside 0..{math.factorial(L) - 1}")
    out = np.empty((len(codes), L), np.int64)
    for code in np.unique(codes).tolist():
        avail = list(range(L))
        fact = math.factorial(L)
        p = code
        perm = []
        for i in range(L):
            fact //= (L - i)
            k, p = divmod(p, fact)
            perm.append(avail.pop(k))
        out[codes == code] = perm
    return out


def endpoints(records: np.ndarray, link: LinkArray, source) -> tuple[np.ndarray, np.ndarray]:
    """(rows (M, L), cells (M, L, rank)) in the input endpoint order."""
    L = link.width
    src = np.asarray(source, np.int64)
    cells = np.concatenate([src[None], src[None] + link.offsets])  # (L, rank)
    if link.has_perm:
        vi = records[:, 1:]
        perm = lehmer_permutations(records[:, 0], L)
        rows = np.empty_like(vi)
        ecell = np.empty((len(vi), L, len(src)), np.int64)
        m = np.arange(len(vi))[:, None]
        rows[m, perm] = vi
        ecell[m, perm] = cells[None]
        return rows, ecell
    return records, np.broadcast_to(cells[None], (len(records), L, len(src))).copy()
