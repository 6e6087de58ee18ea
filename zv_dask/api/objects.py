"""ZVStore methods for objects, graphs and meshes (mixed into ZVStore)."""

from __future__ import annotations

import numpy as np

from zv_dask.plan import select as _select
from zv_dask.read.level import clip_columns
from zv_dask.errors import (
    ArrayNotFoundError,
    ChunkDecodeError,
    QueryError,
)


class ObjectMethods:
    """Objects, edges and faces of a :class:`~zv_dask.store.ZVStore`."""

    def _object_level(self, level):
        """The level's metadata; an error when the level has no object index."""
        lm = self._level(level)
        if lm.object_index is None:
            raise ArrayNotFoundError("this level has no object index, so it has no objects",
                                     store=self.url, level=lm.level, array="object_index")
        return lm

    # -- objects, graphs, meshes (zv_dask.read.objects, zv_dask.read.links) ----------------------

    def _object_ids_all(self, level: int) -> np.ndarray:
        """Object id of every object-index row of ``level`` (read once, cached)."""
        return self._memo(("object_ids", level), lambda: self._reader(level).object_ids())

    def _object_rows(self, level: int, object_ids) -> tuple:
        """(index rows, ids) of ``object_ids``; ``None`` means every row."""
        from zv_dask.read import objects as _objects

        all_ids = self._object_ids_all(level)
        if object_ids is None:
            return np.arange(len(all_ids)), all_ids
        rows = _objects.rows_of_ids(all_ids, object_ids, self.url, level)
        return rows, all_ids[rows]

    def _object_plan(self, plan, object_ids):
        """Restrict a plan to the chunks that the objects' manifests reference."""
        from zv_dask.read import objects as _objects

        lm = self._meta.levels[plan.level]
        if lm.object_index is None:
            raise ArrayNotFoundError("object_ids= needs an object index, which this level "
                                     "lacks", store=self.url, level=plan.level,
                                     array="object_index")
        rows, ids = self._object_rows(plan.level, object_ids)
        selection = _objects.selection_by_cell(self._reader(plan.level).manifests(rows), ids)
        keep = [i for i, c in enumerate(plan.cells.tolist()) if tuple(c) in selection]
        from dataclasses import replace

        plan = replace(plan, cells=plan.cells[keep], object_ids=True)
        return plan, selection

    def _rows_in_box(self, lm, bbox, rows, ids, keep_order: bool) -> tuple:
        """(index rows, ids) of those of ``rows`` whose objects have a vertex in the
        closed box (object-index order, or the given order with ``keep_order``)."""
        from zv_dask.format.owners import OWNER_COLUMN
        from zv_dask.plan import regions as _plan_regions
        from zv_dask.read import regions as _regions

        box = _select.normalize_bbox(bbox, self.spatial_dims, self.url)
        plan = _plan_regions.plan_region(lm, box)
        found = _regions.objects_in_box(self._reader(lm.level), plan)
        all_ids = self._object_ids_all(lm.level)
        ascending = len(all_ids) < 2 or bool((all_ids[1:] > all_ids[:-1]).all())
        order = None if ascending else np.argsort(all_ids, kind="stable")
        by_id = all_ids if ascending else all_ids[order]  # the ids, sorted
        pos = np.minimum(np.searchsorted(by_id, found), max(len(by_id) - 1, 0))
        known = by_id[pos] == found if len(by_id) else np.zeros(len(found), bool)
        if not known.all():
            raise ChunkDecodeError(
                f"object {int(found[~known][0])} owns a fragment in the box but is not in the "
                "object index: the owner column is stale; rebuild it", store=self.url,
                level=lm.level, array=OWNER_COLUMN)
        if keep_order:
            keep = np.isin(ids, found)
            return rows[keep], ids[keep]
        box_rows = pos if ascending else np.sort(order[pos])
        return box_rows, all_ids[box_rows]

    def objects(self, level: int = 0, bbox=None, attributes=None, rows_per_partition=None):
        """Object attributes as a lazy dask DataFrame indexed by ``object_id``.

        Reads only ``object_index/object_ids`` and ``object_attributes/*`` (never a
        vertex blob), one partition per block of object-index rows.  A C-column
        attribute becomes ``name_0 ... name_{C-1}``.  Absent values are shown the way
        the store marks them: NaN for floats; the INT_MIN / UINT_MAX "absent"
        sentinels of integer attributes become ``<NA>`` in pandas nullable dtypes
        (``Int32``, ``UInt16``...).  Every object-index row is listed: at a coarse
        pyramid level, objects dropped by sparsity keep their row with absent values
        (use :meth:`read_objects` to see which have vertices).

        With ``bbox`` the rows are those of the objects with at least one vertex in
        the closed box (:meth:`read_objects` with ``bbox`` reads the same objects).
        They are found when the frame is built: the box's cells are read then
        (vertices, fragment index and the owner column or the level's manifests,
        see :meth:`read_objects`); the tasks read the object attributes of those
        rows only.

        Parameters
        ----------
        level : int
            Resolution level.
        bbox : (lo, hi), optional
            Keep the objects with a vertex ``lo <= p <= hi`` (closed box).
        attributes : list of str, optional
            Object attribute names; ``None`` all, ``[]`` none (the index only).
        rows_per_partition : int, optional
            Object-index rows per partition (default: the ``object_ids`` array's
            chunk length, 65,536 as the writers store it).

        Returns
        -------
        dask.dataframe.DataFrame

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv("streamlines.zarrvectors")          # doctest: +SKIP
        >>> objs = s.objects()                                        # doctest: +SKIP
        >>> ids = objs.index[objs.mean_fa > 0.5].compute()            # doctest: +SKIP
        >>> r = s.read_objects(ids)                                   # doctest: +SKIP
        """
        from zv_dask.collections import build as _build
        from zv_dask.read import objects as _objects

        lm = self._object_level(level)
        oi = lm.object_index
        arrays = _objects.object_attribute_arrays(lm, attributes, self.url)
        n_rows = oi.object_ids.shape[0] if oi.object_ids is not None else oi.num_objects
        if rows_per_partition is None:
            src = oi.object_ids or (arrays[0][1] if arrays else None)
            grid = (src.document.get("chunk_grid") or {}).get("configuration", {}) \
                if src is not None else {}
            rows_per_partition = int((grid.get("chunk_shape") or [65536])[0])
        if int(rows_per_partition) < 1:
            raise QueryError(f"rows_per_partition must be >= 1, got {rows_per_partition}",
                             store=self.url)
        if bbox is None:
            ranges = _objects.row_ranges(n_rows, int(rows_per_partition))
        else:
            every = np.arange(n_rows)
            rows, _ = self._rows_in_box(lm, bbox, every, every, False)
            ranges = _objects.selected_row_ranges(rows, int(rows_per_partition))
        return _build.objects_frame(self._reader(lm.level), arrays, ranges)

    def read_objects(self, object_ids=None, level: int = 0, bbox=None, attributes=None) -> dict:
        """Whole objects (streamlines, graph components, meshes...) into numpy.

        Each object's vertices come in stored (manifest) order, reassembled across
        chunks.  Only the chunks the selected objects live in are fetched (one
        concurrent batch: vertices, fragment index and the requested attributes);
        the level's manifests are read from ``object_index/manifests`` for the
        selected rows only.

        With ``bbox`` the objects are those with at least one vertex in the closed
        box, each whole (all its vertices, also those outside the box), exactly
        (vertices are checked, not chunks).  The box's cells are read first (vertices
        and fragment index) to find them; their owners come from the level's owner
        column ``fragment_attributes/object_id`` when it has one (then no manifest
        is decoded but the selected objects'), else from the level's owner table
        (every manifest decoded once per process, vectorised).

        Parameters
        ----------
        object_ids : sequence of int, optional
            Objects to read, in this order (duplicates dropped).  ``None`` reads every
            object present at the level (non-empty manifest), in object-index order.
            An id that exists but has no vertices at this level (dropped from a
            pyramid level) gets zero rows; an unknown id raises ``QueryError``.
        level : int
            Resolution level.
        bbox : (lo, hi), optional
            Keep the objects with a vertex ``lo <= p <= hi`` (closed, one value per
            axis); with ``object_ids`` too, those of them (in their order).
        attributes : list of str, optional
            Per-vertex attributes; ``None`` all, ``[]`` none.

        Returns
        -------
        dict
            ``level``; ``object_ids`` (K,); ``offsets`` (K+1,) so that object ``k``
            is rows ``offsets[k]:offsets[k+1]``; ``positions`` (N, D);
            ``attributes`` {name: (N,) or (N, C)} (the width comes from the bytes;
            categoricals decoded).  On ``shared_fragments`` levels a stored vertex
            appears once per object that owns it, and ``owner_count`` (N,) says how
            many objects own it (this needs the level's owner table: every manifest
            is decoded once per process).

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv("streamlines.zarrvectors")          # doctest: +SKIP
        >>> r = s.read_objects([3, 5])                                # doctest: +SKIP
        >>> line3 = r["positions"][r["offsets"][0]:r["offsets"][1]]   # doctest: +SKIP
        >>> through = s.read_objects(bbox=([0, 0, 0], [100, 100, 100]))  # doctest: +SKIP
        """
        from zv_dask.read import objects as _objects

        lm = self._object_level(level)
        attrs = list(_select.resolve_attributes(lm, attributes, self.url))
        rows, ids = self._object_rows(lm.level, object_ids)
        if bbox is not None:
            rows, ids = self._rows_in_box(lm, bbox, rows, ids, object_ids is not None)
        reader = self._reader(lm.level)
        manifests = reader.manifests(rows)
        if object_ids is None:
            present = [i for i, (_, f) in enumerate(manifests) if len(f)]
            manifests = [manifests[i] for i in present]
            ids = ids[present]
        return _objects.gather(reader, manifests, ids, attrs, bool(lm.shared_fragments),
                               self.spatial_dims, self._widths(lm.level, attrs))

    def _cell_lengths(self, plan) -> list:
        """Exact rows per planned cell after the plan's bbox clip.

        Uncompressed vertex chunks: from the blob sizes of one listing of the
        level's ``vertices`` array (no HEAD/stat per chunk), no data read.  With a
        bbox only the chunks that straddle its faces are read and counted (chunks
        entirely inside use their size); compressed (zstd, blosc) or sharded vertex
        chunks of a whole level: from their headers (:mod:`zv_dask.read.rows`); the
        others, and chunks the listing does not show, are read and counted (one
        vertex blob per chunk)."""
        lm = self._meta.levels[plan.level]
        coords = [tuple(c) for c in plan.cells.tolist()]
        if not coords:
            return []
        lead = lm.rank - len(lm.chunk_shape)
        inside = np.zeros(len(coords), bool)
        # sizes, or (compressed, sharded; whole levels) headers: zv_dask.read.rows
        if self._listed_rows(lm.level, count=plan.bbox is None) is not None:
            inside[:] = True
            if plan.bbox is not None:  # a chunk whose box lies in the bbox keeps every row
                lo, hi = plan.bbox
                box_lo, box_hi = _select.cell_boxes(_select.cell_rule(lm), plan.cells[:, lead:])
                inside = ((box_lo >= lo) & (box_hi <= hi)).all(1)
        out = [0] * len(coords)
        if inside.any():
            idx = np.flatnonzero(inside)
            rows = self._cell_rows(lm, plan.cells[idx])
            for i, n in zip(idx.tolist(), rows.tolist()):
                if n < 0:
                    inside[i] = False  # not listed with the plain framing: count it
                else:
                    out[i] = n
        rest = np.flatnonzero(~inside).tolist()
        if rest:
            cells = self._load(plan.level, [coords[i] for i in rest], [], True, False)
            for i, cols in zip(rest, cells):
                out[i] = len(clip_columns({"positions": cols["positions"]}, plan.bbox)["positions"])
        return out

    def _link_family(self, level: int):
        """``links/0`` metadata of a level (documents and listings; cached)."""
        from zv_dask.read import links as _links

        return self._memo(("links", level), lambda: _links.load_family(
            self._loc, self._meta.levels[level], self.url))

    def _row_starts(self, level: int):
        """First level-wide row of every non-empty cell (from blob sizes when raw)."""
        from zv_dask.read import links as _links

        lm = self._meta.levels[level]
        plan = self._plan(level, None, None, [], object_ids=False)
        return _links.RowStarts(lm.presence.shape, lm.presence.origin, lm.presence.linear,
                                self._cell_lengths(plan))

    def _connectivity(self, level, kinds: tuple, what: str):
        lm = self._level(level)
        geom = self.geometry_type
        if geom not in kinds:
            hint = "faces()" if geom == "mesh" else "edges()" if geom in ("graph", "skeleton") \
                else "read_objects() (polylines are their vertices in order)"
            raise QueryError(f"{what} is for {' and '.join(kinds)} stores; this store holds "
                             f"{geom!r}: use {hint}", store=self.url, level=lm.level)
        family = self._link_family(lm.level)
        coarse = lm.attrs.get("coarsening_method", "none") not in (None, "none")
        if family is None and coarse:
            raise ArrayNotFoundError(
                "this pyramid level has no links/0: coarse levels are metavertex clouds "
                "without edges or faces (use level 0)", store=self.url, level=lm.level,
                array="links/0")
        return lm, family

    def edges(self, level: int = 0, bbox=None, attributes=None):
        """Edges of a graph or skeleton as a lazy dask DataFrame.

        Columns ``source`` and ``target`` are global vertex ids: the row positions of
        :meth:`read` at that level without a bbox (cumulative rows over chunks in
        numeric row-major order).  Graphs: every ``links/0`` record once, in the input
        endpoint order (restored from the stored permutation), one partition per
        chunk holding records, plus one column per link attribute
        (``link_attributes/<name>``; ``name_0...`` for C columns).  Skeletons: one
        row per child, ``source`` = child and ``target`` = parent (implicit parent =
        previous row within a fragment, overridden by explicit records), one
        partition per vertex chunk (no link attributes).  Edge order differs from
        zarr-vectors' (which enumerates chunks as strings); compare as sets.

        Building it reads ``zarr.json`` documents and lists the ``links`` groups;
        global ids need each chunk's row count, taken from the vertex blob sizes
        (compressed vertex chunks are read and counted once).

        Parameters
        ----------
        level : int
            Resolution level (coarse pyramid levels have no edges).
        bbox : (lo, hi), optional
            Keep edges whose two endpoints lie in the closed box (the vertex chunks
            of those endpoints are read to check); ids stay level-wide.
        attributes : list of str, optional
            Link attributes (graphs); ``None`` all, ``[]`` none.

        Returns
        -------
        dask.dataframe.DataFrame

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv("graph.zarrvectors")                  # doctest: +SKIP
        >>> e = s.edges().compute()                                   # doctest: +SKIP
        >>> p = s.read()["positions"]                                 # doctest: +SKIP
        >>> seg = p[e.target.to_numpy()] - p[e.source.to_numpy()]     # doctest: +SKIP
        """
        from zv_dask.collections import build as _build
        from zv_dask.read import links as _links

        lm, family = self._connectivity(level, ("graph", "skeleton"), "edges()")
        box = _select.normalize_bbox(bbox, self.spatial_dims, self.url)
        kind = "skeleton" if self.geometry_type == "skeleton" else "graph"
        if family is None:  # level 0 without records: an empty family
            family = _links.LinkFamily(lm.level, 2, False, ())
        known = dict(family.attributes) if kind == "graph" else {}
        if attributes is None:
            names = sorted(known)
        else:
            names = [attributes] if isinstance(attributes, str) else list(attributes)
            bad = [n for n in names if n not in known]
            if bad:
                raise ArrayNotFoundError(f"no link attribute {bad[0]!r}; available: "
                                         f"{sorted(known)}", store=self.url, level=lm.level,
                                         array=f"link_attributes/{bad[0]}")
        widths = {n: self._link_width(family, n) for n in names}
        func = _links.LinkReader(self._reader(lm.level), family, self._row_starts(lm.level),
                                 kind, box, names, widths)
        if kind == "skeleton":
            coords = self._plan(lm.level, box, None, [], object_ids=False).cells
        else:
            coords = family.source_cells()
            coords = coords[_links.cells_in_bbox(coords, lm, box)]
        return _build.edges_frame(func, coords.tolist(), lm.level)

    def _link_width(self, family, name: str) -> int:
        """Columns of a link attribute: row_shape, or (when the writer left it empty)
        value bytes / record count of one chunk, from the blob sizes."""
        segs = family.attributes[name]
        first = next(iter(segs.values()))
        rs = first.attrs.get("row_shape") or []
        if rs:
            return int(np.prod(rs))
        for lk in family.arrays:
            am = segs.get(lk.segment)
            if am is None or not lk.cells or am.access != "plain" or lk.arr.access != "plain":
                continue
            c = min(lk.cells)
            nl, na = self._reader(family.level).sizes([(lk.arr, c), (am, c)])
            if not nl or not na:
                continue
            rec = 8 * (lk.width + int(lk.has_perm))
            body = nl - 8 - (0 if lk.intra else 16)  # ragged: K=1 and one offset
            if body > 0 and body % rec == 0 and ((na - 8) // am.dtype.itemsize) % (body // rec) == 0:
                return ((na - 8) // am.dtype.itemsize) // (body // rec)
        return 1

    def faces(self, level: int = 0, bbox=None):
        """Mesh faces as a lazy (M, L) int64 dask array of global vertex ids.

        Each face's stored winding is restored (the Lehmer-coded permutation of
        cross-chunk records); vertex ids are the row positions of :meth:`read` at
        that level.  One block per chunk holding face records; block lengths are
        unknown until computed (``np.asarray(store.faces())`` or
        ``.compute_chunk_sizes()``).  ``bbox`` keeps faces whose vertices all lie in
        the closed box.  Building it reads metadata only (see :meth:`edges`).

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv("mesh.zarrvectors")                   # doctest: +SKIP
        >>> f = s.faces().compute()                                   # doctest: +SKIP
        >>> f.shape[1]                                                # doctest: +SKIP
        3
        """
        from zv_dask.collections import build as _build
        from zv_dask.read import links as _links

        lm, family = self._connectivity(level, ("mesh",), "faces()")
        box = _select.normalize_bbox(bbox, self.spatial_dims, self.url)
        if family is None:
            family = _links.LinkFamily(lm.level, 3, False, ())
        func = _links.LinkReader(self._reader(lm.level), family, self._row_starts(lm.level),
                                 "mesh", box)
        coords = family.source_cells()
        coords = coords[_links.cells_in_bbox(coords, lm, box)]
        return _build.faces_array(func, coords.tolist(), family.link_width)
