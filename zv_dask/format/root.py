"""The root ``zarr.json``: format version, capabilities, grid, bounds, level list.

Pure: takes the parsed JSON document, returns :class:`RootInfo` / :class:`StoreMeta`
or raises a typed error naming the field.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from zv_dask.format import checks as C
from zv_dask.format.values import (
    FrozenMap,
    KNOWN_CAPABILITIES,
    KNOWN_GEOMETRIES,
    KNOWN_LINK_CONVENTIONS,
    LevelMeta,
    RootInfo,
    StoreMeta,
)
from zv_dask.errors import MetadataError, NotAZVStoreError, UnsupportedFormatError

# The reference writer stamps "0.9.0", "0.9.1" or "0.9.2" (constants.FORMAT_VERSION); the
# 0.9 patch releases share one data layout, so any canonical 0.9.N is read.
_SUPPORTED = re.compile(r"0\.9\.(0|[1-9][0-9]{0,5})")
_SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_LEVEL_NAME = re.compile(r"(0|[1-9][0-9]{0,8})")  # ASCII digits only ("²".isdigit() is True)


def parse_root(doc, store: str) -> RootInfo:
    """Validate the root ``zarr.json`` and list its level names.

    Parameters
    ----------
    doc : dict or None
        The parsed root document (``None`` when the file is absent).
    store : str
        The store's display name, for errors.

    Returns
    -------
    RootInfo

    Examples
    --------
    >>> doc = {"zarr_format": 3, "node_type": "group", "attributes": {
    ...     "zarr_vectors": {"zv_version": "0.9.2", "chunk_shape": [1.0, 1.0],
    ...                      "bounds": [[0, 0], [4, 4]]},
    ...     "multiscales": [{"datasets": [{"path": "0"}]}]}}
    >>> parse_root(doc, "demo").level_names
    ('0',)
    """
    where = {"store": store}
    if doc is None:
        raise NotAZVStoreError(
            "no zarr.json at the root; pass the path of a .zarrvectors store "
            "(the folder that holds zarr.json and the level groups 0/, 1/, ...)",
            store=store,
        )
    doc = C.mapping(doc, "zarr.json", where)
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise NotAZVStoreError(
            "root zarr.json is not a zarr v3 group "
            f"(zarr_format={C.short(doc.get('zarr_format'))}, "
            f"node_type={C.short(doc.get('node_type'))}); zv_dask reads Zarr Vectors 0.9.x "
            "stores only",
            store=store,
        )
    attrs = C.mapping(doc.get("attributes"), "attributes", where, optional=True)
    zvm = attrs.get("zarr_vectors")
    if not isinstance(zvm, Mapping):
        raise NotAZVStoreError(
            "the root group has no 'zarr_vectors' attributes, so it is a plain zarr group, "
            "not a Zarr Vectors store; point open_zv at a store written by zarr-vectors",
            store=store,
        )
    check_version(zvm.get("zv_version"), store)
    caps = C.strings(zvm.get("format_capabilities"), "zarr_vectors.format_capabilities", where,
                     optional=True)
    unknown = sorted(set(caps) - KNOWN_CAPABILITIES)
    if unknown:
        raise UnsupportedFormatError(
            f"unknown format capabilities {unknown}; zv_dask knows "
            f"{sorted(KNOWN_CAPABILITIES)}. Upgrade zv_dask or re-write the store without them",
            store=store,
        )
    geoms = C.strings(zvm.get("geometry_types"), "zarr_vectors.geometry_types", where,
                      optional=True)
    bad = sorted(set(geoms) - KNOWN_GEOMETRIES)
    if bad:
        raise UnsupportedFormatError(
            f"unknown geometry types {bad}; known: {sorted(KNOWN_GEOMETRIES)}", store=store
        )
    conv = C.string(zvm.get("links_convention"), "zarr_vectors.links_convention", where,
                    optional=True)
    if conv is not None and conv not in KNOWN_LINK_CONVENTIONS:
        raise UnsupportedFormatError(
            f"unknown links_convention {conv!r}; known: {sorted(KNOWN_LINK_CONVENTIONS)}",
            store=store,
        )
    cs = C.numbers(zvm.get("chunk_shape"), "zarr_vectors.chunk_shape", where, positive=True)
    D = len(cs)
    base = C.numbers(zvm.get("base_bin_shape"), "zarr_vectors.base_bin_shape", where, n=D,
                     positive=True, optional=True) or cs
    bounds = _bounds(zvm.get("bounds"), D, where)
    multiscale, names, transforms = _multiscales(attrs, D, where)
    return RootInfo(zvm=zvm, multiscale=multiscale, level_names=names, chunk_shape=cs,
                    base_bin_shape=base, bounds=bounds, axes=_axes(multiscale, D, where),
                    transforms=FrozenMap(transforms))


def check_version(version, store: str) -> None:
    """Accept only ZV 0.9.x, spelled as the reference writes it ("0.9.2"); refuse the rest.

    Examples
    --------
    >>> check_version("0.9.2", "demo")
    >>> check_version("0.9", "demo")
    Traceback (most recent call last):
    ...
    zv_dask.errors.UnsupportedFormatError: store demo: zv_version '0.9' is not of the form X.Y.Z...
    """
    if isinstance(version, str) and _SUPPORTED.fullmatch(version):
        return
    if not isinstance(version, str):
        what = "missing" if version is None else f"{C.short(version)} ({type(version).__name__})"
        raise UnsupportedFormatError(
            f"zv_version is {what}, not a version string like \"0.9.2\"; zv_dask reads "
            "0.9.x stores written by zarr-vectors", store=store)
    if not _SEMVER.fullmatch(version):
        raise UnsupportedFormatError(
            f"zv_version {C.short(version)} is not of the form X.Y.Z; zv_dask reads 0.9.x "
            "stores (written as e.g. \"0.9.2\")", store=store)
    raise UnsupportedFormatError(
        f"zv_version {version} is not supported: zv_dask reads 0.9.x stores only "
        "(older layouts differ; 0.10 moves to OME RFC-8). Convert the store with "
        "zarr-vectors 0.9 or use a zv_dask release that supports this version",
        store=store,
    )


def _bounds(b, D: int, where) -> tuple:
    field = "zarr_vectors.bounds"
    if not isinstance(b, list) or len(b) != 2:
        C.fail(field, f"must be [[min, ...], [max, ...]], got {C.short(b)}", where)
    lo = np.asarray(C.numbers(b[0], field + "[0]", where, n=D), np.float64)
    hi = np.asarray(C.numbers(b[1], field + "[1]", where, n=D), np.float64)
    if (lo > hi).any():
        C.fail(field, f"has min > max on axis {int(np.flatnonzero(lo > hi)[0])}", where)
    return lo, hi


def _multiscales(attrs: Mapping, D: int, where):
    """(multiscales[0], level names, {name: (scale, translation)}) validated."""
    ms = attrs.get("multiscales")
    multiscale: Mapping = {}
    if ms is not None:
        if not isinstance(ms, list) or not ms:
            C.fail("multiscales", f"must be a non-empty list, got {C.short(ms)}", where)
        multiscale = C.mapping(ms[0], "multiscales[0]", where)
    datasets = multiscale.get("datasets", [])
    if not isinstance(datasets, list):
        C.fail("multiscales[0].datasets", f"must be a list, got {C.short(datasets)}", where)
    names, transforms = [], {}
    for i, d in enumerate(datasets):
        f = f"multiscales[0].datasets[{i}]"
        d = C.mapping(d, f, where)
        path = d.get("path")
        if not isinstance(path, str) or not _LEVEL_NAME.fullmatch(path):
            C.fail(f + ".path", f"must be a level name (a non-negative integer as a string), "
                   f"got {C.short(path)}", where)
        if path in transforms:
            C.fail(f + ".path", f"lists level {path} twice", where)
        transforms[path] = _transforms(d.get("coordinateTransformations"), f, D, where)
        names.append(path)
    if not names:
        ome = C.mapping(attrs.get("ome"), "ome", where, optional=True)
        nodes = ome.get("nodes", [])
        if not isinstance(nodes, list):
            C.fail("ome.nodes", f"must be a list, got {C.short(nodes)}", where)
        for i, n in enumerate(nodes):
            n = C.mapping(n, f"ome.nodes[{i}]", where)
            name = n.get("name")
            if n.get("type") == "zv:level" and not (
                    isinstance(name, str) and _LEVEL_NAME.fullmatch(name)):
                C.fail(f"ome.nodes[{i}].name", f"must be a level name, got {C.short(name)}",
                       where)
            if isinstance(name, str) and _LEVEL_NAME.fullmatch(name):
                names.append(name)
    levels = tuple(sorted(set(names), key=int))
    if not levels:
        raise MetadataError(
            "the root lists no resolution levels (multiscales[0].datasets is empty); "
            "the store is incomplete", **where)
    return multiscale, levels, transforms


def _transforms(ts, f: str, D: int, where) -> tuple:
    scale = trans = None
    if ts is None:
        return scale, trans
    if not isinstance(ts, list):
        C.fail(f + ".coordinateTransformations", f"must be a list, got {C.short(ts)}", where)
    for j, t in enumerate(ts):
        g = f"{f}.coordinateTransformations[{j}]"
        t = C.mapping(t, g, where)
        kind = t.get("type")
        if kind == "scale":
            scale = C.numbers(t.get("scale"), g + ".scale", where, n=D, positive=True)
        elif kind == "translation":
            trans = C.numbers(t.get("translation"), g + ".translation", where, n=D)
        elif not isinstance(kind, str):
            C.fail(g + ".type", f"must be a string, got {C.short(kind)}", where)
    return scale, trans


def _axes(multiscale: Mapping, D: int, where) -> tuple:
    axes = multiscale.get("axes")
    if axes is None:
        return tuple("xyz"[:D]) if D <= 3 else tuple(f"axis{i}" for i in range(D))
    if not isinstance(axes, list) or len(axes) != D:
        C.fail("multiscales[0].axes", f"must list {D} axes (one per chunk_shape entry), got "
               f"{C.short(axes)}", where)
    out = []
    for i, a in enumerate(axes):
        name = a.get("name", f"axis{i}") if isinstance(a, Mapping) else a
        out.append(C.string(name, f"multiscales[0].axes[{i}].name", where))
    return tuple(out)


def build_store(name: str, root: RootInfo, levels: Mapping[int, LevelMeta]) -> StoreMeta:
    """Assemble the :class:`StoreMeta` of a store from its parsed root and levels.

    Examples
    --------
    >>> doc = {"zarr_format": 3, "node_type": "group", "attributes": {
    ...     "zarr_vectors": {"zv_version": "0.9.2", "chunk_shape": [1.0, 1.0],
    ...                      "bounds": [[0, 0], [4, 4]]},
    ...     "multiscales": [{"datasets": [{"path": "0"}]}]}}
    >>> build_store("demo", parse_root(doc, "demo"), {}).axes
    ('x', 'y')
    """
    zvm = root.zvm
    return StoreMeta(
        name=name,
        zv_version=str(zvm.get("zv_version")),
        capabilities=tuple(zvm.get("format_capabilities") or ()),
        geometry_types=tuple(zvm.get("geometry_types") or ("point_cloud",)),
        axes=root.axes,
        chunk_shape=np.asarray(root.chunk_shape, np.float64),
        bounds=(root.bounds[0].copy(), root.bounds[1].copy()),
        base_bin_shape=np.asarray(root.base_bin_shape, np.float64),
        levels=FrozenMap(dict(sorted(levels.items()))),
        attrs=FrozenMap(dict(zvm)),
    )
