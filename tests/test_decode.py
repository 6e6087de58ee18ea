"""Decoders: random bytes only ever give our typed errors, never a crash or a bad shape."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zv_dask.format import decode as dec


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 4))
def test_random_bytes_give_typed_errors(blob, nd):
    for fn in (lambda: dec.strip_vlen_frame(blob),
               lambda: dec.FragmentIndex.from_bytes(blob).row_fragment_pairs(),
               lambda: dec.decode_manifest(blob, nd),
               lambda: dec.decode_vertices(blob, np.dtype("<f4"), nd),
               lambda: dec.decode_attribute(blob, np.dtype("<i2"), nd)):
        try:
            out = fn()
        except dec.DecodeProblem:
            continue
        if isinstance(out, np.ndarray) and out.ndim == 2:
            assert out.shape[1] == nd or out.shape[0] == nd


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(-5, 5), min_size=3, max_size=3),
                          st.integers(0, 2), st.lists(st.integers(0, 50), min_size=1, max_size=4)),
                max_size=6))
def test_manifest_roundtrip_all_modes(blocks):
    raw = struct.pack("<I", len(blocks))
    want_c, want_f = [], []
    for cc, mode, frs in blocks:
        raw += struct.pack("<3q", *cc) + bytes([mode])
        if mode == 0:
            raw += struct.pack("<q", frs[0])
            fl = frs[:1]
        elif mode == 1:
            raw += struct.pack("<qq", frs[0], len(frs))
            fl = list(range(frs[0], frs[0] + len(frs)))
        else:
            raw += struct.pack("<I", len(frs)) + struct.pack(f"<{len(frs)}q", *frs)
            fl = frs
        want_c += [cc] * len(fl)
        want_f += fl
    c, f = dec.decode_manifest(raw, 3)
    np.testing.assert_array_equal(c, np.asarray(want_c, np.int64).reshape(-1, 3))
    np.testing.assert_array_equal(f, want_f)
    with pytest.raises(dec.DecodeProblem):
        dec.decode_manifest(raw + b"\x00", 3)


def test_fragment_index_roundtrip_with_reference_encoder():
    from zarr_vectors.core.arrays import encode_fragments

    frags = [np.arange(0, 4), np.arange(4, 9), np.array([8, 2, 3]), np.arange(9, 12)]
    blob = encode_fragments(frags)
    fi = dec.FragmentIndex.from_bytes(blob)
    assert fi.num_fragments == 4
    for i, f in enumerate(frags):
        np.testing.assert_array_equal(fi.indices(i), f)
    rows, fr = fi.row_fragment_pairs()
    np.testing.assert_array_equal(rows, np.concatenate(frags))
    np.testing.assert_array_equal(fr, np.repeat(np.arange(4), [len(f) for f in frags]))
    assert not fi.tiles() and fi.num_range_fragments == 3
    assert dec.FragmentIndex.from_bytes(encode_fragments([(0, 3), (3, 2)])).tiles()
