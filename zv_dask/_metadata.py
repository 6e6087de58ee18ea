"""``zarr.json`` documents -> frozen metadata values.

Every format-version rule and every refusal lives here.  Pure: the functions take
the parsed JSON documents (plain dicts) and return values; they never do IO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from .errors import MetadataError, NotAZVStoreError, UnsupportedFormatError

KNOWN_CAPABILITIES = frozenset(
    {"shared_fragments", "preserved_object_ids", "multiscale_links", "fragment_index"}
)
KNOWN_GEOMETRIES = frozenset(
    {"point_cloud", "line", "polyline", "streamline", "skeleton", "graph", "mesh"}
)
KNOWN_LINK_CONVENTIONS = frozenset(
    {"implicit_sequential", "explicit", "implicit_sequential_with_branches"}
)
KNOWN_MANIFEST_LAYOUTS = frozenset({"vlen_manifests_v1", "vlen_manifests_v2"})
# Byte-to-byte codecs we decode ourselves after fetching a cell (numcodecs names).
DIRECT_BYTES_CODECS = frozenset({"zstd", "gzip", "blosc"})


@dataclass(frozen=True, eq=False)
class ArrayMeta:
    """One array of a level, as far as its ``zarr.json`` tells.

    ``access`` says how cells are fetched: ``"plain"`` (file bytes are the vlen
    framing), ``"bytes_codecs"`` (framing wrapped by ``byte_codecs``, decoded with
    numcodecs) or ``"zarr"`` (sharded or unusual: let zarr decode).
    """

    path: str
    kind: str
    shape: tuple
    origin: tuple
    dtype: np.dtype | None
    encoding: str | None
    access: str
    byte_codecs: tuple
    chunk_key_prefix: str
    chunk_separator: str
    attrs: Mapping
    document: Mapping

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, eq=False)
class AttributeInfo:
    """A per-vertex attribute of a level."""

    name: str
    path: str
    dtype: np.dtype
    width: int
    categories: tuple | None = None
    fill_code: int | None = None
    implied_by_key: bool = False  # chunk_by_attribute: value comes from the cell key
    # False when the writer may have recorded row_shape [] for a multi-column attribute
    # (write_polylines/graph/mesh do): the width then comes from the bytes of a chunk.
    width_reliable: bool = True

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None

    @property
    def value_dtype(self) -> np.dtype:
        """dtype of the decoded values (categoricals decode to objects)."""
        return np.dtype(object) if self.is_categorical else self.dtype


@dataclass(frozen=True, eq=False)
class ObjectIndexMeta:
    num_objects: int
    num_present: int
    sid_ndim: int
    layout: str
    manifests: ArrayMeta
    object_ids: ArrayMeta | None


@dataclass(frozen=True, eq=False)
class Presence:
    """The non-empty cells of a grid array as sorted row-major linear indices.

    Sorting linear indices of ``coord - origin`` equals numeric tuple order.
    """

    shape: tuple
    origin: tuple
    linear: np.ndarray  # (K,) int64, sorted, unique

    def coords(self, linear: np.ndarray | None = None) -> np.ndarray:
        lin = self.linear if linear is None else linear
        if len(lin) == 0:
            return np.zeros((0, len(self.shape)), np.int64)
        idx = np.stack(np.unravel_index(lin, self.shape), axis=1).astype(np.int64)
        return idx + np.asarray(self.origin, np.int64)

    def __len__(self) -> int:
        return len(self.linear)


@dataclass(frozen=True, eq=False)
class LevelMeta:
    level: int
    chunk_shape: np.ndarray
    bin_shape: np.ndarray
    bin_ratio: np.ndarray
    vertex_count: int
    rank: int  # rank of cell keys: D, or D+1 with a leading attribute axis
    vertices: ArrayMeta
    vertex_fragments: ArrayMeta | None
    presence: Presence
    attributes: Mapping[str, AttributeInfo]
    object_index: ObjectIndexMeta | None
    object_attributes: Mapping[str, ArrayMeta]
    chunk_attribute: tuple | None  # (name, values) for chunk_by_attribute levels
    shared_fragments: bool
    fragments_tile: bool
    arrays: Mapping[str, ArrayMeta]
    attrs: Mapping

    @property
    def n_cells(self) -> int:
        return len(self.presence)


@dataclass(frozen=True, eq=False)
class StoreMeta:
    name: str
    zv_version: str
    capabilities: tuple
    geometry_types: tuple
    axes: tuple
    chunk_shape: np.ndarray
    bounds: tuple  # (lo, hi) float64
    base_bin_shape: np.ndarray
    levels: Mapping[int, LevelMeta] = field(default_factory=dict)
    attrs: Mapping = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return len(self.axes)

    @property
    def geometry_type(self) -> str:
        return self.geometry_types[0] if self.geometry_types else "point_cloud"


# --------------------------------------------------------------------------- root


@dataclass(frozen=True)
class RootInfo:
    """What the root document says before the levels are read."""

    zvm: Mapping
    multiscale: Mapping
    level_names: tuple


def parse_root(doc: Mapping | None, store: str) -> RootInfo:
    """Validate the root ``zarr.json`` and list its level names."""
    if doc is None:
        raise NotAZVStoreError(
            "no zarr.json at the root; pass the path of a .zarrvectors store "
            "(the folder that holds zarr.json and the level groups 0/, 1/, ...)",
            store=store,
        )
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise NotAZVStoreError(
            f"root zarr.json is not a zarr v3 group (zarr_format={doc.get('zarr_format')!r}, "
            f"node_type={doc.get('node_type')!r}); zv_dask reads Zarr Vectors 0.9.x stores only",
            store=store,
        )
    attrs = doc.get("attributes") or {}
    zvm = attrs.get("zarr_vectors")
    if not isinstance(zvm, Mapping):
        raise NotAZVStoreError(
            "the root group has no 'zarr_vectors' attributes, so it is a plain zarr group, "
            "not a Zarr Vectors store; point open_zv at a store written by zarr-vectors",
            store=store,
        )
    check_version(zvm.get("zv_version"), store)
    caps = tuple(zvm.get("format_capabilities") or ())
    unknown = sorted(set(caps) - KNOWN_CAPABILITIES)
    if unknown:
        raise UnsupportedFormatError(
            f"unknown format capabilities {unknown}; zv_dask knows "
            f"{sorted(KNOWN_CAPABILITIES)}. Upgrade zv_dask or re-write the store without them",
            store=store,
        )
    geoms = tuple(zvm.get("geometry_types") or ())
    bad = sorted(set(geoms) - KNOWN_GEOMETRIES)
    if bad:
        raise UnsupportedFormatError(
            f"unknown geometry types {bad}; known: {sorted(KNOWN_GEOMETRIES)}", store=store
        )
    conv = zvm.get("links_convention")
    if conv is not None and conv not in KNOWN_LINK_CONVENTIONS:
        raise UnsupportedFormatError(
            f"unknown links_convention {conv!r}; known: {sorted(KNOWN_LINK_CONVENTIONS)}",
            store=store,
        )
    cs = zvm.get("chunk_shape")
    if not isinstance(cs, list) or not cs or not all(_positive(c) for c in cs):
        raise MetadataError(
            f"zarr_vectors.chunk_shape must be a list of positive numbers, got {cs!r}",
            store=store,
        )
    ms = attrs.get("multiscales")
    multiscale = ms[0] if isinstance(ms, list) and ms and isinstance(ms[0], Mapping) else {}
    names = [d.get("path") for d in multiscale.get("datasets", []) if isinstance(d, Mapping)]
    if not names:
        ome = attrs.get("ome") or {}
        names = [n.get("name") for n in ome.get("nodes", []) if isinstance(n, Mapping)]
    levels = sorted({str(n) for n in names if isinstance(n, str) and n.isdigit()}, key=int)
    if not levels:
        raise MetadataError(
            "the root lists no resolution levels (multiscales[0].datasets is empty); "
            "the store is incomplete",
            store=store,
        )
    axes = multiscale.get("axes")
    if axes is not None and len(axes) != len(cs):
        raise MetadataError(
            f"multiscales axes has {len(axes)} entries but chunk_shape has {len(cs)}",
            store=store,
        )
    return RootInfo(zvm=zvm, multiscale=multiscale, level_names=tuple(levels))


def check_version(version, store: str) -> None:
    """Accept only ZV 0.9.x; refuse anything else explicitly."""
    try:
        parts = [int(p) for p in str(version).split(".")[:3]]
        major, minor = parts[0], parts[1]
    except (ValueError, IndexError):
        raise UnsupportedFormatError(
            f"zv_version {version!r} is not of the form X.Y.Z; zv_dask reads 0.9.x stores",
            store=store,
        ) from None
    if (major, minor) != (0, 9):
        raise UnsupportedFormatError(
            f"zv_version {version} is not supported: zv_dask reads 0.9.x stores only "
            "(older layouts differ; 0.10 moves to OME RFC-8). Convert the store with "
            "zarr-vectors 0.9 or use a zv_dask release that supports this version",
            store=store,
        )


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


# --------------------------------------------------------------------------- arrays


def parse_array(doc: Mapping | None, path: str, store: str, level: int) -> ArrayMeta:
    """Parse one array ``zarr.json`` (grid or object-level)."""
    if doc is None:
        raise MetadataError(f"array {path!r} has no zarr.json", store=store, level=level, array=path)
    if doc.get("node_type") != "array" or doc.get("zarr_format") != 3:
        raise MetadataError(
            "expected a zarr v3 array here", store=store, level=level, array=path
        )
    attrs = doc.get("attributes") or {}
    shape = tuple(int(s) for s in doc.get("shape", ()))
    origin = tuple(int(o) for o in (attrs.get("chunk_grid_origin") or [0] * len(shape)))
    if len(origin) != len(shape):
        raise MetadataError(
            f"chunk_grid_origin {list(origin)} does not match the array rank {len(shape)}",
            store=store, level=level, array=path,
        )
    dtype = None
    if "dtype" in attrs:
        try:
            dtype = np.dtype(attrs["dtype"]).newbyteorder("<")
        except TypeError:
            raise MetadataError(
                f"dtype {attrs['dtype']!r} is not a numpy dtype", store=store, level=level, array=path
            ) from None
    access, byte_codecs = _classify_codecs(doc)
    cke = doc.get("chunk_key_encoding") or {}
    if cke.get("name") == "v2":
        prefix, sep = "", (cke.get("configuration") or {}).get("separator", ".")
    else:
        prefix, sep = "c/", (cke.get("configuration") or {}).get("separator", "/")
    return ArrayMeta(
        path=path,
        kind=str(attrs.get("zv_array", attrs.get("zvf_array", ""))),
        shape=shape,
        origin=origin,
        dtype=dtype,
        encoding=attrs.get("encoding"),
        access=access,
        byte_codecs=byte_codecs,
        chunk_key_prefix=prefix,
        chunk_separator=sep,
        attrs=MappingProxyType({k: v for k, v in attrs.items() if k != "nonempty_chunks"}),
        # without the presence list: tasks carry this document, and it can be megabytes
        document=MappingProxyType({**doc, "attributes": {
            k: v for k, v in attrs.items() if k != "nonempty_chunks"}}),
    )


def _classify_codecs(doc: Mapping) -> tuple[str, tuple]:
    if doc.get("data_type") != "variable_length_bytes":
        return "zarr", ()
    grid = (doc.get("chunk_grid") or {}).get("configuration", {}).get("chunk_shape")
    codecs = doc.get("codecs") or []
    names = [c.get("name") for c in codecs]
    if grid and all(int(g) == 1 for g in grid) and names[:1] == ["vlen-bytes"]:
        rest = codecs[1:]
        if not rest:
            return "plain", ()
        if all(c.get("name") in DIRECT_BYTES_CODECS for c in rest):
            return "bytes_codecs", tuple(
                (c["name"], dict(c.get("configuration") or {})) for c in rest
            )
    return "zarr", ()


def parse_presence(doc: Mapping, arr: ArrayMeta, store: str, level: int) -> Presence | None:
    """``nonempty_chunks`` -> :class:`Presence`; ``None`` when the list is absent."""
    keys = (doc.get("attributes") or {}).get("nonempty_chunks")
    if keys is None:
        return None
    return presence_from_coords(_parse_keys(keys, arr, store, level), arr, store, level)


def _parse_keys(keys, arr: ArrayMeta, store: str, level: int) -> np.ndarray:
    rank = arr.rank
    try:
        flat = np.array(".".join(keys).split(".") if keys else [], dtype=np.int64)
        coords = flat.reshape(-1, rank)
    except ValueError:
        raise MetadataError(
            f"nonempty_chunks holds keys that are not {rank} dotted integers",
            store=store, level=level, array=arr.path,
        ) from None
    if len(coords) != len(keys):
        raise MetadataError(
            f"nonempty_chunks holds keys that are not {rank} dotted integers",
            store=store, level=level, array=arr.path,
        )
    return coords


def presence_from_coords(coords: np.ndarray, arr: ArrayMeta, store: str, level: int) -> Presence:
    idx = coords - np.asarray(arr.origin, np.int64)
    if len(idx) and ((idx < 0).any() or (idx >= np.asarray(arr.shape)).any()):
        bad = coords[np.flatnonzero(((idx < 0) | (idx >= np.asarray(arr.shape))).any(1))[0]]
        raise MetadataError(
            f"nonempty_chunks lists chunk {tuple(bad.tolist())} outside the array grid "
            f"(shape {arr.shape}, origin {arr.origin})",
            store=store, level=level, array=arr.path,
        )
    lin = np.ravel_multi_index(idx.T, arr.shape) if len(idx) else np.zeros(0, np.int64)
    return Presence(arr.shape, arr.origin, np.unique(np.asarray(lin, np.int64)))


# --------------------------------------------------------------------------- levels


def level_geometry(root: RootInfo, level_doc_attrs: Mapping, level: int, store: str):
    """(chunk_shape, bin_shape, bin_ratio) of one level as float64 arrays."""
    zvm = root.zvm
    root_cs = np.asarray(zvm["chunk_shape"], np.float64)
    cs = np.asarray(level_doc_attrs.get("chunk_shape") or root_cs, np.float64)
    base = np.asarray(zvm.get("base_bin_shape") or root_cs, np.float64)
    entry = None
    for d in root.multiscale.get("datasets", []):
        if isinstance(d, Mapping) and str(d.get("path")) == str(level):
            entry = d
    scale = trans = None
    if entry is not None:
        for t in entry.get("coordinateTransformations", []):
            if t.get("type") == "scale":
                scale = t.get("scale")
            elif t.get("type") == "translation":
                trans = t.get("translation")
    if trans is not None:
        bins = 2.0 * np.asarray(trans, np.float64)
    elif "bin_shape" in level_doc_attrs or "bin_size" in level_doc_attrs:
        b = level_doc_attrs.get("bin_shape", level_doc_attrs.get("bin_size"))
        bins = np.broadcast_to(np.asarray(b, np.float64), root_cs.shape).copy()
    elif scale is not None or "bin_ratio" in level_doc_attrs:
        r = scale if scale is not None else level_doc_attrs["bin_ratio"]
        bins = base * np.asarray(r, np.float64)
    elif level == 0:
        bins = base
    else:
        raise MetadataError(
            "no bin shape for this level (no multiscales dataset entry and no bin_shape, "
            "bin_size or bin_ratio in zarr_vectors_level)",
            store=store, level=level,
        )
    if bins.shape != root_cs.shape or cs.shape != root_cs.shape:
        raise MetadataError(
            "chunk or bin shape has the wrong number of axes", store=store, level=level
        )
    return cs, bins, bins / base


def parse_level_attrs(doc: Mapping | None, level: int, store: str) -> Mapping:
    if doc is None:
        raise MetadataError(
            f"level group {level}/ has no zarr.json although the root lists it",
            store=store, level=level,
        )
    lv = (doc.get("attributes") or {}).get("zarr_vectors_level")
    if not isinstance(lv, Mapping):
        raise MetadataError(
            "level group has no 'zarr_vectors_level' attributes", store=store, level=level
        )
    return lv


def attribute_info(arr: ArrayMeta, name: str, store: str, level: int,
                   geometry: str = "point_cloud") -> AttributeInfo:
    if arr.dtype is None:
        raise MetadataError("attribute array has no 'dtype' attribute", store=store, level=level, array=arr.path)
    enc = arr.encoding
    categories = fill = None
    if enc == "dictionary":
        if "categories" not in arr.attrs:
            raise MetadataError(
                "dictionary-encoded attribute has no 'categories'",
                store=store, level=level, array=arr.path,
            )
        categories = tuple(arr.attrs["categories"])
        fill = arr.attrs.get("_FillValue")
    elif enc not in (None, "raw"):
        raise UnsupportedFormatError(
            f"attribute encoding {enc!r} is not supported (known: raw, dictionary)",
            store=store, level=level, array=arr.path,
        )
    row_shape = arr.attrs.get("row_shape") or []
    width = int(np.prod(row_shape)) if row_shape else 1
    # only write_points records the width of multi-column attributes (zv-format §6)
    reliable = bool(row_shape) or "row_shape" in arr.attrs and geometry == "point_cloud"
    return AttributeInfo(name, arr.path, arr.dtype, width, categories, fill,
                         width_reliable=reliable)


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
    """Assemble a :class:`LevelMeta` from already parsed pieces; applies the refusals."""
    D = len(root.zvm["chunk_shape"])
    if level_attrs.get("geometry_index") or "geometry_index" in arrays:
        raise UnsupportedFormatError(
            "composite stores (geometry_index) are not supported", store=store, level=level
        )
    cs, bins, ratio = level_geometry(root, level_attrs, level, store)
    verts = arrays["vertices"]
    if verts.kind not in ("vertices", ""):
        raise MetadataError(
            f"zv_array is {verts.kind!r}, expected 'vertices'", store=store, level=level, array="vertices"
        )
    if verts.dtype is None:
        verts = _with_dtype(verts, np.dtype("<f4"))
    chunk_attr = None
    rank = D
    if level_attrs.get("chunk_attribute_name") or level_attrs.get("chunk_dims"):
        values = level_attrs.get("chunk_attribute_values")
        name = level_attrs.get("chunk_attribute_name")
        if not name or values is None:
            raise UnsupportedFormatError(
                "chunk_by_attribute level without chunk_attribute_name/values",
                store=store, level=level,
            )
        chunk_attr = (str(name), tuple(values))
        rank = D + 1
    if verts.rank != rank:
        raise MetadataError(
            f"vertices grid has rank {verts.rank}, expected {rank}",
            store=store, level=level, array="vertices",
        )
    attributes = {}
    for path, arr in arrays.items():
        if path.startswith("vertex_attributes/"):
            name = path.split("/", 1)[1]
            geometry = (root.zvm.get("geometry_types") or ["point_cloud"])[0]
            attributes[name] = attribute_info(arr, name, store, level, geometry)
    if chunk_attr is not None:
        name, values = chunk_attr
        attributes[name] = AttributeInfo(
            name, "", np.dtype(np.int64), 1, categories=values, implied_by_key=True
        )
    oi = None
    if object_index_attrs is not None:
        layout = object_index_attrs.get("layout")
        if layout not in KNOWN_MANIFEST_LAYOUTS:
            raise UnsupportedFormatError(
                f"object_index layout {layout!r} is not supported (known: "
                f"{sorted(KNOWN_MANIFEST_LAYOUTS)})",
                store=store, level=level, array="object_index",
            )
        if "object_index/manifests" not in arrays:
            raise MetadataError("object_index has no manifests array", store=store, level=level,
                                array="object_index/manifests")
        sid = int(object_index_attrs.get("sid_ndim", rank))
        if sid != rank:
            raise MetadataError(
                f"object_index sid_ndim {sid} differs from the grid rank {rank}",
                store=store, level=level, array="object_index",
            )
        n_obj = int(object_index_attrs.get("num_objects", arrays["object_index/manifests"].shape[0]))
        oi = ObjectIndexMeta(
            num_objects=n_obj,
            num_present=int(object_index_attrs.get("num_present", n_obj)),
            sid_ndim=sid,
            layout=layout,
            manifests=arrays["object_index/manifests"],
            object_ids=arrays.get("object_index/object_ids"),
        )
    frag = arrays.get("vertex_fragments")
    if frag is not None and frag.encoding not in (None, "fragment_index_v1"):
        raise UnsupportedFormatError(
            f"vertex_fragments encoding {frag.encoding!r} is not supported "
            "(known: fragment_index_v1)",
            store=store, level=level, array="vertex_fragments",
        )
    obj_attrs = {
        p.split("/", 1)[1]: a for p, a in arrays.items() if p.startswith("object_attributes/")
    }
    return LevelMeta(
        level=level,
        chunk_shape=cs,
        bin_shape=bins,
        bin_ratio=ratio,
        vertex_count=int(level_attrs.get("vertex_count", -1)),
        rank=rank,
        vertices=verts,
        vertex_fragments=frag,
        presence=presence,
        attributes=MappingProxyType(attributes),
        object_index=oi,
        object_attributes=MappingProxyType(obj_attrs),
        chunk_attribute=chunk_attr,
        shared_fragments=bool(level_attrs.get("shared_fragments", False)),
        fragments_tile=bool(level_attrs.get("fragments_tile", False)),
        arrays=MappingProxyType(dict(arrays)),
        attrs=MappingProxyType(dict(level_attrs)),
    )


def _with_dtype(arr: ArrayMeta, dtype: np.dtype) -> ArrayMeta:
    from dataclasses import replace

    return replace(arr, dtype=dtype)


def build_store(name: str, root: RootInfo, levels: Mapping[int, LevelMeta]) -> StoreMeta:
    zvm = root.zvm
    cs = np.asarray(zvm["chunk_shape"], np.float64)
    D = len(cs)
    axes_doc = root.multiscale.get("axes") or [{"name": n} for n in "xyz"[:D]]
    axes = tuple(str(a.get("name", f"axis{i}")) if isinstance(a, Mapping) else str(a)
                 for i, a in enumerate(axes_doc))
    b = zvm.get("bounds")
    try:
        lo, hi = (np.asarray(b[0], np.float64), np.asarray(b[1], np.float64))
        assert lo.shape == (D,) and hi.shape == (D,)
    except Exception:
        raise MetadataError(f"zarr_vectors.bounds {b!r} is not [[min...],[max...]]", store=name) from None
    return StoreMeta(
        name=name,
        zv_version=str(zvm.get("zv_version")),
        capabilities=tuple(zvm.get("format_capabilities") or ()),
        geometry_types=tuple(zvm.get("geometry_types") or ("point_cloud",)),
        axes=axes,
        chunk_shape=cs,
        bounds=(lo, hi),
        base_bin_shape=np.asarray(zvm.get("base_bin_shape") or cs, np.float64),
        levels=MappingProxyType(dict(sorted(levels.items()))),
        attrs=MappingProxyType(dict(zvm)),
    )
