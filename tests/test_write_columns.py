"""to_zv's column names and types: refused before a byte is written (nothing outside
the target, an existing store untouched), or stored under their own names with their
values, read back value for value (rules in zv_dask.write.columns.plan_columns)."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask.errors import InvalidPointsError, WriteInputError
from zv_dask.write import columns as C
from writehelpers import assert_valid, files

N = 40


def _base(n=N, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.uniform(0, 100, (n, 3)), columns=list("xyz"))
    df["i"] = np.arange(n, dtype=np.int64)  # row identity: the store reorders rows
    return df


def _tree(root):
    """Every file under ``root`` with its bytes (the target's parent: nothing outside)."""
    return files(root)


def _existing(tmp_path):
    """An existing store to be overwritten, and a snapshot of the whole tmp dir."""
    target = tmp_path / "deep" / "s.zarrvectors"
    zv_dask.to_zv(_base(seed=9), target, chunk_shape=25)
    return target, _tree(tmp_path)


def _refused(tmp_path, df, match, err=WriteInputError, **kw):
    """``to_zv(overwrite=True)`` over an existing store raises before touching a file."""
    target, before = _existing(tmp_path)
    with pytest.raises(err, match=match) as ei:
        zv_dask.to_zv(df, target, chunk_shape=25, overwrite=True, **kw)
    assert _tree(tmp_path) == before  # same files, same bytes: no .tmp, nothing outside
    assert str(target) in str(ei.value)
    zv_dask.open_zv(target)  # the old store still opens
    return ei.value


def _roundtrip(df, path, **kw):
    """Write, open, and return the store and its level-0 frame in input order."""
    s = zv_dask.to_zv(df, path, chunk_shape=25, **kw)
    out = zv_dask.open_zv(path).to_dask_dataframe().compute()
    return s, out.sort_values("i").reset_index(drop=True)


def _same(a, b):
    """Equal value for value (NaN equal to NaN, 3 unequal to '3'), whatever the dtype."""
    a, b = list(a), list(b)
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert (u == v and isinstance(u, str) == isinstance(v, str)) or (u != u and v != v), (u, v)


# ----------------------------------------------------------------------------- rule 2


@pytest.mark.parametrize("name", [
    "../../../../ESCAPED", "../../../other.zarrvectors", "a/b", "/abs", "a\\b", ".", "..",
    ".hidden", ".zattrs", "", "zarr.json", "ZARR.JSON", "tab\there", "nul\x00", "del\x7f",
    "é" * 128, "bad\ud800", "CON", "nul.txt", "Com1", "lpt9.dat"])
def test_unsafe_attribute_names_are_refused_before_anything_is_written(tmp_path, name):
    df = _base()
    df.columns = pd.Index(list(df.columns), dtype=object)  # arrow labels refuse surrogates
    df[name] = np.arange(N, dtype=np.float64)
    err = _refused(tmp_path, df, "rename it")
    assert repr(name) in str(err)


def _lines(n_lines=6, per_line=5, seed=3):
    """Vertices of a few streamlines (rows of one object consecutive, in order)."""
    df = _base(n_lines * per_line, seed)
    df["object_id"] = np.repeat(np.arange(n_lines, dtype=np.int64), per_line)
    return df


@pytest.mark.parametrize("name", ["../../../../ESCAPED", "../x", "a/b", ".", "AUX", ""])
def test_unsafe_link_attribute_names_are_refused_before_anything_is_written(tmp_path, name):
    # each link attribute becomes a directory of links/.../link_attributes/ as a column
    # does of vertex_attributes/: "../x" once wrote outside it
    edges = pd.DataFrame({"source": [0, 1, 2], "target": [1, 2, 3]})
    edges[name] = np.array([1.0, 2.0, 3.0])
    err = _refused(tmp_path, _base()[list("xyz")], "link attribute", geometry="graph",
                   edges=edges)
    assert repr(name) in str(err) and "rename the column" in str(err)


@pytest.mark.parametrize("name", ["../x", "a\\b", "zarr.json", "con"])
def test_unsafe_object_attribute_names_are_refused_before_anything_is_written(tmp_path, name):
    table = pd.DataFrame({name: np.arange(6, dtype=np.float32)})
    err = _refused(tmp_path, _lines(), "object attribute", geometry="streamline",
                   object_attributes=table)
    assert repr(name) in str(err)


def test_an_unsafe_name_is_refused_for_a_new_target_too_and_nothing_is_created(tmp_path):
    df = _base()
    df["../../../../ESCAPED"] = 1.0
    target = tmp_path / "a" / "b" / "s.zarrvectors"
    with pytest.raises(WriteInputError, match="outside vertex_attributes"):
        zv_dask.to_zv(df, target, chunk_shape=25)
    assert list(tmp_path.iterdir()) == []  # no directory made, nothing outside


def test_an_unsafe_column_left_out_with_attributes_is_not_checked(tmp_path):
    df = _base()
    df["../x"] = 1.0
    df["v"] = 2.0
    s, out = _roundtrip(df, tmp_path / "s.zarrvectors", attributes=["i", "v"])
    assert sorted(s.attributes_at(0)) == ["i", "v"]
    _same(out.v, df.v)


def test_names_like_level_arrays_are_plain_attributes(tmp_path):
    # attributes live under vertex_attributes/, so level array names do not collide
    df = _base()
    names = ["vertices", "vertex_fragments", "links", "object_index", "metavertices", "c", "0"]
    for j, n in enumerate(names):
        df[n] = np.arange(N, dtype=np.float32) + j
    s, out = _roundtrip(df, tmp_path / "s.zarrvectors")
    assert sorted(s.attributes_at(0)) == sorted(names + ["i"])
    for n in names:
        _same(out[n], df[n])
    assert_valid(tmp_path / "s.zarrvectors")


def test_non_string_column_names_are_refused(tmp_path):
    df = _base()
    df[3] = 1.0
    err = _refused(tmp_path, df, "int name")
    assert "df.columns.map(str)" in str(err)
    pos = _base()[list("xyz")]
    pos.columns = [0, 1, 2]
    _refused(tmp_path / "b", pos, "int name", axes=[0, 1, 2])


def test_names_differing_only_in_case_or_unicode_form_are_refused(tmp_path):
    df = _base()
    df["Temp"], df["temp"] = 1.0, 2.0
    assert "'Temp' and 'temp'" in str(_refused(tmp_path, df, "differ only in case"))
    df = _base()
    df["caf\u00e9"], df["cafe\u0301"] = 1.0, 2.0  # NFC and NFD spellings of one name
    _refused(tmp_path / "b", df, "Unicode form")


# ----------------------------------------------------------------------------- rule 3


def test_duplicate_column_names_are_refused(tmp_path):
    df = _base()
    dup = pd.concat([df.assign(v=np.float32(1)), pd.DataFrame({"v": np.full(N, -1.0)})], axis=1)
    assert "appears 2 times" in str(_refused(tmp_path, dup, "'v' appears"))
    _refused(tmp_path / "b", pd.concat([df, df[["x"]]], axis=1), "'x' appears")
    ddup = dd.from_pandas(dup, npartitions=2)  # a dask frame keeps the duplicate too
    _refused(tmp_path / "c", ddup, "'v' appears")


def test_a_duplicate_column_left_out_is_not_refused(tmp_path):
    df = _base()
    dup = pd.concat([df, pd.DataFrame({"junk": np.zeros(N)}), pd.DataFrame({"junk": np.ones(N)})],
                    axis=1)
    s, out = _roundtrip(dup, tmp_path / "s.zarrvectors", attributes=["i"])
    assert list(s.attributes_at(0)) == ["i"]


def test_internal_prefix_is_refused_with_the_reason_or_left_out(tmp_path):
    df = _base()
    df["_zv_block"] = 5.0
    err = _refused(tmp_path, df, "reserved for the writer's own columns")
    assert "'_zv_block'" in str(err)
    s, out = _roundtrip(df, tmp_path / "ok.zarrvectors", attributes=["i"])
    assert list(s.attributes_at(0)) == ["i"] and len(out) == N


def _cols(**cols):
    df = _base()
    for k, v in cols.items():
        df[k] = np.float64(v) + np.arange(N) / 8
    return df


@pytest.mark.parametrize("cols, stored", [
    (["a_0", "a_1"], {"a": 2}),                              # merges
    (["a_0", "a_1", "a_2", "b_0", "b_1"], {"a": 3, "b": 2}),
    (["a_00", "a_01"], {"a_00": 1, "a_01": 1}),              # not renamed to a_0, a_1
    (["a_1", "a_2"], {"a_1": 1, "a_2": 1}),                  # no a_0
    (["a_0", "a_2"], {"a_0": 1, "a_2": 1}),                  # a gap
    (["a_0"], {"a_0": 1}),                                   # one column
    (["a", "a_0", "a_1"], {"a": 1, "a_0": 1, "a_1": 1}),     # a plain a beside a_0
    (["object_id_0", "object_id_1"], {"object_id_0": 1, "object_id_1": 1}),
    (["_0", "_1"], {"_0": 1, "_1": 1}),                      # no empty name
])
def test_multi_column_rule_merges_only_what_it_documents(tmp_path, cols, stored):
    df = _cols(**{c: j for j, c in enumerate(cols)})
    s, out = _roundtrip(df, tmp_path / "s.zarrvectors")
    got = {k: v["width"] for k, v in s.attributes_at(0).items() if k != "i"}
    assert got == stored
    assert sorted(c for c in out.columns if c not in "xyzi") == sorted(cols)  # none lost
    for c in cols:
        _same(out[c], df[c])


def test_a_member_of_a_multi_column_attribute_is_asked_for_by_its_stored_name(tmp_path):
    df = _cols(a_0=0, a_1=1)
    err = _refused(tmp_path, df, "part of the", attributes=["a_0"])
    assert "ask for 'a'" in str(err)
    s, out = _roundtrip(df, tmp_path / "s.zarrvectors", attributes=["i", "a"])
    assert s.attributes_at(0)["a"]["width"] == 2
    _same(out.a_1, df.a_1)


def test_attributes_listing_a_name_twice_is_refused(tmp_path):
    _refused(tmp_path, _cols(v=1), "lists 'v' twice", attributes=["v", "v"])


def test_plan_columns_takes_a_mapping_or_pairs_and_keeps_pairs_duplicates():
    axes, planned = C.plan_columns({"x": "f8", "y": "f8", "v": "f4"}, None, None, "t")
    assert axes == ("x", "y") and [p[0] for p in planned] == ["v"]
    with pytest.raises(WriteInputError, match="'v' appears 2 times"):
        C.plan_columns([("x", "f8"), ("y", "f8"), ("v", "f4"), ("v", "f4")], None, None, "t")


# ----------------------------------------------------------------------------- rule 4


def test_nullable_sparse_and_object_columns_round_trip_value_for_value(tmp_path):
    df = _base()
    df["n_int"] = pd.array(np.arange(N) - 7, dtype="Int64")          # no <NA>: int64
    df["n_bool"] = pd.array(np.arange(N) % 3 == 0, dtype="boolean")
    f = pd.array(np.arange(N) / 4, dtype="Float64")
    f[[1, 5]] = pd.NA
    df["n_float"] = f                                                  # <NA> -> NaN
    df["sparse"] = pd.arrays.SparseArray(np.where(np.arange(N) % 5 == 0, 2.5, 0.0))
    df["o"] = pd.Series([int(v) for v in np.arange(N) % 7], dtype=object)
    df["s"] = pd.Series(["p", None, "q", "r"] * (N // 4), dtype="string")
    s, out = _roundtrip(df, tmp_path / "s.zarrvectors")
    meta = s.attributes_at(0)
    assert meta["n_int"]["dtype"] == np.int64 and meta["n_bool"]["dtype"] == np.bool_
    assert meta["n_float"]["dtype"] == np.float64 and meta["sparse"]["dtype"] == np.float64
    assert meta["o"]["categories"] == list(range(7))                   # ints, not '0', '1'
    _same(out.n_int.astype(object), [int(v) for v in df.n_int])
    _same(out.n_bool.astype(object), [bool(v) for v in df.n_bool])
    _same(out.n_float, [np.nan if v is pd.NA else float(v) for v in df.n_float])
    assert isinstance(df["sparse"].dtype, pd.SparseDtype)
    _same(out["sparse"], df["sparse"].sparse.to_dense())
    _same(out.o.astype(object), df.o)
    _same([None if v != v else v for v in out.s.astype(object)],
          [None if v is pd.NA else v for v in df.s])
    ddf = zv_dask.open_zv(tmp_path / "s.zarrvectors").to_dask_dataframe()
    assert len(ddf[ddf.o == 3]) == int((df.o == 3).sum()) > 0
    r = s.read()["attributes"]
    order = np.argsort(r["i"])
    np.testing.assert_array_equal(r["n_float"][order], df.n_float.to_numpy(np.float64, na_value=np.nan))
    assert_valid(tmp_path / "s.zarrvectors")


def test_object_ints_stay_ints_without_changing_the_users_dask_config(tmp_path):
    import dask

    before = dask.config.get("dataframe.convert-string", None)
    df = _base()
    df["o"] = pd.Series([int(v) for v in np.arange(N) % 4], dtype=object)
    s, out = _roundtrip(df, tmp_path / "s.zarrvectors")
    assert s.attributes_at(0)["o"]["categories"] == [0, 1, 2, 3]
    _same(out.o.astype(object), df.o)
    assert dask.config.get("dataframe.convert-string", None) == before


@pytest.mark.parametrize("values, match", [
    (pd.array([None] + list(range(N - 1)), dtype="Int64"), r"holds <NA> in 1 rows"),
    (pd.array([None, True] * (N // 2), dtype="boolean"), r"holds <NA> in 20 rows"),
    (pd.array([None] * 2 + list(range(N - 2)), dtype="UInt8"), r"fillna"),
])
def test_nullable_int_or_bool_with_na_is_refused_before_writing(tmp_path, values, match):
    df = _base()
    df["a"] = values
    err = _refused(tmp_path, df, match)
    assert "'a'" in str(err) and "astype('float64')" in str(err)


def test_na_in_a_dask_frame_is_refused_before_writing(tmp_path):
    df = _base()
    df["a"] = pd.array([1, None] * (N // 2), dtype="Int64")
    _refused(tmp_path, dd.from_pandas(df, npartitions=3), r"holds <NA> in 20 rows")


def test_na_in_a_nullable_axis_is_an_invalid_point(tmp_path):
    df = _base()
    df["x"] = pd.array([None] + list(np.arange(N - 1) / 2), dtype="Float64")
    err = _refused(tmp_path, df, "axis column 'x'", err=InvalidPointsError)
    assert err.count == 1


@pytest.mark.parametrize("values, match", [
    (np.arange(N) * (1 + 1j), r"complex128.*c_0 and c_1"),
    (pd.date_range("2020-01-01", periods=N, freq="h"), r"datetime64.*astype\('int64'\)"),
    (pd.date_range("2020-01-01", periods=N, freq="h", tz="UTC"), r"datetime64.*astype"),
    (pd.to_timedelta(np.arange(N), "s"), r"timedelta64.*astype\('int64'\)"),
    (pd.Series([(1, 2)] * N, dtype=object), r"tuple value"),
    (pd.Series([[1, 2]] * N, dtype=object), r"list value.*astype\(str\)"),
    (pd.Series([{"a": 1}] * N, dtype=object), r"dict value"),
    (pd.Series([np.arange(2)] * N, dtype=object), r"ndarray value"),
    (pd.Series([b"ab"] * N, dtype=object), r"bytes value.*str.decode"),
    (pd.Series(["a"] * (N - 1) + [[1]], dtype=object), r"list value"),
])
def test_types_zv_cannot_hold_are_refused_before_writing(tmp_path, values, match):
    df = _base()
    df["c"] = values
    assert "'c'" in str(_refused(tmp_path, df, match))


def test_complex_as_real_and_imaginary_columns_round_trips(tmp_path):
    z = np.arange(N) * (1 + 2j)
    df = _base().assign(c_0=z.real, c_1=z.imag)  # the advice of the refusal
    s, out = _roundtrip(df, tmp_path / "s.zarrvectors")
    assert s.attributes_at(0)["c"]["width"] == 2
    _same(out.c_0 + 1j * out.c_1, z)


def test_the_name_rules_example_runs():
    import doctest

    result = doctest.testmod(C, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0
