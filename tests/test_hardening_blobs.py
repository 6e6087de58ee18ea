"""Hostile and damaged chunk objects: no silent loss, no expansion into gigabytes.

Stores are written by the reference writer, then damaged by hand the way an
interrupted copy, a bad sync or a hostile producer would.  Reads that could expand a
small blob run in a subprocess with an address-space limit, so a regression fails
instead of eating the machine.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import zv_dask
from zv_dask import errors as E

HERE = Path(__file__).parent
ROOT = HERE.parent
N_POINTS = 3000


def write_store(path: Path, n: int = N_POINTS, seed: int = 3, compressor=None) -> dict:
    """Points with object ids and two attributes; returns what was written."""
    from zarr_vectors import building as B

    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 999, (n, 3)).astype(np.float32)
    ids = rng.integers(0, 40, n)
    attrs = {"intensity": rng.random(n).astype(np.float32),
             "label": rng.integers(0, 9, n).astype(np.int32)}
    B.write_points(str(path), pos, chunk_shape=(500.0,) * 3, bin_shape=(250.0,) * 3,
                   bounds=([0.0] * 3, [1000.0] * 3), vertex_attributes=attrs,
                   object_ids=ids, compressor=compressor)
    return {"positions": pos, "ids": ids, **attrs}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("hardening") / "pts.zarrvectors"
    write_store(path)
    return path


@pytest.fixture
def damaged(pristine, tmp_path):
    """A fresh copy of the store to damage."""
    import shutil

    dst = tmp_path / "pts.zarrvectors"
    shutil.copytree(pristine, dst)
    return dst


def chunk_file(store: Path, array: str, coord=(0, 0, 0), level: int = 0) -> Path:
    return store / str(level) / array / "c" / "/".join(map(str, coord))


def frame(payload: bytes) -> bytes:
    return struct.pack("<II", 1, len(payload)) + payload


def fragment_index(ranges) -> bytes:
    """A fragment_index_v1 payload whose fragments are all ranges."""
    F = len(ranges)
    nbm = (F + 7) // 8
    bitmap = bytes([0xFF] * (F // 8) + ([(1 << (F % 8)) - 1] if F % 8 else []))
    bitmap = bitmap.ljust((nbm + 7) & ~7, b"\0")
    body = b"".join(struct.pack("<qq", s, c) for s, c in ranges)
    return struct.pack("<IHHII", 0x5A564647, 1, 0, F, F) + bitmap + body + struct.pack("<I", 0)


def assert_names(err: E.ZVError, array: str, chunk=(0, 0, 0), level: int = 0):
    assert err.level == level and err.array == array and err.chunk == tuple(chunk), str(err)
    text = str(err)
    assert "pts.zarrvectors" in text and f"level {level}" in text and array in text


# --------------------------------------------------------------------------- silent loss


@pytest.mark.parametrize("array", ["vertices", "vertex_attributes/intensity",
                                   "vertex_attributes/label", "vertex_fragments"])
def test_zero_byte_chunk_object_is_an_error(damaged, array):
    f = chunk_file(damaged, array)
    assert f.stat().st_size > 8
    f.write_bytes(b"")
    store = zv_dask.open_zv(damaged)
    with pytest.raises(E.ChunkDecodeError, match="empty") as ei:
        store.read()
    assert_names(ei.value, array)
    with pytest.raises(E.ChunkDecodeError, match="empty"):
        store.to_dask_dataframe().compute(scheduler="sync")
    if array != "vertex_fragments":
        with pytest.raises(E.ChunkDecodeError):
            list(store.iter_chunks(attributes=None))


def test_empty_value_in_a_listed_chunk_is_an_error(damaged):
    chunk_file(damaged, "vertices").write_bytes(frame(b""))
    with pytest.raises(E.ChunkDecodeError, match="empty value") as ei:
        zv_dask.open_zv(damaged).read(attributes=[])
    assert_names(ei.value, "vertices")


def test_bad_vlen_header_is_an_error(damaged):
    f = chunk_file(damaged, "vertex_attributes/intensity")
    raw = f.read_bytes()
    f.write_bytes(struct.pack("<II", 1, len(raw)) + raw[8:])  # says 8 bytes more than held
    with pytest.raises(E.ChunkDecodeError, match="vlen-bytes header") as ei:
        zv_dask.open_zv(damaged).read()
    assert_names(ei.value, "vertex_attributes/intensity")


def test_zero_byte_compressed_chunk_is_an_error(tmp_path):
    path = tmp_path / "pts.zarrvectors"
    write_store(path, compressor="zstd")
    chunk_file(path, "vertices", (1, 0, 1)).write_bytes(b"")
    with pytest.raises(E.ChunkDecodeError) as ei:
        zv_dask.open_zv(path).read()
    assert_names(ei.value, "vertices", (1, 0, 1))


def _manifest_chunk(store: Path) -> Path:
    files = sorted((store / "0" / "object_index" / "manifests" / "c").rglob("*"))
    files = [p for p in files if p.is_file()]
    assert len(files) == 1
    return files[0]


def test_missing_or_zero_byte_manifests_are_errors(damaged):
    f = _manifest_chunk(damaged)
    f.write_bytes(b"")
    store = zv_dask.open_zv(damaged)
    with pytest.raises(E.ChunkDecodeError) as ei:
        store.read()
    assert ei.value.array.startswith("object_index")
    with pytest.raises(E.ChunkDecodeError):
        store.read_objects([int(store._object_ids_all(0)[0])])
    f.unlink()  # zarr now reads every row as its fill value b""
    store = zv_dask.open_zv(damaged)
    with pytest.raises(E.ChunkDecodeError, match="absent") as ei:
        store.read()
    assert ei.value.array == "object_index/manifests"
    with pytest.raises(E.ChunkDecodeError, match="absent"):
        store.read_objects([int(store._object_ids_all(0)[0])])


def test_row_total_differing_from_vertex_count_warns(damaged, pristine):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact store reads without a warning
        full = zv_dask.open_zv(pristine).read()
    assert len(full["positions"]) == N_POINTS
    doc_path = damaged / "0" / "vertices" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    dropped = doc["attributes"]["nonempty_chunks"].pop(0)  # a stale presence list
    doc_path.write_text(json.dumps(doc))
    store = zv_dask.open_zv(damaged)
    with pytest.warns(E.ZVWarning) as rec:
        got = store.read()
    n = len(got["positions"])
    c = tuple(int(x) for x in dropped.split("."))
    lost = len(zv_dask.open_zv(pristine).read(attributes=[])["positions"]) - n
    assert lost == len(zv_dask.open_zv(pristine)._load(0, [c], [], True, False)[0]["positions"])
    msg = str(rec[0].message)
    assert f"read {n} rows" in msg and f"vertex_count {N_POINTS}" in msg and "level 0" in msg
    with warnings.catch_warnings():  # a bbox read is not a whole level: no warning
        warnings.simplefilter("error")
        store.read(bbox=([0] * 3, [999] * 3))


def test_unrecorded_vertex_count_does_not_warn(damaged):
    doc_path = damaged / "0" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    doc["attributes"]["vertex_count"] = 0  # what streaming writers record
    doc_path.write_text(json.dumps(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = zv_dask.open_zv(damaged).read()
    assert len(got["positions"]) == N_POINTS


# --------------------------------------------------------------------------- decoders


def _rows_of(store_path, coord):
    s = zv_dask.open_zv(store_path)
    return len(s._load(0, [coord], [], True, False)[0]["positions"])


def test_fragment_rows_beyond_the_chunk_are_an_error_not_dropped(damaged):
    n = _rows_of(damaged, (0, 0, 0))
    chunk_file(damaged, "vertex_fragments").write_bytes(frame(fragment_index([(0, n + 3)])))
    store = zv_dask.open_zv(damaged)
    with pytest.raises(E.ChunkDecodeError, match=f"chunk with {n} rows") as ei:
        store.read()
    assert_names(ei.value, "vertex_fragments")
    with pytest.raises(E.ChunkDecodeError, match=f"chunk with {n} rows"):
        store.to_dask_dataframe(attributes=[])["object_id"].compute(scheduler="sync")
    ids = store._object_ids_all(0)
    with pytest.raises(E.ChunkDecodeError):
        store.read_objects(ids[:5].tolist())


def test_manifest_naming_a_fragment_the_chunk_lacks_is_an_error(damaged):
    # the chunk keeps one fragment covering its rows: the manifests name others
    n = _rows_of(damaged, (0, 0, 0))
    chunk_file(damaged, "vertex_fragments").write_bytes(frame(fragment_index([(0, n)])))
    with pytest.raises(E.ChunkDecodeError, match="fragments") as ei:
        zv_dask.open_zv(damaged).read()
    assert ei.value.chunk == (0, 0, 0)


def _set_manifest_row(store: Path, row: int, blob: bytes):
    import zarr

    arr = zarr.open_array(str(store / "0" / "object_index" / "manifests"), mode="r+")
    arr[row:row + 1] = np.asarray([blob], dtype=object)


def _range_manifest(count: int) -> bytes:
    return struct.pack("<I", 1) + struct.pack("<3q", 0, 0, 0) + b"\x01" + struct.pack("<qq", 0, count)


def test_manifest_range_block_beyond_the_level_is_an_error(damaged):
    _set_manifest_row(damaged, 0, _range_manifest(1 << 17))  # more than the level's rows
    store = zv_dask.open_zv(damaged)
    with pytest.raises(E.ChunkDecodeError, match="names 131072 fragments") as ei:
        store.read()
    assert ei.value.array == "object_index/manifests" and "row 0" in str(ei.value)
    # a plausible count, but more fragments than the chunk has: caught at the chunk
    _set_manifest_row(damaged, 0, _range_manifest(1000))
    store = zv_dask.open_zv(damaged)
    with pytest.raises(E.ChunkDecodeError, match="names fragment 999 but the chunk has") as ei:
        store.read()
    assert ei.value.chunk == (0, 0, 0)
    with pytest.raises(E.ChunkDecodeError):
        store.read_objects([int(store._object_ids_all(0)[0])])


LIMITED = textwrap.dedent("""
    import resource, sys
    sys.path.insert(0, {root!r})
    import zv_dask, zarr, numpy, dask.dataframe
    from zv_dask import errors as E

    def vm():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    lim = vm() + 768 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    store = zv_dask.open_zv({path!r})
    try:
        {call}
    except E.ChunkDecodeError as e:
        print("ChunkDecodeError", e.level, e.array, e.chunk, "|", e)
    except MemoryError:
        print("MemoryError")
    else:
        print("no error")
""")


def run_limited(path: Path, call: str) -> str:
    code = LIMITED.format(root=str(ROOT), path=str(path), call=call)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1",
                                                OPENBLAS_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_tiny_fragment_index_claiming_1e8_rows(damaged):
    blob = frame(fragment_index([(0, 100_000_000)]))
    assert len(blob) == 52
    chunk_file(damaged, "vertex_fragments").write_bytes(blob)
    out = run_limited(damaged, "store.read()")
    assert out.startswith("ChunkDecodeError 0 vertex_fragments (0, 0, 0)"), out
    assert "100000000" in out
    out = run_limited(damaged, "store.to_dask_dataframe().compute(scheduler='sync')")
    assert out.startswith("ChunkDecodeError 0 vertex_fragments (0, 0, 0)"), out


def test_tiny_manifest_claiming_2_to_the_26_fragments(damaged):
    blob = _range_manifest(1 << 26)
    assert len(blob) == 45
    _set_manifest_row(damaged, 3, blob)
    out = run_limited(damaged, "store.read()")
    assert out.startswith("ChunkDecodeError 0 object_index/manifests None"), out
    assert "row 3" in out and str(1 << 26) in out
    out = run_limited(damaged, "store.read_objects([int(store._object_ids_all(0)[3])])")
    assert out.startswith("ChunkDecodeError 0 object_index/manifests"), out


# the eager read (a thread pool) and a task of several chunks (one buffer, in order)
READS = ["store.read()",
         "store.to_dask_dataframe(chunks_per_partition='auto').compute(scheduler='sync')"]


@pytest.mark.parametrize("call", READS)
@pytest.mark.parametrize("array", ["vertices", "vertex_attributes/intensity", "vertex_fragments"])
def test_chunk_linked_to_dev_zero(damaged, array, call):
    if array == "vertex_fragments" and "dataframe" in call:
        call = call.replace("chunks_per_partition", "attributes=[], chunks_per_partition")
        call = call.replace(".compute(", "['object_id'].compute(")
    f = chunk_file(damaged, array, (1, 1, 0))
    f.unlink()
    f.symlink_to("/dev/zero")
    out = run_limited(damaged, call)
    assert out.startswith(f"ChunkDecodeError 0 {array} (1, 1, 0)"), out
    assert "not a regular file" in out


@pytest.mark.parametrize("call", READS)
def test_oversized_chunk_refused_without_reading_it(damaged, call):
    f = chunk_file(damaged, "vertices", (1, 1, 1))
    bound = 8 + N_POINTS * 12
    with open(f, "wb") as fh:  # sparse: 4 GiB on paper, nothing on disk
        fh.write(frame(b"\0" * 12))
        fh.truncate(4 << 30)
    out = run_limited(damaged, call)
    assert out.startswith("ChunkDecodeError 0 vertices (1, 1, 1)"), out
    assert str(4 << 30) in out and str(bound) in out


def test_compressed_chunk_declaring_a_huge_size_is_refused(tmp_path):
    import numcodecs

    path = tmp_path / "pts.zarrvectors"
    write_store(path, compressor="zstd")
    big = frame(b"\0" * (64 << 20))
    blob = numcodecs.Zstd().encode(big)
    assert len(blob) < 1 << 16
    chunk_file(path, "vertices", (0, 1, 0)).write_bytes(blob)
    out = run_limited(path, "store.read()")
    assert out.startswith("ChunkDecodeError 0 vertices (0, 1, 0)"), out
    assert "more than the level can hold" in out


def test_s3_zero_byte_and_oversized_objects(pristine, tmp_path):
    pytest.importorskip("s3fs")
    sys.path.insert(0, str(HERE))
    from s3server import ACCESS_KEY, SECRET_KEY, MotoServer

    server = MotoServer()
    try:
        c = server.client()
        c.create_bucket(Bucket="zv-damaged")
        server.upload("zv-damaged", pristine, "pts.zarrvectors")
        opts = {"endpoint_url": server.url, "key": ACCESS_KEY, "secret": SECRET_KEY}
        url = "s3://zv-damaged/pts.zarrvectors"
        local = zv_dask.open_zv(pristine).read()
        got = zv_dask.open_zv(url, storage_options=opts).read()  # ranged GETs read it all
        np.testing.assert_array_equal(got["positions"], local["positions"])
        np.testing.assert_array_equal(got["object_ids"], local["object_ids"])
        c.put_object(Bucket="zv-damaged", Key="pts.zarrvectors/0/vertices/c/0/1/0", Body=b"")
        with pytest.raises(E.ChunkDecodeError, match="empty") as ei:
            zv_dask.open_zv(url, storage_options=opts).read()
        assert ei.value.chunk == (0, 1, 0) and ei.value.array == "vertices"
        c.put_object(Bucket="zv-damaged", Key="pts.zarrvectors/0/vertices/c/0/1/0",
                     Body=frame(b"\0" * (12 * N_POINTS + 12)))
        with pytest.raises(E.ChunkDecodeError, match="more than the level can hold") as ei:
            zv_dask.open_zv(url, storage_options=opts).read()
        assert ei.value.chunk == (0, 1, 0) and ei.value.array == "vertices"
    finally:
        server.stop()


@pytest.mark.parametrize("call", READS)
def test_deleted_chunk_is_named_by_every_read(damaged, call):
    from zv_dask.errors import ChunkMissingError

    chunk_file(damaged, "vertex_attributes/intensity", (0, 1, 1)).unlink()
    store = zv_dask.open_zv(damaged)
    with pytest.raises(ChunkMissingError) as err:
        eval(call, {"store": store})
    assert (err.value.level, err.value.array, err.value.chunk) == (
        0, "vertex_attributes/intensity", (0, 1, 1))
