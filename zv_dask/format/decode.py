"""Bytes of one cell -> numpy.  Pure: no IO, no zarr, no dask.

Decoders raise :class:`DecodeProblem` with a short message; the caller, who knows
the store, level, array and chunk, turns it into a :class:`~zv_dask.errors.ChunkDecodeError`.
"""

from __future__ import annotations

import numpy as np

from zv_dask.format.frames import DecodeProblem, decode_byte_codecs, strip_vlen_frame  # noqa: F401
# the fragment index decoder, re-exported
from zv_dask.format.fragment_index import (  # noqa: F401
    FRAGMENT_MAGIC,
    FragmentIndex,
    _ranges_concat,
)
from zv_dask.format.manifests import (  # noqa: F401  (manifest decoders, re-exported)
    _MAX_BLOCK_FRAGMENTS,
    OwnerTable,
    decode_manifest,
    row_owners,
)


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
