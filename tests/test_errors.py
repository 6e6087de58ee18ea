"""Every refusal and error: typed, and its message names what it should."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import zv_dask
from zv_dask import errors as E


@pytest.fixture
def copy_of(store_path, tmp_path):
    def make(name):
        dst = tmp_path / f"{name}-copy.zarrvectors"
        shutil.copytree(store_path(name), dst)
        return dst
    return make


def _edit_json(path: Path, fn):
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_missing_store(tmp_path):
    with pytest.raises(E.StoreNotFoundError, match="nothing exists") as ei:
        zv_dask.open_zv(tmp_path / "nope.zarrvectors")
    assert "nope.zarrvectors" in str(ei.value)
    assert isinstance(ei.value, FileNotFoundError)


def test_not_a_zv_store(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(E.NotAZVStoreError, match="not a Zarr Vectors store") as ei:
        zv_dask.open_zv(tmp_path / "plain.zarr")
    assert "plain.zarr" in str(ei.value)
    (tmp_path / "folder").mkdir()
    with pytest.raises(E.NotAZVStoreError, match="no zarr.json"):
        zv_dask.open_zv(tmp_path / "folder")
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "zarr.json").write_text('{"zarr_format": 2, "node_type": "group"}')
    with pytest.raises(E.NotAZVStoreError, match="zarr v3"):
        zv_dask.open_zv(tmp_path / "v2")


@pytest.mark.parametrize("version", ["0.8.3", "0.10.0", "1.0.0", "zero"])
def test_unknown_version_refused(copy_of, version):
    root = copy_of("points_2d")
    _edit_json(root / "zarr.json", lambda d: d["attributes"]["zarr_vectors"].__setitem__("zv_version", version))
    with pytest.raises(E.UnsupportedFormatError, match="0.9.x") as ei:
        zv_dask.open_zv(root)
    assert str(root) in str(ei.value)


def test_unknown_capability_refused(copy_of):
    root = copy_of("points_2d")
    _edit_json(root / "zarr.json", lambda d: d["attributes"]["zarr_vectors"]["format_capabilities"].append("teleport"))
    with pytest.raises(E.UnsupportedFormatError, match="teleport"):
        zv_dask.open_zv(root)


def test_missing_level(store_path):
    s = zv_dask.open_zv(store_path("points_2d"))
    with pytest.raises(E.LevelNotFoundError, match=r"levels \[0, 1, 2\]") as ei:
        s.read(level=7)
    assert "level 7" in str(ei.value) and isinstance(ei.value, KeyError)
    with pytest.raises(E.LevelNotFoundError):
        s.vertex_count(9)


def test_level_group_listed_but_missing(copy_of):
    # what zarr-vectors' remove_resolution_level leaves: the root still lists the level
    root = copy_of("points_2d")
    shutil.rmtree(root / "2")
    with pytest.warns(UserWarning, match="lists level 2 but its group"):
        s = zv_dask.open_zv(root)
    assert s.levels == [0, 1]
    with pytest.raises(E.LevelNotFoundError, match="level 2"):
        s.read(level=2)
    for lv in (0, 1):
        shutil.rmtree(root / str(lv))
    with pytest.warns(UserWarning), pytest.raises(E.LevelNotFoundError, match="none of"):
        zv_dask.open_zv(root)


@pytest.mark.parametrize("bbox, pattern", [
    (([0, 0, 0], [1, 1, 1]), "2 values"),
    (([0, np.nan], [1, 1]), "NaN"),
    (([5, 0], [1, 1]), "lo > hi on axis 0"),
    ((1, 2, 3), "pair"),
    ("box", "pair"),
])
def test_malformed_bbox(store_path, bbox, pattern):
    s = zv_dask.open_zv(store_path("points_2d"))
    with pytest.raises(E.QueryError, match=pattern) as ei:
        s.read(bbox=bbox)
    assert isinstance(ei.value, ValueError)
    with pytest.raises(E.QueryError):
        list(s.iter_chunks(bbox=bbox))


def test_level_and_target_resolution_together(store_path):
    s = zv_dask.open_zv(store_path("points_2d"))
    with pytest.raises(E.QueryError, match="not both"):
        s.read(level=1, target_resolution=200)
    with pytest.raises(E.QueryError, match="positive"):
        s.read(target_resolution=-1)


def test_unknown_attribute(store_path):
    s = zv_dask.open_zv(store_path("points_2d"))
    with pytest.raises(E.ArrayNotFoundError, match=r"'nope'.*available: \['v'\]") as ei:
        s.read(attributes=["nope"])
    assert "level 0" in str(ei.value)


def test_chunk_not_whole_rows(copy_of):
    root = copy_of("points_pyramid")
    s = zv_dask.open_zv(root)
    coord = s.chunks(0)[5]
    cell = root / "0" / "vertices" / "c" / "/".join(map(str, coord))
    raw = cell.read_bytes()
    payload = raw[8:] + b"\x00\x00\x00\x00\x00"
    cell.write_bytes(np.array([1, len(payload)], "<u4").tobytes() + payload)
    with pytest.raises(E.ChunkDecodeError, match="not a whole number") as ei:
        zv_dask.open_zv(root).read(level=0)
    assert ei.value.chunk == coord and ei.value.level == 0 and ei.value.array == "vertices"
    assert str(coord) in str(ei.value) and "'vertices'" in str(ei.value)


def test_attribute_not_whole_rows(copy_of):
    root = copy_of("points_pyramid")
    coord = zv_dask.open_zv(root).chunks(0)[3]
    cell = root / "0" / "vertex_attributes" / "label" / "c" / "/".join(map(str, coord))
    payload = cell.read_bytes()[8:-4]
    cell.write_bytes(np.array([1, len(payload)], "<u4").tobytes() + payload)
    with pytest.raises(E.ChunkDecodeError, match="not a whole number of rows") as ei:
        zv_dask.open_zv(root).read(attributes=["label"])
    assert ei.value.array == "vertex_attributes/label" and ei.value.chunk == coord


def test_chunk_listed_but_absent(copy_of):
    root = copy_of("points_pyramid")
    coord = zv_dask.open_zv(root).chunks(1)[2]
    (root / "1" / "vertices" / "c" / "/".join(map(str, coord))).unlink()
    s = zv_dask.open_zv(root)
    with pytest.raises(E.ChunkMissingError, match="nonempty_chunks") as ei:
        s.read(level=1)
    assert ei.value.chunk == coord and ei.value.level == 1
    s.read(level=0)  # other levels unaffected


def test_corrupt_fragment_index_and_manifest(copy_of):
    root = copy_of("points_2d")
    s = zv_dask.open_zv(root)
    coord = s.chunks(0)[0]
    idx = [c - o for c, o in zip(coord, s.metadata.levels[0].presence.origin)]
    cell = root / "0" / "vertex_fragments" / "c" / "/".join(map(str, idx))
    raw = cell.read_bytes()
    payload = raw[8:-3]
    cell.write_bytes(np.array([1, len(payload)], "<u4").tobytes() + payload)
    with pytest.raises(E.ChunkDecodeError, match="fragment index") as ei:
        zv_dask.open_zv(root).read(level=0)
    assert ei.value.array == "vertex_fragments" and ei.value.chunk == coord


def test_corrupt_manifest(copy_of):
    import zarr

    root = copy_of("points_2d")
    arr = zarr.open_array(str(root / "1" / "object_index" / "manifests"), mode="r+")
    blobs = arr[:]
    blobs[0] = bytes(blobs[0])[:-5]
    arr[:] = blobs
    with pytest.raises(E.ChunkDecodeError, match="manifest") as ei:
        zv_dask.open_zv(root).read(level=1)
    assert ei.value.array == "object_index/manifests" and ei.value.level == 1


def test_draco_refused_naming_the_array(store_path):
    pytest.importorskip("DracoPy")
    s = zv_dask.open_zv(store_path("draco_mesh"))
    assert s.vertex_count(0) > 0  # metadata opens
    with pytest.raises(E.UnsupportedFormatError, match="draco") as ei:
        s.read()
    assert ei.value.array == "vertices"
    with pytest.raises(E.UnsupportedFormatError):
        next(iter(s.iter_chunks()))


def test_raw_array_paths_cannot_escape(store_path):
    s = zv_dask.open_zv(store_path("points_2d"))
    for bad in ["../zarr.json", "/etc/passwd", "vertices/../../1/vertices", "", "a//b"]:
        with pytest.raises(E.QueryError, match="relative"):
            s.raw_array(bad)
    with pytest.raises(E.ArrayNotFoundError, match="known arrays"):
        s.raw_array("no_such_array")


def test_use_after_close(store_path):
    s = zv_dask.open_zv(store_path("points_2d"))
    with s:
        s.read(level=2)
    for call in (lambda: s.read(), lambda: list(s.iter_chunks()), lambda: s.chunks(0),
                 lambda: s.raw_array("vertices"), lambda: s.vertex_count(0)):
        with pytest.raises(E.StoreClosedError, match="closed"):
            call()
    assert "closed" in repr(s)


def test_reads_never_write(copy_of, counting):
    root = copy_of("streamlines")
    before = _digest(root)
    s = zv_dask.open_zv("zvcount://" + str(root))
    for lv in s.levels:
        s.read(level=lv)
        list(s.iter_chunks(level=lv, prefetch=2))
    s.raw_array("object_attributes/mean_fa")[:]
    zv_dask.read_fragment_index(s.level_group(0), "vertex_fragments", s.chunks(0)[0])
    s.close()
    assert not [p for op, p in counting if op == "write"]
    assert _digest(root) == before


def test_errors_pickle_with_context():
    import pickle

    e = E.ChunkDecodeError("bad", store="s3://b/x", level=2, array="vertices", chunk=(1, -2, 3))
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is E.ChunkDecodeError and str(e2) == str(e) and e2.chunk == (1, -2, 3)


def test_credentials_not_in_repr_or_errors(store_path):
    from zv_dask.io.location import StoreLocation, display_url

    assert display_url("s3://AKIA:SECRET@bucket/x") == "s3://bucket/x"
    loc = StoreLocation("memory://nothing-here.zarrvectors", {"key": "AKIA", "secret": "SECRET"})
    assert "SECRET" not in repr(loc)
    with pytest.raises(E.ZVError) as ei:
        zv_dask.open_zv("memory://nothing-here.zarrvectors",
                        storage_options={"skip_instance_cache": True})
    assert "SECRET" not in str(ei.value)


def test_a_timeout_naming_416_is_not_an_empty_range():
    # a read timeout whose message holds "416" in a port must be retried, not taken
    # for S3's answer to a ranged GET of a 0-byte object
    from zv_dask.io.policy import _empty_range

    timeout = TimeoutError("Read timeout on endpoint URL: "
                           "http://127.0.0.1:41634/zv-test/p.zarrvectors/2/vertices/c/0/0")
    assert not _empty_range(timeout)
    assert not _empty_range(OSError("connection to 10.0.4.16:416 reset by id 94160"))
    assert _empty_range(OSError("An error occurred (InvalidRange) when calling GetObject"))
    assert _empty_range(OSError("HTTP 416: Requested Range Not Satisfiable"))
    assert _empty_range(OSError("[Errno 416] requested range"))


def test_an_unknown_dataframe_column_names_itself_and_the_columns():
    """``ddf["nope"]`` (alone, in a list, in a filter, after a filter): a QueryError that
    is also a KeyError, naming the store, the level, the column and the frame's columns."""
    import zv_dask

    store = zv_dask.open_zv(zv_dask.example_store())
    ddf = store.to_dask_dataframe(level=0)
    for pick in (lambda: ddf["nope"], lambda: ddf[["x", "nope"]],
                 lambda: ddf[ddf["nope"] > 3], lambda: ddf[ddf.x > 1]["nope"]):
        with pytest.raises(zv_dask.ColumnNotFoundError) as ei:
            pick()
        assert isinstance(ei.value, (zv_dask.QueryError, KeyError))
        msg = str(ei.value)
        assert "'nope'" in msg and "x, y, z, intensity, label, region" in msg
        assert store.url in msg and ei.value.level == 0
    # known columns still select, filter and compute as before
    assert len(ddf[ddf["x"] > 1000][["x", "intensity"]].compute()) == \
        int((store.read(level=0)["positions"][:, 0] > 1000).sum())
