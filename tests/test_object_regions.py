"""Region queries on objects: ``read_objects(bbox=)`` and ``objects(bbox=)``.

Stores are written by the reference writers (``write_polylines``, ``write_graph``
for graphs and skeletons, ``write_mesh``, ``build_pyramid``), each also copied and
indexed with ``zarr_vectors.building.build_fragment_owner_index`` (the reserved
owner column).  Answers are a numpy brute force over the whole level, from the
reference's own decoders: every object with any vertex in the closed box, with all
its vertices in manifest order."""

from __future__ import annotations

import shutil
import struct
import warnings

import numpy as np
import pytest

import zv_dask
from zv_dask import errors as E
from zv_dask.format import manifests as fm
from zv_dask.format import owners as fo
from zv_dask.read import object_arrays
from test_objects import reference_objects
from zvfixtures import reference_level

warnings.filterwarnings("ignore", module="zarr_vectors")

STORES = ["streamlines", "web_graph", "tree_skeleton", "tri_mesh", "edge_cases", "points_2d"]
LEVELS = {"streamlines": [0, 1, 2], "web_graph": [0, 1]}


@pytest.fixture(scope="session")
def indexed(store_path, tmp_path_factory):
    """``indexed(name)`` -> a copy of the fixture store with the owner column."""
    from zarr_vectors import building as B

    root = tmp_path_factory.mktemp("indexed")
    made = {}

    def get(name: str) -> str:
        if name not in made:
            dst = root / f"{name}.zarrvectors"
            shutil.copytree(store_path(name), dst)
            B.build_fragment_owner_index(str(dst))
            made[name] = str(dst)
        return made[name]

    return get


def brute_force(path: str, level: int, box) -> dict:
    """{object id: its positions} of the objects with a vertex in the closed box."""
    ref = reference_level(path, level)
    lo, hi = (np.asarray(b, np.float64) for b in box)
    inside = np.all((ref["positions"] >= lo) & (ref["positions"] <= hi), axis=1)
    return {oid: ref["positions"][rows] for oid, rows in sorted(reference_objects(path, level).items())
            if len(rows) and inside[rows].any()}


def boxes(path: str, level: int) -> list:
    """Seeded random boxes, one around nothing, one over everything, and boxes whose
    faces lie on chunk faces and on stored vertices (closed-box boundaries)."""
    ref = reference_level(path, level)
    p = ref["positions"].astype(np.float64)
    s = zv_dask.open_zv(path)
    cs = np.asarray(s.metadata.levels[level].chunk_shape, np.float64)
    rng = np.random.default_rng(level + len(p))
    D = p.shape[1]
    out = [(p.min(0), p.max(0)), (p.max(0) + 1.0, p.max(0) + 50.0),
           ([-1e9] * D, [1e9] * D)]
    for _ in range(4):
        c = p[rng.integers(len(p))]
        half = rng.uniform(20, 300, D)
        out.append((c - half, c + half))
    v = p[rng.integers(len(p))]
    out.append((v - 100.0, v))                       # a vertex on the upper faces
    out.append((v, v))                               # a single point
    face = np.floor(v / cs) * cs                     # the lower faces of v's chunk
    out.append((face - 150.0, face))                 # upper faces on chunk faces
    out.append((face, face + cs))                    # one chunk, both faces closed
    return [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in out]


def check(r: dict, want: dict):
    assert r["object_ids"].tolist() == list(want)
    for k, oid in enumerate(r["object_ids"].tolist()):
        np.testing.assert_array_equal(r["positions"][r["offsets"][k]:r["offsets"][k + 1]],
                                      want[oid])


@pytest.mark.parametrize("name", STORES)
@pytest.mark.parametrize("owner_column", [False, True])
def test_read_objects_bbox_equals_brute_force(store_path, indexed, name, owner_column):
    path = indexed(name) if owner_column else store_path(name)
    for level in LEVELS.get(name, [0]):
        s = zv_dask.open_zv(path)
        for box in boxes(path, level):
            want = brute_force(path, level, box)
            check(s.read_objects(level=level, bbox=box, attributes=[]), want)
            frame = s.objects(level=level, bbox=box).compute()
            assert frame.index.tolist() == list(want)


def test_bbox_with_attributes_and_object_ids(store_path):
    path = store_path("streamlines")
    s = zv_dask.open_zv(path)
    box = _some_objects_box(path)
    want = brute_force(path, 0, box)
    r = s.read_objects(bbox=box, attributes=["fa"])
    whole = s.read_objects(r["object_ids"], attributes=["fa"])
    np.testing.assert_array_equal(r["attributes"]["fa"], whole["attributes"]["fa"])
    # object_ids and bbox: those of the ids in the box, in the caller's order
    outside = [o for o in range(40) if o not in want][:2]
    ids = [list(want)[1], outside[0], list(want)[0], outside[1]]
    got = s.read_objects(ids, bbox=box, attributes=[])
    assert got["object_ids"].tolist() == [list(want)[1], list(want)[0]]
    objs = s.objects(bbox=box, attributes=["mean_fa"]).compute()
    full = s.objects(attributes=["mean_fa"]).compute()
    assert objs.equals(full.loc[list(want)])


def _some_objects_box(path: str):
    """A box holding vertices of several of the store's 40 streamlines but not all."""
    p = reference_level(path, 0)["positions"].astype(np.float64)
    for c in p[::97]:
        box = (c - 250.0, c + 250.0)
        if 3 <= len(brute_force(path, 0, box)) <= 30:
            return box
    raise AssertionError("no box with a few streamlines")


def test_owner_column_decodes_only_the_selected_manifests(store_path, indexed):
    """With the owner column a box query decodes the manifests of the objects it
    returns and no other; without it, the whole level's, once per open."""
    box = _some_objects_box(store_path("streamlines"))
    s = zv_dask.open_zv(indexed("streamlines"))
    before = object_arrays.manifests_decoded()
    r = s.read_objects(bbox=box, attributes=[])
    assert 0 < len(r["object_ids"]) < 40
    assert object_arrays.manifests_decoded() - before == len(r["object_ids"])
    before = object_arrays.manifests_decoded()
    s.objects(bbox=box)
    assert object_arrays.manifests_decoded() == before  # the frame needs no manifest
    plain = zv_dask.open_zv(store_path("streamlines"))
    before = object_arrays.manifests_decoded()
    plain.read_objects(bbox=box, attributes=[])
    assert object_arrays.manifests_decoded() - before == 40  # once: the table keeps them


def test_shared_fragments_on_coarse_levels_fall_back_to_the_manifests(indexed):
    """build_pyramid levels mark fragments several objects share -2 in the column."""
    import zarr

    path = indexed("streamlines")
    s = zv_dask.open_zv(path)
    col = zarr.open_array(f"{path}/1/fragment_attributes/object_id", mode="r")
    cells = [np.frombuffer(b, "<i8") for b in np.asarray(col[...]).ravel() if b]
    assert any((c == fo.OWNER_SHARED).any() for c in cells)
    box = (np.full(3, -1e9), np.full(3, 1e9))
    check(s.read_objects(level=1, bbox=box, attributes=[]), brute_force(path, 1, box))


def test_bbox_is_validated_like_point_reads(store_path):
    s = zv_dask.open_zv(store_path("streamlines"))
    for bad in [([0, 0], [1, 1]), ([5, 5, 5], [1, 1, 1]), ([np.nan] * 3, [1] * 3), "box"]:
        with pytest.raises(E.QueryError):
            s.read_objects(bbox=bad)
        with pytest.raises(E.QueryError):
            s.objects(bbox=bad)
    points = zv_dask.open_zv(store_path("points_2d"))
    with pytest.raises(E.QueryError, match="2 values"):
        points.read_objects(bbox=([0, 0, 0], [1, 1, 1]))
    with pytest.raises(E.ArrayNotFoundError):  # a level without an object index
        zv_dask.open_zv(store_path("points_pyramid")).read_objects(bbox=([0] * 3, [1] * 3))


def test_corrupt_owner_column_is_named(indexed, tmp_path):
    src = indexed("tree_skeleton")
    path = tmp_path / "bad.zarrvectors"
    shutil.copytree(src, path)
    files = sorted(p for p in (path / "0" / "fragment_attributes" / "object_id" / "c").rglob("*")
                   if p.is_file())
    raw = files[0].read_bytes()
    files[0].write_bytes(raw[:8] + np.array([-7], "<i8").tobytes() + raw[16:])
    s = zv_dask.open_zv(path)
    with pytest.raises(E.ChunkDecodeError) as ei:
        s.read_objects(bbox=([-1e9] * 3, [1e9] * 3))
    assert ei.value.array == fo.OWNER_COLUMN and ei.value.level == 0
    assert ei.value.chunk is not None and "-7" in str(ei.value)
    # a valid-looking owner that is not in the object index: the column is stale
    files[0].write_bytes(raw[:8] + np.full((len(raw) - 8) // 8, 999, "<i8").tobytes())
    with pytest.raises(E.ChunkDecodeError, match="stale") as ei:
        zv_dask.open_zv(path).read_objects(bbox=([-1e9] * 3, [1e9] * 3))
    assert ei.value.array == fo.OWNER_COLUMN


def _manifest(blocks, sid=3) -> bytes:
    out = struct.pack("<I", len(blocks))
    for coord, mode, payload in blocks:
        out += struct.pack(f"<{sid}q", *coord) + bytes([mode])
        if mode == 0:
            out += struct.pack("<q", payload)
        elif mode == 1:
            out += struct.pack("<qq", *payload)
        else:
            out += struct.pack("<I", len(payload)) + struct.pack(f"<{len(payload)}q", *payload)
    return out


def test_vectorised_decode_equals_one_by_one(store_path):
    import zarr

    rng = np.random.default_rng(5)
    blobs = [_manifest([]), _manifest([((1, 2, 3), 0, 4), ((0, 0, 1), 0, 2)]),
             _manifest([((0, 1, 0), 1, (3, 4)), ((1, 1, 1), 0, 9)]),
             _manifest([((2, 0, 0), 2, [5, 1, 7])])]
    blobs += [_manifest([(tuple(rng.integers(-3, 3, 3).tolist()), 0, int(rng.integers(50)))
                         for _ in range(int(rng.integers(0, 6)))]) for _ in range(200)]
    for path in (store_path("edge_cases"), store_path("streamlines")):
        blobs += list(zarr.open_array(f"{path}/0/object_index/manifests", mode="r")[:])
    row, coords, frags = fo.decode_manifest_rows(blobs, 3)
    per_row = fo.split_by_row(len(blobs), row, coords, frags)
    for blob, (c, f) in zip(blobs, per_row):
        wc, wf = fm.decode_manifest(bytes(blob), 3)
        np.testing.assert_array_equal(c.reshape(-1, 3), wc)
        np.testing.assert_array_equal(f, wf)
    with pytest.raises(fm.DecodeProblem, match="row 1 .object 8. is absent"):
        fo.decode_manifest_rows([blobs[1], b""], 3, object_ids=[7, 8])
    with pytest.raises(fm.DecodeProblem, match="row 12: manifest has 1 bytes after"):
        fo.decode_manifest_rows([blobs[2] + b"\x00"], 3, row_numbers=[12])


@pytest.mark.parametrize("options", [{"compressor": "zstd"},
                                     {"compressor": "zstd", "shard_shape": 2}])
def test_compressed_and_sharded_stores(tmp_path, options):
    """Byte-compressed vertex cells are decoded here, sharded ones through zarr (the
    reference writes the owner column uncompressed and unsharded either way)."""
    from zarr_vectors import building as B
    from zvfixtures import _streamlines

    path = tmp_path / "lines.zarrvectors"
    lines = _streamlines(np.random.default_rng(3), 30)
    B.write_polylines(str(path), lines, chunk_shape=(400.0,) * 3,
                      bounds=([0.0] * 3, [2000.0] * 3), **options)
    for indexed in (False, True):
        if indexed:
            B.build_fragment_owner_index(str(path))
        s = zv_dask.open_zv(path)
        assert (fo.owner_column(s.metadata.levels[0]) is not None) == indexed
        for box in boxes(str(path), 0):
            check(s.read_objects(bbox=box, attributes=[]), brute_force(str(path), 0, box))


def test_owner_column_of_another_type_is_refused(indexed, tmp_path):
    import json

    path = tmp_path / "s.zarrvectors"
    shutil.copytree(indexed("tree_skeleton"), path)
    doc_path = path / "0" / "fragment_attributes" / "object_id" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    doc["attributes"]["dtype"] = "float32"
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(E.MetadataError) as ei:
        zv_dask.open_zv(path).read_objects(bbox=([0] * 3, [2000] * 3))
    assert ei.value.array == fo.OWNER_COLUMN and "int64" in str(ei.value)


def test_object_arrays_zarr_decodes_are_read_through_zarr(store_path, tmp_path):
    """Manifests and object ids with a codec decoded only by zarr (crc32c) give the same
    answers as the directly decoded originals."""
    import zarr
    from zarr.codecs import BytesCodec, Crc32cCodec, VLenBytesCodec

    from zv_dask.read.object_arrays import _direct_layout

    path = tmp_path / "crc.zarrvectors"
    shutil.copytree(store_path("streamlines"), path)
    for name, serializer, dtype in (("manifests", VLenBytesCodec(), "bytes"),
                                    ("object_ids", BytesCodec(), "int64")):
        where = path / "0" / "object_index" / name
        old = zarr.open_array(str(where), mode="r")
        values, attrs, chunks = old[:], dict(old.attrs), old.chunks
        shutil.rmtree(where)
        new = zarr.create_array(str(where), shape=values.shape, chunks=chunks,
                                dtype=dtype, serializer=serializer,
                                compressors=[Crc32cCodec()], fill_value=old.fill_value)
        new[:] = values
        new.attrs.update(attrs)
    s, plain = zv_dask.open_zv(path), zv_dask.open_zv(store_path("streamlines"))
    oi = s.metadata.levels[0].object_index
    assert _direct_layout(oi.manifests) is None and _direct_layout(oi.object_ids) is None
    box = _some_objects_box(str(path))
    check(s.read_objects(bbox=box, attributes=[]), brute_force(str(path), 0, box))
    a, b = s.read_objects([3, 1]), plain.read_objects([3, 1])
    np.testing.assert_array_equal(a["positions"], b["positions"])
    assert a["object_ids"].tolist() == [3, 1]
