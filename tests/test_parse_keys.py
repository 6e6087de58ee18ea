"""The vectorised presence-list parser against a plain Python reading of the same keys:
it accepts exactly the keys the grammar allows, with the same values, and refuses the
rest (hypothesis-generated keys, valid and hostile)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zv_dask.format.arrays import parse_keys, presence_from_coords

MAX_INDEX = 2**62
_FIELD = re.compile(r"-?[0-9]+")


def reference(keys, rank):
    """``(K, rank)`` values, or None when some key breaks the grammar or the range."""
    out = []
    for k in keys:
        fields = k.split(".")
        if len(fields) != rank or not all(_FIELD.fullmatch(f) for f in fields):
            return None
        vals = [int(f) for f in fields]
        if any(abs(v) > MAX_INDEX for v in vals):
            return None
        out.append(vals)
    return np.array(out, np.int64).reshape(len(keys), rank)


digits = st.text("0123456789", min_size=1, max_size=22)
field = st.builds(lambda sign, d: sign + d, st.sampled_from(["", "-"]), digits)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4).flatmap(
    lambda r: st.tuples(st.just(r), st.lists(st.lists(field, min_size=r, max_size=r)
                                             .map(".".join), min_size=1, max_size=30))))
def test_valid_keys_parse_like_python(case):
    # leading zeros, "-0", up to 22 digits (the long ones take the range-checked path)
    rank, keys = case
    want = reference(keys, rank)
    if want is None:  # a value beyond +-2**62
        with pytest.raises(ValueError):
            parse_keys(keys, rank)
    else:
        np.testing.assert_array_equal(parse_keys(keys, rank), want)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 3), st.lists(st.text("0123456789.-,", max_size=9), min_size=1,
                                   max_size=6))
def test_hostile_keys_refused_exactly_when_python_refuses(rank, keys):
    want = reference(keys, rank)
    if want is None:
        with pytest.raises(ValueError):
            parse_keys(keys, rank)
    else:
        np.testing.assert_array_equal(parse_keys(keys, rank), want)


@pytest.mark.parametrize("keys", [
    ["--1.2.3"], ["1.-2-.3"], ["1.2.3-"], ["1.2.3", "-"], ["1.2.3", "1.2.3,"],
    [",1.2.3"], ["1.2.3", ""], ["1.2.3", ".."], ["1.2.3-1"], ["1.2,3"],
    ["1.2.4611686018427387905"], ["1.2.-4611686018427387905"],
])
def test_refused(keys):
    with pytest.raises(ValueError):
        parse_keys(keys, 3)


def test_boundaries_and_long_fields():
    keys = ["4611686018427387904.-4611686018427387904.0",  # +-2**62 are allowed
            "000000000000000000000000007.-0.999999999999999999"]
    np.testing.assert_array_equal(parse_keys(keys, 3),
                                  [[2**62, -(2**62), 0], [7, 0, 999999999999999999]])


@pytest.mark.parametrize("places", [1, 2, 4, 5, 9, 10, 18, 19])
def test_every_accumulator_width_reads_its_largest_values(places):
    # the digits are summed in uint16 / uint32 / int64 depending on the longest field
    top = min(10 ** places - 1, MAX_INDEX)
    keys = [f"{top}.-{top}.0", f"0.{top // 7}.-{10 ** (places - 1)}", "-0.00.1"]
    want = reference(keys, 3)
    np.testing.assert_array_equal(parse_keys(keys, 3), want)


@pytest.mark.parametrize("dense", [True, False])
def test_presence_sorted_unique_on_dense_and_sparse_grids(dense):
    from zv_dask.format.arrays import parse_array

    side = 20 if dense else 5000
    doc = {"zarr_format": 3, "node_type": "array", "shape": [side] * 3,
           "data_type": "variable_length_bytes",
           "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1, 1]}},
           "codecs": [{"name": "vlen-bytes"}], "attributes": {"chunk_grid_origin": [-3] * 3}}
    arr = parse_array(doc, "vertices", "demo", 0)
    rng = np.random.default_rng(3)
    coords = rng.integers(-3, side - 3, (2000, 3))
    coords = np.concatenate([coords, coords[:50]])  # repeats are dropped
    got = presence_from_coords(coords, arr, "demo", 0).linear
    want = np.unique(np.ravel_multi_index(tuple((coords + 3).T), arr.shape))
    np.testing.assert_array_equal(got, want)
