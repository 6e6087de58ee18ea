"""The ``zarr.json`` documents of a written store, as the reference writer makes them.

Pure: dicts in, dicts out.  ``documents(spec, cells)`` returns every document except
the root one, and ``root_document(spec)`` the root, which the writer puts last.
"""

from __future__ import annotations

import json
from collections import defaultdict

from zv_dask.format import encode as E
from zv_dask.write.plan import WriteSpec

ZV_VERSION = "0.9.2"
_NAME_SUFFIXES = (".zarrvectors", ".zv", ".zarr")


def store_name(url: str) -> str:
    """The name the ``ome`` block gives a store: its last path segment, suffix dropped."""
    seg = str(url).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    for suffix in _NAME_SUFFIXES:
        if len(seg) > len(suffix) and seg.lower().endswith(suffix):
            seg = seg[: -len(suffix)]
            break
    return seg.strip() or "zarr_vectors"


def dumps(doc: dict) -> bytes:
    return json.dumps(doc, indent=2).encode()


def _num(x):
    """Keep integral floats integral in documents, as the reference echoes its inputs."""
    return int(x) if float(x).is_integer() else float(x)


def _axes(spec: WriteSpec) -> list:
    names = spec.axis_names or spec.axes
    return [{"name": str(n), "type": "space"} for n in names]


RESERVED_ROOT_KEYS = ("zarr_vectors", "multiscales", "ome")


def store_attributes_json(attributes, store=None) -> str:
    """``store_attributes`` of ``to_zv`` as the JSON the spec carries ("" for none);
    refuses keys the format owns and values JSON cannot hold.

    Examples
    --------
    >>> store_attributes_json({"source": {"scales": [0.01, 0.01, 0.01]}})
    '{"source": {"scales": [0.01, 0.01, 0.01]}}'
    """
    from zv_dask.errors import WriteInputError

    if not attributes:
        return ""
    if not isinstance(attributes, dict):
        raise WriteInputError("store_attributes must be a dict of JSON values, got "
                              f"{type(attributes).__name__}", store=store)
    taken = sorted(set(attributes) & set(RESERVED_ROOT_KEYS))
    if taken:
        raise WriteInputError(f"store_attributes may not set {taken}: the format writes "
                              "them; use other keys", store=store)
    try:
        return json.dumps(attributes, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WriteInputError(f"store_attributes must hold JSON values ({exc})",
                              store=store) from None


def root_document(spec: WriteSpec) -> dict:
    pyramid = spec.levels > 1
    zv = {
        "zv_version": ZV_VERSION,
        "format_capabilities": ["shared_fragments", "multiscale_links"] if pyramid else [],
        "chunk_shape": [_num(c) for c in spec.chunk_shape],
        "bounds": [[float(v) for v in spec.bounds[0]], [float(v) for v in spec.bounds[1]]],
        "geometry_types": ["point_cloud"],
    }
    if spec.bin_shape is not None:
        zv["base_bin_shape"] = [_num(b) for b in spec.bin_shape]
    zv.update(links_convention="implicit_sequential", object_index_convention="standard",
              cross_chunk_strategy="explicit_links")
    if pyramid:
        zv.update(cross_level_depth=1, cross_level_storage="explicit")
    base = spec.base_bin
    datasets = []
    for lv in range(spec.levels):
        b = spec.level_bin(lv)
        datasets.append({"path": str(lv), "coordinateTransformations": [
            {"type": "scale", "scale": [float(x / y) for x, y in zip(b, base)]},
            {"type": "translation", "translation": [float(x) / 2 for x in b]}]})
    axes = _axes(spec)
    extra = json.loads(spec.store_attributes) if spec.store_attributes else {}
    return {
        "attributes": {
            **extra,
            "zarr_vectors": zv,
            "multiscales": [{"version": "0.4", "name": "default", "axes": axes,
                             "datasets": datasets, "metadata": {"format": "zarr_vectors"}}],
            "ome": {"version": "0.6", "type": "collection", "name": spec.store_name,
                    "attributes": {"scene": {
                        "coordinateSystems": [{"name": "world", "axes": [dict(a) for a in axes]}],
                        "coordinateTransformations": []}},
                    "nodes": [{"type": "zv:level", "name": str(lv)} for lv in range(spec.levels)]},
        },
        "zarr_format": 3,
        "node_type": "group",
    }


def group_document(attributes: dict | None = None) -> dict:
    return {"attributes": dict(attributes or {}), "zarr_format": 3, "node_type": "group"}


def grid_array_document(spec: WriteSpec, keys, attributes: dict, codecs: list,
                        outer_chunk=None) -> dict:
    """An array of one cell per chunk; ``outer_chunk`` is the shard shape when sharded."""
    origin, shape = spec.grid()
    attrs = {"nonempty_chunks": sorted(keys)}
    if any(origin):
        attrs["chunk_grid_origin"] = list(origin)
    attrs.update(attributes)
    return {
        "shape": list(shape),
        "data_type": "variable_length_bytes",
        "chunk_grid": {"name": "regular", "configuration": {
            "chunk_shape": list(outer_chunk or [1] * spec.ndim)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": "",
        "codecs": codecs,
        "attributes": attrs,
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def _attribute_attrs(at) -> dict:
    a = {"zv_array": "attribute", "name": at.name, "dtype": at.dtype}
    if at.width:
        a["channel_names"] = [f"ch{i}" for i in range(at.width)]
        a["row_shape"] = [at.width]
    else:
        a["row_shape"] = []
    if at.categorical:
        a.update(encoding="dictionary", categories=list(at.categories), ordered=False)
        if at.fill_code is not None:
            a["_FillValue"] = int(at.fill_code)
    return a


def documents(spec: WriteSpec, cells) -> dict:
    """Every non-root document, keyed by relative path, from the written cells.

    ``cells`` is an iterable of ``(level, array, dotted coord, rows or records)``.
    """
    keys = defaultdict(set)
    counts = defaultdict(int)
    for level, array, key, n in cells:
        keys[(int(level), array)].add(key)
        counts[(int(level), array)] += int(n)
    docs = {}
    # level-0 cells carry the compressor and shard options; links and coarse levels
    # are plain, as build_pyramid writes them (sharded with shard_levels=True)
    codecs0 = (json.loads(spec.level0_codecs) if spec.level0_codecs
               else E.codecs_for(spec.compressor))
    shard0 = list(spec.shard_shape) if spec.shard_shape else None
    plain, plain_outer = E.codecs_for(None), None
    if spec.levels_codecs:  # shard_levels=True: sharded as level 0, uncompressed
        plain, plain_outer = json.loads(spec.levels_codecs), shard0
    for lv in range(spec.levels):
        verts = keys.get((lv, "vertices"), set())
        vc = counts.get((lv, "vertices"), 0)
        codecs, outer = (codecs0, shard0) if lv == 0 else (plain, plain_outer)
        docs[f"{lv}/vertices/zarr.json"] = grid_array_document(
            spec, verts, {"zv_array": "vertices", "dtype": spec.dtype, "encoding": "raw"}, codecs,
            outer)
        docs[f"{lv}/vertex_fragments/zarr.json"] = grid_array_document(
            spec, verts, {"zv_array": "vertex_fragments", "encoding": "fragment_index_v1"}, codecs,
            outer)
        if lv == 0:
            present = ["vertices"] + (["vertex_attributes"] if spec.attributes else [])
            level_attrs = {"level": 0, "object_sparsity": 1.0, "vertex_count": vc,
                           "coarsening_method": "none", "parent_level": None,
                           "arrays_present": present}
            if verts:  # the reference stamps the tiling claim only over written cells
                level_attrs["fragments_tile"] = True
            if spec.attributes:
                docs["0/vertex_attributes/zarr.json"] = group_document()
            for at in spec.attributes:
                docs[f"0/vertex_attributes/{at.name}/zarr.json"] = grid_array_document(
                    spec, verts, _attribute_attrs(at), codecs0, shard0)
        else:
            level_attrs = {"level": lv, "object_sparsity": 1.0, "vertex_count": vc,
                           "coarsening_method": "per_object", "parent_level": lv - 1,
                           "arrays_present": ["vertices"], "inherited_num_objects": 0,
                           "shared_fragments": True}
        docs[f"{lv}/zarr.json"] = group_document({"zarr_vectors_level": level_attrs})
        deltas = [d for d, ok in (("+1", lv + 1 < spec.levels), ("-1", lv > 0)) if ok]
        if deltas:
            docs[f"{lv}/links/zarr.json"] = group_document()
        for delta in deltas:
            arrays = sorted(a for (l2, a) in keys if l2 == lv and a.startswith(f"links/{delta}/"))
            n_links = sum(counts[(lv, a)] for a in arrays)
            docs[f"{lv}/links/{delta}/zarr.json"] = group_document({
                "zv_array": "links_family", "level_delta": int(delta), "link_width": 2,
                "directed": True, "store": "canonical", "sid_ndim": spec.ndim,
                "num_links": n_links, "num_physical_records": n_links})
            for a in arrays:
                seg = a.rsplit("/", 1)[1]
                off = [0 if c == "0" else int(c) for c in seg.split(".")]
                docs[f"{lv}/{a}/zarr.json"] = grid_array_document(spec, keys[(lv, a)], {
                    "zv_array": "links", "dtype": "int64", "offsets": [off], "has_perm": False,
                    "link_width": 2, "level_delta": int(delta)}, plain, plain_outer)
    return docs
