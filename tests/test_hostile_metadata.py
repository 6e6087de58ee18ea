"""Metadata is untrusted input: each kind of damage to a ``zarr.json`` written by the
reference writer gives one exact error type whose message names the field (and the
store, level and array where they apply), from the Python API and from the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zv_dask
from zv_dask import errors as E

ROOT, LEVEL, VERTS = "zarr.json", "0/zarr.json", "0/vertices/zarr.json"
ATTR, OI = "0/vertex_attributes/v/zarr.json", "0/object_index/zarr.json"
ZVM = ("attributes", "zarr_vectors")
LVA = ("attributes", "zarr_vectors_level")


def setk(*path_and_value):
    """A mutation that sets ``doc[p0][p1]...[pn] = value``."""
    *path, value = path_and_value

    def fn(doc):
        d = doc
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return doc
    return fn


def delk(*path):
    def fn(doc):
        d = doc
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
        return doc
    return fn


def replace_doc(value):
    return lambda doc: value


def ms_transform(kind, value):
    """Set the scale or translation of level 1's multiscales entry."""
    def fn(doc):
        ds = doc["attributes"]["multiscales"][0]["datasets"][1]
        for t in ds["coordinateTransformations"]:
            if t["type"] == kind:
                t[kind] = value
        return doc
    return fn


MD, UF = E.MetadataError, E.UnsupportedFormatError
SEP = ("chunk_key_encoding", "configuration", "separator")

# (id, file in points_2d (2-D, origin -2, 3 levels, object index), mutation,
#  error type, text the message must hold, level, array)
CASES = [
    # root document
    ("root-is-list", ROOT, replace_doc([1, 2]), MD, "'zarr.json'", None, None),
    ("root-attributes-int", ROOT, setk("attributes", 5), MD, "'attributes'", None, None),
    ("version-0.9-string", ROOT, setk(*ZVM, "zv_version", "0.9"), UF, "zv_version", None, None),
    ("version-0.9-number", ROOT, setk(*ZVM, "zv_version", 0.9), UF, "zv_version", None, None),
    ("version-padded", ROOT, setk(*ZVM, "zv_version", "0.09.2"), UF, "zv_version", None, None),
    ("version-suffix", ROOT, setk(*ZVM, "zv_version", "0.9.2-dev"), UF, "zv_version", None, None),
    ("version-missing", ROOT, delk(*ZVM, "zv_version"), UF, "zv_version", None, None),
    ("capabilities-int", ROOT, setk(*ZVM, "format_capabilities", 5), MD,
     "format_capabilities", None, None),
    ("capabilities-ints", ROOT, setk(*ZVM, "format_capabilities", [5]), MD,
     "format_capabilities", None, None),
    ("geometry-string", ROOT, setk(*ZVM, "geometry_types", "point_cloud"), MD,
     "geometry_types", None, None),
    ("links-convention-int", ROOT, setk(*ZVM, "links_convention", 3), MD, "links_convention",
     None, None),
    ("chunk-shape-strings", ROOT, setk(*ZVM, "chunk_shape", ["500", "500"]), MD,
     "zarr_vectors.chunk_shape", None, None),
    ("chunk-shape-zero", ROOT, setk(*ZVM, "chunk_shape", [0, 500.0]), MD,
     "zarr_vectors.chunk_shape", None, None),
    ("chunk-shape-inf", ROOT, setk(*ZVM, "chunk_shape", [float("inf"), 500.0]), MD,
     "zarr_vectors.chunk_shape", None, None),
    ("chunk-shape-bool", ROOT, setk(*ZVM, "chunk_shape", [True, True]), MD,
     "zarr_vectors.chunk_shape", None, None),
    ("base-bin-negative", ROOT, setk(*ZVM, "base_bin_shape", [-1.0, -1.0]), MD,
     "base_bin_shape", None, None),
    ("bounds-string", ROOT, setk(*ZVM, "bounds", [[0, 0], [1, "a"]]), MD, "bounds", None, None),
    ("bounds-inverted", ROOT, setk(*ZVM, "bounds", [[5, 5], [1, 1]]), MD, "bounds", None, None),
    ("bounds-flat", ROOT, setk(*ZVM, "bounds", [0, 0, 1, 1]), MD, "bounds", None, None),
    ("multiscales-dict", ROOT, setk("attributes", "multiscales", {"a": 1}), MD, "multiscales",
     None, None),
    ("dataset-path-escape", ROOT, lambda d: setk("attributes", "multiscales", 0, "datasets", 1,
                                                 "path", "../x")(d), MD, "path", None, None),
    ("translation-strings", ROOT, ms_transform("translation", ["a", "b"]), MD, "translation",
     None, None),
    ("scale-zero", ROOT, ms_transform("scale", [0, 2]), MD, "scale", None, None),
    ("axes-wrong-count", ROOT, setk("attributes", "multiscales", 0, "axes",
                                    [{"name": "x"}] * 3), MD, "axes", None, None),
    # level group
    ("level-doc-list", LEVEL, replace_doc(["x"]), MD, "0/zarr.json", 0, None),
    ("vertex-count-string", LEVEL, setk(*LVA, "vertex_count", "abc"), MD, "vertex_count", 0, None),
    ("vertex-count-negative", LEVEL, setk(*LVA, "vertex_count", -7), MD, "vertex_count", 0, None),
    ("vertex-count-float", LEVEL, setk(*LVA, "vertex_count", 1.5), MD, "vertex_count", 0, None),
    ("level-chunk-shape", LEVEL, setk(*LVA, "chunk_shape", ["a"]), MD, "chunk_shape", 0, None),
    ("fragments-tile-string", LEVEL, setk(*LVA, "fragments_tile", "yes"), MD, "fragments_tile",
     0, None),
    ("chunk-dims-int", LEVEL, setk(*LVA, "chunk_dims", 5), MD, "chunk_dims", 0, None),
    ("chunk-dims-short", LEVEL, setk(*LVA, "chunk_dims", ["x"]), MD, "chunk_dims", 0, None),
    ("chunk-attribute-no-values", LEVEL, setk(*LVA, "chunk_attribute_name", "g"), MD,
     "chunk_attribute_values", 0, None),
    # grid array
    ("separator-escape", VERTS, setk(*SEP, "/../../x/"), MD, "separator", 0, "vertices"),
    ("separator-empty", VERTS, setk(*SEP, ""), MD, "separator", 0, "vertices"),
    ("separator-int", VERTS, setk(*SEP, 5), MD, "separator", 0, "vertices"),
    ("key-encoding-unknown", VERTS, setk("chunk_key_encoding", "name", "v9"), UF,
     "chunk_key_encoding.name", 0, "vertices"),
    ("shape-1e12-float", VERTS, setk("shape", [1e12, 1e12]), MD, "'shape'", 0, "vertices"),
    ("shape-1e12-squared", VERTS, setk("shape", [10**12, 10**12]), MD, "'shape'", 0, "vertices"),
    ("shape-negative", VERTS, setk("shape", [-1, 5]), MD, "'shape'", 0, "vertices"),
    ("shape-string", VERTS, setk("shape", "abc"), MD, "'shape'", 0, "vertices"),
    ("dtype-S0", VERTS, setk("attributes", "dtype", "S0"), MD, "'dtype'", 0, "vertices"),
    ("dtype-object", VERTS, setk("attributes", "dtype", "object"), MD, "'dtype'", 0, "vertices"),
    ("dtype-unknown", VERTS, setk("attributes", "dtype", "float33"), MD, "'dtype'", 0,
     "vertices"),
    ("dtype-list", VERTS, setk("attributes", "dtype", [["a", "<f4"]]), MD, "'dtype'", 0,
     "vertices"),
    ("codec-unknown", VERTS, setk("codecs", [{"name": "vlen-bytes"}, {"name": "lzfoo"}]), UF,
     "codecs[1].name", 0, "vertices"),
    ("codecs-int", VERTS, setk("codecs", 5), MD, "'codecs'", 0, "vertices"),
    ("codec-unknown-in-shard", VERTS, setk("codecs", [{"name": "sharding_indexed",
                                                       "configuration": {"codecs": [
                                                           {"name": "nope"}]}}]),
     UF, "codecs[0].configuration.codecs[0].name", 0, "vertices"),
    ("origin-1e30", VERTS, setk("attributes", "chunk_grid_origin", [1e30, 0]), MD,
     "chunk_grid_origin", 0, "vertices"),
    ("origin-huge-int", VERTS, setk("attributes", "chunk_grid_origin", [10**30, 0]), MD,
     "chunk_grid_origin", 0, "vertices"),
    ("origin-wrong-rank", VERTS, setk("attributes", "chunk_grid_origin", [1, 2, 3]), MD,
     "chunk_grid_origin", 0, "vertices"),
    ("chunk-grid-unknown", VERTS, setk("chunk_grid", "name", "rectilinear"), UF, "chunk_grid",
     0, "vertices"),
    ("presence-dict", VERTS, setk("attributes", "nonempty_chunks", {"0.0": 1}), MD,
     "nonempty_chunks", 0, "vertices"),
    ("presence-ints", VERTS, setk("attributes", "nonempty_chunks", [5, 6]), MD,
     "nonempty_chunks", 0, "vertices"),
    ("presence-mixed-rank", VERTS, setk("attributes", "nonempty_chunks", ["-1.-1.0", "0"]), MD,
     "nonempty_chunks", 0, "vertices"),
    ("presence-rank-3", VERTS, setk("attributes", "nonempty_chunks", ["0.0.0", "1.1.1"]), MD,
     "nonempty_chunks", 0, "vertices"),
    ("presence-letters", VERTS, setk("attributes", "nonempty_chunks", ["a.b"]), MD,
     "nonempty_chunks", 0, "vertices"),
    ("presence-empty-field", VERTS, setk("attributes", "nonempty_chunks", ["0..0", "1.1.1"]),
     MD, "nonempty_chunks", 0, "vertices"),
    ("presence-string", VERTS, setk("attributes", "nonempty_chunks", "0.0"), MD,
     "nonempty_chunks", 0, "vertices"),
    ("presence-outside-grid", VERTS, setk("attributes", "nonempty_chunks", ["100.100"]), MD,
     "nonempty_chunks", 0, "vertices"),
    ("zv-array-int", VERTS, setk("attributes", "zv_array", 5), MD, "zv_array", 0, "vertices"),
    ("encoding-int", VERTS, setk("attributes", "encoding", 5), MD, "encoding", 0, "vertices"),
    # attribute array
    ("row-shape-negative", ATTR, setk("attributes", "row_shape", [-3]), MD, "row_shape", 0,
     "vertex_attributes/v"),
    ("row-shape-string", ATTR, setk("attributes", "row_shape", "3"), MD, "row_shape", 0,
     "vertex_attributes/v"),
    ("attribute-dtype-missing", ATTR, delk("attributes", "dtype"), MD, "'dtype'", 0,
     "vertex_attributes/v"),
    # object index
    ("num-objects-1e11", OI, setk("attributes", "num_objects", 10**11), MD, "num_objects", 0,
     "object_index"),
    ("num-objects-float", OI, setk("attributes", "num_objects", 1e11), MD, "num_objects", 0,
     "object_index"),
    ("num-objects-negative", OI, setk("attributes", "num_objects", -1), MD, "num_objects", 0,
     "object_index"),
    ("num-present-too-many", OI, setk("attributes", "num_present", 100), MD, "num_present", 0,
     "object_index"),
    ("sid-ndim-string", OI, setk("attributes", "sid_ndim", "2"), MD, "sid_ndim", 0,
     "object_index"),
    ("layout-unknown", OI, setk("attributes", "layout", "v9"), UF, "layout", 0, "object_index"),
    ("object-index-list", OI, setk("attributes", [1]), MD, "'attributes'", 0, "object_index"),
    ("object-ids-rows", "0/object_index/object_ids/zarr.json", setk("shape", [9]), MD,
     "'shape'", 0, "object_index/object_ids"),
]


@pytest.fixture(scope="module")
def pristine(fixture_root):
    from zvfixtures import build

    return build("points_2d", fixture_root)


def damaged(pristine: Path, dst: Path, rel: str, fn) -> Path:
    shutil.copytree(pristine, dst)
    f = dst / rel
    f.write_text(json.dumps(fn(json.loads(f.read_text()))))
    return dst


def test_cases_are_distinct():
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_damaged_metadata_is_refused_naming_the_field(pristine, tmp_path, case):
    _, rel, fn, cls, text, level, array = case
    store = damaged(pristine, tmp_path / "s.zarrvectors", rel, fn)
    with pytest.raises(E.ZVError) as ei:
        zv_dask.open_zv(store)
    err = ei.value
    assert type(err) is cls, f"{type(err).__name__}: {err}"
    msg = str(err)
    assert text in msg, msg
    assert str(store) in msg and err.store == str(store)
    assert err.level == level and err.array == array, msg
    if level is not None:
        assert f"level {level}" in msg
    if array is not None:
        assert repr(array) in msg


def test_every_field_undamaged_opens(pristine):
    s = zv_dask.open_zv(pristine)
    assert s.levels == [0, 1, 2] and s.vertex_count(0) == 3000


def test_separator_never_reaches_outside_the_store(pristine, tmp_path):
    # the probe's recipe: a separator that climbs out of the store to a planted file
    (tmp_path / "elsewhere").mkdir()
    store = damaged(pristine, tmp_path / "s.zarrvectors", VERTS,
                    setk(*SEP, "/../../../elsewhere/"))
    with pytest.raises(E.MetadataError, match="separator"):
        zv_dask.open_zv(store)


def test_missing_vertex_count_is_unknown_not_minus_one(pristine, tmp_path):
    from zv_dask import stats

    store = damaged(pristine, tmp_path / "s.zarrvectors", LEVEL, delk(*LVA, "vertex_count"))
    s = zv_dask.open_zv(store)
    assert s.vertex_count(0) is None
    n = stats.count(s, level=0)
    assert int(n.compute()) == len(s.read(level=0)["positions"]) == 3000


def test_num_objects_against_manifest_rows_plans_nothing(pristine, tmp_path):
    """num_objects = 1e11 against an 8-row manifests array is refused at open, before
    anything is planned or allocated."""
    store = damaged(pristine, tmp_path / "s.zarrvectors", OI,
                    setk("attributes", "num_objects", 10**11))
    with pytest.raises(E.MetadataError, match="8 rows"):
        zv_dask.open_zv(store)


def test_categorical_fields_checked(fixture_root, tmp_path):
    from zvfixtures import build

    src = build("points_pyramid", fixture_root)
    rel = "0/vertex_attributes/region/zarr.json"
    for fn, field in [(setk("attributes", "categories", 5), "categories"),
                      (setk("attributes", "_FillValue", "x"), "_FillValue"),
                      (setk("attributes", "dtype", "float32"), "dtype")]:
        dst = tmp_path / f"{field}.zarrvectors"
        damaged(src, dst, rel, fn)
        with pytest.raises(E.MetadataError, match=field) as ei:
            zv_dask.open_zv(dst)
        assert ei.value.array == "vertex_attributes/region"


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in (
    "root-is-list", "separator-escape", "codec-unknown", "presence-dict")], ids=lambda c: c[0])
def test_cli_info_prints_one_line_and_no_traceback(pristine, tmp_path, case):
    _, rel, fn, cls, text, _, _ = case
    store = damaged(pristine, tmp_path / "s.zarrvectors", rel, fn)
    r = subprocess.run([sys.executable, "-m", "zv_dask", "info", str(store)],
                       capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zv-dask: error:"), r.stderr
    assert text in lines[0] and "Traceback" not in r.stderr and r.stdout == ""


def test_parse_keys_equals_python_parsing():
    from zv_dask.format.metadata import parse_keys

    rng = np.random.default_rng(5)
    for rank in (1, 2, 3, 4):
        coords = rng.integers(-10**rng.integers(1, 15), 10**rng.integers(1, 15), (500, rank))
        keys = [".".join(map(str, c)) for c in coords.tolist()]
        got = parse_keys(keys, rank)
        want = np.array([[int(x) for x in k.split(".")] for k in keys], np.int64)
        np.testing.assert_array_equal(got, want)
    assert parse_keys([], 3).shape == (0, 3)


@pytest.mark.parametrize("keys", [
    ["0.0.0.0", "1.1"], ["0.0", "1.1.1.1"], ["1..2", "1.2.3"], ["1.2.-", "1.2.3"],
    ["1.2.3-", "1.2.3"], ["1.2.3 ", "1.2.3"], [" 1.2.3"], ["+1.2.3"], ["1_0.2.3"],
    ["1.2.99999999999999999999"], ["1.2.-99999999999999999999"], [""], ["1.2.3,4.5.6"],
    ["1.2"], [".1.2"], ["1.2."], ["1.-.2"], ["1.2-3.4"], ["-", "1.2.3"], ["1.2.٣"],
    ["1/2/3"], ["1.2.3\n"], [1, 2, 3], [None], {"0.0.0": 1}, "0.0.0",
], ids=repr)
def test_parse_keys_refuses(keys):
    from zv_dask.format.metadata import parse_keys

    with pytest.raises((ValueError, TypeError)):
        parse_keys(keys, 3)


@pytest.mark.parametrize("module", ["format.root", "format.arrays", "format.levels"])
def test_metadata_docstring_examples_run(module):
    import doctest
    import importlib

    m = importlib.import_module(f"zv_dask.{module}")
    result = doctest.testmod(m, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("rel, fn, field", [
    ("0/links/0/zarr.json", setk("attributes", "link_width", "abc"), "link_width"),
    ("0/links/0/zarr.json", setk("attributes", "directed", "no"), "directed"),
    ("0/links/0/0.0.0/zarr.json", setk("attributes", "has_perm", 1), "has_perm"),
    ("0/links/0/0.0.0/zarr.json", setk("attributes", "nonempty_chunks", {"0.0.0": 1}),
     "nonempty_chunks"),
    ("0/links/0/0.0.0/zarr.json", setk("attributes", "nonempty_chunks", ["0.0"]),
     "nonempty_chunks"),
    ("0/links/0/0.0.0/zarr.json", setk(*SEP, "/../"), "separator"),
], ids=["link-width", "directed", "has-perm", "presence-dict", "presence-rank", "separator"])
def test_damaged_link_metadata_named_on_first_link_read(fixture_root, tmp_path, rel, fn, field):
    from zvfixtures import build

    store = damaged(build("web_graph", fixture_root), tmp_path / "g.zarrvectors", rel, fn)
    s = zv_dask.open_zv(store)  # links metadata is read on first use
    with pytest.raises(E.MetadataError, match=field) as ei:
        s.edges(level=0).compute()
    assert ei.value.level == 0 and ei.value.array.startswith("links/0")
