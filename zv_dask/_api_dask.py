"""ZVStore methods that build dask collections and run statistics (mixed into ZVStore)."""

from __future__ import annotations

import numpy as np

from . import _plan
from ._metadata import AttributeInfo, LevelMeta
from .errors import QueryError


class DaskMethods:
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
        v = cols[a.name]
        return 1 if v.ndim == 1 else v.shape[1]

    def _plan(self, level, bbox, target_resolution, attributes, object_ids=None):
        meta = self._open()
        return _plan.plan_read(meta, level, bbox, target_resolution, attributes,
                               object_ids=object_ids)

    def to_dask_dataframe(self, level=None, bbox=None, target_resolution=None, attributes=None,
                          chunks_per_partition: int = 1, object_ids=None):
        """A lazy ``dask.dataframe.DataFrame``: one partition per non-empty chunk.

        Columns: one per axis (stored dtype), one per attribute (a C-column attribute
        becomes ``name_0 ... name_{C-1}``; categoricals as pandas categoricals with the
        store's categories) and ``object_id`` when the level has an object index
        (plus ``owner_count`` on levels with ``shared_fragments``, where
        ``object_id`` is the smallest of several owners).
        Partitions follow row-major chunk order and only chunks touching ``bbox``
        exist; rows are clipped to it.  Building it reads no chunk and computes
        nothing; column selections are pushed into the reader, so
        ``ddf.intensity.mean()`` fetches only the ``intensity`` blobs.

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
        is a plain ``from_map`` frame (same results, no pushdown).

        Parameters
        ----------
        level, bbox, target_resolution, attributes
            As for :meth:`read`.
        chunks_per_partition : int
            Group this many neighbouring chunks (row-major) into one partition; useful
            when chunks are tiny or on a cluster with a per-task overhead.
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
        if int(chunks_per_partition) < 1:
            raise QueryError(f"chunks_per_partition must be >= 1, got {chunks_per_partition}",
                             store=self.url)
        from . import _graph

        plan = self._plan(level, bbox, target_resolution, attributes)
        widths = self._widths(plan.level, plan.attributes)
        selection = None
        if object_ids is not None:
            plan, selection = self._object_plan(plan, object_ids)
        return _graph.to_dataframe(self._reader(plan.level), plan, self.axes, widths,
                                   int(chunks_per_partition), selection,
                                   level=self._meta.levels[plan.level])

    def partitions(self, level=None, bbox=None, target_resolution=None,
                   chunks_per_partition: int = 1):
        """One row per partition of :meth:`to_dask_dataframe` with the same arguments:
        its chunk coordinate (``chunk``, ``chunk_0``...) and closed spatial box
        (``x_min``, ``x_max``, ...): the smallest and largest value the writer's cell
        rule puts in the partition's chunks, so each of its rows has
        ``x_min <= x <= x_max`` (the bbox semantics of this reader).

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> s.partitions(level=0).iloc[0]["chunk"]
        (0, 0, 0)
        """
        from . import _graph

        plan = self._plan(level, bbox, target_resolution, [])
        return _graph.partitions_table(plan, self._meta.levels[plan.level], self.axes,
                                       int(chunks_per_partition))

    def to_dask_array(self, name: str = "positions", level=None, bbox=None,
                      target_resolution=None, chunks_per_partition: int = 1):
        """A lazy dask array, one block per non-empty chunk touching ``bbox``.

        With a ``bbox``, chunks that lie only partly inside it join a neighbouring
        block (row order unchanged) that holds a chunk wholly inside it, so no block
        turns out empty and reductions such as ``.min(axis=0)`` work; when no chunk
        lies wholly inside, all are one block.

        ``"positions"`` gives (N, D) in the stored dtype; an attribute name gives (N,)
        or (N, C) (categoricals as integer codes).  Block lengths are exact when no
        bbox clips rows and the vertex chunks are uncompressed: they come from the
        blob sizes (a ``stat`` per chunk locally, a HEAD per chunk on object stores),
        never from vertex data; otherwise they are NaN (``.compute_chunk_sizes()``).

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> a = s.to_dask_array("positions", level=1)
        >>> a.shape
        (504, 3)
        """
        from . import _graph

        attrs = [] if name == "positions" else [name]
        plan = self._plan(level, bbox, target_resolution, attrs, object_ids=False)
        lm = self._meta.levels[plan.level]
        attribute = plan.attributes[0] if plan.attributes else None
        if attribute is None:
            width, dtype = self.spatial_dims, lm.vertices.dtype
        else:
            width = self._widths(plan.level, [attribute])[attribute.name]
            dtype = np.dtype(np.int64) if attribute.is_categorical else attribute.dtype
        groups = _graph.nonempty_groups(plan.cells, lm, plan.bbox, int(chunks_per_partition))
        lengths = self._block_lengths(lm, plan, groups)
        return _graph.to_array(self._reader(plan.level), plan, name, attribute, lengths, width,
                               dtype, int(chunks_per_partition), groups)

    def _block_lengths(self, lm: LevelMeta, plan, groups) -> list:
        nan = [float("nan")] * len(groups)
        if plan.bbox is not None or lm.vertices.access != "plain" or not groups:
            return nan
        sizes = self._reader(lm.level).sizes([(lm.vertices, tuple(c))
                                              for c in plan.cells.tolist()])
        if any(s is None or s < 8 for s in sizes):
            return nan
        row = self.spatial_dims * lm.vertices.dtype.itemsize
        rows = [(s - 8) // row for s in sizes]
        out, i = [], 0
        for g in groups:
            out.append(int(sum(rows[i:i + len(g)])))
            i += len(g)
        return out

    # -- statistics (see zv_dask.stats) ----------------------------------------------------

    def describe(self, columns=None, level=None, bbox=None, target_resolution=None,
                 split_every=None):
        """:func:`zv_dask.stats.describe` on this store (lazy)."""
        from . import stats

        return stats.describe(self, columns, level, bbox, target_resolution, split_every)

    def histogram(self, column, bins=10, range=None, level=None, bbox=None,
                  target_resolution=None):
        """:func:`zv_dask.stats.histogram` on this store."""
        from . import stats

        return stats.histogram(self, column, bins, range, level, bbox, target_resolution)

    def bounds(self, level=None, bbox=None, target_resolution=None):
        """:func:`zv_dask.stats.bounds` on this store (exact data bounds, lazy)."""
        from . import stats

        return stats.bounds(self, level, bbox, target_resolution)

    def density(self, resolution, level=None, bbox=None, target_resolution=None):
        """:func:`zv_dask.stats.density` on this store (voxel counts, lazy)."""
        from . import stats

        return stats.density(self, resolution, level, bbox, target_resolution)
