"""``zv-dask index STORE``: add the owner column ``fragment_attributes/object_id``.

The column (zv-format section 7) names the object that owns each fragment of each
cell, so a box query on objects reads owners from the box's cells instead of
decoding every manifest of the level.  It is what the reference's
``zarr_vectors.building.build_fragment_owner_index()`` writes, byte for byte: per
cell one int64 per fragment up to the highest one a manifest names, ``-1`` none,
``-2`` shared (several objects: ``build_pyramid`` levels).

An explicit write, the only one outside ``to_zv``.  Everything is computed first
(the level's manifests decoded vectorised); a store it cannot index is refused before
anything is written.  Then per level the cell objects, the ``fragment_attributes``
group document where missing, and the array's ``zarr.json`` last: until that
document exists readers do not see the column, so an interrupted run leaves the
store as it was (re-run it after deleting the leftover cell objects, or just re-run:
cells are rewritten).
"""

from __future__ import annotations

import numpy as np

from zv_dask.cli.common import add_store_arg
from zv_dask.errors import ChunkDecodeError, StoreExistsError, UnsupportedFormatError
from zv_dask.format import encode as enc
from zv_dask.format import owners as fo
from zv_dask.format.arrays import parse_array
from zv_dask.format.frames import DecodeProblem
from zv_dask.io import targets as T
from zv_dask.io.location import cell_key
from zv_dask.io.puts import StoreWriter

NAME = "index"
OPENS_STORE = True
GROUP_DOC = b'{\n  "attributes": {},\n  "zarr_format": 3,\n  "node_type": "group"\n}'


def add_parser(subparsers):
    """Register ``index`` on the ``zv-dask`` subparsers; returns its parser."""
    p = subparsers.add_parser(
        NAME, help="add the owner column fragment_attributes/object_id (a write)",
        description="Write the owner column fragment_attributes/object_id of every level "
                    "with an object index (or of --level), as zarr_vectors' "
                    "build_fragment_owner_index does, so that box queries on objects "
                    "(read_objects(bbox=...)) read owners from the box's chunks only.  "
                    "Refuses a store that has the column already, has no object index, "
                    "whose manifests do not decode, or that another writer is writing.")
    add_store_arg(p, required=True)
    p.add_argument("--level", type=int, default=None, help="only this level")
    return p


def run(args, store) -> str:
    """Index the store; returns one line per level written."""
    plans = plan_index(store, args.level)
    write_index(store, plans)
    return "\n".join(f"level {lv}: {sum(len(c) for c in cols.values()):,} fragments in "
                     f"{len(cols):,} chunks -> {fo.OWNER_COLUMN}" for lv, cols, _ in plans)


def plan_index(store, level=None) -> list:
    """``[(level, {coord: column}, array document)]`` of the levels to index; refuses
    (nothing written) when a level cannot be indexed.

    Examples
    --------
    >>> import zv_dask
    >>> s = zv_dask.open_zv(zv_dask.example_store("streamlines"))
    >>> [(lv, len(cols)) for lv, cols, _ in plan_index(s, 0)]
    [(0, 31)]
    """
    meta = store.metadata
    levels = list(meta.levels) if level is None else [store._level(level).level]
    todo = [lv for lv in levels if meta.levels[lv].object_index is not None]
    if not todo:
        raise UnsupportedFormatError(
            "no level of this store has an object index" + ("" if level is None else
                                                              f" (level {level})") +
            ": it has no objects, nothing to index", store=store.url, level=level)
    holder = T.read_doc(store._loc, store._loc._full(T.LOCK_NAME))
    if holder is not None and not T.stale(holder):
        raise StoreExistsError("another writer is writing this store (its lock is held); "
                               "index it when that write has finished", store=store.url)
    plans = []
    for lv in todo:
        lm = meta.levels[lv]
        if fo.owner_column(lm, store.url) is not None:
            raise StoreExistsError(
                "the level has an owner column already; delete that array's folder to "
                "rebuild it", store=store.url, level=lv, array=fo.OWNER_COLUMN)
        reader = store._reader(lv)
        table = reader.owner_table()
        try:
            columns = fo.owner_columns(table.cell, table.frag, table.oid,
                                       reader._max_fragments())
        except DecodeProblem as exc:
            raise ChunkDecodeError(f"{exc}; the manifest is corrupt, the level cannot be "
                                   "indexed", store=store.url, level=lv,
                                   array="object_index/manifests") from None
        lin = np.fromiter(columns, np.int64, len(columns))
        coords = np.stack(np.unravel_index(lin, lm.presence.shape), 1) \
            + np.asarray(lm.presence.origin, np.int64) if len(lin) else np.zeros((0, lm.rank))
        by_coord = {tuple(int(x) for x in c): columns[k]
                    for c, k in zip(coords.tolist(), lin.tolist())}
        keys = [".".join(map(str, c)) for c in by_coord]
        plans.append((lv, by_coord, fo.owner_column_document(lm.vertices, keys)))
    return plans


def write_index(store, plans: list) -> None:
    """Put the planned columns: cell objects, then the group documents where missing,
    then each array's ``zarr.json`` (what makes the column visible) last."""
    import json

    loc = store._loc
    writer = StoreWriter(loc)
    docs = {}
    for lv, columns, doc in plans:
        arr = parse_array(doc, fo.OWNER_COLUMN, store.url, lv)
        writer.put_many({cell_key(arr, lv, c): enc.frame(col.astype("<i8").tobytes())
                         for c, col in columns.items()})
        group = f"{lv}/fragment_attributes/zarr.json"
        if loc.read_json(group) is None:
            writer.put_many({group: GROUP_DOC})
        docs[f"{lv}/{fo.OWNER_COLUMN}/zarr.json"] = json.dumps(doc, indent=2).encode()
    writer.put_many(docs)
