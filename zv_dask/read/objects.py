"""Objects: object attributes as frames, and whole objects reassembled from manifests.

An object's geometry is the rows of each fragment its manifest lists, concatenated
in manifest order (block by block, fragment by fragment); fragment numbers are local
to the block's cell.  IO goes through :class:`~zv_dask.read.level.LevelReader` only.

Absent object attributes: the writers fill rows of objects that have no value (for
example objects dropped from a coarse pyramid level) with an "absent" sentinel, the
array's ``fill_value``: NaN for floats, INT_MIN for signed and UINT_MAX for unsigned
integers.  Frames show them as NaN (floats) or ``<NA>`` in pandas nullable integer
dtypes (``Int32``, ``UInt8``...).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from zv_dask.errors import ArrayNotFoundError, ChunkDecodeError, QueryError
from zv_dask.format import decode as dec
from zv_dask.format.metadata import ArrayMeta, LevelMeta
from zv_dask.read.level import LevelReader, attr_key, decode_categorical_columns

INDEX_NAME = "object_id"


# --------------------------------------------------------------------------- attributes


def object_attribute_arrays(lm: LevelMeta, attributes, store: str | None = None) -> list:
    """``[(name, ArrayMeta)]`` of the requested object attributes (``None``: all)."""
    known = dict(lm.object_attributes)
    if attributes is None:
        return sorted(known.items())
    if isinstance(attributes, str):
        attributes = [attributes]
    out = []
    for name in attributes:
        if name not in known:
            raise ArrayNotFoundError(
                f"no object attribute {name!r} at this level; available: {sorted(known)}",
                store=store, level=lm.level, array=f"object_attributes/{name}")
        out.append((name, known[name]))
    return out


def _numpy_dtype(arr: ArrayMeta) -> np.dtype:
    if arr.dtype is not None:
        return arr.dtype
    from zarr.core.metadata import ArrayV3Metadata  # the document's data_type

    try:
        return np.dtype(str(arr.document.get("data_type")))
    except TypeError:
        return ArrayV3Metadata.from_dict(dict(arr.document)).dtype.to_native_dtype()


def absent_sentinel(arr: ArrayMeta):
    """The value that marks "absent" in an object-level array (``None`` for floats:
    NaN is already missing)."""
    dt = _numpy_dtype(arr)
    if dt.kind == "f" or dt.kind == "b":
        return None
    fill = arr.document.get("fill_value")
    if isinstance(fill, (int, np.integer)) and not isinstance(fill, bool):
        return int(fill)
    return int(np.iinfo(dt).min if dt.kind == "i" else np.iinfo(dt).max)


def column_dtype(arr: ArrayMeta):
    """pandas dtype of an object attribute column: nullable for integers."""
    import pandas as pd

    dt = _numpy_dtype(arr)
    if dt.kind in "iu":
        return pd.api.types.pandas_dtype(("UInt" if dt.kind == "u" else "Int") + str(8 * dt.itemsize))
    return dt


def attribute_columns(name: str, arr: ArrayMeta) -> list:
    """Column names of one object attribute: ``name`` or ``name_0 ... name_{C-1}``."""
    if len(arr.shape) <= 1:
        return [name]
    width = int(np.prod(arr.shape[1:]))
    return [f"{name}_{j}" for j in range(width)] if width != 1 else [name]


def masked_column(values: np.ndarray, arr: ArrayMeta):
    """One column of an object attribute with its absent sentinel turned into NA."""
    import pandas as pd

    sentinel = absent_sentinel(arr)
    if sentinel is None:
        return values
    return pd.arrays.IntegerArray(values.astype(_numpy_dtype(arr), copy=False),
                                  values == sentinel)


class ObjectFrameReader:
    """Picklable: a row range of the object index -> one pandas DataFrame indexed by
    ``object_id`` with the object attributes (reads ``object_index/object_ids`` and
    ``object_attributes/*`` only, never a vertex blob)."""

    def __init__(self, reader: LevelReader, arrays: Sequence[tuple]):
        self.reader = reader
        self.arrays = tuple(arrays)
        self.schema = [(c, name, j) for name, arr in self.arrays
                       for j, c in enumerate(attribute_columns(name, arr))]

    def __dask_tokenize__(self):
        return ("zv_dask.ObjectFrameReader", self.reader.location.token(),
                self.reader.level.level, [n for n, _ in self.arrays])

    def meta(self):
        return self._frame(np.zeros(0, np.int64), {n: np.zeros((0,) + tuple(a.shape[1:]),
                                                               _numpy_dtype(a))
                                                   for n, a in self.arrays}, self.schema)

    def _frame(self, ids, values: dict, schema):
        import pandas as pd

        arrays = dict(self.arrays)
        cols = {}
        for c, name, j in schema:
            v = values[name]
            v = v.reshape(v.shape[0], int(np.prod(v.shape[1:])))[:, j] if v.ndim > 1 else v
            cols[c] = masked_column(np.ascontiguousarray(v), arrays[name])
        index = pd.Index(np.asarray(ids, np.int64), name=INDEX_NAME)
        return pd.DataFrame(cols, index=index) if cols else pd.DataFrame(index=index)

    def __call__(self, rows, columns=None):
        start, stop = rows[:2]
        keep = np.asarray(rows[2], np.int64) - start if len(rows) > 2 else None
        schema = self.schema if columns is None else [s for s in self.schema if s[0] in set(columns)]
        names = {name for _, name, _ in schema}
        oi = self.reader.level.object_index
        if oi.object_ids is None:  # layout v1: row = id
            ids = np.arange(start, stop, dtype=np.int64)
        else:
            ids = self.reader.read_rows(oi.object_ids, start, stop).astype(np.int64, copy=False)
        values = {}
        for name, arr in self.arrays:
            if name in names:
                v = self.reader.read_rows(arr, start, stop)
                if len(v) != len(ids):
                    raise ChunkDecodeError(
                        f"object attribute has {len(v)} rows in {start}:{stop} but the object "
                        f"index has {len(ids)}", store=self.reader.location.url,
                        level=self.reader.level.level, array=arr.path)
                values[name] = v[keep] if keep is not None else v
        return self._frame(ids if keep is None else ids[keep], values, schema)


def row_ranges(n_rows: int, rows_per_partition: int) -> list:
    """``[(start, stop)]`` partitions of the object index (pure)."""
    step = max(int(rows_per_partition), 1)
    return [(a, min(a + step, n_rows)) for a in range(0, max(n_rows, 1), step)] if n_rows else []


def selected_row_ranges(rows: np.ndarray, rows_per_partition: int) -> list:
    """``[(start, stop, rows)]``: the sorted object-index ``rows`` grouped by block of
    ``rows_per_partition``, each read as the span ``start:stop`` of its rows (pure).

    Examples
    --------
    >>> selected_row_ranges(np.array([1, 3, 9]), 4)
    [(1, 4, (1, 3)), (9, 10, (9,))]
    """
    rows = np.unique(np.asarray(rows, np.int64))
    step = max(int(rows_per_partition), 1)
    out = []
    for block in np.split(rows, np.flatnonzero(np.diff(rows // step)) + 1) if len(rows) else []:
        out.append((int(block[0]), int(block[-1]) + 1, tuple(block.tolist())))
    return out


# --------------------------------------------------------------------------- selection


def rows_of_ids(all_ids: np.ndarray, object_ids, store: str, level: int) -> np.ndarray:
    """Object-index rows of the requested ids (caller's order, duplicates removed)."""
    want = np.asarray(object_ids, dtype=np.int64).reshape(-1)
    _, first = np.unique(want, return_index=True)
    want = want[np.sort(first)]
    order = np.argsort(all_ids, kind="stable")
    pos = np.searchsorted(all_ids[order], want)
    pos = np.minimum(pos, len(order) - 1) if len(order) else pos
    found = (all_ids[order][pos] == want) if len(order) else np.zeros(len(want), bool)
    if not found.all():
        missing = want[~found][:10].tolist()
        raise QueryError(f"object ids {missing} are not in the object index "
                         f"({len(all_ids)} objects)", store=store, level=level,
                         array="object_index/object_ids")
    return order[pos]


def selection_by_cell(manifests: list, ids: np.ndarray) -> dict:
    """``{coord: (fragments, object ids)}`` of the manifest entries of these objects."""
    coords, frags, oids = [], [], []
    for (cc, ff), oid in zip(manifests, ids.tolist()):
        if len(ff):
            coords.append(cc)
            frags.append(ff)
            oids.append(np.full(len(ff), oid, np.int64))
    if not coords:
        return {}
    cc = np.concatenate(coords)
    ff = np.concatenate(frags)
    oo = np.concatenate(oids)
    uniq, inv = np.unique(cc, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    out = {}
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    for i, c in enumerate(uniq.tolist()):
        take = order[bounds[i]:bounds[i + 1]]
        out[tuple(int(x) for x in c)] = (ff[take], oo[take])
    return out


def gather(reader: LevelReader, manifests: list, ids: np.ndarray, attributes, owner_count: bool,
           ndim: int, widths: dict | None = None) -> dict:
    """Fetch the cells the objects live in (one batch) and reassemble each object's
    vertices in manifest order.  Returns ``object_ids``, ``offsets``, ``positions``,
    ``attributes`` (and ``owner_count`` when asked)."""
    lm = reader.level
    attrs = list(attributes)
    lens = np.array([len(f) for _, f in manifests], np.int64)
    if lens.sum():
        all_cc = np.concatenate([c for c, _ in manifests])
        all_ff = np.concatenate([f for _, f in manifests])
        cells, cell_of = np.unique(all_cc, axis=0, return_inverse=True)
        cell_of = cell_of.reshape(-1)
    else:
        all_cc = np.zeros((0, lm.rank), np.int64)
        all_ff = np.zeros(0, np.int64)
        cells, cell_of = all_cc, np.zeros(0, np.int64)
    coords = [tuple(int(x) for x in c) for c in cells.tolist()]
    loaded = reader.load(coords, attrs, True, owner_count, fragments=True) if coords else []
    # per cell: rows grouped by fragment; where each fragment starts in that grouping
    rows_all, fstart_all, fcount_all, fbase, row_base, grouped = [], [], [], [0], 0, 0
    nfr = []
    for coord, cols in zip(coords, loaded):
        fi = cols["fragments"]
        n = len(cols["positions"])
        ranged = fi.ranges_only()
        if ranged is not None:  # rows of fragment f: start..start+count, checked at decode
            starts, counts = ranged
            rows_all.append(np.arange(row_base, row_base + n, dtype=np.int64))
            fstart_all.append(starts + grouped)
            grouped += n
            fcount_all.append(counts)
            fbase.append(fbase[-1] + len(counts))
            nfr.append(len(counts))
            row_base += n
            continue
        rows, _ = fi.row_fragment_pairs()
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ChunkDecodeError(f"the fragment index references row {int(rows.max())} of a "
                                   f"chunk with {n} rows", store=reader.location.url,
                                   level=lm.level, array="vertex_fragments", chunk=coord)
        counts = fi.counts()
        rows_all.append(rows + row_base)
        fstart_all.append(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
                          + grouped)
        grouped += len(rows)
        fcount_all.append(counts)
        fbase.append(fbase[-1] + len(counts))
        nfr.append(len(counts))
        row_base += n
    flat_rows = np.concatenate(rows_all) if rows_all else np.zeros(0, np.int64)
    fstart = np.concatenate(fstart_all) if fstart_all else np.zeros(0, np.int64)
    fcount = np.concatenate(fcount_all) if fcount_all else np.zeros(0, np.int64)
    if len(all_ff):
        nfr = np.asarray(nfr, np.int64)
        bad = (all_ff < 0) | (all_ff >= nfr[cell_of])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ChunkDecodeError(
                f"a manifest references fragment {int(all_ff[i])} but the chunk has "
                f"{int(nfr[cell_of[i]])} fragments", store=reader.location.url, level=lm.level,
                array="object_index/manifests", chunk=tuple(all_cc[i].tolist()))
        k = np.asarray(fbase[:-1], np.int64)[cell_of] + all_ff
        starts, counts = fstart[k], fcount[k]
        take = flat_rows[dec._ranges_concat(starts, counts)]
        entry_obj = np.repeat(np.arange(len(manifests)), lens)
        per_obj = np.bincount(entry_obj, weights=counts, minlength=len(manifests)).astype(np.int64)
    else:
        take = np.zeros(0, np.int64)
        per_obj = np.zeros(len(manifests), np.int64)
    offsets = np.concatenate([[0], np.cumsum(per_obj)]).astype(np.int64)

    def column(name, empty):
        parts = [cols[name] for cols in loaded]
        if not parts:
            return empty
        full = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return full[take]

    D = ndim
    out = {"level": lm.level, "object_ids": np.asarray(ids, np.int64), "offsets": offsets,
           "positions": column("positions", np.zeros((0, D), lm.vertices.dtype))}
    values = {}
    for a in attrs:
        w = (widths or {}).get(a.name, a.width)
        empty = np.zeros((0,) if w == 1 else (0, w),
                         np.int64 if a.is_categorical else a.dtype)
        values[a.name] = column(attr_key(a.name), empty)
    out["attributes"] = decode_categorical_columns(values, attrs)
    if owner_count:
        out["owner_count"] = column("owner_count", np.zeros(0, np.int64))
    return out
