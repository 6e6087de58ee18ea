"""A level's documents -> :class:`LevelMeta`: geometry, attributes, object index, refusals.

Pure: takes already parsed arrays (``format.arrays``) and the validated root
(``format.root``); every value read from ``zarr_vectors_level`` or the object index
attributes is checked before use.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np

from zv_dask.format import checks as C
from zv_dask.format.values import (
    FrozenMap,
    KNOWN_MANIFEST_LAYOUTS,
    ArrayMeta,
    AttributeInfo,
    LevelMeta,
    ObjectIndexMeta,
    Presence,
    RootInfo,
)
from zv_dask.errors import MetadataError, UnsupportedFormatError

_LV = "zarr_vectors_level."


def parse_level_attrs(doc, level: int, store: str) -> Mapping:
    """The validated ``zarr_vectors_level`` attributes of a level group.

    Examples
    --------
    >>> doc = {"attributes": {"zarr_vectors_level": {"level": 0, "vertex_count": 5}}}
    >>> parse_level_attrs(doc, 0, "demo")["vertex_count"]
    5
    """
    where = {"store": store, "level": level}
    if doc is None:
        raise MetadataError(f"level group {level}/ has no zarr.json although the root lists it",
                            **where)
    doc = C.mapping(doc, f"{level}/zarr.json", where)
    attrs = C.mapping(doc.get("attributes"), "attributes", where, optional=True)
    lv = attrs.get("zarr_vectors_level")
    if not isinstance(lv, Mapping):
        raise MetadataError("level group has no 'zarr_vectors_level' attributes", **where)
    C.integer(lv.get("vertex_count"), _LV + "vertex_count", where, lo=0, optional=True)
    C.strings(lv.get("chunk_dims"), _LV + "chunk_dims", where, optional=True)
    C.string(lv.get("chunk_attribute_name"), _LV + "chunk_attribute_name", where, optional=True)
    values = lv.get("chunk_attribute_values")
    if values is not None and not (isinstance(values, list) and all(map(_scalar, values))):
        C.fail(_LV + "chunk_attribute_values", f"must be a list of values, got "
               f"{C.short(values)}", where)
    for flag in ("shared_fragments", "fragments_tile"):
        C.boolean(lv.get(flag), _LV + flag, where)
    return lv


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def level_geometry(root: RootInfo, level_attrs: Mapping, level: int, store: str):
    """(chunk_shape, bin_shape, bin_ratio) of one level as float64 arrays.

    The bin follows the reference's ``get_level_bin_shape``: with an NGFF ``scale``,
    level 0 has the root's bin (its translation may hold a coordinate offset) and
    other levels ``2 * translation`` (else ``base * scale``); without one, the level's
    own ``bin_shape``/``bin_size``, else ``base * bin_ratio``, else the root's bin.

    Examples
    --------
    >>> doc = {"zarr_format": 3, "node_type": "group", "attributes": {
    ...     "zarr_vectors": {"zv_version": "0.9.2", "chunk_shape": [10.0, 10.0],
    ...                      "bounds": [[0, 0], [40, 40]]},
    ...     "multiscales": [{"datasets": [{"path": "0", "coordinateTransformations": [
    ...         {"type": "scale", "scale": [1, 1]},
    ...         {"type": "translation", "translation": [1000, 2000]}]}]}]}}
    >>> from zv_dask.format.root import parse_root
    >>> level_geometry(parse_root(doc, "demo"), {}, 0, "demo")[1]
    array([10., 10.])
    """
    where = {"store": store, "level": level}
    D = len(root.chunk_shape)
    base = np.asarray(root.base_bin_shape, np.float64)
    cs = C.numbers(level_attrs.get("chunk_shape"), _LV + "chunk_shape", where, n=D,
                   positive=True, optional=True) or root.chunk_shape
    scale, trans = root.transforms.get(str(level), (None, None))
    if scale is not None:
        if level == 0:
            bins = base
        elif trans is not None:
            bins = 2.0 * np.asarray(trans, np.float64)
            if not (bins > 0).all():
                C.fail(f"multiscales[0].datasets[{level}] translation",
                       f"gives a non-positive bin shape {bins.tolist()}", where)
        else:
            bins = base * np.asarray(scale, np.float64)
    else:
        b = level_attrs.get("bin_shape") or level_attrs.get("bin_size")
        ratio = level_attrs.get("bin_ratio")
        if b is not None:
            b = [b] * D if C.is_number(b) else b
            bins = np.asarray(C.numbers(b, _LV + "bin_shape", where, n=D, positive=True))
        elif ratio is not None:
            bins = base * np.asarray(C.numbers(ratio, _LV + "bin_ratio", where, n=D,
                                               positive=True))
        else:
            bins = base
    bins = np.asarray(bins, np.float64)
    return np.asarray(cs, np.float64), bins, bins / base


def attribute_info(arr: ArrayMeta, name: str, store: str, level: int,
                   geometry: str = "point_cloud") -> AttributeInfo:
    """What a per-vertex attribute array says about its values (validated).

    Examples
    --------
    >>> from zv_dask.format.arrays import parse_array
    >>> doc = {"zarr_format": 3, "node_type": "array", "shape": [1],
    ...        "data_type": "variable_length_bytes",
    ...        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1]}},
    ...        "codecs": [{"name": "vlen-bytes"}],
    ...        "attributes": {"dtype": "uint8", "row_shape": [3]}}
    >>> attribute_info(parse_array(doc, "vertex_attributes/rgb", "demo", 0), "rgb", "demo", 0).width
    3
    """
    where = {"store": store, "level": level, "array": arr.path}
    if arr.dtype is None:
        raise MetadataError("field 'dtype' is missing: an attribute array must record the "
                            "element type of its payload", **where)
    enc = arr.encoding
    categories = fill = None
    if enc == "dictionary":
        cats = arr.attrs.get("categories")
        if cats is None:
            raise MetadataError("field 'categories' is missing from a dictionary-encoded "
                                "attribute", **where)
        if not isinstance(cats, list) or not all(map(_scalar, cats)):
            C.fail("categories", f"must be a list of values, got {C.short(cats)}", where)
        if arr.dtype.kind not in "iu":
            C.fail("dtype", f"{arr.dtype} cannot hold dictionary codes (need an integer type)",
                   where)
        categories = tuple(cats)
        fill = C.integer(arr.attrs.get("_FillValue"), "_FillValue", where, optional=True)
    elif enc not in (None, "raw"):
        raise UnsupportedFormatError(
            f"attribute encoding {enc!r} is not supported (known: raw, dictionary)", **where)
    row_shape = arr.attrs.get("row_shape")
    row_shape = () if row_shape is None else C.ints(row_shape, "row_shape", where, lo=1,
                                                    hi=2**31, allow_empty=True)
    width = int(np.prod(row_shape)) if row_shape else 1
    if width > 2**31:
        C.fail("row_shape", f"{list(row_shape)} is too wide", where)
    # only write_points records the width of multi-column attributes (zv-format §6)
    reliable = bool(row_shape) or "row_shape" in arr.attrs and geometry == "point_cloud"
    return AttributeInfo(name, arr.path, arr.dtype, width, categories, fill,
                         width_reliable=reliable)


def _chunk_layout(root: RootInfo, lattrs: Mapping, where) -> tuple[int, tuple | None]:
    """(rank of cell keys, (name, values) of an attribute leading axis or None)."""
    D = len(root.chunk_shape)
    dims = lattrs.get("chunk_dims")
    name = lattrs.get("chunk_attribute_name")
    values = lattrs.get("chunk_attribute_values")
    lead = len(dims) - D if dims else (1 if name else 0)
    if lead < 0:
        C.fail(_LV + "chunk_dims", f"names {len(dims)} axes but the store has {D} spatial "
               "axes", where)
    if name is None:
        # leading non-spatial axes (rechunk by object_id, spatial, group): keys only
        return D + lead, None
    if values is None or lead != 1:
        C.fail(_LV + "chunk_attribute_values", "must list the values of the leading "
               f"chunk axis of attribute {name!r}", where)
    return D + 1, (name, tuple(values))


def build_level(
    *,
    store: str,
    level: int,
    root: RootInfo,
    level_attrs: Mapping,
    arrays: Mapping[str, ArrayMeta],
    presence: Presence,
    object_index_attrs: Mapping | None,
) -> LevelMeta:
    """Assemble a :class:`LevelMeta` from already parsed pieces; applies the refusals.

    Examples
    --------
    >>> from zv_dask.format.root import parse_root
    >>> from zv_dask.format.arrays import parse_array, parse_presence
    >>> root = parse_root({"zarr_format": 3, "node_type": "group", "attributes": {
    ...     "zarr_vectors": {"zv_version": "0.9.2", "chunk_shape": [1.0],
    ...                      "bounds": [[0], [2]]},
    ...     "multiscales": [{"datasets": [{"path": "0"}]}]}}, "demo")
    >>> vdoc = {"zarr_format": 3, "node_type": "array", "shape": [3],
    ...         "data_type": "variable_length_bytes",
    ...         "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1]}},
    ...         "codecs": [{"name": "vlen-bytes"}], "attributes": {"nonempty_chunks": ["1"]}}
    >>> v = parse_array(vdoc, "vertices", "demo", 0)
    >>> lm = build_level(store="demo", level=0, root=root, level_attrs={},
    ...                  arrays={"vertices": v}, presence=parse_presence(vdoc, v, "demo", 0),
    ...                  object_index_attrs=None)
    >>> lm.n_cells, lm.vertex_count is None
    (1, True)
    """
    where = {"store": store, "level": level}
    if level_attrs.get("geometry_index") or "geometry_index" in arrays:
        raise UnsupportedFormatError("composite stores (geometry_index) are not supported",
                                     **where)
    cs, bins, ratio = level_geometry(root, level_attrs, level, store)
    verts = arrays["vertices"]
    if verts.kind not in ("vertices", ""):
        raise MetadataError(f"field 'zv_array' is {verts.kind!r}, expected 'vertices'",
                            **where, array="vertices")
    if verts.dtype is None:
        verts = replace(verts, dtype=np.dtype("<f4"))
    rank, chunk_attr = _chunk_layout(root, level_attrs, where)
    for path, arr in arrays.items():
        grid = path in ("vertices", "vertex_fragments") or path.startswith("vertex_attributes/")
        if grid and arr.rank != rank:
            raise MetadataError(f"field 'shape': the grid has rank {arr.rank}, expected {rank} "
                                f"(chunk_dims {level_attrs.get('chunk_dims')})",
                                **where, array=path)
    geometry = (root.zvm.get("geometry_types") or ["point_cloud"])[0]
    attributes = {}
    for path, arr in arrays.items():
        if path.startswith("vertex_attributes/"):
            name = path.split("/", 1)[1]
            attributes[name] = attribute_info(arr, name, store, level, geometry)
    if chunk_attr is not None:
        name, values = chunk_attr
        attributes[name] = AttributeInfo(
            name, "", np.dtype(np.int64), 1, categories=values, implied_by_key=True
        )
    oi = None
    if object_index_attrs is not None:
        oi = _object_index(object_index_attrs, arrays, rank, where)
    frag = arrays.get("vertex_fragments")
    if frag is not None and frag.encoding not in (None, "fragment_index_v1"):
        raise UnsupportedFormatError(
            f"vertex_fragments encoding {frag.encoding!r} is not supported "
            "(known: fragment_index_v1)", **where, array="vertex_fragments")
    obj_attrs = {
        p.split("/", 1)[1]: a for p, a in arrays.items() if p.startswith("object_attributes/")
    }
    return LevelMeta(
        level=level,
        chunk_shape=cs,
        bin_shape=bins,
        bin_ratio=ratio,
        vertex_count=_vertex_count(level_attrs, presence),
        rank=rank,
        vertices=verts,
        vertex_fragments=frag,
        presence=presence,
        attributes=FrozenMap(attributes),
        object_index=oi,
        object_attributes=FrozenMap(obj_attrs),
        chunk_attribute=chunk_attr,
        shared_fragments=bool(level_attrs.get("shared_fragments", False)),
        fragments_tile=bool(level_attrs.get("fragments_tile", False)),
        arrays=FrozenMap(dict(arrays)),
        attrs=FrozenMap(dict(level_attrs)),
    )


def _vertex_count(level_attrs: Mapping, presence: Presence) -> int | None:
    """The recorded row count; ``None`` (unknown) when absent, or 0 beside listed chunks
    (rechunk and the streaming writers record 0 and never update it)."""
    n = level_attrs.get("vertex_count")
    return None if n is None or (n == 0 and len(presence) > 0) else n


def _object_index(attrs, arrays: Mapping, rank: int, where) -> ObjectIndexMeta:
    """The object index, its counts checked against the manifests array's shape."""
    where = {**where, "array": "object_index"}
    attrs = C.mapping(attrs, "attributes", where)
    layout = attrs.get("layout")
    if layout not in KNOWN_MANIFEST_LAYOUTS:
        raise UnsupportedFormatError(
            f"object_index layout {C.short(layout)} is not supported (known: "
            f"{sorted(KNOWN_MANIFEST_LAYOUTS)})", **where)
    man = arrays.get("object_index/manifests")
    if man is None:
        raise MetadataError("object_index has no manifests array",
                            **{**where, "array": "object_index/manifests"})
    if man.rank != 1:
        C.fail("shape", f"of the manifests must be 1-D, got {list(man.shape)}",
               {**where, "array": "object_index/manifests"})
    rows = man.shape[0]
    sid = C.integer(attrs.get("sid_ndim", rank), "sid_ndim", where, lo=1, hi=C.MAX_RANK)
    if sid != rank:
        raise MetadataError(f"field 'sid_ndim' is {sid} but the grid rank is {rank}", **where)
    n_obj = C.integer(attrs.get("num_objects", rows), "num_objects", where, lo=0)
    if n_obj != rows:
        C.fail("num_objects", f"is {n_obj} but object_index/manifests has {rows} rows", where)
    present = C.integer(attrs.get("num_present", n_obj), "num_present", where, lo=0, hi=n_obj)
    ids = arrays.get("object_index/object_ids")
    if ids is not None and ids.shape != (rows,):
        C.fail("shape", f"of object_ids is {list(ids.shape)} but manifests has {rows} rows",
               {**where, "array": "object_index/object_ids"})
    return ObjectIndexMeta(num_objects=n_obj, num_present=present, sid_ndim=sid,
                           layout=layout, manifests=man, object_ids=ids)


#: column names the readers add beside the axes (dataframe, xarray)
ADDED_COLUMNS = ("object_id", "owner_count")
RENAME_PREFIX = "attr_"


def attribute_columns(axes, attributes) -> dict:
    """``{stored attribute name: its column names}``, collision-free (pure).

    ``attributes`` is ``[(name, width)]``.  An attribute's columns are its name (width
    1) or ``name_0 ... name_{C-1}``.  Attributes are taken in name order; when one of
    an attribute's columns is an axis (``x``...), a column the readers add
    (``object_id``, ``owner_count``), ``positions`` or a column an earlier attribute
    took, the attribute is renamed ``attr_<name>`` (again ``attr_attr_<name>``... until
    none collides).  Axes and added columns never change name.

    Examples
    --------
    >>> attribute_columns(("x", "y"), [("x", 1), ("attr_x", 1), ("a", 2), ("a_0", 1)])
    {'a': ['a_0', 'a_1'], 'a_0': ['attr_a_0'], 'attr_x': ['attr_x'], 'x': ['attr_attr_x']}
    """
    taken = set(axes) | set(ADDED_COLUMNS) | {"positions"}
    out = {}
    for name, width in sorted(attributes, key=lambda a: a[0]):
        base = name
        while True:
            cols = [base] if width == 1 else [f"{base}_{j}" for j in range(width)]
            if not taken.intersection(cols):
                break
            base = RENAME_PREFIX + base
        taken.update(cols)
        out[name] = cols
    return out
