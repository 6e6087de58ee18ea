"""The dask-expr expression behind ``ZVStore.to_dask_dataframe``: the one module that
touches dask's expression internals (tested with the dask versions pinned in
pyproject.toml; ``collections.build`` falls back to ``from_map`` when they are missing).

Like ``dd.read_parquet``, the expression absorbs what the optimizer hands it:

- a column projection: only the arrays the requested columns need are fetched;
- a ``Filter`` whose predicate (or some of its top-level ``&`` terms) compares
  columns with scalars: the terms become a plain-value predicate (see
  ``plan.predicates``), axis terms prune partitions at optimize time with no IO, and every
  term is applied exactly inside the task; the rest stays a dask ``Filter``;
- ``len()``: from level metadata when nothing restricts the rows, else from blob
  sizes for chunks inside the query box and reads of the boundary chunks only.
"""

from __future__ import annotations

import functools
import operator

import pandas as pd
from dask._task_spec import Task, TaskRef
from dask.dataframe.dask_expr._expr import (EQ, GE, GT, LE, LT, NE, And, Between, Expr, Filter,
                                            Index, Literal, Or, PartitionsFiltered, Projection)
from dask.dataframe.dask_expr._reductions import Len, Sum
from dask.dataframe.dask_expr._util import _convert_to_list
from dask.dataframe.dask_expr.io.io import BlockwiseIO

from zv_dask.errors import ColumnNotFoundError
from zv_dask.plan import predicates as P

_OPS = {LT: "<", LE: "<=", GT: ">", GE: ">=", EQ: "==", NE: "!="}


class ZVFrame(PartitionsFiltered, BlockwiseIO):
    """Partitions of one zv_dask level read: ``source`` (a ``read.scan.FrameSource``),
    projected ``columns`` and a pushed-down ``predicate`` (DNF of plain values)."""

    _parameters = ["source", "columns", "predicate", "_partitions", "_series", "guard"]
    _defaults = {"columns": None, "predicate": None, "_partitions": None, "_series": False,
                 "guard": None}
    _absorb_projections = True
    _filter_passthrough = True

    @functools.cached_property
    def _name(self):
        return f"{self.source.label}-{self.deterministic_token}"

    @functools.cached_property
    def frame_meta(self):
        meta = self.source.meta
        cols = self.operand("columns")
        return meta if cols is None else meta[_convert_to_list(cols)]

    @functools.cached_property
    def _meta(self):
        if self.operand("_series"):
            return self.frame_meta[self.columns[0]]
        return self.frame_meta

    @property
    def columns(self):
        cols = self.operand("columns")
        return list(self.frame_meta.columns) if cols is None else _convert_to_list(cols)

    @functools.cached_property
    def _specs(self):
        return self.source.specs(self.operand("predicate"))

    def _divisions(self):
        return (None,) * (len(self._specs) + 1)

    @functools.cached_property
    def _task_parts(self):
        # what every task shares, looked up once (a graph can have a million tasks)
        cols = self.operand("columns")
        cols = None if cols is None else _convert_to_list(cols)
        series = self.columns[0] if self.operand("_series") else None
        src, predicate, specs = self.source, self.operand("predicate"), self._specs
        # cells inside an exact axis box: no row test, no fetch of unrequested axes
        inside = src.inside_flags(predicate, specs) \
            if predicate is not None and src.countable(predicate) else None
        # each cell's rows at build time (the labels carry them when there are labels)
        rows = None if getattr(specs, "labelled", False) else src.expected_rows(specs)
        return src.scan, cols, predicate, series, specs, inside, rows

    def _filtered_task(self, name, index):
        scan, cols, predicate, series, specs, inside, rows = self._task_parts
        extra = {}
        if getattr(specs, "labelled", False):  # rows labelled by their frame position
            extra["labels"] = specs.labels(index)
        elif rows is not None:
            extra["rows"] = rows[index]
        if inside is not None and any(inside[index]):
            extra["inside"] = inside[index]
        extra.update(_after_guard(self.operand("guard")))
        task = Task(name, scan, specs[index], cols, predicate, _data_producer=True, **extra)
        if series is not None:
            return Task(name, operator.getitem, task, series)
        return task

    def _simplify_down(self):
        # the guard re-reads the documents of the arrays this projection reads, and
        # none when the frame is pruned to no chunk
        guard = self.operand("guard")
        if guard is None:
            return None
        narrowed = self._guard_for(self.operand("columns"), self.operand("predicate"))
        if narrowed is None or narrowed._name != guard._name:
            return self.substitute_parameters({"guard": narrowed})
        return None

    def _guard_for(self, columns, predicate):
        guard = self.operand("guard")
        if guard is None or not any(map(self.source.reads_cells, self._specs)):
            return None
        cols = None if columns is None else _convert_to_list(columns)
        check = guard.operand("check").only(self.source.scan.arrays_read(cols, predicate))
        return None if check is None else ZVGuard(check)

    def _simplify_up(self, parent, dependents):
        if isinstance(parent, Index):
            if self.operand("columns") == []:
                return
            return Index(self.substitute_parameters({"columns": [], "_series": False}))
        if isinstance(parent, Projection):
            return super()._simplify_up(parent, dependents)
        if isinstance(parent, Filter) and not self._filtered \
                and self._filter_passthrough_available(parent, dependents):
            return self._push_filter(parent.predicate)
        if isinstance(parent, Len):
            return self._length()

    # -- predicates --------------------------------------------------------------------

    def __getitem__(self, other):
        # ``ddf[ddf.x > a]``: take the predicate now rather than at optimize time, so
        # that ``len()`` of the result (whose rewrite to an index length runs before
        # any filter pushdown) still sees it
        if isinstance(other, Expr) and not self._filtered:
            pushed = self._push_filter(other)
            if pushed is not None:
                return pushed
        if not isinstance(other, Expr):
            self._check_columns(other)
        return super().__getitem__(other)

    def _check_columns(self, key) -> None:
        """``ddf["nope"]``: a ColumnNotFoundError naming the column and listing the
        frame's columns (pandas' KeyError names neither the store nor the choices)."""
        names = list(key) if isinstance(key, (list, tuple)) else [key]
        have = self.columns
        missing = [c for c in names if isinstance(c, (str, int)) and c not in have]
        if missing:
            reader = self.source.scan.part.reader
            raise ColumnNotFoundError(
                f"no column {', '.join(map(repr, missing))} in this frame; its columns are "
                f"{', '.join(map(str, have))}", store=reader.location.url,
                level=reader.level.level)

    def _push_filter(self, predicate):
        pushed, rest = None, []
        for part in _conjuncts(predicate):
            dnf = _translate(part, self)
            both = None if dnf is None else P.and_(pushed, dnf)
            if both is None:
                rest.append(part)
            else:
                pushed = both
        if pushed is None:
            return None
        combined = P.and_(self.operand("predicate"), pushed)
        if combined is None:
            return None
        new = self.substitute_parameters({"predicate": combined})
        if not rest:
            return new
        remaining = functools.reduce(And, rest)
        return Filter(new, remaining.substitute(self, new))

    # -- lengths -------------------------------------------------------------------------

    def _length(self):
        src = self.source
        pred = self.operand("predicate")
        if self._filtered:
            return None
        if pred is None and src.full_count is not None:
            return Literal(int(src.full_count))
        if src.countable(pred):
            return Sum(ZVCounts(src, pred, self._guard_for([], pred)))
        if self.operand("columns") != []:  # count the predicate's columns only
            return Len(self.substitute_parameters({"columns": [], "_series": False}))
        return None


class ZVCounts(BlockwiseIO):
    """Rows per partition of a ``ZVFrame`` (a Series), from blob sizes where a chunk lies
    inside the query box and from positions on its boundary."""

    _parameters = ["source", "predicate", "guard"]
    _defaults = {"guard": None}

    @functools.cached_property
    def _name(self):
        return f"{self.source.label}-count-{self.deterministic_token}"

    @functools.cached_property
    def _meta(self):
        return pd.Series([], dtype="int64")

    @functools.cached_property
    def _specs(self):
        return self.source.specs(self.operand("predicate"))

    @functools.cached_property
    def _inside(self):
        return self.source.inside_flags(self.operand("predicate"), self._specs)

    @functools.cached_property
    def _rows(self):
        return self.source.expected_rows(self._specs)

    def _divisions(self):
        return (None,) * (len(self._specs) + 1)

    def _task(self, name, index):
        rows = None if self._rows is None else self._rows[index]
        return Task(name, _count_series, self.source.scan, self._specs[index],
                    self.operand("predicate"), self._inside[index], rows,
                    _data_producer=True, **_after_guard(self.operand("guard")))


class ZVGuard(Expr):
    """One task that every partition of a frame waits for: ``check()`` (a
    ``read.unchanged.UnchangedCheck``) raises when the store was rewritten since its
    handle was opened, before any chunk is decoded with stale metadata."""

    _parameters = ["check"]

    @functools.cached_property
    def _name(self):
        return f"zv-unchanged-{self.deterministic_token}"

    @functools.cached_property
    def _meta(self):
        return pd.Series([], dtype=bool)

    def _divisions(self):
        return (None, None)

    def _layer(self):
        key = (self._name, 0)
        return {key: Task(key, self.operand("check"))}


def _after_guard(guard) -> dict:
    """The keyword that makes a task depend on ``guard`` (nothing without one)."""
    return {} if guard is None else {"unchanged": TaskRef((guard._name, 0))}


def _count_series(scan, spec, predicate, inside, rows=None, unchanged=None):
    return pd.Series([scan.count(spec, predicate, inside, rows)], dtype="int64")


def _conjuncts(e):
    if isinstance(e, And):
        return _conjuncts(e.left) + _conjuncts(e.right)
    return [e]


def _column(e, frame):
    """The column name when ``e`` is a column of ``frame`` as a Series, else None."""
    if isinstance(e, Projection) and e.frame._name == frame._name:
        col = e.operand("columns")
        if isinstance(col, str) and col in frame.source.meta.columns:
            return col
    return None


def _scalar(v) -> bool:
    if isinstance(v, Expr):
        return False
    return isinstance(v, (int, float, str)) or (hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0)


def _translate(e, frame):
    """A DNF of plain terms equivalent to the dask predicate ``e``, or None."""
    if isinstance(e, (And, Or)):
        a, b = _translate(e.left, frame), _translate(e.right, frame)
        if a is None or b is None:
            return None
        return P.and_(a, b) if isinstance(e, And) else P.or_(a, b)
    op = _OPS.get(type(e))
    if op is not None:
        col = _column(e.left, frame)
        if col is not None and _scalar(e.right):
            return (((col, op, e.right),),)
        col = _column(e.right, frame)
        if col is not None and _scalar(e.left):
            return ((P.term(col, op, e.left, flipped=True),),)
        return None
    if isinstance(e, Between):
        col = _column(e.frame, frame)
        lo, hi = e.operand("left"), e.operand("right")
        if col is not None and _scalar(lo) and _scalar(hi):
            try:
                return (P.between(col, lo, hi, e.operand("inclusive")),)
            except ValueError:
                return None
    return None


def new_frame(source):
    """A ``dask.dataframe.DataFrame`` backed by a :class:`ZVFrame`."""
    from dask.dataframe.dask_expr._collection import new_collection

    check = source.unchanged
    return new_collection(ZVFrame(source, guard=None if check is None else ZVGuard(check)))


def pandas_of(ddf):
    """The pandas DataFrame behind a bare ``dd.from_pandas(df, ...)`` (nothing applied
    to it, no string conversion pending), rows in the partitions' order; ``None`` for
    any other frame.  ``to_zv`` splits it into views instead of materializing the
    expression's partitions (copies).

    Examples
    --------
    >>> import dask.dataframe as dd, pandas as pd
    >>> df = pd.DataFrame({"x": [3.0, 1.0, 2.0]})
    >>> pandas_of(dd.from_pandas(df, npartitions=2))["x"].tolist()
    [3.0, 1.0, 2.0]
    >>> pandas_of(dd.from_pandas(df, npartitions=2)[["x"]] * 2) is None
    True
    """
    try:
        from dask.dataframe.dask_expr.io.io import FromPandas
    except ImportError:  # pragma: no cover - other dask layouts: partitions as they are
        return None
    e = getattr(ddf, "expr", None)
    if type(e) is not FromPandas or e.operand("columns") is not None \
            or e.operand("_partitions") is not None or e.operand("_series"):
        return None
    frame = e.frame._data  # sorted by index when sort=True asked it (as the partitions)
    if e.pyarrow_strings_enabled and any(
            dt == object or isinstance(dt, pd.StringDtype) for dt in frame.dtypes):
        return None  # its partitions convert strings: keep dask's dtypes
    return frame
