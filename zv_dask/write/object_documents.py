"""The documents and object-wide arrays of an object store (polylines, streamlines,
graphs, skeletons, meshes), as the reference's writers and ``build_pyramid`` make them.
Pure: dicts and bytes out, no IO.

* ``object_index/manifests``: vlen-bytes then zstd (level 0), ``min(16384, O)`` rows a chunk;
* ``object_index/object_ids``: int64 rows in one chunk, fill 0 (an all-zero chunk has
  no file, as zarr skips chunks equal to the fill value);
* ``object_attributes/<name>``: ``(O,)`` rows, chunks of 65536 padded with the "absent"
  sentinel (NaN, the type's minimum for signed and maximum for unsigned integers);
* ``fragment_attributes/object_id``: the owner of each fragment (what
  ``building.build_fragment_owner_index()`` writes), one int64 per fragment.
"""

from __future__ import annotations

import struct

import numpy as np

from zv_dask.format import encode as E
from zv_dask.write.documents import documents, grid_array_document, group_document, root_document
from zv_dask.write.plan import WriteSpec

MANIFEST_CHUNK = 16384
OBJECT_ATTRIBUTE_CHUNK = 65536
_ZSTD = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}
_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}
LINKS_CONVENTION = {"streamline": "implicit_sequential", "polyline": "implicit_sequential",
                    "graph": "explicit", "mesh": "explicit",
                    "skeleton": "implicit_sequential_with_branches"}


def absent_value(dtype):
    """The fill sentinel of an object attribute of ``dtype``."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.nan
    if dt.kind == "i":
        return np.iinfo(dt).min
    if dt.kind == "u":
        return np.iinfo(dt).max
    raise ValueError(f"object attributes are numbers, not {dt}")


def _json_fill(dtype):
    v = absent_value(dtype)
    return "NaN" if isinstance(v, float) else int(v)


def _plain_array_document(shape, dtype, chunk, fill, codecs, attributes) -> dict:
    return {"shape": list(shape), "data_type": dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunk)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill, "codecs": codecs, "attributes": attributes,
            "zarr_format": 3, "node_type": "array", "storage_transformers": []}


def _numeric_chunks(path: str, values: np.ndarray, chunk: int, fill, compressor=None) -> dict:
    """zarr's chunk files of a 1-D numeric array (bytes codec, then zstd with
    ``compressor="zstd"``): full chunks padded with the fill value; chunks holding only
    the fill value are not written."""
    out = {}
    for i in range(0, len(values), chunk):
        part = np.full(chunk, fill, values.dtype)
        part[: min(chunk, len(values) - i)] = values[i:i + chunk]
        if np.array_equal(part, np.full(chunk, fill, values.dtype), equal_nan=True):
            continue
        raw = part.astype(values.dtype.newbyteorder("<")).tobytes()
        out[f"{path}/c/{i // chunk}"] = _zstd(raw) if compressor == "zstd" else raw
    return out


def _zstd(raw: bytes) -> bytes:
    import numcodecs

    return bytes(numcodecs.Zstd(level=0, checksum=False).encode(raw))


def _numeric_codecs(compressor) -> list:
    """``bytes``, then zstd when the store is compressed (as the reference's object arrays)."""
    return [dict(_BYTES)] + ([dict(_ZSTD)] if compressor == "zstd" else [])


def _vlen_chunks(path: str, blobs: list, chunk: int) -> dict:
    import numcodecs

    zstd = numcodecs.Zstd(level=0, checksum=False)
    out = {}
    for i in range(0, len(blobs), chunk):
        part = blobs[i:i + chunk]
        part = part + [b""] * (chunk - len(part))
        raw = [struct.pack("<I", len(part))]
        for b in part:
            raw.append(struct.pack("<I", len(b)))
            raw.append(b)
        out[f"{path}/c/{i // chunk}"] = bytes(zstd.encode(b"".join(raw)))
    return out


def object_arrays(spec: WriteSpec, object_ids: np.ndarray, manifests: list,
                  object_attributes: dict, level: int = 0) -> dict:
    """Documents and chunk files of ``object_index/`` and ``object_attributes/``.

    ``object_attributes`` maps a name to its ``(O,)`` values, row r for ``object_ids[r]``.
    At a coarse ``level`` the object ids and attributes are zstd-compressed whatever the
    store's compressor, as ``build_pyramid`` writes them."""
    out = _object_arrays(spec, object_ids, manifests, object_attributes,
                         spec.compressor if level == 0 else "zstd")
    return {f"{level}/{k[2:]}": v for k, v in out.items()} if level else out


def _object_arrays(spec, object_ids, manifests, object_attributes, compressor) -> dict:
    o = len(object_ids)
    chunk = min(MANIFEST_CHUNK, o)
    out = {"0/object_index/zarr.json": group_document({
        "zv_array": "object_index", "num_objects": o,
        "num_present": sum(1 for m in manifests if m != b"\x00\x00\x00\x00"),
        "sid_ndim": spec.ndim, "layout": "vlen_manifests_v2", "object_ids_sorted": True})}
    out["0/object_index/manifests/zarr.json"] = _plain_array_document(
        [o], "variable_length_bytes", [chunk], "", [dict(E.VLEN_CODEC), dict(_ZSTD)], {})
    out.update(_vlen_chunks("0/object_index/manifests", manifests, chunk))
    # one chunk of every id, as the reference's write_array defaults to
    out["0/object_index/object_ids/zarr.json"] = _plain_array_document(
        [o], "int64", [o], 0, _numeric_codecs(compressor), {})
    out.update(_numeric_chunks("0/object_index/object_ids",
                               np.asarray(object_ids, np.int64), o, 0, compressor))
    if object_attributes:
        out["0/object_attributes/zarr.json"] = group_document()
    for name, values in object_attributes.items():
        values = np.asarray(values)
        dt = str(values.dtype)
        out[f"0/object_attributes/{name}/zarr.json"] = _plain_array_document(
            [o], dt, [OBJECT_ATTRIBUTE_CHUNK], _json_fill(dt), _numeric_codecs(compressor),
            {"zv_array": "object_attribute", "name": name, "dtype": dt, "shape": [o],
             "fill_sentinel_meaning": "absent"})
        out.update(_numeric_chunks(f"0/object_attributes/{name}", values,
                                   OBJECT_ATTRIBUTE_CHUNK, absent_value(dt), compressor))
    return out


def object_documents(spec: WriteSpec, cells: list, link_cells: dict, n_links: int,
                     geometry: str, num_objects: int = 0) -> dict:
    """Every non-root grid document of an object store (polylines, streamlines).

    ``cells`` ``(level, array, key, n)`` as :func:`documents` takes them (vertex cells);
    ``link_cells`` maps an offsets segment to the keys of its cells."""
    docs = documents(spec, cells)
    verts = sorted({key for lv, array, key, _ in cells if array == "vertices" and lv == 0})
    level = docs["0/zarr.json"]["attributes"]["zarr_vectors_level"]
    level["arrays_present"] = ["vertices", "object_index"]
    docs["0/fragment_attributes/zarr.json"] = group_document()
    docs["0/fragment_attributes/object_id/zarr.json"] = grid_array_document(
        spec, verts, {"zv_array": "fragment_attribute", "name": "object_id", "dtype": "int64",
                      "row_shape": []}, E.codecs_for(None))
    if link_cells:
        docs["0/links/zarr.json"] = group_document()
        docs["0/links/0/zarr.json"] = group_document({
            "zv_array": "links_family", "level_delta": 0, "link_width": 2,
            "sid_ndim": spec.ndim, "directed": False, "store": "canonical",
            "num_links": n_links, "num_physical_records": n_links})
    for seg, keys in link_cells.items():
        off = [0 if c == "0" else int(c) for c in seg.split(".")]
        docs[f"0/links/0/{seg}/zarr.json"] = grid_array_document(spec, keys, {
            "zv_array": "links", "dtype": "int64", "offsets": [off], "has_perm": True,
            "link_width": 2, "level_delta": 0}, E.codecs_for(spec.compressor))
    return _coarse_level_documents(docs, spec, cells, num_objects)


def _coarse_level_documents(docs: dict, spec: WriteSpec, cells: list, num_objects: int) -> dict:
    """``docs`` with build_pyramid's per-object levels: vertices and object index only,
    whatever the geometry (no edges or faces at coarse levels)."""
    for lv in range(1, spec.levels):
        keys = sorted({key for l2, array, key, _ in cells if l2 == lv and array == "vertices"})
        level = docs[f"{lv}/zarr.json"]["attributes"]["zarr_vectors_level"]
        level.update(arrays_present=["vertices", "object_index"], preserves_object_ids=True,
                     inherited_num_objects=num_objects)
        docs[f"{lv}/fragment_attributes/zarr.json"] = group_document()
        docs[f"{lv}/fragment_attributes/object_id/zarr.json"] = grid_array_document(
            spec, keys, {"zv_array": "fragment_attribute", "name": "object_id",
                         "dtype": "int64", "row_shape": []}, E.codecs_for(None))
    return docs


def object_root_document(spec: WriteSpec, geometry: str) -> dict:
    doc = root_document(spec)
    zv = doc["attributes"]["zarr_vectors"]
    zv["geometry_types"] = [geometry]
    zv["links_convention"] = LINKS_CONVENTION[geometry]
    if spec.levels > 1:  # build_pyramid stamps the object ids it keeps first
        zv["format_capabilities"] = ["preserved_object_ids"] + zv["format_capabilities"]
    return doc


def _offsets_of(seg: str) -> list:
    return [[0 if c == "0" else int(c) for c in part.split(".")] for part in seg.split("_")]


def graph_documents(spec: WriteSpec, cells: list, link_cells: list, width: int,
                    link_attribute_dtypes: dict, n_links: int, num_objects: int = 0) -> dict:
    """Every non-root grid document of a graph or mesh store (``write_graph``,
    ``write_mesh``, then ``build_pyramid``): ``link_cells`` lists ``(segment, cell key,
    records)`` of level 0."""
    docs = documents(spec, cells)
    verts = sorted({key for lv, array, key, _ in cells if array == "vertices" and lv == 0})
    level = docs["0/zarr.json"]["attributes"]["zarr_vectors_level"]
    level["arrays_present"] = ["vertices", "links", "object_index"]
    docs["0/fragment_attributes/zarr.json"] = group_document()
    docs["0/fragment_attributes/object_id/zarr.json"] = grid_array_document(
        spec, verts, {"zv_array": "fragment_attribute", "name": "object_id", "dtype": "int64",
                      "row_shape": []}, E.codecs_for(None))
    intra = "_".join([".".join(["0"] * spec.ndim)] * (width - 1))
    keys: dict = {intra: set()}
    for seg, key, _ in link_cells:
        keys.setdefault(seg, set()).add(key)
    plain = E.codecs_for(spec.compressor)  # links as level 0 (the owner column stays plain)
    docs["0/links/zarr.json"] = group_document()
    docs["0/links/0/zarr.json"] = group_document({
        "zv_array": "links_family", "level_delta": 0, "link_width": width, "directed": False,
        "store": "canonical", "sid_ndim": spec.ndim, "num_links": n_links,
        "num_physical_records": n_links})
    for seg, ks in keys.items():
        docs[f"0/links/0/{seg}/zarr.json"] = grid_array_document(spec, ks, {
            "zv_array": "links", "dtype": "int64", "offsets": _offsets_of(seg),
            "has_perm": seg != intra, "link_width": width, "level_delta": 0}, plain)
    # written even when no record is intra, as the reference's create_links_array does
    docs["0/link_fragments/zarr.json"] = grid_array_document(spec, keys[intra], {
        "zv_array": "link_fragments", "encoding": "fragment_index_v1"}, plain)
    if link_attribute_dtypes:
        docs["0/link_attributes/zarr.json"] = group_document()
    for name, dt in link_attribute_dtypes.items():
        docs[f"0/link_attributes/{name}/zarr.json"] = group_document()
        docs[f"0/link_attributes/{name}/0/zarr.json"] = group_document({
            "zv_array": "link_attribute_family", "name": name, "level_delta": 0,
            "num_links": n_links})
        for seg, ks in keys.items():
            if ks:
                docs[f"0/link_attributes/{name}/0/{seg}/zarr.json"] = grid_array_document(
                    spec, ks, {"zv_array": "link_attribute", "name": name, "dtype": dt,
                               "offsets": _offsets_of(seg), "level_delta": 0,
                               "row_shape": []}, plain)
    return _coarse_level_documents(docs, spec, cells, num_objects)
