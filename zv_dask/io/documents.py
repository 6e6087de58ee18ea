"""Read a store's metadata documents through a :class:`~zv_dask.io.location.StoreLocation`
and parse them (no chunk data): the root, level groups, array documents and,
where no presence list is recorded, a listing of the chunk files.
"""

from __future__ import annotations

import json
import warnings
from typing import Mapping

import numpy as np

from zv_dask.errors import (
    IncompleteStoreError,
    LevelNotFoundError,
    MetadataError,
    StoreNotFoundError,
)
from zv_dask.format import metadata as M
from zv_dask.format.owners import OWNER_COLUMN


class _Consolidated:
    """zarr v3 consolidated metadata in the root document: no further request at all."""

    def __init__(self, cm: Mapping):
        self.docs = {str(k).strip("/"): v for k, v in cm["metadata"].items()}

    def read_jsons(self, rels):
        return [self.docs.get(r[: -len("/zarr.json")]) for r in rels]

    def list_dirs(self, rel: str) -> list[str]:
        pre = rel.strip("/") + "/"
        return sorted({k[len(pre):].split("/")[0] for k in self.docs if k.startswith(pre)})


def read_metadata(loc) -> M.StoreMeta:
    """Read the ``zarr.json`` documents of a store and parse them (no chunk data).

    ``loc`` is a :class:`~zv_dask.io.location.StoreLocation` (not imported here: that
    module imports this one).

    Requests: the root document; then, unless it holds consolidated metadata, the level
    documents, one listing per level group and per attribute family (attribute names
    are recorded nowhere else), and the array documents, each batch concurrently.
    """
    name = loc.url
    root_doc = loc.read_json("zarr.json")
    if root_doc is None:
        if not loc.exists():
            raise StoreNotFoundError(
                "nothing exists at this path or URL; check the spelling, the bucket and "
                "the storage_options (credentials, endpoint_url)",
                store=name,
            )
        if any(n.isdigit() for n in loc.list_dirs("")):
            raise IncompleteStoreError(
                "level data exists but the root zarr.json does not: the write that made "
                "this store failed, was cancelled or is still running; write it again "
                "(to_zv(..., overwrite=True))",
                store=name,
            )
    root = M.parse_root(root_doc, name)
    cm = root_doc.get("consolidated_metadata")
    use_cm = isinstance(cm, Mapping) and isinstance(cm.get("metadata"), Mapping) and cm["metadata"]
    src = _Consolidated(cm) if use_cm else loc
    listed = [int(n) for n in root.level_names]
    listed_docs = src.read_jsons([f"{lv}/zarr.json" for lv in listed])
    levels, level_docs = [], []
    for lv, doc in zip(listed, listed_docs):
        if doc is None:  # e.g. after zarr-vectors' remove_resolution_level
            warnings.warn(f"store {name}: the root lists level {lv} but its group (zarr.json) "
                          "is missing; opening the other levels", UserWarning, stacklevel=3)
            continue
        levels.append(lv)
        level_docs.append(doc)
    if not levels:
        raise LevelNotFoundError(
            f"the root lists levels {listed} but none of their groups exists; "
            "the store is incomplete", store=name)
    listings = _map(loc, src.list_dirs, [str(lv) for lv in levels])
    wanted: list[str] = []
    per_level: dict[int, list[str]] = {}
    sub_lists = []
    for lv, children in zip(levels, listings):
        if "vertices" not in children:
            raise MetadataError("level has no 'vertices' array", store=name, level=lv,
                                array="vertices")
        paths = ["vertices"]
        if "vertex_fragments" in children:
            paths.append("vertex_fragments")
        if "geometry_index" in children:
            paths.append("geometry_index")
        for family in ("vertex_attributes", "object_attributes"):
            if family in children:
                sub_lists.append(f"{lv}/{family}")
        if "object_index" in children:
            paths += ["object_index", "object_index/manifests", "object_index/object_ids"]
        if "fragment_attributes" in children:  # only the reserved owner column is read
            paths.append(OWNER_COLUMN)
        per_level[lv] = paths
    for rel, names in zip(sub_lists, _map(loc, src.list_dirs, sub_lists)):
        lv, family = rel.split("/", 1)
        per_level[int(lv)] += [f"{family}/{n}" for n in names]
    for lv in levels:
        wanted += [f"{lv}/{p}/zarr.json" for p in per_level[lv]]
    docs = dict(zip(wanted, src.read_jsons(wanted)))
    parsed = {}
    for lv, doc in zip(levels, level_docs):
        lattrs = M.parse_level_attrs(doc, lv, name)
        if "geometry_index" in per_level[lv]:
            raise M.UnsupportedFormatError(
                "composite stores (geometry_index) are not supported", store=name, level=lv
            )
        arrays = {}
        oi_attrs = None
        for p in per_level[lv]:
            d = docs.get(f"{lv}/{p}/zarr.json")
            if p == "object_index":
                oi_attrs = (d.get("attributes") or {}) if isinstance(d, Mapping) else (d or {})
                continue
            if d is None and p in ("object_index/object_ids", "object_index/manifests",
                                   OWNER_COLUMN):
                continue
            arrays[p] = M.parse_array(d, p, name, lv)
        if "object_index/manifests" not in arrays and "layout" not in (oi_attrs or {}):
            oi_attrs = None  # an index not built yet (streaming writers before their reduce)
        vdoc = docs[f"{lv}/vertices/zarr.json"]
        presence = M.parse_presence(vdoc, arrays["vertices"], name, lv)
        if presence is None:
            presence = _list_presence(loc, arrays["vertices"], name, lv)
        parsed[lv] = M.build_level(
            store=name, level=lv, root=root, level_attrs=lattrs, arrays=arrays,
            presence=presence, object_index_attrs=oi_attrs,
        )
    loc.seal_version(root_doc)
    return M.build_store(name, root, parsed)


def _map(loc, fn, items: list) -> list:
    """``fn`` over items, concurrently when there are several remote ones (listings are
    round trips; a local listing is quicker than starting a thread)."""
    if len(items) <= 1 or loc._local:
        return [fn(x) for x in items]
    return list(loc._executor().map(fn, items))


def _list_presence(loc, arr: M.ArrayMeta, name: str, lv: int) -> M.Presence:
    """Without ``nonempty_chunks``: list the chunk files (unsharded arrays only)."""
    if arr.access == "sharded" or (
            arr.access == "zarr" and "sharding_indexed" in json.dumps(arr.document.get("codecs"))):
        raise MetadataError(
            "the vertices array has no nonempty_chunks list and is sharded, so its cells "
            "cannot be enumerated; rebuild the presence lists with zarr-vectors",
            store=name, level=lv, array="vertices",
        )
    files = loc.list_files(f"{lv}/vertices/{arr.chunk_key_prefix.rstrip('/')}")
    coords = []
    for f in files:
        parts = f.replace(arr.chunk_separator, "/").split("/")
        try:
            coords.append([int(x) for x in parts])
        except ValueError:
            continue
    c = np.asarray(coords, np.int64).reshape(-1, arr.rank) + np.asarray(arr.origin, np.int64)
    return M.presence_from_coords(c, arr, name, lv)
