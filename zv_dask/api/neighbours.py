"""ZVStore methods for neighbourhoods across chunks: ``nearest``, ``within``, ``pairs``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zv_dask.errors import ColumnNotFoundError, QueryError
from zv_dask.neighbours import run as _run
from zv_dask.neighbours.cells import CellSource, kdtree_class
from zv_dask.plan import halos
from zv_dask.plan import select as _select


class _CachedCells:
    """The store's chunk cache behind the :meth:`LevelReader.load` signature."""

    def __init__(self, store, level: int):
        self.store, self.level = store, level

    def load(self, coords, attributes, positions=True, object_ids=False):
        return self.store._load(self.level, list(coords), list(attributes), positions, object_ids)


def _is_dask_frame(points) -> bool:
    import sys

    dd = sys.modules.get("dask.dataframe")
    return dd is not None and isinstance(points, dd.DataFrame)


class NeighbourMethods:
    """Nearest neighbours, radius queries and the self-join of a
    :class:`~zv_dask.store.ZVStore`, exact, reading only the chunks near the queries."""

    def _neighbour_grid(self, level: int) -> halos.NeighbourGrid:
        def build():
            lm = self._meta.levels[level]
            plan = self._plan(level, None, None, [], object_ids=False)
            return halos.level_grid(lm, plan.cells, self._cell_lengths(plan))

        return self._memo(("neighbour_grid", level), build)

    def _neighbour_setup(self, level, columns):
        kdtree_class()
        lm = self._level(level)
        grid = self._neighbour_grid(lm.level)
        if not len(grid):
            raise QueryError("the level has no vertices, so it has no neighbours; pick a "
                             f"level that has (levels {self.levels})", store=self.url,
                             level=lm.level)
        columns = [] if columns is None else [columns] if isinstance(columns, str) \
            else list(columns)
        attrs = [a for a in lm.attributes if a in columns]
        unknown = [c for c in columns if c not in attrs and c not in self.axes]
        if unknown:
            raise ColumnNotFoundError(
                f"unknown column(s) {unknown}: columns= takes axis names {list(self.axes)} "
                f"and attributes {sorted(lm.attributes)}", store=self.url, level=lm.level)
        infos = _select.resolve_attributes(lm, attrs, self.url)
        return lm, grid, columns, infos

    def _column_meta(self, lm, columns, keys) -> pd.DataFrame:
        dtypes = {k: np.int64 for k in keys}
        dtypes["distance"] = np.float64
        info = self.attributes_at(lm.level)
        for c in columns:
            if c in self.axes:
                dtypes[c] = np.float64
            elif info[c]["width"] > 1:
                dtypes.update({f"{c}_{i}": info[c]["dtype"] for i in range(info[c]["width"])})
            else:
                dtypes[c] = info[c]["dtype"]
        return pd.DataFrame({k: np.zeros(0, v) for k, v in dtypes.items()})

    def _source(self, lm, infos, columns) -> CellSource:
        return CellSource(_CachedCells(self, lm.level), self.axes, infos, columns)

    def nearest(self, points, k: int = 1, level: int = 0, max_distance=None, columns=None):
        """The ``k`` nearest stored vertices of each query point, exactly.

        Queries are grouped by the chunk they fall in (queries in empty chunks or
        outside the store's bounds join the nearest non-empty chunk); a group reads
        its chunk and the neighbouring chunks it can need, and reads further only
        while some query's ``k``-th distance reaches a chunk not read yet.  Needs
        scipy (``pip install scipy``).

        Parameters
        ----------
        points : (N, D) array, pandas DataFrame or dask DataFrame
            Query positions; frames need one column per axis (``store.axes``).
        k : int
            Neighbours per query (>= 1).
        level : int
            Resolution level searched.
        max_distance : float, optional
            Only neighbours at distance ``<= max_distance``; a query with none has
            no row.
        columns : list of str, optional
            Axis names and attributes of the neighbour to add to each row.

        Returns
        -------
        pandas.DataFrame (dask DataFrame for a dask input, partitioned like it)
            ``query`` - the query's row position in ``points`` (0..N-1, whatever the
            frame's index); ``rank`` - 0..k-1, nearest first; ``vertex_id`` - the
            neighbour's row position in ``store.read(level=level)`` (the numbering
            :meth:`edges` uses); ``distance`` (float64); then ``columns``.  Equal
            distances rank the smaller ``vertex_id`` first.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> nn = s.nearest([[1000.0, 1000.0, 1000.0], [0.0, 0.0, 0.0]], k=2)
        >>> nn.columns.tolist(), len(nn)
        (['query', 'rank', 'vertex_id', 'distance'], 4)
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise QueryError(f"k must be an integer >= 1, got {k!r}", store=self.url)
        if max_distance is not None and not (np.isfinite(max_distance) and max_distance >= 0):
            raise QueryError(f"max_distance must be a finite number >= 0, got {max_distance!r}",
                             store=self.url)
        lm, grid, columns, infos = self._neighbour_setup(level, columns)
        meta = self._column_meta(lm, columns, ("query", "rank", "vertex_id"))
        if _is_dask_frame(points):
            return self._dask_queries(points, lm, infos, columns, meta, "nearest",
                                      k=int(k), max_distance=max_distance)
        pts = _run.query_points(points, self.axes, self.url, lm.level)
        return _run.run_nearest(grid, self._source(lm, infos, columns), pts,
                                np.arange(len(pts)), int(k), max_distance, meta, self.url,
                                lm.level)

    def within(self, points, radius: float, level: int = 0, columns=None):
        """Every (query, stored vertex) pair at distance ``<= radius``, exactly.

        Parameters and the ``query``/``vertex_id``/``distance`` columns are those of
        :meth:`nearest` (no ``rank``); rows are sorted by query, then vertex id.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> hits = s.within([[1000.0, 1000.0, 1000.0]], radius=100.0, columns=["label"])
        >>> bool((hits.distance <= 100.0).all())
        True
        """
        radius = self._check_radius(radius)
        lm, grid, columns, infos = self._neighbour_setup(level, columns)
        meta = self._column_meta(lm, columns, ("query", "vertex_id"))
        if _is_dask_frame(points):
            return self._dask_queries(points, lm, infos, columns, meta, "within",
                                      radius=radius)
        pts = _run.query_points(points, self.axes, self.url, lm.level)
        return _run.run_within(grid, self._source(lm, infos, columns), pts,
                               np.arange(len(pts)), radius, meta, self.url, lm.level)

    def pairs(self, radius: float, level: int = 0, bbox=None, lazy: bool = False):
        """Every unordered pair of stored vertices at distance ``<= radius`` (the
        self-join), exactly; each chunk is joined with the later chunks near it.

        Parameters
        ----------
        radius : float
            Largest distance of a pair (> 0).
        level : int
            Resolution level.
        bbox : (lo, hi), optional
            Closed box: only pairs with both vertices inside it.
        lazy : bool
            ``True`` gives a dask DataFrame, one partition per run of consecutive
            chunks (about 2**19 rows each).

        Returns
        -------
        pandas.DataFrame
            ``vertex_id_0 < vertex_id_1`` (row positions in ``store.read(level)``,
            also with ``bbox``) and ``distance``, sorted by the ids.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> p = s.pairs(10.0)
        >>> bool((p.vertex_id_0 < p.vertex_id_1).all())
        True
        """
        radius = self._check_radius(radius)
        lm, grid, _, infos = self._neighbour_setup(level, [])
        box = _select.normalize_bbox(bbox, self.spatial_dims, self.url)
        tasks = halos.pair_tasks(grid, radius, box)
        meta = pd.DataFrame({"vertex_id_0": np.zeros(0, np.int64),
                             "vertex_id_1": np.zeros(0, np.int64), "distance": np.zeros(0)})
        if lazy:
            from zv_dask.collections import neighbours as _coll

            return _coll.pairs_frame(self._reader(lm.level), self.axes, grid, tasks,
                                     radius, box, meta, self.url)
        return _run.run_pairs(grid, self._source(lm, [], []), tasks, radius, box, meta,
                              self.url, lm.level)

    def _check_radius(self, radius) -> float:
        try:
            r = float(radius)
        except (TypeError, ValueError):
            r = float("nan")
        if not (np.isfinite(r) and r > 0):
            raise QueryError(f"radius must be a finite number > 0, got {radius!r}",
                             store=self.url)
        return r

    def _dask_queries(self, points, lm, infos, columns, meta, kind, **kw):
        from zv_dask.collections import neighbours as _coll

        missing = [a for a in self.axes if a not in points.columns]
        if missing:
            raise ColumnNotFoundError(
                f"the query frame lacks the axis column(s) {missing}; it has "
                f"{list(points.columns)}", store=self.url, level=lm.level)
        return _coll.query_frame(points, self._reader(lm.level), self.axes, infos, columns,
                                 self._neighbour_grid(lm.level), meta, kind, self.url, **kw)
