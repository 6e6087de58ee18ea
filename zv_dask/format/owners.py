"""Many manifests at once -> (row, cell, fragment) entries, and the reserved owner column.

Pure: no IO, no zarr, no dask.

:func:`decode_manifest_rows` decodes a level's (or a selection's) manifests with
numpy over their concatenated bytes.  Cost: one C-level pass to measure and join the
blobs, then O(total manifest bytes) numpy work with no Python loop per object; only
manifests that are not a run of single-fragment blocks (modes 1 and 2, written by
the building API, never by the bulk writers) are decoded one by one, each with
:func:`~zv_dask.format.manifests.decode_manifest`.

``fragment_attributes/object_id`` (written by the reference's
``building.build_fragment_owner_index``) holds per cell the owning object id of each
fragment: ``-1`` for none, ``-2`` for a fragment several objects share (the reader
must then ask the manifests), as long as the highest owned fragment + 1.
"""

from __future__ import annotations

import numpy as np

from zv_dask.errors import MetadataError
from zv_dask.format.frames import DecodeProblem
from zv_dask.format.manifests import decode_manifest

#: values of the owner column that are not object ids
OWNER_NONE = -1
OWNER_SHARED = -2
OWNER_COLUMN = "fragment_attributes/object_id"
_REBUILD = "rebuild it (zarr_vectors.building.build_fragment_owner_index)"


def decode_manifest_rows(blobs, sid_ndim: int, max_fragments: int | None = None,
                         object_ids=None, row_numbers=None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Manifest blobs -> ``(row, coords (E, sid_ndim), fragment)``, one entry per listed
    fragment, grouped by row in row order and in manifest order within a row.

    ``row`` indexes ``blobs``.  An absent blob (``None`` / ``b""``, zarr's fill value)
    is an error: an empty manifest is 4 zero bytes.  ``object_ids`` and
    ``row_numbers`` (the object-index row of each blob; default its position) only
    name the culprit in error messages.

    Examples
    --------
    >>> import struct
    >>> one = struct.pack("<I", 1) + struct.pack("<2q", 0, 1) + b"\\x00" + struct.pack("<q", 4)
    >>> rows, coords, frags = decode_manifest_rows([one, struct.pack("<I", 0), one], 2)
    >>> rows.tolist(), coords.tolist(), frags.tolist()
    ([0, 2], [[0, 1], [0, 1]], [4, 4])
    """
    n = len(blobs)
    try:
        lens = np.fromiter(map(len, blobs), np.int64, n)
    except TypeError:  # None rows: absent
        blobs = [b"" if b is None else b for b in blobs]
        lens = np.fromiter(map(len, blobs), np.int64, n)
    def name(r: int) -> str:
        row = r if row_numbers is None else int(row_numbers[r])
        return f"manifest row {row}" + ("" if object_ids is None else
                                        f" (object {int(object_ids[r])})")
    absent = np.flatnonzero(lens == 0)
    if len(absent):
        raise DecodeProblem(f"{name(int(absent[0]))} is absent (0 bytes: its chunk object "
                            "is missing or truncated; an empty manifest is 4 zero bytes)")
    buf = np.frombuffer(b"".join(blobs), np.uint8)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if n else lens
    stride = 8 * sid_ndim + 9
    headed = lens >= 4
    nb = np.zeros(n, np.int64)
    head = starts[headed, None] + np.arange(4)
    nb[headed] = buf[head].copy().view("<u4").reshape(-1)
    regular = headed & (lens == 4 + nb * stride)
    # the bytes of the regular rows' blocks, in order: a (T, stride) table of records
    keep = np.ones(len(buf), bool) if regular.all() else np.repeat(regular, lens)
    keep[head.reshape(-1)] = False
    body = buf[keep].reshape(-1, stride)
    block_row = np.repeat(np.arange(n, dtype=np.int64), np.where(regular, nb, 0))
    moded = body[:, 8 * sid_ndim] != 0
    if moded.any():  # range / explicit blocks: those rows take the one-by-one path
        odd = np.unique(block_row[moded])
        regular[odd] = False
        drop = np.isin(block_row, odd)
        body, block_row = body[~drop], block_row[~drop]
    coords = np.ascontiguousarray(body[:, : 8 * sid_ndim]).view("<i8").reshape(-1, sid_ndim)
    frags = np.ascontiguousarray(body[:, 8 * sid_ndim + 1:]).view("<i8").reshape(-1)
    rows, cc, ff = [block_row], [coords.astype(np.int64)], [frags.astype(np.int64)]
    for r in np.flatnonzero(~regular).tolist():
        try:
            c, f = decode_manifest(blobs[r], sid_ndim, max_fragments)
        except DecodeProblem as exc:
            raise DecodeProblem(f"{name(r)}: {exc}") from None
        rows.append(np.full(len(f), r, np.int64))
        cc.append(c)
        ff.append(f)
    row = np.concatenate(rows)
    order = np.argsort(row, kind="stable") if len(rows) > 1 else slice(None)
    return row[order], np.concatenate(cc)[order], np.concatenate(ff)[order]


def cell_numbers(row: np.ndarray, coords: np.ndarray, shape, origin, object_ids=None
                 ) -> np.ndarray:
    """Linear (C-order) cell number of each entry; an entry outside the grid is an error
    naming its manifest row."""
    shape = np.asarray(shape, np.int64)
    idx = coords - np.asarray(origin, np.int64)
    ok = ((idx >= 0) & (idx < shape)).all(1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        r = int(row[i])
        who = f"manifest row {r}" + ("" if object_ids is None else
                                     f" (object {int(object_ids[r])})")
        raise DecodeProblem(f"{who} references chunk {tuple(coords[i].tolist())} outside the "
                            "grid")
    strides = np.cumprod(np.r_[shape[1:], 1][::-1])[::-1]  # C order
    return idx @ strides if len(idx) else np.zeros(0, np.int64)


def split_by_row(n_rows: int, row: np.ndarray, coords: np.ndarray, frags: np.ndarray) -> list:
    """Entries grouped by row -> ``[(coords (M, sid), fragments (M,)), ...]`` per row."""
    bounds = np.searchsorted(row, np.arange(n_rows + 1))
    return [(coords[a:b], frags[a:b]) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def decode_owner_column(payload, n_fragments: int) -> np.ndarray:
    """One cell of ``fragment_attributes/object_id`` -> owner of each of the cell's
    ``n_fragments`` fragments (``-1`` beyond the stored length).

    Examples
    --------
    >>> decode_owner_column(np.array([7, -1, -2], "<i8").tobytes(), 5).tolist()
    [7, -1, -2, -1, -1]
    """
    if len(payload) % 8:
        raise DecodeProblem(f"{len(payload)} bytes is not a whole number of int64 owners")
    col = np.frombuffer(payload, "<i8")
    if len(col) > n_fragments:
        raise DecodeProblem(f"the owner column lists {len(col)} fragments but the chunk has "
                            f"{n_fragments}")
    if len(col) and int(col.min()) < OWNER_SHARED:
        raise DecodeProblem(f"owner {int(col.min())} is not an object id, -1 (none) or -2 "
                            "(shared)")
    out = np.full(n_fragments, OWNER_NONE, np.int64)
    out[: len(col)] = col
    return out


def owner_column(lm, store: str | None = None):
    """The level's ``fragment_attributes/object_id`` array, or ``None`` when it has none.

    A column that is not an int64 grid of the level's rank is refused
    (:class:`~zv_dask.errors.MetadataError`): a reader trusting it would name wrong owners.
    """
    arr = lm.arrays.get(OWNER_COLUMN)
    if arr is None:
        return None
    where = {"store": store, "level": lm.level, "array": OWNER_COLUMN}
    if arr.rank != lm.rank:
        raise MetadataError(f"field 'shape': the owner column has rank {arr.rank}, expected "
                            f"{lm.rank} (the grid's); {_REBUILD}", **where)
    if arr.dtype is not None and arr.dtype != np.dtype("<i8"):
        raise MetadataError(f"field 'dtype' is {arr.dtype}, expected int64 for the owner "
                            f"column; {_REBUILD}", **where)
    return arr


def owner_columns(cell: np.ndarray, frag: np.ndarray, oid: np.ndarray,
                  max_fragments: int | None = None) -> dict:
    """``{linear cell: owner column}`` from (cell, fragment, object id) entries, as the
    reference's ``build_fragment_owner_column`` makes them: per cell, one int64 per
    fragment up to the highest one a manifest names, the owner's id, ``-1`` when no
    manifest names it, ``-2`` when several objects do.  Vectorised but for one step per
    cell.

    Examples
    --------
    >>> cols = owner_columns(np.array([0, 0, 0, 3]), np.array([2, 0, 2, 1]),
    ...                      np.array([5, 5, 6, 9]))
    >>> {c: v.tolist() for c, v in cols.items()}
    {0: [5, -1, -2], 3: [-1, 9]}
    """
    if not len(cell):
        return {}
    if int(frag.min()) < 0 or (max_fragments is not None and int(frag.max()) >= max_fragments):
        bad = int(frag.min()) if int(frag.min()) < 0 else int(frag.max())
        raise DecodeProblem(f"a manifest names fragment {bad}, which no chunk of the level "
                            "can have")
    uniq = np.unique(np.stack([cell, frag, oid], 1), axis=0)  # by cell, fragment, id
    first = np.r_[True, (uniq[1:, :2] != uniq[:-1, :2]).any(1)]
    starts = np.flatnonzero(first)
    owners = np.diff(np.r_[starts, len(uniq)])
    c, f = uniq[starts, 0], uniq[starts, 1]
    o = np.where(owners > 1, OWNER_SHARED, uniq[starts, 2])
    cells, at = np.unique(c, return_index=True)
    bounds = np.r_[at, len(c)]
    out = {}
    for i, lin in enumerate(cells.tolist()):
        ff, oo = f[bounds[i]:bounds[i + 1]], o[bounds[i]:bounds[i + 1]]
        col = np.full(int(ff.max()) + 1, OWNER_NONE, np.int64)
        col[ff] = oo
        out[lin] = col
    return out


def owner_column_document(vertices, keys: list) -> dict:
    """The ``zarr.json`` of ``fragment_attributes/object_id`` beside a level's
    ``vertices`` array (same grid, origin and key encoding), as the reference writes
    it; ``keys`` are the cells it holds (``nonempty_chunks``, absolute coords)."""
    rank = vertices.rank
    encoding = ({"name": "default", "configuration": {"separator": vertices.chunk_separator}}
                if vertices.chunk_key_prefix else
                {"name": "v2", "configuration": {"separator": vertices.chunk_separator}})
    attrs = {"nonempty_chunks": list(keys), "zv_array": "fragment_attribute",
             "name": "object_id", "dtype": "int64", "row_shape": []}
    if any(vertices.origin):
        attrs["chunk_grid_origin"] = [int(x) for x in vertices.origin]
    return {"shape": [int(s) for s in vertices.shape], "data_type": "variable_length_bytes",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1] * rank}},
            "chunk_key_encoding": encoding, "fill_value": "",
            "codecs": [{"name": "vlen-bytes", "configuration": {}}], "attributes": attrs,
            "zarr_format": 3, "node_type": "array", "storage_transformers": []}
