"""What a dataframe partition task runs, and the query-independent facts a dataframe
expression plans with.  No dask import: the expression (``_expr``) only carries these.

:class:`Scan` reads one partition with a pushed-down predicate in two steps: the
columns the predicate uses first, then, only for cells where some row matched, the
remaining requested columns.  :class:`FrameSource` turns a predicate into the
partitions that can hold matching rows (pruning whole partitions and trimming the
chunk lists of the others, whatever the grouping) without any IO.  :class:`ListedRows`
gives rows per chunk from one listing of a level's vertices array (for ``len()``).
"""

from __future__ import annotations

import threading

import numpy as np

from . import _predicates as P
from ._partitioning import Layout
from ._read import PartitionReader

_VLEN_HEADER = 8  # bytes before the rows of an uncompressed vertex blob


class Scan:
    """Picklable per-partition function: ``(spec, columns, predicate) -> DataFrame``.

    ``spec`` holds cell coordinates, a (K, rank) array or a tuple of tuples (or
    ``(coords, selection)`` for an object selection); ``columns`` the requested columns (``None``: all);
    ``predicate`` a DNF from :mod:`zv_dask._predicates` applied exactly.

    Examples
    --------
    >>> import zv_dask
    >>> s = zv_dask.open_zv(zv_dask.example_store())
    >>> scan = s.to_dask_dataframe(level=1).expr.source.scan
    >>> df = scan(tuple(s.chunks(1)[:2]), ["x"], (((("x", ">", 500.0),),)))
    >>> bool((df.x > 500).all())
    True
    """

    def __init__(self, part: PartitionReader, selection: bool = False):
        self.part = part
        self.selection = bool(selection)

    def __dask_tokenize__(self):
        return ("zv_dask.Scan", self.part.__dask_tokenize__(), self.selection)

    def _split(self, spec):
        if self.selection:
            coords, sel = spec
            coords = _tuples(coords)
            return coords, dict(zip(coords, sel))
        return _tuples(spec), None

    def _load(self, coords, sources, selection):
        part = self.part
        attrs = [a for a in part.attributes if a.name in sources]
        want_pos = "positions" in sources or part.bbox is not None
        want_ids = "object_ids" in sources or "owner_count" in sources
        return part._cells(coords, attrs, want_pos, want_ids, selection)[1]

    def _schema(self, columns):
        if columns is None:
            return list(self.part.schema)
        keep = set(columns)
        return [s for s in self.part.schema if s[0] in keep]

    def __call__(self, spec, columns=None, predicate=None):
        coords, selection = self._split(spec)
        part = self.part
        schema = self._schema(columns)
        if not coords:
            return part.assemble(schema, [], [], 0)
        if predicate is None:
            return part._build(coords, columns, selection)
        used = P.columns_of(predicate)
        pschema = self._schema(used)
        first = {src for _, src, _ in pschema}
        cells = self._load(coords, first, selection)
        sizes = [len(next(iter(c.values()))) if c else 0 for c in cells]
        frame = part.assemble(pschema, coords, cells)
        mask = P.row_mask(predicate, frame.__getitem__, len(frame))
        bounds = np.cumsum([0] + sizes)
        keep = [i for i in range(len(coords)) if mask[bounds[i]:bounds[i + 1]].any()]
        rest = {src for _, src, _ in schema} - first
        kept = [coords[i] for i in keep]
        more = self._load(kept, rest, selection) if (rest and kept) else [{}] * len(kept)
        out = []
        for i, extra in zip(keep, more):
            m = mask[bounds[i]:bounds[i + 1]]
            cols = dict(cells[i])
            cols.update(extra)
            out.append({k: v[m] for k, v in cols.items()})
        return part.assemble(schema, kept, out, int(mask.sum()))

    def count(self, spec, predicate, rows) -> int:
        """Rows of a partition matching ``predicate`` (axis terms only): ``rows`` gives,
        per cell, its known row count when every row matches (a cell inside the query
        box, sized from a listing), else -1; only the -1 cells are read."""
        coords, selection = self._split(spec)
        rows = np.asarray(rows, np.int64).reshape(len(coords))
        known = rows >= 0
        n = int(rows[known].sum())
        rest = [c for c, k in zip(coords, known.tolist()) if not k]
        if rest:
            sub = (tuple(rest), tuple(selection[c] for c in rest)) if selection is not None \
                else tuple(rest)
            n += len(self(sub, [], predicate))
        return n


class ListedRows:
    """Rows of every non-empty cell of a level (aligned with its presence list; -1
    where unknown) from the blob sizes of one listing of its ``vertices`` array (one
    LIST per 1000 chunks on object stores, one directory walk locally; never a stat or
    HEAD per chunk), or ``None`` when sizes do not give rows (compressed, sharded or
    Draco vertices).  Listed once, on first call; picklable (without the result).
    """

    def __init__(self, location, level, ndim: int):
        self.location = location
        self.level = level
        self.ndim = int(ndim)
        self._lock = threading.Lock()
        self._rows = _UNSET

    def __getstate__(self):
        return {"location": self.location, "level": self.level, "ndim": self.ndim}

    def __setstate__(self, state):
        self.__init__(state["location"], state["level"], state["ndim"])

    def __call__(self) -> np.ndarray | None:
        with self._lock:
            if self._rows is _UNSET:
                self._rows = self._list()
            return self._rows

    def _list(self):
        lm, arr = self.level, self.level.vertices
        if arr.access != "plain" or (arr.encoding or "raw") != "raw":
            return None
        listing = self.location.list_sizes(f"{lm.level}/{arr.path}") or {}
        base = f"{lm.level}/{arr.path}/{arr.chunk_key_prefix}"
        idx, sizes = [], []
        for key, size in listing.items():
            if key.startswith(base):
                parts = key[len(base):].split(arr.chunk_separator)
                if len(parts) == arr.rank and all(p.isdigit() for p in parts):
                    idx.append([int(p) for p in parts])
                    sizes.append(size)
        rows = np.full(lm.n_cells, -1, np.int64)
        if not idx or not lm.n_cells:
            return rows
        pres = lm.presence
        idx = np.asarray(idx, np.int64)
        sizes = np.asarray(sizes, np.int64)
        ok = (idx < np.asarray(pres.shape)).all(1)
        lin = np.ravel_multi_index(idx[ok].T, pres.shape)
        sizes = sizes[ok]
        pos = np.clip(np.searchsorted(pres.linear, lin), 0, max(len(pres.linear) - 1, 0))
        row = self.ndim * arr.dtype.itemsize
        good = (pres.linear[pos] == lin) & (sizes >= _VLEN_HEADER) & \
            ((sizes - _VLEN_HEADER) % row == 0)
        rows[pos[good]] = (sizes[good] - _VLEN_HEADER) // row
        return rows


_UNSET = object()


def _tuples(coords) -> list:
    """Cell coordinates (an array or a sequence of sequences) as tuples of ints."""
    if isinstance(coords, np.ndarray):
        return [tuple(c) for c in coords.tolist()]
    return [tuple(c) for c in coords]


class FrameSource:
    """Everything a dataframe expression plans with: the partition function, the full
    level metadata (presence included, for pruning), the plan's bbox and the
    partitions before any predicate (a :class:`~zv_dask._partitioning.Layout`).

    Tokenized by value (a hash of the layout's arrays, computed once), so equal
    queries give equal task names; pruning and counting work on whole arrays, never
    on a Python object per chunk.
    """

    def __init__(self, scan: Scan, level, bbox, axes, layout: Layout, label: str,
                 full_count=None, listed_rows: ListedRows | None = None):
        self.scan = scan
        self.listed_rows = listed_rows  # rows per cell from a listing, for len()
        self.level = level
        self.bbox = bbox
        self.axes = tuple(axes)
        self.layout = layout
        self.label = label
        self.full_count = full_count  # rows of the whole level (no bbox, no selection)
        self._memo = {}

    def __repr__(self) -> str:
        return f"FrameSource({self.label}, {len(self.layout)} partitions)"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_memo"] = {}
        return state

    def __dask_tokenize__(self):
        if "token" not in self._memo:
            self._memo["token"] = ("zv_dask.FrameSource", self.scan.__dask_tokenize__(),
                                   self.level.level, self.axes, self.label,
                                   None if self.bbox is None else [b.tolist() for b in self.bbox],
                                   self.layout.digest())
        return self._memo["token"]

    @property
    def meta(self):
        if "meta" not in self._memo:
            self._memo["meta"] = self.scan.part.meta()
        return self._memo["meta"]

    def boxes(self, predicate):
        return P.boxes(predicate, self.axes, self.level.vertices.dtype, self.bbox)

    def specs(self, predicate) -> Layout:
        """The partitions that can hold rows matching ``predicate`` (never none: a query
        nothing can match has one partition with no cells)."""
        key = ("specs", predicate)
        if key in self._memo:
            return self._memo[key]
        out = self.layout
        if predicate is not None:
            box_list = self.boxes(predicate)
            if P.narrows(box_list):
                allowed = P.cells_in_boxes(self.level, box_list)
                lin = P.linear_index(self.level, out.cells)
                pos = np.minimum(np.searchsorted(allowed, lin), max(len(allowed) - 1, 0))
                out = out.select(allowed[pos] == lin if len(allowed) else
                                 np.zeros(len(lin), bool))
        if not len(out):
            out = Layout(out.cells[:0], np.zeros(2, np.int64),
                         None if out.payload is None else ())
        self._memo[key] = out
        return out

    def countable(self, predicate) -> bool:
        """Whether rows can be counted from sizes and positions alone."""
        if self.scan.selection:
            return False
        return P.boxes_are_exact(predicate, self.axes, self.level.vertices.dtype)

    def known_rows(self, predicate, layout: Layout) -> np.ndarray:
        """Per cell of ``layout``: its row count when it lies inside the query's boxes
        (so all its rows match) and the listing knows it, else -1 (read it)."""
        listed = self.listed_rows() if self.listed_rows is not None else None
        out = np.full(len(layout.cells), -1, np.int64)
        if listed is None or not len(out):
            return out
        inside = P.interior(self.level, layout.cells, self.boxes(predicate))
        lin = P.linear_index(self.level, layout.cells[inside])
        out[inside] = listed[np.searchsorted(self.level.presence.linear, lin)]
        return out
