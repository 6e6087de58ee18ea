"""What a dataframe partition task runs, and the query-independent facts a dataframe
expression plans with.  No dask import: the expression (``collections.expr``) only carries these.

:class:`Scan` reads one partition with a pushed-down predicate in two steps: the
columns the predicate uses first, then, only for cells where some row matched, the
remaining requested columns.  :class:`FrameSource` turns a predicate into the
partitions that can hold matching rows (pruning whole partitions and trimming the
chunk lists of the others, whatever the grouping) without any IO.
"""

from __future__ import annotations

import hashlib
import itertools
import pickle

import numpy as np

from zv_dask.errors import StoreReadError
from zv_dask.io.location import cell_key
from zv_dask.plan import predicates as P
from zv_dask.plan.partitioning import CellGroups
from zv_dask.read.level import POSITIONS, attr_key
from zv_dask.read.partitions import PartitionReader

_VLEN_HEADER = 8  # bytes before the rows of an uncompressed vertex blob


class Scan:
    """Picklable per-partition function: ``(spec, columns, predicate) -> DataFrame``.

    ``spec`` is a tuple of cell coordinates (or ``(coords, selection)`` for an
    object selection); ``columns`` the requested columns (``None``: all);
    ``predicate`` a DNF from :mod:`zv_dask.plan.predicates` applied exactly.

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
            coords = [tuple(c) for c in coords]
            return coords, dict(zip(coords, sel))
        return [tuple(c) for c in spec], None

    def _load(self, coords, sources, selection, expect=None):
        part = self.part
        rows = None if not expect else [expect.get(c, -1) for c in coords]
        attrs = [a for a in part.attributes if attr_key(a.name) in sources]
        want_pos = "positions" in sources or part.bbox is not None
        want_ids = "object_ids" in sources or "owner_count" in sources
        return part._cells(coords, attrs, want_pos, want_ids, selection, rows)[1]

    def arrays_read(self, columns=None, predicate=None) -> set:
        """Paths of the level arrays (``vertices``, attribute arrays) a partition reads
        for ``columns`` (``None``: all) under ``predicate``."""
        part = self.part
        names = None if columns is None else set(columns) | set(P.columns_of(predicate))
        sources = {src for _, src, _ in self._schema(names)}
        paths = {part.reader.level.vertices.path} \
            if "positions" in sources or part.bbox is not None else set()
        return paths | {a.path for a in part.attributes
                        if attr_key(a.name) in sources and not a.implied_by_key}

    def _schema(self, columns):
        if columns is None:
            return list(self.part.schema)
        keep = set(columns)
        return [s for s in self.part.schema if s[0] in keep]

    def __call__(self, spec, columns=None, predicate=None, labels=None, inside=None,
                 rows=None, unchanged=None):
        # ``rows``: each cell's rows when the frame was built (-1 unknown; the labels
        # carry them too): a cell decoding to another count is a store changed since
        coords, selection = self._split(spec)
        part = self.part
        schema = self._schema(columns)
        if not coords:
            return part.assemble(schema, [], [], 0)
        if rows is None and labels is not None:
            rows = labels[1]
        if predicate is None and labels is None:
            return part._build(coords, columns, selection, rows)
        expect = None if rows is None else dict(zip(coords, rows))
        wanted = {src for _, src, _ in schema}
        if predicate is None:
            cells = self._load(coords, wanted, selection, expect)
            frame = part.assemble(schema, coords, cells)
            frame.index = self._row_labels(coords, labels, _row_counts(cells))
            return frame
        # ``inside[i]``: every row of cell i matches (an axis-only predicate whose box
        # holds the cell), so its rows need no test and the predicate's columns are
        # fetched only if requested
        inside = (False,) * len(coords) if inside is None else tuple(inside)
        edge = [c for c, f in zip(coords, inside) if not f]
        whole = [c for c, f in zip(coords, inside) if f]
        pschema = self._schema(P.columns_of(predicate))
        first = {src for _, src, _ in pschema}
        tested = self._load(edge, first, selection, expect) if edge else []
        edge_sizes = _row_counts(tested)
        mask = P.row_mask(predicate, part.assemble(pschema, edge, tested).__getitem__,
                          sum(edge_sizes))
        bounds = np.cumsum([0] + edge_sizes)
        keep = [i for i in range(len(edge)) if mask[bounds[i]:bounds[i + 1]].any()]
        rest = wanted - first
        more = self._load([edge[i] for i in keep], rest, selection, expect) \
            if (rest and keep) else [{}] * len(keep)
        matched = dict(zip(whole, self._load(whole, wanted, selection, expect)
                           if whole else []))
        for i, extra in zip(keep, more):
            m = mask[bounds[i]:bounds[i + 1]]
            # only what the frame returns is filtered (not the columns tested alone)
            cols = {k: v for k, v in tested[i].items() if k in wanted}
            cols.update(extra)
            # a cell whose rows all match keeps them: no copy
            matched[edge[i]] = (cols, None if m.all() else m)
        out, kept, sizes, masks = [], [], [], []
        edge_at = {c: i for i, c in enumerate(edge)}
        for c in coords:
            got = matched.get(c)
            if c in edge_at:
                i = edge_at[c]
                sizes.append(edge_sizes[i])
                masks.append(mask[bounds[i]:bounds[i + 1]])
                if got is None:
                    continue
                cols, m = got
                out.append(cols if m is None else {k: v[m] for k, v in cols.items()})
            else:
                n = _row_counts([got])[0]
                sizes.append(n)
                masks.append(np.ones(n, bool))
                out.append(got)
            kept.append(c)
        n_rows = sum(int(np.count_nonzero(m)) for m in masks)
        frame = part.assemble(schema, kept, out, n_rows)
        if labels is not None:
            frame.index = self._row_labels(coords, labels, sizes,
                                           np.concatenate(masks) if masks else None)
        return frame

    def _row_labels(self, coords, labels, sizes, mask=None):
        """The index of a partition whose rows are labelled by their position in the
        whole frame: ``labels`` holds each cell's first label and row count, as listed
        when the graph was built; a cell now holding another count means the store
        changed since."""
        import pandas as pd

        first, rows = (np.asarray(v, np.int64) for v in labels)
        for c, now, then in zip(coords, sizes, rows.tolist()):
            if now != then:
                raise self.part.reader._err(
                    StoreReadError, f"the chunk holds {now} rows but held {then} when the "
                    "dataframe was built (from the store's listing): the store changed "
                    "since it was opened; open it again", array=POSITIONS, chunk=c)
        if mask is not None and mask.all():
            mask = None
        if mask is None and (first[1:] == first[:-1] + rows[:-1]).all():
            return pd.RangeIndex(int(first[0]), int(first[0] + rows.sum()))
        # cell by cell: a whole cell is a range, a filtered one its kept positions
        out = np.empty(int(rows.sum() if mask is None else np.count_nonzero(mask)), np.int64)
        o = a = 0
        for f, n in zip(first.tolist(), rows.tolist()):
            m = None if mask is None else mask[a:a + n]
            k = n if m is None else int(np.count_nonzero(m))
            if k == n:
                out[o:o + n] = np.arange(f, f + n)
            elif k:
                np.add(np.flatnonzero(m), f, out=out[o:o + k])
            o, a = o + k, a + n
        return pd.Index(out, copy=False)

    def count(self, spec, predicate, inside, rows=None) -> int:
        """Rows of a partition matching ``predicate`` (axis terms only): cells flagged
        ``inside`` are counted from their vertex blob sizes, the others are read
        (``rows`` as for a call: each cell's rows when the frame was built)."""
        coords, selection = self._split(spec)
        expect = {} if rows is None else dict(zip(coords, rows))
        lm = self.part.reader.level
        plain = lm.vertices.access == "plain" and selection is None
        sized = [c for c, f in zip(coords, inside) if f] if plain else []
        n = 0
        if sized:
            loc = self.part.reader.location
            row = self.part.reader.ndim * lm.vertices.dtype.itemsize
            keys = [cell_key(lm.vertices, lm.level, c) for c in sized]
            listed = loc.listed_sizes(f"{lm.level}/{lm.vertices.path}")
            # one listing per array and process; a store that cannot be listed: stats
            got = [listed.get(k) for k in keys] if listed is not None else loc.sizes(keys)
            for c, s in zip(sized, got):
                then = int(expect.get(c, -1))
                if s is None or s < _VLEN_HEADER or (s - _VLEN_HEADER) % row:
                    n += len(self([c], [], predicate, rows=[then]))  # not plain: read it
                    continue
                now = (s - _VLEN_HEADER) // row
                if then >= 0 and now != then:
                    raise self.part.reader._changed(c, now, then, POSITIONS)
                n += now
        done = set(sized)
        rest = [c for c in coords if c not in done]
        if rest:
            sub = (tuple(rest), tuple(selection[c] for c in rest)) if selection is not None \
                else tuple(rest)
            n += len(self(sub, [], predicate,
                          rows=None if rows is None else [expect[c] for c in rest]))
        return int(n)


def _row_counts(cells) -> list:
    return [len(next(iter(c.values()))) if c else 0 for c in cells]


class FrameSource:
    """Everything a dataframe expression plans with: the partition function, the full
    level metadata (presence included, for pruning), the plan's bbox and the
    partitions before any predicate (from ``collections.build.partition_specs``).

    Tokenized by value, so equal queries give equal task names.
    """

    def __init__(self, scan: Scan, level, bbox, axes, specs: list, label: str,
                 full_count=None, expected=None, unchanged=None):
        self.scan = scan
        self.level = level
        self.bbox = bbox
        self.axes = tuple(axes)
        # CellGroups for plain reads (vectorised trimming); a list for object selections
        self.base_specs = specs if isinstance(specs, CellGroups) else list(specs)
        self.label = label
        self.full_count = full_count  # rows of the whole level (no bbox, no selection)
        # () -> rows of each non-empty cell of the level (presence order, -1 unknown),
        # called once when the first task with a cell is made (building stays IO-free):
        # every task checks its cells against them
        self._expected = expected
        # () -> True, run once per compute before any task of the frame when ``expected``
        # cannot check rows (see read.unchanged)
        self.unchanged = unchanged
        self._memo = {}

    def __repr__(self) -> str:
        return f"FrameSource({self.label}, {len(self.base_specs)} partitions)"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_memo"] = {}
        state["_expected"] = None  # holds the store handle: tasks never need it
        return state

    def __dask_tokenize__(self):
        if "token" not in self._memo:
            self._memo["token"] = ("zv_dask.FrameSource", self.scan.__dask_tokenize__(),
                                   self.level.level, self.axes, self.label,
                                   None if self.bbox is None else [b.tolist() for b in self.bbox],
                                   self._specs_digest())
        return self._memo["token"]

    def _specs_digest(self) -> str:
        if isinstance(self.base_specs, CellGroups):
            return self.base_specs.digest()
        flat, lens = self._flat()
        h = hashlib.sha1(flat.tobytes())
        h.update(lens.tobytes())
        if self.scan.selection:
            h.update(pickle.dumps([spec[1] for spec in self.base_specs], protocol=4))
        return h.hexdigest()

    def _flat(self):
        """(every planned cell (K, rank), cells per partition), computed once."""
        if "flat" not in self._memo and isinstance(self.base_specs, CellGroups):
            self._memo["flat"] = (self.base_specs.cells, self.base_specs.lengths())
        if "flat" not in self._memo:
            groups = [self._coords(s) for s in self.base_specs]
            lens = np.fromiter((len(g) for g in groups), np.int64, len(groups))
            flat = np.asarray(list(itertools.chain.from_iterable(groups)), np.int64)
            self._memo["flat"] = (flat.reshape(-1, self.level.rank), lens)
        return self._memo["flat"]

    @property
    def meta(self):
        if "meta" not in self._memo:
            self._memo["meta"] = self.scan.part.meta()
        return self._memo["meta"]

    def expected_rows(self, specs):
        """Per partition of ``specs``: each cell's rows when the frame was built (a
        tuple, -1 unknown), or ``None`` when no row count is known."""
        if isinstance(specs, CellGroups) and not len(specs.cells) or self._expected is None \
                or not isinstance(specs, CellGroups) and not any(map(self._coords, specs)):
            return None
        if "expected" not in self._memo:
            got = self._expected()
            self._memo["expected"] = None if got is None or not (np.asarray(got) >= 0).any() \
                else np.asarray(got, np.int64)
        expected = self._memo["expected"]
        if expected is None:
            return None
        pres = self.level.presence

        def rows_of(cells):
            lin = P.linear_index(self.level, cells)
            at = np.clip(np.searchsorted(pres.linear, lin), 0, max(len(pres.linear) - 1, 0))
            hit = pres.linear[at] == lin if len(pres.linear) else np.zeros(len(lin), bool)
            return np.where(hit, expected[at] if len(expected) else -1, -1)

        if isinstance(specs, CellGroups):
            return specs.per_partition(rows_of(specs.cells))
        out = []
        for spec in specs:
            coords = self._coords(spec)
            out.append(tuple(rows_of(np.asarray(coords, np.int64)).tolist())
                       if len(coords) else ())
        return out

    def _coords(self, spec):
        return spec[0] if self.scan.selection else spec

    def reads_cells(self, spec) -> bool:
        """Whether a partition of ``spec`` reads any chunk (a pruned one reads none)."""
        return len(self._coords(spec)) > 0

    def _empty_spec(self):
        return ((), ()) if self.scan.selection else ()

    def boxes(self, predicate):
        return P.boxes(predicate, self.axes, self.level.vertices.dtype, self.bbox)

    def specs(self, predicate) -> list:
        """Partitions that can hold rows matching ``predicate`` (never empty: a query
        nothing can match has one partition with no cells)."""
        key = ("specs", predicate)
        if key in self._memo:
            return self._memo[key]
        out = self.base_specs
        if predicate is not None:
            box_list = self.boxes(predicate)
            if P.narrows(box_list):
                out = self._trim(P.cells_in_boxes(self.level, box_list))
        if not out:
            out = [self._empty_spec()]
        self._memo[key] = out
        return out

    def _trim(self, allowed: np.ndarray) -> list:
        flat, lens = self._flat()
        if not len(flat):
            return []
        keep = np.isin(P.linear_index(self.level, flat), allowed)
        if isinstance(self.base_specs, CellGroups):
            return self.base_specs.keep(keep)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        kept = np.zeros(len(lens), np.int64)
        some = lens > 0
        kept[some] = np.add.reduceat(keep.astype(np.int64), starts[some])
        out = []
        for spec, n, m, i in zip(self.base_specs, lens.tolist(), kept.tolist(), starts.tolist()):
            if m == 0:
                continue
            if m == n:
                out.append(spec)
                continue
            k = keep[i:i + n]
            if self.scan.selection:
                out.append((tuple(c for c, f in zip(spec[0], k) if f),
                            tuple(x for x, f in zip(spec[1], k) if f)))
            else:
                out.append(tuple(c for c, f in zip(spec, k) if f))
        return out

    def countable(self, predicate) -> bool:
        """Whether rows can be counted from sizes and positions alone."""
        if self.scan.selection:
            return False
        return P.boxes_are_exact(predicate, self.axes, self.level.vertices.dtype)

    def inside_flags(self, predicate, specs) -> list:
        """Per partition, per cell: whether the cell lies inside the query's boxes."""
        box_list = self.boxes(predicate)
        if isinstance(specs, CellGroups):
            if not len(specs.cells):
                return [()] * len(specs)
            return specs.per_partition(P.interior(self.level, specs.cells, box_list))
        out = []
        for spec in specs:
            coords = self._coords(spec)
            if not len(coords):
                out.append(())
                continue
            flags = P.interior(self.level, np.asarray(coords, np.int64), box_list)
            out.append(tuple(bool(f) for f in flags))
        return out
