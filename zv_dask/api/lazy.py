"""ZVStore methods that build dask collections and run statistics (mixed into ZVStore)."""

from __future__ import annotations

import numpy as np

from zv_dask.api.columns import ColumnMethods
from zv_dask.errors import QueryError
from zv_dask.format.metadata import AttributeInfo, LevelMeta
from zv_dask.plan import select as _select
from zv_dask.read.level import attr_key
from zv_dask.read.unchanged import UnchangedCheck


class DaskMethods(ColumnMethods):
    """Dask collections and reductions of a :class:`~zv_dask.store.ZVStore`."""

    # -- dask collections -----------------------------------------------------------------

    def _widths(self, level: int, attrs) -> dict:
        """Attribute widths; where row_shape is untrustworthy, from one chunk's blob sizes."""
        widths = {}
        lm = self._meta.levels[level]
        for a in attrs:
            if a.width_reliable or a.implied_by_key or lm.n_cells == 0:
                widths[a.name] = a.width
                continue
            widths[a.name] = self._memo(("width", level, a.name),
                                        lambda a=a: self._probe_width(lm, a))
        return widths

    def _probe_width(self, lm: LevelMeta, a: AttributeInfo) -> int:
        coord = tuple(lm.presence.coords(lm.presence.linear[:1])[0].tolist())
        arr = lm.arrays[a.path]
        if arr.access == "plain" and lm.vertices.access == "plain":
            nv, na = self._reader(lm.level).sizes([(lm.vertices, coord), (arr, coord)])
            if nv and na and nv > 8:
                rows = (nv - 8) // (self.spatial_dims * lm.vertices.dtype.itemsize)
                values = (na - 8) // a.dtype.itemsize
                if rows and values % rows == 0:
                    return values // rows
        cols = self._reader(lm.level).load([coord], [a], True)[0]  # compressed: read it
        v = cols[attr_key(a.name)]
        return 1 if v.ndim == 1 else v.shape[1]

    def _plan(self, level, bbox, target_resolution, attributes, object_ids=None):
        meta = self._open()
        return _select.plan_read(meta, level, bbox, target_resolution, attributes,
                               object_ids=object_ids)

    def to_dask_dataframe(self, level=None, bbox=None, target_resolution=None, attributes=None,
                          chunks_per_partition=1, object_ids=None, partition_rows=None):
        """A lazy ``dask.dataframe.DataFrame``: one partition per non-empty chunk.

        Columns: one per axis (stored dtype), one per attribute (a C-column attribute
        becomes ``name_0 ... name_{C-1}``; categoricals as pandas categoricals with the
        store's categories) and ``object_id`` when the level has an object index
        (plus ``owner_count`` on levels with ``shared_fragments``, where
        ``object_id`` is the smallest of several owners).  An attribute named like an
        axis or one of these columns gets a column of its own (``x`` -> ``attr_x``,
        see :meth:`column_names`).
        Partitions follow row-major chunk order and only chunks touching ``bbox``
        exist; rows are clipped to it.  Building it reads no chunk and computes
        nothing (``"auto"`` may list the vertex chunks once, see below); column
        selections are pushed into the reader, so ``ddf.intensity.mean()`` fetches
        only the ``intensity`` blobs.

        Queries prune themselves: in ``ddf[(ddf.x > a) & (ddf.label == 3)]`` the
        comparisons with scalars (``< <= > >= == !=``, ``between``, either operand
        order, combined with ``&`` and ``|``) are applied inside each task right
        after the columns they use are decoded (other columns are fetched only for
        chunks with a matching row), and axis comparisons drop the partitions (and
        the chunks of partly matching ones) that cannot hold a matching row, with no
        IO.  Anything else stays an ordinary dask filter with the same result.
        ``len(ddf)`` comes from metadata; with a bbox or an axis filter, chunks
        inside the box are counted from their blob sizes and only boundary chunks
        are read.  Needs dask's expression API (dask>=2025.1); without it the frame
        is a plain ``from_map`` frame (same rows, no pushdown, each partition's index
        counting from 0).

        A handle opened before the store was rewritten never returns rows decoded
        with the old dtype once the handle has listed the level's ``vertices`` array
        (``"auto"``, :meth:`to_dask_array`, :func:`read_zv`, :meth:`partitions`;
        uncompressed, unsharded vertices; one LIST per 1000 chunks, once per handle):
        every task compares each chunk's decoded rows with that listing, and
        a listing that no longer adds up to ``vertex_count`` re-reads the vertices
        document once; either raises :class:`~zv_dask.errors.StoreReadError` ("changed
        since it was opened"): open the store again.  Compressed or sharded vertices
        are checked once the handle has counted their rows from their headers
        (:meth:`to_dask_array`, :func:`read_zv`); levels without a recorded
        ``vertex_count`` are not checked.

        Parameters
        ----------
        level, bbox, target_resolution, attributes
            As for :meth:`read`.
        chunks_per_partition : int or "auto"
            An int groups this many neighbouring chunks (row-major runs) into one
            partition; useful when chunks are tiny or on a cluster with a per-task
            overhead.  On a sharded level the runs are of whole shards (row-major
            shards, at most ``chunks_per_partition`` chunks each, as many whole shards
            as fit; a larger shard is cut into runs of its own chunks), so no task reads
            part of a shard another task reads too.  ``"auto"`` groups neighbouring chunks into compact boxes of about
            ``partition_rows`` rows each (chunks in Morton/Z-order, split like an octree;
            see :meth:`partitions` for each partition's box and chunks), so a spatial
            filter can drop whole partitions.  Rows per chunk come from the vertex blob
            sizes of one listing of the level's ``vertices`` array (uncompressed,
            unsharded raw vertices; no chunk is read), otherwise, and for chunks the
            listing does not show, from the estimate ``vertex_count / n_chunks``.
            On a sharded level the boxes are made of whole shards (a shard object is
            read by one task only; a shard above ``partition_rows`` is a partition
            alone).  Rows then come partition by partition (chunks in curve order).  When every
            chunk's rows are known that way (a whole level, no ``object_ids``, and
            the listing adds up to ``vertex_count``), rows are labelled by their
            position in the frame (``compute()`` has a ``RangeIndex(0, N)`` and filters
            keep the labels of the rows they keep); otherwise, as for an int, each
            partition's index counts from 0.
        partition_rows : int, optional
            Rows per partition that ``"auto"`` aims at (default 1,000,000,
            ``zv_dask.plan.partitioning.DEFAULT_PARTITION_ROWS``); a chunk larger than
            that is a partition of its own.
        object_ids : sequence of int, optional
            Keep only the rows of these objects: partitions exist only for the chunks
            their manifests reference (the manifests of these objects are read while
            building, no chunk data), and each keeps only the rows the objects own.
            ``object_id`` is then the smallest *selected* owner of a row.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> ddf = s.to_dask_dataframe(level=0)
        >>> list(ddf.columns)
        ['x', 'y', 'z', 'intensity', 'label', 'region']
        >>> int(ddf.npartitions) == len(s.chunks(0))
        True
        >>> q = ddf[ddf.x >= 1000]
        >>> q.npartitions < ddf.npartitions, len(ddf) == s.vertex_count(0)
        (True, True)
        """
        from zv_dask.collections import build as _build
        from zv_dask.plan.partitioning import Partitioning

        plan = self._plan(level, bbox, target_resolution, attributes)
        cpp = self._partitioning(plan, chunks_per_partition, partition_rows)
        widths = self._widths(plan.level, plan.attributes)
        selection = None
        if object_ids is not None:
            plan, selection = self._object_plan(plan, object_ids)
        lm = self._meta.levels[plan.level]
        rows = (lambda cells: self._exact_rows(lm, cells)) if isinstance(cpp, Partitioning) \
            else None
        self._warn_renamed(plan.level, plan.attributes, widths)
        return _build.to_dataframe(self._reader(plan.level), plan, self.axes, widths, cpp,
                                   selection, level=lm, cell_rows=rows,
                                   expected=lambda: self._known_rows(lm.level),
                                   unchanged=self._unchanged_check(lm, plan.attributes))

    def _has_listed(self, level: int) -> bool:
        with self._lock:
            return ("listed-rows", level) in self._derived

    def _known_rows(self, level: int):
        """The level's listed rows if this handle listed it already ("auto", arrays,
        xarray), else ``None``: a frame's tasks check them at no extra IO."""
        return self._listed_rows(level) if self._has_listed(level) else None

    def _unchanged_check(self, lm: LevelMeta, attributes) -> UnchangedCheck | None:
        """For a handle that has not listed the level (so tasks cannot check rows): a
        re-read of the documents of the arrays the frame decodes, once per compute."""
        if self._has_listed(lm.level) and self._listed_rows(lm.level) is not None:
            return None
        arrays = [lm.vertices] + [lm.arrays[a.path] for a in attributes
                                  if not a.implied_by_key]
        return UnchangedCheck(self._loc, lm.level, arrays)

    def _exact_rows(self, lm: LevelMeta, cells: np.ndarray):
        """Rows of each of ``cells`` when the level's listing ("auto" made it) gave the
        rows of every chunk of the level, else ``None`` (checked before any lookup)."""
        listed = self._listed_rows(lm.level)
        if listed is None or not len(listed) or (listed < 0).any():
            return None
        return self._cell_rows(lm, cells)

    def partitions(self, level=None, bbox=None, target_resolution=None,
                   chunks_per_partition=1, partition_rows=None):
        """One row per partition of :meth:`to_dask_dataframe` with the same arguments:
        its (first) chunk coordinate (``chunk``, ``chunk_0``...), ``n_chunks``, its
        closed spatial box (``x_min``, ``x_max``, ...): the smallest and largest value
        the writer's cell rule puts in the partition's chunks, so each of its rows has
        ``x_min <= x <= x_max`` (the bbox semantics of this reader), and, when chunks
        are grouped, all its chunks (``chunks``).

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> s.partitions(level=0).iloc[0]["chunk"]
        (0, 0, 0)
        >>> auto = s.partitions(level=0, chunks_per_partition="auto", partition_rows=2000)
        >>> int(auto["n_chunks"].sum()) == len(s.chunks(0))
        True
        """
        from zv_dask.collections import build as _build

        plan = self._plan(level, bbox, target_resolution, [])
        cpp = self._partitioning(plan, chunks_per_partition, partition_rows)
        return _build.partitions_table(plan, self._meta.levels[plan.level], self.axes, cpp)

    def to_dask_array(self, name: str = "positions", level=None, bbox=None,
                      target_resolution=None, chunks_per_partition=1, partition_rows=None):
        """A lazy dask array, one block per non-empty chunk touching ``bbox``.

        With a ``bbox``, chunks that lie only partly inside it join a neighbouring
        block (row order unchanged) that holds a chunk wholly inside it, so no block
        turns out empty and reductions such as ``.min(axis=0)`` work; when no chunk
        lies wholly inside, all are one block.

        ``"positions"`` gives (N, D) in the stored dtype; an attribute name gives (N,)
        or (N, C) (categoricals as integer codes).  Block lengths are exact when no
        bbox clips rows and the vertex chunks are uncompressed and unsharded: they
        come from the blob sizes of one listing of the level's ``vertices`` array
        (one LIST per 1000 chunks on object stores, one directory walk locally; no
        HEAD or stat per chunk, no vertex data).  Sharded or zstd/blosc-compressed
        vertex chunks give exact lengths too, from their headers (the shard indexes,
        and the first 32 bytes of each compressed chunk; read once per handle and
        level, see :mod:`zv_dask.read.rows`).  Otherwise (a bbox, gzip, a store that
        refuses listings) they are NaN (``.compute_chunk_sizes()``).  ``chunks_per_partition`` and ``partition_rows``
        group chunks into blocks as in :meth:`to_dask_dataframe`.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> a = s.to_dask_array("positions", level=1)
        >>> a.shape
        (504, 3)
        """
        from zv_dask.collections import build as _build

        attrs = [] if name == "positions" else [self._stored_name(level, target_resolution,
                                                                   name)]
        plan = self._plan(level, bbox, target_resolution, attrs, object_ids=False)
        lm = self._meta.levels[plan.level]
        attribute = plan.attributes[0] if plan.attributes else None
        if attribute is None:
            width, dtype = self.spatial_dims, lm.vertices.dtype
        else:
            width = self._widths(plan.level, [attribute])[attribute.name]
            dtype = np.dtype(np.int64) if attribute.is_categorical else attribute.dtype
        cpp = self._partitioning(plan, chunks_per_partition, partition_rows)
        groups = _build.nonempty_groups(plan.cells, lm, plan.bbox, cpp)
        lengths = self._block_lengths(lm, plan, groups)
        rows = [self._cell_rows(lm, g) for g in groups]
        return _build.to_array(self._reader(plan.level), plan, name, attribute, lengths, width,
                               dtype, cpp, groups, rows=rows)

    def _block_lengths(self, lm: LevelMeta, plan, groups) -> list:
        nan = [float("nan")] * len(groups)
        if plan.bbox is not None or not groups:
            return nan
        rows = [self._cell_rows(lm, g, count=True) for g in groups]
        if any((r < 0).any() for r in rows):
            return nan
        return [int(r.sum()) for r in rows]

    # -- partitioning and rows per chunk -----------------------------------------------

    def _partitioning(self, plan, chunks_per_partition, partition_rows=None):
        """``chunks_per_partition`` checked: an int >= 1, or a Partitioning ("auto")."""
        from zv_dask.plan.partitioning import (DEFAULT_PARTITION_ROWS, Partitioning, auto_groups,
                                               shard_groups)
        from zv_dask.plan.shard_runs import shard_runs

        cpp = chunks_per_partition
        if isinstance(cpp, Partitioning):
            return cpp
        if partition_rows is not None:
            if isinstance(cpp, str) and cpp == "auto":
                pass
            else:
                raise QueryError(f"partition_rows applies to chunks_per_partition='auto', "
                                 f"not {cpp!r}", store=self.url)
            if isinstance(partition_rows, bool) or not isinstance(
                    partition_rows, (int, np.integer)) or partition_rows < 1:
                raise QueryError(f"partition_rows must be an integer >= 1, got "
                                 f"{partition_rows!r}", store=self.url)
        if isinstance(cpp, str):
            if cpp != "auto":
                raise QueryError(f"chunks_per_partition must be an integer >= 1 or 'auto', "
                                 f"got {cpp!r}", store=self.url)
            lm = self._meta.levels[plan.level]
            target = DEFAULT_PARTITION_ROWS if partition_rows is None else int(partition_rows)
            rows = self._cell_rows(lm, plan.cells, estimate=True)
            lead = lm.rank - len(lm.chunk_shape)
            lay = lm.vertices.shards
            groups = auto_groups(plan.cells, rows, target, lead) if lay is None else \
                shard_groups(plan.cells, rows, target, lay.shard_shape, lm.vertices.origin, lead)
            return Partitioning.from_indices(plan.cells, groups)
        if isinstance(cpp, bool) or not isinstance(cpp, (int, np.integer)) or cpp < 1:
            raise QueryError(f"chunks_per_partition must be an integer >= 1 or 'auto', "
                             f"got {cpp!r}", store=self.url)
        lm = self._meta.levels[plan.level]
        lay = lm.vertices.shards
        if cpp > 1 and lay is not None:  # runs of whole shards: one task per shard object
            return Partitioning.from_indices(plan.cells, shard_runs(
                plan.cells, int(cpp), lay.shard_shape, lm.vertices.origin,
                lm.rank - len(lm.chunk_shape)))
        return int(cpp)

    def _auto_partitioning(self, level: int, partition_rows: int):
        """The "auto" grouping of a whole level (memoised); narrower plans use its groups
        trimmed to their cells."""
        def make():
            plan = self._plan(level, None, None, [], object_ids=False)
            return self._partitioning(plan, "auto", int(partition_rows))
        return self._memo(("auto-partitioning", level, int(partition_rows)), make)

    def _listed_rows(self, level: int, count: bool = False):
        """Rows of every non-empty cell of a level (aligned with the presence list; -1
        where unknown) from one listing of its ``vertices`` array, or ``None`` when
        blob sizes do not give rows (compressed, sharded or Draco vertices).  There,
        with ``count``, from the chunks' headers (:func:`zv_dask.read.rows.vertex_rows`;
        once per handle and level, and then returned without ``count`` too)."""
        lm = self._meta.levels[level]
        arr = lm.vertices
        if arr.access != "plain" or (arr.encoding or "raw") != "raw":
            from zv_dask.read import rows as _rows

            key = ("listed-rows", level)
            if count and _rows.countable(arr):
                return self._memo(key, lambda: _rows.vertex_rows(self._loc, lm,
                                                                 self.spatial_dims))
            with self._lock:
                return self._derived.get(key)

        def make():
            # the location's listing: tasks counting rows in this process share it
            listing = self._loc.listed_sizes(f"{level}/{arr.path}") or {}
            idx, sizes = _cell_keys(listing, f"{level}/{arr.path}/{arr.chunk_key_prefix}",
                                    arr.chunk_separator, arr.rank)
            rows = np.full(lm.n_cells, -1, np.int64)
            if not len(idx) or not lm.n_cells:
                return rows
            pres = lm.presence
            ok = ((idx >= 0) & (idx < np.asarray(pres.shape))).all(1)
            lin = np.ravel_multi_index(idx[ok].T, pres.shape)
            sizes = sizes[ok]
            pos = np.clip(np.searchsorted(pres.linear, lin), 0, max(len(pres.linear) - 1, 0))
            row = self.spatial_dims * arr.dtype.itemsize
            good = (pres.linear[pos] == lin) & (sizes >= 8) & ((sizes - 8) % row == 0)
            rows[pos[good]] = (sizes[good] - 8) // row
            vc = lm.vertex_count
            if vc and (rows >= 0).all() and int(rows.sum()) != vc:
                self._check_vertices_unchanged(lm)
            return rows
        return self._memo(("listed-rows", level), make)

    def _check_vertices_unchanged(self, lm: LevelMeta) -> None:
        """The listing disagrees with ``vertex_count``: a damaged count, or a store
        rewritten since it was opened.  One re-read of the ``vertices`` document tells
        them apart; a new dtype (its rows would decode as garbage) raises."""
        UnchangedCheck(self._loc, lm.level, [lm.vertices])()

    def _cell_rows(self, lm: LevelMeta, cells: np.ndarray, estimate: bool = False,
                   count: bool = False):
        """Rows of each cell from the listing (-1 unknown; with ``estimate`` the unknown
        ones get ``vertex_count / n_chunks`` instead; ``count``: see _listed_rows)."""
        cells = np.asarray(cells, np.int64).reshape(len(cells), -1)
        rows = np.full(len(cells), -1, np.int64)
        # "auto" plans a compressed or sharded level from the estimate whether or not
        # the handle counted it: the same partitions on every handle
        counted_only = estimate and lm.vertices.access != "plain"
        listed = self._listed_rows(lm.level, count) if len(cells) and not counted_only \
            else None
        if listed is not None:
            pres = lm.presence
            lin = np.ravel_multi_index((cells - np.asarray(pres.origin)).T, pres.shape)
            rows = listed[np.searchsorted(pres.linear, lin)]
        if not estimate:
            return rows
        guess = max(lm.vertex_count or 0, 0) / max(lm.n_cells, 1)  # None: unknown
        return np.where(rows >= 0, rows.astype(np.float64), max(guess, 1.0))

    # -- statistics (see zv_dask.stats) ----------------------------------------------------

    def describe(self, columns=None, level=None, bbox=None, target_resolution=None,
                 split_every=None):
        """:func:`zv_dask.stats.describe` on this store (lazy)."""
        from zv_dask import stats

        return stats.describe(self, columns, level, bbox, target_resolution, split_every)

    def histogram(self, column, bins=10, range=None, level=None, bbox=None,
                  target_resolution=None):
        """:func:`zv_dask.stats.histogram` on this store."""
        from zv_dask import stats

        return stats.histogram(self, column, bins, range, level, bbox, target_resolution)

    def bounds(self, level=None, bbox=None, target_resolution=None):
        """:func:`zv_dask.stats.bounds` on this store (exact data bounds, lazy)."""
        from zv_dask import stats

        return stats.bounds(self, level, bbox, target_resolution)

    def density(self, resolution, level=None, bbox=None, target_resolution=None):
        """:func:`zv_dask.stats.density` on this store (voxel counts, lazy)."""
        from zv_dask import stats

        return stats.density(self, resolution, level, bbox, target_resolution)


def _cell_keys(listing: dict, base: str, sep: str, rank: int):
    """``(cells (K, rank) int64, sizes (K,) int64)`` of the listed keys ``base`` +
    ``rank`` separator-joined grid indices; other keys are ignored."""
    from zv_dask.format.arrays import parse_keys

    keys, sizes = [], []
    n = len(base)
    for key, size in listing.items():
        if key.startswith(base):
            keys.append(key[n:])
            sizes.append(size)
    if sep != ".":
        keys = [k.replace(sep, ".") for k in keys]
    try:  # the usual case: every key is a chunk key (vectorised)
        cells = parse_keys(keys, rank)
    except ValueError:  # stray files: keep the keys that are chunk keys
        good = [i for i, k in enumerate(keys)
                if len(k.split(".")) == rank and all(p.isdigit() for p in k.split("."))]
        keys = [keys[i] for i in good]
        sizes = [sizes[i] for i in good]
        cells = parse_keys(keys, rank)
    return cells.reshape(len(keys), rank), np.asarray(sizes, np.int64)
