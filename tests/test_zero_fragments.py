"""A cell with zero fragments: the reference writer stores a bare 16-byte header."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import zv_dask
from zv_dask.format import decode as dec

from zvfixtures import BOUNDS3, _streamlines, reference_level


@pytest.fixture(scope="module")
def zero_fragment_store(tmp_path_factory):
    """Polylines, plus one empty cell written with no fragment groups."""
    from zarr_vectors import building as B

    path = tmp_path_factory.mktemp("zerofrag") / "lines.zarrvectors"
    lines = _streamlines(np.random.default_rng(11), 4)
    B.write_polylines(str(path), lines, chunk_shape=(500.0,) * 3, bounds=BOUNDS3)
    s = zv_dask.open_zv(str(path))
    used = set(s.chunks(0))
    cell = next((i, j, k) for i in range(4) for j in range(4) for k in range(4)
                if (i, j, k) not in used)
    s.close()
    g = B.get_resolution_level(B.open_store(str(path), mode="r+"), 0)
    B.write_chunk_vertices(g, cell, [], np.float32)
    return str(path), cell


def test_reference_encoder_writes_a_bare_header_for_no_fragments():
    from zarr_vectors.encoding.fragments import encode_fragments

    blob = encode_fragments([])
    fi = dec.FragmentIndex.from_bytes(blob)
    assert len(blob) == 16 and fi.num_fragments == 0 and fi.num_range_fragments == 0
    assert fi.counts().tolist() == [] and fi.tiles()
    rows, frag = fi.row_fragment_pairs()
    assert rows.tolist() == [] and frag.tolist() == []
    assert dec.FragmentIndex.from_bytes(blob, n_rows=0).num_fragments == 0
    # the longer form (one csr offset, 0) stays accepted
    assert dec.FragmentIndex.from_bytes(blob + b"\x00" * 4).num_fragments == 0


@pytest.mark.parametrize("blob", [
    struct.pack("<IHHII", dec.FRAGMENT_MAGIC, 1, 0, 1, 0),  # one fragment, no tables
    struct.pack("<IHHII", dec.FRAGMENT_MAGIC, 1, 0, 0, 1),  # a range out of no fragments
    struct.pack("<IHHII", dec.FRAGMENT_MAGIC, 2, 0, 0, 0),  # unknown version
    struct.pack("<IHHII", dec.FRAGMENT_MAGIC, 1, 1, 0, 0),  # unknown flags
    struct.pack("<IHHII", 0x12345678, 1, 0, 0, 0),           # wrong magic
    struct.pack("<IHHII", dec.FRAGMENT_MAGIC, 1, 0, 0, 0)[:15],
    struct.pack("<IHHII", dec.FRAGMENT_MAGIC, 1, 0, 0, 0) + b"\x00",
    struct.pack("<IHHII", dec.FRAGMENT_MAGIC, 1, 0, 0, 0) + struct.pack("<I", 5),
])
def test_near_misses_of_the_bare_header_are_refused(blob):
    with pytest.raises(dec.DecodeProblem):
        dec.FragmentIndex.from_bytes(blob)


def test_zero_fragment_cell_of_a_reference_store(zero_fragment_store):
    from zarr_vectors import building as B
    from zarr_vectors.encoding.fragments import encode_fragments

    path, cell = zero_fragment_store
    with zv_dask.open_zv(path) as s:
        arr = s.raw_array("vertex_fragments")
        stored = bytes(arr[tuple(slice(c, c + 1) for c in cell)].flat[0])
        assert stored == encode_fragments([])  # the bare header, as written
        fi = zv_dask.read_fragment_index(s.level_group(0), "vertex_fragments", cell)
        ref = B.read_vertex_fragment_index(
            B.get_resolution_level(B.open_store(path, mode="r"), 0), cell)
        assert fi.num_fragments == len(ref) == 0
        # the level still reads as the reference reads it
        got = s.read(level=0)
        want = reference_level(path, 0)
        np.testing.assert_array_equal(got["positions"], want["positions"])
        np.testing.assert_array_equal(got["object_ids"], want["owner"])


def test_header_of_a_cell_with_fragments_is_truncated(zero_fragment_store):
    from zarr_vectors.encoding.fragments import encode_fragments

    path, _ = zero_fragment_store
    with zv_dask.open_zv(path) as s:
        cell = s.chunks(0)[0]
        blob = bytes(s.raw_array("vertex_fragments")[tuple(slice(c, c + 1) for c in cell)].flat[0])
    assert blob != encode_fragments([]) and dec.FragmentIndex.from_bytes(blob).num_fragments > 0
    with pytest.raises(dec.DecodeProblem, match="truncated"):
        dec.FragmentIndex.from_bytes(blob[:16])
