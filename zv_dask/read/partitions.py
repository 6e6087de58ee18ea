"""Per-partition functions of dataframes: cells of one level -> one pandas DataFrame.

:class:`PartitionReader` (and :class:`ObjectPartitionReader` for an object
selection) are small and picklable; dask tasks call them with a partition's cells
and the columns the optimizer kept.  Columns are assembled straight into one block
per dtype.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from zv_dask.errors import ChunkDecodeError
from zv_dask.format import decode as dec
from zv_dask.format.levels import attribute_columns
from zv_dask.format.metadata import AttributeInfo
from zv_dask.read.level import LevelReader, attr_key, clip_columns


def column_schema(axes, attributes: Sequence[AttributeInfo], widths: dict, object_ids: bool,
                  owner_count: bool = False, every: Sequence[AttributeInfo] = ()):
    """Ordered ``[(column, source, index)]`` of a dataframe: axes, attributes, object_id.

    ``source`` is ``"positions"``, an attribute's cell key (:func:`attr_key`) or
    ``"object_ids"``; ``index`` is the column within it (``None`` for a 1-column
    attribute).  Attribute columns are named by :func:`attribute_columns` (an
    attribute named like an axis or an added column becomes ``attr_<name>``) over
    ``every`` attribute of the level, so a selection does not change names.
    """
    out = [(ax, "positions", i) for i, ax in enumerate(axes)]
    known = {a.name: a for a in every}
    known.update({a.name: a for a in attributes})
    names = attribute_columns(axes, [(a.name, widths.get(a.name, a.width))
                                     for a in known.values()])
    for a in attributes:
        cols = names[a.name]
        if len(cols) == 1 and widths.get(a.name, a.width) == 1:
            out.append((cols[0], attr_key(a.name), None))
        else:
            out += [(c, attr_key(a.name), j) for j, c in enumerate(cols)]
    if object_ids:
        out.append(("object_id", "object_ids", None))
    if owner_count:
        out.append(("owner_count", "owner_count", None))
    return out


class PartitionReader:
    """Picklable per-partition function: cells -> one pandas DataFrame.

    Called by dask with one partition's cell coordinates and an optional
    ``columns`` list (column projection from the optimizer): only the arrays that
    the requested columns need are fetched (vertices only when an axis column is
    requested or a bbox must clip rows).
    """

    def __init__(self, reader: LevelReader, attributes, axes, bbox, object_ids: bool, widths: dict,
                 owner_count: bool = False):
        self.reader = reader
        self.attributes = tuple(attributes)
        self.axes = tuple(axes)
        self.bbox = bbox
        self.object_ids = object_ids
        # shared_fragments levels: how many objects own each row (object_id is the smallest)
        self.owner_count = bool(object_ids and owner_count)
        self.widths = dict(widths)
        self.schema = column_schema(self.axes, self.attributes, self.widths, object_ids,
                                    self.owner_count, reader.level.attributes.values())

    def __dask_tokenize__(self):
        lm = self.reader.level
        return (type(self).__name__, self.reader.location.token(), lm.level,
                [a.name for a in self.attributes], self.axes,
                None if self.bbox is None else [b.tolist() for b in self.bbox],
                self.object_ids, self.owner_count, sorted(self.widths.items()))

    def meta(self):
        return self._frame({c: self._empty(src) for c, src, _ in self.schema}, self.schema)

    def _empty(self, src):
        if src == "positions":
            return np.zeros(0, self.reader.level.vertices.dtype)
        if src in ("object_ids", "owner_count"):
            return np.zeros(0, np.int64)
        info = next(a for a in self.attributes if attr_key(a.name) == src)
        return np.zeros(0, np.int64 if info.is_categorical else info.dtype)

    def _frame(self, data: dict, schema, n_rows=None, blocks=None, slots=None):
        import pandas as pd

        cols = {}
        plain = True
        for c, src, _ in schema:
            v = data[c]
            info = next((a for a in self.attributes if attr_key(a.name) == src), None)
            if info is not None and info.is_categorical:
                codes = np.asarray(v, np.int64).copy()
                if info.fill_code is not None:
                    codes[codes == int(info.fill_code)] = -1
                v = pd.Categorical.from_codes(codes, categories=list(info.categories))
                plain = False
            cols[c] = v
        index = pd.RangeIndex(0 if n_rows is None else n_rows)
        if not cols:
            return pd.DataFrame(index=index)
        names = pd.Index(list(cols), dtype=object)
        if plain and blocks is not None and len(blocks) == 1 and len(cols) == len(blocks[0]) \
                and [r for _, r in slots] == list(range(len(cols))):
            # one dtype: the block becomes the frame's only block as it is (no copy)
            return pd.DataFrame(blocks[0].T, columns=names, index=index, copy=False)
        # the arrays are fresh and ours: no copy, no consolidation
        return pd.DataFrame(cols, index=index, copy=False)

    def _cells(self, coords, attrs, want_pos: bool, want_ids: bool, selection=None,
               rows=None):
        """(coords, per-cell columns clipped to the bbox) of one partition; ``rows``: per
        cell, its rows when the frame was built (-1 unknown), checked on decoding."""
        cells = self.reader.load(coords, attrs, want_pos, want_ids, in_task=True, rows=rows)
        return coords, [clip_columns(cols, self.bbox) for cols in cells]

    def __call__(self, coords, columns=None, rows=None):
        return self._build(coords, columns, rows=rows)

    def cell_columns(self, coords, columns=None):
        """(schema, per-cell column dicts clipped to the bbox) without building a frame;
        what reductions use to compute per-chunk partials."""
        schema = self.schema if columns is None else [s for s in self.schema if s[0] in set(columns)]
        sources = {src for _, src, _ in schema}
        attrs = [a for a in self.attributes if attr_key(a.name) in sources]
        want_pos = "positions" in sources or self.bbox is not None
        want_ids = "object_ids" in sources or "owner_count" in sources
        return schema, self._cells(coords, attrs, want_pos, want_ids)[1]

    def _build(self, coords, columns=None, selection=None, rows=None):
        schema = self.schema if columns is None else [s for s in self.schema if s[0] in set(columns)]
        sources = {src for _, src, _ in schema}
        attrs = [a for a in self.attributes if attr_key(a.name) in sources]
        want_pos = "positions" in sources or self.bbox is not None
        want_ids = "object_ids" in sources or "owner_count" in sources
        coords, cells = self._cells(coords, attrs, want_pos, want_ids, selection, rows)
        return self.assemble(schema, coords, cells)

    def assemble(self, schema, coords, cells, n_rows=None):
        """One frame of ``schema`` from per-cell column dicts (``n_rows`` when the
        schema is empty and the cells hold no columns).

        Each output column is allocated once and every cell's values are copied
        straight into it (no per-cell transpose, no concatenation); columns of one
        dtype share a 2-D block, so the frame is built without consolidating."""
        counted = sum(len(next(iter(cols.values()))) if cols else 0 for cols in cells)
        picks = [[self._pick(cols, src, j, coord) for _, src, j in schema]
                 for coord, cols in zip(coords, cells)]
        dtypes = [np.result_type(*[p[i] for p in picks]) if picks else self._empty(src).dtype
                  for i, (_, src, _) in enumerate(schema)]
        slots, blocks = _column_slots(dtypes, counted)
        off = 0
        for row in picks:
            n = len(row[0]) if row else 0
            for (b, r), v in zip(slots, row):
                blocks[b][r, off:off + n] = v
            off += n
        data = {c: blocks[b][r] for (c, _, _), (b, r) in zip(schema, slots)}
        return self._frame(data, schema, counted if n_rows is None else n_rows, blocks, slots)

    def _pick(self, cols: dict, src: str, j, coord) -> np.ndarray:
        """Column ``j`` of source ``src`` in one cell (a strided view, no copy)."""
        v = cols[src]
        if j is not None:
            if v.ndim != 2 or v.shape[1] <= j:
                raise ChunkDecodeError(
                    f"attribute {src!r} has {1 if v.ndim == 1 else v.shape[1]} "
                    f"column(s) in this chunk but {self.widths.get(src)} elsewhere",
                    store=self.reader.location.url, level=self.reader.level.level,
                    array=f"vertex_attributes/{src}", chunk=coord)
            return v[:, j]
        if v.ndim == 2:
            raise ChunkDecodeError(
                f"attribute {src!r} has {v.shape[1]} columns in this chunk but 1 elsewhere",
                store=self.reader.location.url, level=self.reader.level.level,
                array=f"vertex_attributes/{src}", chunk=coord)
        return v


def _column_slots(dtypes, n_rows: int):
    """``(slots, blocks)``: one ``(k, n_rows)`` array per distinct dtype and, per
    column, its ``(block, row)``."""
    order = list(dict.fromkeys(dtypes))
    rows = [0] * len(order)
    slots = []
    for dt in dtypes:
        b = order.index(dt)
        slots.append((b, rows[b]))
        rows[b] += 1
    return slots, [np.empty((k, n_rows), dt) for dt, k in zip(order, rows)]


class ObjectPartitionReader(PartitionReader):
    """A :class:`PartitionReader` keeping only the rows of selected objects.

    Its partitions are ``(coords, selection)`` where ``selection[i]`` holds the
    ``(fragments, object ids)`` pairs of the selected objects in cell ``coords[i]``
    (from their manifests).  A row is kept when a selected object owns it;
    ``object_id`` is then the smallest *selected* owner and ``owner_count`` (on
    shared-fragment levels) still counts every owner of the row.
    """

    def __call__(self, spec, columns=None, rows=None):
        coords, selection = spec
        return self._build(list(coords), columns, dict(zip(coords, selection)), rows)

    def _cells(self, coords, attrs, want_pos: bool, want_ids: bool, selection=None,
               rows=None):
        need_count = want_ids and self.owner_count
        cells = self.reader.load(coords, attrs, True, need_count, fragments=True,
                                 in_task=True, rows=rows)
        out = []
        for coord, cols in zip(coords, cells):
            fi = cols.pop("fragments")
            n = len(cols["positions"])
            rows, frag = fi.row_fragment_pairs()
            sf, so = selection[tuple(coord)]
            try:
                owner, count = dec.row_owners(rows, frag, np.asarray(so, np.int64),
                                              np.asarray(sf, np.int64), n, fi.num_fragments)
            except dec.DecodeProblem as exc:
                raise ChunkDecodeError(f"{exc}; the object index and the fragment index "
                                       "disagree", store=self.reader.location.url,
                                       level=self.reader.level.level,
                                       array="object_index/manifests", chunk=coord) from None
            keep = count > 0
            cols = {k: v[keep] for k, v in cols.items()}
            cols["object_ids"] = owner[keep]
            out.append(clip_columns(cols, self.bbox))
        return coords, out
