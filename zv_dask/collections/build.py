"""The only module that builds dask collections.

One task per partition; a partition is one non-empty chunk, a run of
``chunks_per_partition`` neighbouring chunks in row-major order, or a compact group
of chunks from a :class:`~zv_dask.plan.partitioning.Partitioning` (``"auto"``).  Every
task carries what it needs (the slim level metadata, its cells, their owner rows):
tasks never list or re-read the store.  Keys are deterministic: the same query gives
the same keys.
"""

from __future__ import annotations

import numpy as np

from zv_dask.plan.partitioning import CellGroups, Partitioning, row_major_groups
from zv_dask.plan.select import ReadPlan, cell_boxes, cell_rule
from zv_dask.read.level import LevelReader, attr_key, clip_columns
from zv_dask.read.partitions import ObjectPartitionReader, PartitionReader
from zv_dask.read.scan import FrameSource, Scan

try:  # dask's expression internals, used by the self-pruning dataframe
    from zv_dask.collections import expr as _expr  # noqa: F401

    EXPRESSIONS = True
except ImportError:  # a dask without them: from_map frames, no pushdown
    EXPRESSIONS = False


def group_cells(cells: np.ndarray, chunks_per_partition) -> list[np.ndarray]:
    """Cell coordinates of each partition (pure): runs of ``chunks_per_partition``
    row-major cells, or the groups of a :class:`Partitioning` restricted to ``cells``."""
    if isinstance(chunks_per_partition, Partitioning):
        return chunks_per_partition.specs_for(cells)
    return [cells[g] for g in row_major_groups(len(cells), int(chunks_per_partition))]


def inner_cells(cells: np.ndarray, lm, bbox) -> np.ndarray:
    """Per cell: does its whole chunk box lie inside the closed ``bbox``?  Such a chunk
    keeps every row, so its block is never empty.  The box is widened by a relative
    1e-9 so that rows the writer's float division put in the chunk count as inside."""
    cs = np.asarray(lm.chunk_shape, np.float64)
    sp = np.asarray(cells, np.float64)[:, lm.rank - len(cs):]
    lo, hi = sp * cs, (sp + 1) * cs
    margin = 1e-9 * np.maximum(np.maximum(np.abs(lo), np.abs(hi)), cs)
    return np.all((lo - margin >= bbox[0]) & (hi + margin <= bbox[1]), axis=1)


def nonempty_groups(cells: np.ndarray, lm, bbox, chunks_per_partition) -> list:
    """The partitions' cells (:func:`group_cells`, pure); with a ``bbox``, groups
    without a chunk inside the box are joined to the next run that has one (the last
    ones to the previous), so no block can turn out empty: dask's ``min(axis=0)`` and
    friends fail on an empty block of unknown length."""
    groups = group_cells(cells, chunks_per_partition)
    if bbox is None or len(groups) < 2:
        return groups
    out, pending = [], []
    for g in groups:
        pending.append(g)
        if inner_cells(g, lm, bbox).any():
            out.append(np.concatenate(pending) if len(pending) > 1 else g)
            pending = []
    if pending:
        out = out[:-1] + [np.concatenate(out[-1:] + pending)]
    return out


def partition_specs(plan: ReadPlan, chunks_per_partition) -> CellGroups:
    """Cell coordinates of each partition: a sequence of tuples of tuples (hashable,
    tokenizable), built per partition on demand."""
    cells = CellGroups.row_major(plan.cells, 1).cells
    if isinstance(chunks_per_partition, Partitioning):
        return CellGroups.from_groups(chunks_per_partition.specs_for(cells), cells.shape[1])
    return CellGroups.row_major(cells, int(chunks_per_partition))


def to_dataframe(reader: LevelReader, plan: ReadPlan, axes, widths: dict,
                 chunks_per_partition=1, selection: dict | None = None, level=None,
                 cell_rows=None, expected=None, unchanged=None):
    """A ``dask.dataframe.DataFrame`` over the plan; ``meta`` given, nothing read.

    ``selection`` (``{coord: (fragments, object ids)}``, from the manifests of selected
    objects) keeps only those objects' rows; the plan's cells must be its keys.
    An ``owner_count`` column is added on levels with ``shared_fragments``.
    With ``level`` (the full ``LevelMeta``) and dask's expression API available, the
    frame is a :class:`zv_dask.collections.expr.ZVFrame` that prunes itself under filters and
    knows its length; otherwise (or without ``level``) a plain ``from_map`` frame.
    ``cell_rows(cells)`` (rows of each cell, -1 where unknown, or ``None``): when
    every row count of a whole-level expression frame is known, rows are labelled by
    their position in the frame, not from 0 in each partition.  ``expected`` (rows of
    every non-empty cell of the level, -1 unknown, from one listing): tasks check each
    cell's decoded rows against it, so a store rewritten since raises, never decodes.
    ``unchanged`` (a ``read.unchanged.UnchangedCheck``, for handles that cannot check
    rows): one task every partition waits for, run once per compute.
    """
    import dask
    import dask.dataframe as dd

    shared = bool(reader.level.shared_fragments)
    cls = PartitionReader if selection is None else ObjectPartitionReader
    func = cls(reader, plan.attributes, axes, plan.bbox, plan.object_ids, widths, shared)
    specs = partition_specs(plan, chunks_per_partition)
    if selection is not None:
        specs = [(cs, tuple(selection[c] for c in cs)) for cs in specs]
    if level is not None and EXPRESSIONS:
        from zv_dask.collections.expr import new_frame

        full = level.vertex_count if plan.bbox is None and selection is None else None
        rows = cell_rows(specs.cells) if cell_rows is not None and full is not None \
            and len(specs.cells) else None
        if rows is not None:
            rows = np.asarray(rows, np.int64)
            if (rows >= 0).all() and int(rows.sum()) == full:
                specs = specs.with_rows(rows)
        source = FrameSource(Scan(func, selection is not None), level, plan.bbox, axes, specs,
                             f"zv-level{plan.level}", full, expected, unchanged)
        return new_frame(source)
    meta = func.meta()
    if not specs:
        return dd.from_pandas(meta, npartitions=1)
    # our frames hold no object-dtype strings (categoricals only): skip dask's per-partition
    # pyarrow-string conversion task, which costs more than decoding a small chunk
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(func, list(specs), meta=meta, label=f"zv-level{plan.level}",
                           enforce_metadata=False)


def from_partition_function(func, plan: ReadPlan, meta, chunks_per_partition=1,
                            label: str = "zv-map"):
    """A dask DataFrame whose partition i is ``func(cells of partition i)`` (a pandas
    object like ``meta``); used for per-chunk partials of reductions."""
    import dask
    import dask.dataframe as dd

    specs = list(partition_specs(plan, chunks_per_partition))
    if not specs:
        return dd.from_pandas(meta, npartitions=1)
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(func, specs, meta=meta, label=label, enforce_metadata=False)


def partitions_table(plan: ReadPlan, lm, axes, chunks_per_partition=1):
    """One row per partition: its first chunk, its chunks (when grouped) and its closed
    box (pure, pandas).

    The box is the hull of the chunks' :func:`~zv_dask.plan.select.cell_boxes`: the smallest
    and largest double the writer's cell rule puts in them, so every row of the
    partition satisfies ``min <= value <= max``.
    """
    import pandas as pd

    lead = lm.rank - len(lm.chunk_shape)
    rule = cell_rule(lm)
    rows = []
    for i, group in enumerate(group_cells(plan.cells, chunks_per_partition)):
        box_lo, box_hi = cell_boxes(rule, group[:, lead:])
        lo = box_lo.min(0)
        hi = box_hi.max(0)
        row = {"partition": i, "chunk": tuple(int(x) for x in group[0]),
               "n_chunks": len(group)}
        for d in range(lm.rank):
            row[f"chunk_{d}"] = int(group[0, d])
        for d, ax in enumerate(axes):
            row[f"{ax}_min"] = float(lo[d])
            row[f"{ax}_max"] = float(hi[d])
        if len(group) > 1 or not isinstance(chunks_per_partition, (int, np.integer)):
            row["chunks"] = tuple(tuple(int(x) for x in c) for c in group.tolist())
        rows.append(row)
    cols = ["partition", "chunk", "n_chunks"] + [f"chunk_{d}" for d in range(lm.rank)] + \
        [f"{ax}_{e}" for ax in axes for e in ("min", "max")]
    grouped = isinstance(chunks_per_partition, Partitioning) or int(chunks_per_partition) > 1
    df = pd.DataFrame(rows, columns=cols + (["chunks"] if grouped else []))
    return df.set_index("partition")


class _BlockReader:
    """Picklable: one chunk -> one block of positions or of an attribute."""

    def __init__(self, reader: LevelReader, name: str, attribute, bbox, width):
        self.reader = reader
        self.name = name
        self.attribute = attribute
        self.bbox = bbox
        self.width = width

    def __dask_tokenize__(self):
        return ("zv_dask._BlockReader", self.reader.location.token(), self.reader.level.level,
                self.name, None if self.bbox is None else [b.tolist() for b in self.bbox])

    def __call__(self, coords, rows=None):
        attrs = [] if self.attribute is None else [self.attribute]
        # an attribute may be named like the reader's own columns
        ids = self.attribute is None and self.name in ("object_ids", "owner_count")
        need_pos = (self.attribute is None and not ids) or self.bbox is not None
        cells = self.reader.load(list(coords), attrs, need_pos, ids, in_task=True, rows=rows)
        parts = []
        for cols in cells:
            cols = clip_columns(cols, self.bbox)
            if ids:
                parts.append(cols[self.name])
                continue
            parts.append(cols["positions"] if self.attribute is None
                         else cols[attr_key(self.attribute.name)])
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if self.attribute is not None and self.attribute.is_categorical:
            out = out.astype(np.int64)
        return out


def to_array(reader: LevelReader, plan: ReadPlan, name: str, attribute, lengths, width: int,
             dtype, chunks_per_partition=1, groups=None, rows=None):
    """A dask array, one block per partition (or per group of ``groups``, cell
    arrays as :func:`nonempty_groups` gives); ``lengths`` per block or NaN; ``rows``
    per block, each cell's rows when built (-1 unknown), checked in the task."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    func = _BlockReader(reader, name, attribute, plan.bbox, width)
    if groups is None:
        coords = partition_specs(plan, chunks_per_partition)
    else:
        coords = [tuple(tuple(int(x) for x in c) for c in g.tolist()) for g in groups]
    key = f"zv-{name.replace('/', '-')}-level{plan.level}-" + tokenize(
        func, coords, None if rows is None else [np.asarray(r, np.int64) for r in rows])
    positions = attribute is None and name == "positions"  # not an attribute so named
    trailing = () if width == 1 and not positions else (width,)
    # object_ids / owner_count: one int64 value per row
    if not coords:
        return da.zeros((0,) + trailing, dtype=dtype, chunks=((0,),) + tuple((w,) for w in trailing))
    tail = (0,) * len(trailing)
    if rows is None:
        dsk = {(key, i) + tail: (func, c) for i, c in enumerate(coords)}
    else:
        dsk = {(key, i) + tail: (func, c, tuple(int(x) for x in r))
               for i, (c, r) in enumerate(zip(coords, rows))}
    chunks = (tuple(lengths),) + tuple((w,) for w in trailing)
    graph = HighLevelGraph.from_collections(key, dsk, dependencies=())
    return da.Array(graph, key, chunks=chunks, dtype=dtype)


def objects_frame(reader: LevelReader, arrays, ranges: list):
    """A dask DataFrame of object attributes, one partition per object-index row range."""
    import dask
    import dask.dataframe as dd

    from zv_dask.read.objects import ObjectFrameReader

    func = ObjectFrameReader(reader, arrays)
    meta = func.meta()
    if not ranges:
        return dd.from_pandas(meta, npartitions=1)
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(func, ranges, meta=meta, label=f"zv-objects-level{reader.level.level}",
                           enforce_metadata=False)


def decoded_categories(codes, categories, fill_code=None):
    """A dask array of category values (object dtype) from one of codes."""
    from zv_dask.format.decode import decode_categories

    cats = tuple(categories)
    return codes.map_blocks(decode_categories, cats, fill_code, dtype=object)


class _ObjectRowsReader:
    """Picklable: an object-index row range -> the rows of one object-level array
    (``mask=True``: integer "absent" sentinels become NaN in float64)."""

    def __init__(self, reader: LevelReader, arr, mask: bool):
        self.reader = reader
        self.arr = arr
        self.mask = mask

    def __dask_tokenize__(self):
        return ("zv_dask._ObjectRowsReader", self.reader.location.token(),
                self.reader.level.level, self.arr.path, self.mask)

    def __call__(self, rows):
        from zv_dask.read.objects import absent_sentinel

        start, stop = rows
        v = self.reader.read_rows(self.arr, start, stop)
        if self.mask:
            sentinel = absent_sentinel(self.arr)
            if sentinel is not None:
                bad = v == sentinel
                v = v.astype(np.float64)
                v[bad] = np.nan
        return v


def object_rows_array(reader: LevelReader, arr, ranges: list, dtype, mask: bool = True):
    """A dask array of an object-level array, one block per row range (exact shape)."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    func = _ObjectRowsReader(reader, arr, mask)
    trailing = tuple(int(x) for x in arr.shape[1:])
    if not ranges:
        return da.zeros((0,) + trailing, dtype=dtype)
    key = f"zv-{arr.path.replace('/', '-')}-level{reader.level.level}-" + tokenize(func, ranges)
    tail = (0,) * len(trailing)
    dsk = {(key, i) + tail: (func, r) for i, r in enumerate(ranges)}
    chunks = (tuple(b - a for a, b in ranges),) + tuple((w,) for w in trailing)
    graph = HighLevelGraph.from_collections(key, dsk, dependencies=())
    return da.Array(graph, key, chunks=chunks, dtype=dtype)


def edges_frame(func, coords: list, level: int):
    """A dask DataFrame of edges, one partition per cell (``func`` a LinkReader)."""
    import dask
    import dask.dataframe as dd

    meta = func.meta()
    if not coords:
        return dd.from_pandas(meta, npartitions=1)
    specs = [tuple(int(x) for x in c) for c in coords]
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(func, specs, meta=meta, label=f"zv-edges-level{level}",
                           enforce_metadata=False)


def faces_array(func, coords: list, width: int):
    """A dask array (M, width) of faces, one block per source cell (lengths unknown)."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    specs = [tuple(int(x) for x in c) for c in coords]
    if not specs:
        return da.zeros((0, width), dtype=np.int64, chunks=((0,), (width,)))
    key = f"zv-faces-level{func.family.level}-" + tokenize(func, specs)
    dsk = {(key, i, 0): (func, c) for i, c in enumerate(specs)}
    graph = HighLevelGraph.from_collections(key, dsk, dependencies=())
    return da.Array(graph, key, chunks=((float("nan"),) * len(specs), (width,)), dtype=np.int64)


class _FrameRows:
    """Rows ``[a, b)`` of a pandas DataFrame (a view, no copy); tokenized by identity,
    so dask never hashes the frame's values."""

    def __init__(self, frame):
        import uuid

        self.frame = frame
        self.token = uuid.uuid4().hex

    def __dask_tokenize__(self):
        return self.token

    def __call__(self, rows):
        return self.frame.iloc[rows[0]:rows[1]]


def pandas_partitions(frame, rows_per_partition: int):
    """A dask DataFrame whose partitions are views of ``rows_per_partition`` rows of the
    pandas ``frame`` (``dd.from_pandas`` copies the frame and its partitions: ~2x its
    size held).  The frame must not change while the collection is in use.

    Examples
    --------
    >>> import pandas as pd
    >>> ddf = pandas_partitions(pd.DataFrame({"x": range(10)}), 4)
    >>> ddf.npartitions, int(ddf.x.sum().compute())
    (3, 45)
    """
    import dask.dataframe as dd

    n = len(frame)
    step = max(1, int(rows_per_partition))
    rows = [(a, min(a + step, n)) for a in range(0, n, step)] or [(0, 0)]
    return dd.from_map(_FrameRows(frame), rows, meta=frame.iloc[:0], enforce_metadata=False,
                       label="zv-pandas-rows")
