"""Objects with at least one vertex in a closed box: read the box's cells, name owners.

For each cell of the :class:`~zv_dask.plan.regions.RegionPlan` one concurrent batch
fetches the vertices and the fragment index (plus the owner column
``fragment_attributes/object_id`` where the level has one); the rows inside the box
give the fragments, the fragments their owners.  With the owner column no manifest is
decoded (except through the level's owner table for a cell whose touched fragments
are marked shared, on ``build_pyramid`` levels, or whose column cell is missing);
without it the level's owner table is used
(every manifest decoded once per process, vectorised; see
:mod:`zv_dask.format.owners`).  IO goes through :class:`~zv_dask.read.level.LevelReader`.
"""

from __future__ import annotations

import numpy as np

from zv_dask.errors import ChunkDecodeError, StoreReadError, UnsupportedFormatError
from zv_dask.format import decode as dec
from zv_dask.format import owners as fo
from zv_dask.io.location import BlobRefused, cell_key
from zv_dask.plan import regions as pr
from zv_dask.read.level import FRAGMENTS, LevelReader


def usable_owner_column(reader: LevelReader):
    """The level's owner column when a box query can read it directly (its cells are
    plain or byte-compressed blobs), else ``None`` (the owner table answers)."""
    arr = fo.owner_column(reader.level, reader.location.url)
    return None if arr is None or arr.access == "zarr" else arr


def owner_cells(reader: LevelReader, column, coords: list) -> dict:
    """``{coord: payload}`` of the owner column's cells that exist (one batch).

    A missing cell is not an error: the reference writes one for every cell a
    manifest names, and a cell without one falls back to the manifests."""
    lv = reader.level.level
    rels = [cell_key(column, lv, c) for c in coords]
    try:
        raws = reader.location.get_many(rels)
    except StoreReadError as exc:
        raise reader._named(exc, [(column, c) for c in coords], rels) from None
    out = {}
    for c, raw in zip(coords, raws):
        if raw is None or isinstance(raw, BlobRefused):
            continue
        try:
            if column.byte_codecs:
                raw = dec.decode_byte_codecs(raw, column.byte_codecs, None)
            out[c] = dec.strip_vlen_frame(raw)
        except dec.DecodeProblem as exc:
            raise reader._err(ChunkDecodeError, f"{exc}; the owner column is corrupt",
                              column.path, c) from None
    return out


def objects_in_box(reader: LevelReader, plan: pr.RegionPlan, use_owner_column: bool = True
                   ) -> np.ndarray:
    """Sorted unique ids of the objects with a vertex ``lo <= p <= hi`` in the plan's
    cells (exact: every vertex of every touched cell is checked).

    Examples
    --------
    >>> import zv_dask, numpy as np
    >>> s = zv_dask.open_zv(zv_dask.example_store("streamlines"))
    >>> lm = s.metadata.levels[0]
    >>> box = (np.zeros(3), np.full(3, 2000.0))
    >>> ids = objects_in_box(s._reader(0), pr.plan_region(lm, box))
    >>> len(ids)
    40
    """
    lm = reader.level
    coords = [tuple(int(x) for x in c) for c in plan.coords.tolist()]
    if not coords:
        return np.zeros(0, np.int64)
    if lm.vertex_fragments is None:
        raise reader._err(UnsupportedFormatError, "a box query on objects needs "
                          "vertex_fragments, which this level lacks", array=FRAGMENTS)
    reader._check_raw()
    column = usable_owner_column(reader) if use_owner_column else None
    payloads = reader.fetch([lm.vertices, lm.vertex_fragments], coords)
    owned = owner_cells(reader, column, coords) if column is not None else {}
    origin = np.asarray(lm.presence.origin, np.int64)
    linear = np.ravel_multi_index((np.asarray(coords, np.int64) - origin).T,
                                  lm.presence.shape)
    table = None
    found = []
    for coord, lin in zip(coords, linear.tolist()):
        pos = reader._decode_cell(coord, payloads, [], None)["positions"]
        fi = reader._fragment_index(payloads, coord, len(pos))  # rows checked in the chunk
        ranged = fi.ranges_only()
        if ranged is not None:
            touched = pr.ranged_fragments_in_box(pos, *ranged, plan.box)
        else:
            touched = pr.fragments_in_box(pos, *fi.row_fragment_pairs(), plan.box)
        if not len(touched):
            continue
        raw = owned.get(coord)
        if raw is not None:
            try:
                col = fo.decode_owner_column(raw, fi.num_fragments)
            except dec.DecodeProblem as exc:
                raise reader._err(ChunkDecodeError, f"{exc}; the owner column is corrupt or "
                                  "stale, rebuild it", column.path, coord) from None
            ids, touched = pr.owners_from_column(col, touched)
            found.append(ids)
            if not len(touched):
                continue
        if table is None:
            table = reader.owner_table()
        ff, oo = table.for_cell(lin)
        found.append(pr.owners_from_table(ff, oo, touched))
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
