"""The pure writer modules, from plain values: plan arithmetic, encoders round-tripping
through our own decoders, one block encoded and decoded again."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest

from zv_dask.errors import WriteInputError
from zv_dask.format import decode as dec
from zv_dask.format import encode as E
from zv_dask.read.links import decode_records
from zv_dask.write import plan as P
from zv_dask.write.block import build_block


def _spec(**kw):
    base = dict(store_name="t", axes=("x", "y", "z"), chunk_shape=(100.0,) * 3, bin_shape=None,
                bounds=((-500.0,) * 3, (500.0,) * 3))
    base.update(kw)
    return P.WriteSpec(**base)


def test_an_empty_fragment_index_is_the_bare_header():
    # the reference's sentinel for F == 0 (never written by to_zv: empty cells get no file)
    assert E.fragment_index([]) == bytes.fromhex("4746565a010000000000000000000000")


@pytest.mark.parametrize("counts", [[5], [0, 0, 3], list(range(8)), [1] * 9,
                                    np.random.default_rng(0).integers(0, 4, 1000).tolist()])
def test_fragment_index_round_trips_through_the_decoder(counts):
    fi = dec.FragmentIndex.from_bytes(E.fragment_index(counts))
    assert fi.num_fragments == fi.num_range_fragments == len(counts)
    np.testing.assert_array_equal(fi.counts(), np.asarray(counts, np.int64))
    assert fi.tiles()
    starts = np.cumsum(counts) - np.asarray(counts)
    assert all(tuple(fi.range(i)) == (starts[i], counts[i]) for i in range(len(counts)))


def test_frames_and_payloads_round_trip():
    pos = np.random.default_rng(1).random((7, 3)).astype(np.float32)
    raw = E.frame(E.rows_payload(pos, "float32"))
    np.testing.assert_array_equal(
        dec.decode_vertices(dec.strip_vlen_frame(raw), np.dtype("<f4"), 3), pos)
    rgb = np.arange(21, dtype=np.uint8).reshape(7, 3)
    z = E.frame(E.rows_payload(rgb, "uint8"), "zstd")
    plain = dec.decode_byte_codecs(z, (("zstd", {}),))
    got = dec.decode_attribute(dec.strip_vlen_frame(plain), np.dtype("u1"), 7)
    np.testing.assert_array_equal(got, rgb)
    assert E.frame(b"") == b"\x01\x00\x00\x00\x00\x00\x00\x00"


def test_ragged_link_cells_round_trip():
    rows = np.array([[0, 3], [1, 3], [5, 0]], np.int64)
    link = types.SimpleNamespace(width=2, has_perm=False, intra=False)
    got = decode_records(dec.strip_vlen_frame(E.frame(E.ragged_links(rows))), link)
    np.testing.assert_array_equal(got, rows)


def test_names_and_paths():
    assert E.offsets_segment((0, 1, -1)) == "0.+1.-1"
    assert E.offsets_segment((-2, 0)) == "-2.0"
    assert E.cell_key((-1, 0, 12)) == "-1.0.12"
    assert E.cell_path("vertices", (-1, 0, 2), (-2, -2, 0)) == "vertices/c/1/2/2"


def test_grid_layout_is_inclusive_with_negative_origin():
    assert P.grid_layout(([-1000, 0], [1000, 2000]), (500, 500)) == ((-2, 0), (5, 5))
    assert P.grid_layout(([0.5], [999.9]), (500,)) == ((0,), (2,))


def test_level0_cells_follow_floor_of_bins_on_faces_and_below_zero():
    spec = _spec(bin_shape=(50.0,) * 3)
    pos = np.array([[0, 0, 0], [100, -100, 99.999], [-0.001, 49.99, 50], [-100, -100.5, 250]],
                   np.float32)
    chunks, frag = P.level0_chunks(pos, spec)
    np.testing.assert_array_equal(chunks, np.floor(pos.astype(np.float64) / 100).astype(int))
    local = np.floor(pos.astype(np.float64) / 50).astype(int) - 2 * chunks
    np.testing.assert_array_equal(frag, local @ np.array([4, 2, 1]))


@pytest.mark.parametrize("bins, levels, want", [(None, 1, 1), (None, 3, 4), (50.0, 3, 2),
                                                 (25.0, 3, 1), (25.0, 4, 2)])
def test_block_holds_every_coarse_bin(bins, levels, want):
    spec = _spec(bin_shape=None if bins is None else (bins,) * 3, levels=levels)
    assert spec.block_chunks == (want,) * 3
    top_bin = spec.level_bin(levels - 1)[0]
    block = want * spec.chunk_shape[0]
    assert block % top_bin == 0 and block % spec.chunk_shape[0] == 0


def test_one_block_encodes_rows_that_decode_back():
    rng = np.random.default_rng(3)
    spec = _spec(chunk_shape=(100.0,) * 3, bin_shape=(50.0,) * 3, levels=3,
                 bounds=((0.0,) * 3, (199.0,) * 3),
                 attributes=(P.AttrSpec("w", ("w",), "int64"),))
    pos = rng.uniform(0, 199.9, (600, 3)).astype(np.float32)
    w = np.arange(600, dtype=np.int64)
    res = build_block(spec, pos, {"w": w}, np.arange(600, dtype=np.int64))
    got_pos, got_w = [], []
    for lv, array, key, n in res.cells:
        if lv == 0 and array == "vertices":
            coord = tuple(int(c) for c in key.split("."))
            rel = "0/" + E.cell_path("vertices", coord, (0, 0, 0))
            p = dec.decode_vertices(dec.strip_vlen_frame(res.blobs[rel]), np.dtype("<f4"), 3)
            a = dec.decode_attribute(dec.strip_vlen_frame(
                res.blobs["0/" + E.cell_path("vertex_attributes/w", coord, (0, 0, 0))]),
                np.dtype("<i8"), len(p))
            assert len(p) == n and (np.floor(p / 100) == coord).all()
            got_pos.append(p)
            got_w.append(a)
    order = np.argsort(np.concatenate(got_w))
    np.testing.assert_array_equal(np.concatenate(got_pos)[order], pos)
    # level 1: one metavertex per occupied 100-unit bin, at its centroid
    bins = np.floor(pos.astype(np.float64) / 100).astype(int)
    n1 = sum(n for lv, a, _, n in res.cells if lv == 1 and a == "vertices")
    assert n1 == len(np.unique(bins, axis=0))
    links = sum(n for lv, a, _, n in res.cells if lv == 0 and a.startswith("links/+1/"))
    back = sum(n for lv, a, _, n in res.cells if lv == 1 and a.startswith("links/-1/"))
    assert links == back == 600


def test_columns_are_planned_with_multi_and_categorical_attributes():
    dtypes = dict(x="float64", y="float64", z="float32", rgb_0="uint8", rgb_1="uint8",
                  rgb_2="uint8", lone_1="int32", tag=pd.CategoricalDtype(["a"]), s=object)
    axes, planned = P.plan_columns(dtypes, None, None, "t")
    assert axes == ("x", "y", "z")
    byname = {n: (cols, kind) for n, cols, kind, _ in planned}
    assert byname["rgb"] == (("rgb_0", "rgb_1", "rgb_2"), "num")
    assert byname["lone_1"] == (("lone_1",), "num")
    assert byname["tag"][1] == "cat" and byname["s"][1] == "cat"
    specs = P.attribute_specs(planned, {"tag": (["a", "b"], False), "s": (["q"], True)})
    by = {s.name: s for s in specs}
    assert by["rgb"].width == 3 and by["rgb"].dtype == "uint8"
    assert by["tag"].dtype == "uint8" and by["tag"].categories == ("a", "b")
    assert by["s"].dtype == "int8" and by["s"].fill_code == -1


def test_mixed_dtypes_in_a_multi_column_attribute_are_refused():
    with pytest.raises(WriteInputError, match="different dtypes"):
        P.plan_columns(dict(x="f8", y="f8", v_0="f4", v_1="f8"), None, None, "t")


def test_category_codes_map_missing_to_the_fill_code():
    codes = E.category_codes(pd.Series(["b", None, "a"]), ("a", "b"), np.dtype("int8"), -1)
    np.testing.assert_array_equal(codes, np.array([1, -1, 0], np.int8))


def test_the_plain_codec_document_is_the_one_zarr_writes():
    import json

    from zv_dask.write.codecs import PLAIN_CODECS, _memory_array

    _, data = _memory_array((3, 2, 4), [], None)
    assert json.loads(PLAIN_CODECS) == json.loads(data["zarr.json"].to_bytes())["codecs"]


@pytest.mark.parametrize("n_keys,nparts", [(8, 8), (27, 8), (5, 3), (1, 1)])
def test_balanced_labels_spread_keys_evenly_over_dask_hash_partitions(n_keys, nparts):
    from dask.dataframe.shuffle import partitioning_index

    from zv_dask.write.graph import _balanced_labels

    labels = _balanced_labels(n_keys, nparts, "k")
    assert len(set(labels.tolist())) == n_keys
    # dask hashes the numeric shuffle column as float64
    part = partitioning_index(pd.DataFrame({"k": labels.astype(np.float64)}), nparts)
    assert np.asarray(part).tolist() == [k % nparts for k in range(n_keys)]


def test_linear_key_sorts_like_a_lexsort_of_its_columns():
    from zv_dask.write.block import _linear_key

    rng = np.random.default_rng(3)
    cols = [rng.integers(-5, 5, 500), rng.integers(-1, 2, 500), rng.integers(100, 104, 500)]
    lin = _linear_key([cols[0], lambda: cols[1], cols[2]])
    assert np.array_equal(np.argsort(lin, kind="stable"), np.lexsort(cols[::-1]))
    assert _linear_key([np.array([0, 2**40]), np.array([0, 2**40])]) is None


@pytest.mark.parametrize("lo, hi", [(-3, 3), (-2**20, 2**20), (0, 2**40)])
def test_byte_order_inverse_is_numpys_unique_of_the_raw_bytes(lo, hi):
    # small spans (lookup table), wide ones (sorted key) and too wide (raw bytes)
    from zv_dask.write.block import _byte_order_inverse

    rng = np.random.default_rng(4)
    bins = rng.integers(lo, hi, (3000, 3))
    bins[1000:2000] = bins[:1000]  # repeated rows
    void = np.dtype((np.void, 24))
    _, want = np.unique(np.ascontiguousarray(bins).view(void).ravel(), return_inverse=True)
    assert np.array_equal(_byte_order_inverse(bins), want.reshape(-1))


@pytest.mark.parametrize("hi", [7, 2**16, 2**40])
def test_stable_order_is_a_stable_argsort(hi):
    from zv_dask.write.block import _stable_order

    key = np.random.default_rng(5).integers(0, hi, 5000)
    assert np.array_equal(_stable_order(key), np.argsort(key, kind="stable"))


def test_input_order_offsets_come_from_the_partition_counts():
    from zv_dask.write.graph import seq_offsets

    assert seq_offsets([3, 0, 5], 3).tolist() == [0, 3, 3]
    assert seq_offsets([3, 0, 5], 2) is None          # counts of another partitioning
    assert seq_offsets([2**30], 1) is None            # too many rows for int32
