"""The ``links/0`` family of a level: its offsets arrays and link attributes.

Discovering them reads ``zarr.json`` documents and lists the ``links`` and
``link_attributes`` groups through the store location (metadata only); the layout is
described in :mod:`zv_dask.read.links`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from zv_dask.errors import MetadataError, UnsupportedFormatError
from zv_dask.format import checks as C
from zv_dask.format import metadata as M
from zv_dask.format.values import FrozenMap


@dataclass(frozen=True, eq=False)
class LinkArray:
    """One offsets array of a links family."""

    segment: str
    offsets: np.ndarray  # (L-1, rank) int64
    has_perm: bool
    width: int  # L
    arr: M.ArrayMeta
    cells: frozenset  # absolute coords (tuples) of the non-empty cells

    @property
    def intra(self) -> bool:
        return not self.offsets.any()


@dataclass(frozen=True, eq=False)
class LinkFamily:
    """``links/0`` of one level, with the link attributes mirroring it."""

    level: int
    link_width: int
    directed: bool
    arrays: tuple  # LinkArray, sorted by segment name (as strings)
    attributes: Mapping = field(default_factory=dict)  # name -> {segment: ArrayMeta}

    def source_cells(self) -> np.ndarray:
        """Every cell holding a record, numeric row-major order, (K, rank)."""
        cells = set()
        for a in self.arrays:
            cells |= a.cells
        rank = self.arrays[0].offsets.shape[1] if self.arrays else 0
        return np.asarray(sorted(cells), np.int64).reshape(-1, rank)


# --------------------------------------------------------------------------- metadata


def parse_segment(name: str, n_offsets: int, rank: int, store=None, level=None) -> np.ndarray:
    """``"0.0.0_+1.0.0"`` -> (n_offsets, rank) int64 (pure)."""
    parts = name.split("_")
    try:
        offs = [[int(x) for x in p.split(".")] for p in parts]
    except ValueError:
        raise MetadataError(f"links array name {name!r} is not dotted offsets",
                            store=store, level=level, array=f"links/0/{name}") from None
    arr = np.asarray(offs, np.int64)
    if arr.shape != (n_offsets, rank):
        raise MetadataError(f"links array {name!r} has offsets of shape {arr.shape}, expected "
                            f"({n_offsets}, {rank})", store=store, level=level,
                            array=f"links/0/{name}")
    return arr


def load_family(loc, lm: M.LevelMeta, store: str) -> LinkFamily | None:
    """Read the ``links/0`` metadata of a level (documents and listings only)."""
    lv = lm.level
    if "0" not in loc.list_dirs(f"{lv}/links"):
        return None
    where = {"store": store, "level": lv, "array": "links/0"}
    fam_doc = C.mapping(loc.read_json(f"{lv}/links/0/zarr.json"), "zarr.json", where,
                        optional=True)
    fattrs = C.mapping(fam_doc.get("attributes"), "attributes", where, optional=True)
    L = C.integer(fattrs.get("link_width", 2), "link_width", where, lo=1, hi=C.MAX_RANK)
    if fattrs.get("store", "canonical") not in ("canonical", "duplicate"):
        raise UnsupportedFormatError(f"links store policy {fattrs.get('store')!r} is unknown",
                                     store=store, level=lv, array="links/0")
    if fattrs.get("store") == "duplicate":
        raise UnsupportedFormatError("links stored with store='duplicate' are not supported "
                                     "(no 0.9 writer produces them)", store=store, level=lv,
                                     array="links/0")
    segs = [s for s in loc.list_dirs(f"{lv}/links/0") if s != "self"]
    docs = loc.read_jsons([f"{lv}/links/0/{s}/zarr.json" for s in segs])
    arrays = []
    for seg, doc in zip(segs, docs):
        if doc is None:
            continue
        arr = M.parse_array(doc, f"links/0/{seg}", store, lv)
        attrs = arr.attrs
        at = {**where, "array": arr.path}
        width = C.integer(attrs.get("link_width", L), "link_width", at, lo=1, hi=C.MAX_RANK)
        offsets = parse_segment(seg, width - 1, lm.rank, store, lv)
        cells = _presence(loc, doc, arr, store, lv)
        arrays.append(LinkArray(seg, offsets, C.boolean(attrs.get("has_perm"), "has_perm", at),
                                width, arr, frozenset(cells)))
    arrays.sort(key=lambda a: a.segment)
    attributes = {}
    names = loc.list_dirs(f"{lv}/link_attributes")
    if names:
        want = [(n, a.segment) for n in names for a in arrays]
        adocs = loc.read_jsons([f"{lv}/link_attributes/{n}/0/{s}/zarr.json" for n, s in want])
        for (n, s), doc in zip(want, adocs):
            if doc is not None:
                attributes.setdefault(n, {})[s] = M.parse_array(
                    doc, f"link_attributes/{n}/0/{s}", store, lv)
    return LinkFamily(lv, L, C.boolean(fattrs.get("directed"), "directed", where), tuple(arrays),
                      FrozenMap({k: FrozenMap(v) for k, v in attributes.items()}))


def _presence(loc, doc, arr: M.ArrayMeta, store, lv) -> list:
    keys = (doc.get("attributes") or {}).get("nonempty_chunks")
    if keys is not None:
        try:
            return [tuple(c) for c in M.parse_keys(keys, arr.rank).tolist()]
        except (ValueError, TypeError) as exc:
            C.fail("nonempty_chunks", f"must hold keys of {arr.rank} dot-separated integers: "
                   f"{exc}", {"store": store, "level": lv, "array": arr.path})
    files = loc.list_files(f"{lv}/{arr.path}/{arr.chunk_key_prefix.rstrip('/')}")
    out = []
    for f in files:
        try:
            idx = [int(x) for x in f.replace(arr.chunk_separator, "/").split("/")]
        except ValueError:
            continue
        out.append(tuple(i + o for i, o in zip(idx, arr.origin)))
    return out
