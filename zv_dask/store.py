"""``open_zv`` and :class:`ZVStore`: the seed's eager API on top of plan/read/decode."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from . import _decode as dec
from . import _plan
from ._metadata import AttributeInfo, LevelMeta, StoreMeta
from ._read import LevelReader, clip_columns, decode_categorical_columns
from ._store import StoreLocation, read_metadata
from .errors import (
    ArrayNotFoundError,
    ChunkDecodeError,
    QueryError,
    StoreClosedError,
    StoreReadError,
)


def open_zv(path_or_url, *, storage_options=None, cache_size: int = 128, n_workers=None,
            retries: int = 4, retry_backoff: float = 0.2) -> "ZVStore":
    """Open a Zarr Vectors store; reads the ``zarr.json`` documents only.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        A local path or an fsspec URL (``s3://``, ``gs://``, ``memory://``, ``file://``).
    storage_options : dict, optional
        Passed to fsspec (credentials, ``endpoint_url``, ``anon=True``...).  Never shown
        in reprs or messages.
    cache_size : int
        Number of decoded chunks kept in an LRU cache (0 disables it).
    n_workers : int, optional
        Parallel chunk fetches for :meth:`ZVStore.read` (default 8).
    retries, retry_backoff : int, float
        Transient store failures (timeouts, resets, HTTP 5xx, throttling) are retried
        up to ``retries`` times, waiting about ``retry_backoff * 2**attempt`` seconds;
        then the read fails with :class:`StoreReadError` naming the chunk.

    Returns
    -------
    ZVStore

    Examples
    --------
    >>> import zv_dask
    >>> store = zv_dask.open_zv(zv_dask.example_store())
    >>> store.geometry_type, store.spatial_dims, store.levels
    ('point_cloud', 3, [0, 1, 2])
    """
    if cache_size is None or int(cache_size) < 0:
        raise QueryError(f"cache_size must be a non-negative integer, got {cache_size!r}")
    if n_workers is not None and int(n_workers) < 1:
        raise QueryError(f"n_workers must be >= 1, got {n_workers!r}")
    loc = StoreLocation(path_or_url, storage_options, n_workers, retries, retry_backoff)
    meta = read_metadata(loc)
    return ZVStore(loc, meta, cache_size=int(cache_size))


class ZVStore:
    """An open Zarr Vectors store: metadata in memory, chunk data read on demand.

    Create it with :func:`open_zv`.  Nothing here writes to the store.

    Examples
    --------
    >>> import zv_dask
    >>> with zv_dask.open_zv(zv_dask.example_store()) as store:
    ...     r = store.read(level=2)
    >>> r["level"], r["positions"].shape[1]
    (2, 3)
    """

    def __init__(self, location: StoreLocation, meta: StoreMeta, cache_size: int = 128):
        self._loc = location
        self._meta = meta
        self._cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.RLock()
        self._closed = False

    # -- identity -------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"levels={self.levels}"
        return (f"<ZVStore {self._loc.url!r} {self.geometry_type} {self.spatial_dims}-D "
                f"{state}>")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Free the cache and the IO threads; later reads raise ``StoreClosedError``."""
        with self._lock:
            self._closed = True
            self._cache.clear()
        self._loc.close()

    def _open(self) -> StoreMeta:
        if self._closed:
            raise StoreClosedError("the store was closed; open it again with zv_dask.open_zv",
                                   store=self._loc.url)
        return self._meta

    @property
    def url(self) -> str:
        """The store's path or URL (without credentials)."""
        return self._loc.url

    @property
    def metadata(self) -> StoreMeta:
        """The parsed metadata (a frozen value)."""
        return self._open()

    # -- metadata ---------------------------------------------------------------------------

    @property
    def geometry_type(self) -> str:
        return self._meta.geometry_type

    @property
    def spatial_dims(self) -> int:
        return self._meta.spatial_dims

    @property
    def axes(self) -> tuple:
        return self._meta.axes

    @property
    def zv_version(self) -> str:
        return self._meta.zv_version

    @property
    def chunk_shape(self) -> tuple:
        return tuple(float(x) for x in self._meta.chunk_shape)

    @property
    def bin_shape(self) -> tuple:
        return self.bin_shape_at(min(self._meta.levels))

    @property
    def levels(self) -> list:
        return list(self._meta.levels)

    @property
    def bounding_box(self) -> tuple:
        lo, hi = self._meta.bounds
        return lo.copy(), hi.copy()

    @property
    def n_objects(self):
        """Objects at level 0 (``None`` when the store has no object index)."""
        return self.object_count_at(min(self._meta.levels))

    def _level(self, level) -> LevelMeta:
        meta = self._open()
        return meta.levels[_plan.resolve_level(meta, level)]

    def vertex_count(self, level: int = 0) -> int:
        """Rows stored at ``level`` (from metadata; no data read)."""
        return self._level(level).vertex_count

    def chunk_shape_at(self, level: int) -> tuple:
        return tuple(float(x) for x in self._level(level).chunk_shape)

    def bin_shape_at(self, level: int) -> tuple:
        return tuple(float(x) for x in self._level(level).bin_shape)

    def bin_ratio_at(self, level: int) -> tuple:
        return tuple(float(x) for x in self._level(level).bin_ratio)

    def object_count_at(self, level: int):
        """Objects present at ``level`` (non-empty manifests), ``None`` without an index."""
        oi = self._level(level).object_index
        return None if oi is None else oi.num_present

    def attributes_at(self, level: int = 0) -> dict:
        """``{name: {"dtype", "width", "categories"}}`` of the per-vertex attributes.

        ``width`` comes from ``row_shape``, which some reference writers record as
        scalar for multi-column attributes; reads take the width from the bytes.
        """
        return {
            a.name: {"dtype": a.value_dtype if a.is_categorical else a.dtype,
                     "width": a.width,
                     "categories": list(a.categories) if a.is_categorical else None}
            for a in self._level(level).attributes.values()
        }

    def chunks(self, level: int = 0, bbox=None) -> list:
        """Planned chunk coordinates (absolute, row-major) at ``level`` touching ``bbox``."""
        meta = self._open()
        lm = self._level(level)
        box = _plan.normalize_bbox(bbox, meta.spatial_dims, meta.name)
        return [tuple(c) for c in lm.presence.coords(_plan.plan_cells(lm, box)).tolist()]

    def select_level(self, target_resolution: float) -> int:
        """The coarsest level with ``max(bin_shape) <= target_resolution`` (0 if none)."""
        return _plan.select_level(self._open(), target_resolution)

    # -- reading --------------------------------------------------------------------------

    def _reader(self, level: int) -> LevelReader:
        meta = self._open()
        return LevelReader(self._loc, meta.levels[level], meta.spatial_dims)

    def owner_table(self, level: int) -> dec.OwnerTable | None:
        """Fragment -> object table of ``level``, decoded once from all manifests."""
        lm = self._level(level)
        if lm.object_index is None:
            return None
        return self._reader(lm.level).owner_table()

    def _load(self, level: int, coords: list, attrs: list, positions: bool, object_ids: bool):
        """Decoded unclipped columns per cell, through the LRU cache."""
        names = {"positions"} if positions else set()
        names |= {a.name for a in attrs}
        if object_ids:
            names.add("object_ids")
        out = [None] * len(coords)
        missing = []
        with self._lock:
            for i, c in enumerate(coords):
                hit = self._cache.get((level, c))
                if hit is not None and names <= hit.keys():
                    self._cache.move_to_end((level, c))
                    out[i] = hit
                else:
                    missing.append(i)
        if missing:
            loaded = self._reader(level).load([coords[i] for i in missing], attrs,
                                              positions, object_ids)
            with self._lock:
                for i, cols in zip(missing, loaded):
                    key = (level, coords[i])
                    merged = dict(self._cache.get(key) or {})
                    merged.update(cols)
                    out[i] = merged
                    if self._cache_size:
                        self._cache[key] = merged
                        self._cache.move_to_end(key)
                        while len(self._cache) > self._cache_size:
                            self._cache.popitem(last=False)
        return out

    def _select(self, cols: dict, plan: _plan.ReadPlan, attrs) -> dict:
        """Clip one cell to the plan's bbox and shape it as an iter_chunks/read item."""
        keep = ["positions"] + [a.name for a in attrs]
        shared = plan.object_ids and self._meta.levels[plan.level].shared_fragments
        if plan.object_ids:
            keep.append("object_ids")
        if shared:
            keep.append("owner_count")
        cols = clip_columns({k: cols[k] for k in keep if k in cols}, plan.bbox)
        item = {"positions": cols["positions"],
                "attributes": decode_categorical_columns(
                    {a.name: cols[a.name] for a in attrs}, attrs)}
        if plan.object_ids:
            item["object_ids"] = cols["object_ids"]
        if shared:
            item["owner_count"] = cols["owner_count"]
        return item

    def read(self, level=None, bbox=None, target_resolution=None, attributes=None) -> dict:
        """Read one level (optionally a bbox of it) into numpy.

        Parameters
        ----------
        level : int, optional
            Resolution level; default 0.  Not together with ``target_resolution``.
        bbox : (lo, hi), optional
            Closed box, one value per axis: rows with ``lo <= p <= hi`` are kept.
            Only chunks that can hold such rows are fetched.
        target_resolution : float, optional
            Pick the coarsest level whose ``max(bin_shape) <= target_resolution``.
        attributes : list of str, optional
            ``None`` reads every attribute, ``[]`` none.

        Returns
        -------
        dict
            ``level``, ``vertex_count``, ``positions`` (N, D) in the stored dtype,
            ``attributes`` {name: (N,) or (N, C)} (categoricals decoded to values),
            and ``object_ids`` (int64, -1 where no object; smallest owner where a
            coarse-level vertex is shared) when the level has an object index; on
            levels with ``shared_fragments`` also ``owner_count`` (int64, the number
            of objects that own each row).

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> r = s.read(bbox=([0, 0, 0], [250, 250, 250]), attributes=["intensity"])
        >>> bool((r["positions"] <= 250).all()), sorted(r["attributes"])
        (True, ['intensity'])
        """
        meta = self._open()
        plan = _plan.plan_read(meta, level, bbox, target_resolution, attributes)
        lm = meta.levels[plan.level]
        coords = [tuple(c) for c in plan.cells.tolist()]
        attrs = list(plan.attributes)
        items = [self._select(cols, plan, attrs)
                 for cols in self._load(plan.level, coords, attrs, True, plan.object_ids)]
        D = meta.spatial_dims
        pos = _concat([i["positions"] for i in items], np.zeros((0, D), lm.vertices.dtype))
        out_attrs = {}
        for a in attrs:
            parts = [i["attributes"][a.name] for i in items]
            out_attrs[a.name] = _concat(parts, _empty_attribute(a))
        result = {"level": plan.level, "vertex_count": int(len(pos)), "positions": pos,
                  "attributes": out_attrs}
        if plan.object_ids:
            result["object_ids"] = _concat([i["object_ids"] for i in items], np.zeros(0, np.int64))
        if plan.object_ids and lm.shared_fragments:
            result["owner_count"] = _concat([i["owner_count"] for i in items],
                                            np.zeros(0, np.int64))
        return result

    def iter_chunks(self, level: int = 0, bbox=None, prefetch: int = 0, n_workers=None,
                    attributes=None) -> Iterator:
        """Yield ``(chunk_coord, {"positions", "attributes"[, "object_ids"[, "owner_count"]]})``
        per chunk (``owner_count`` on levels with ``shared_fragments``).

        Only non-empty chunks touching ``bbox`` are visited, in row-major order, rows
        clipped to the bbox; each chunk is fetched and decoded exactly once.
        ``prefetch=k`` keeps up to ``k`` chunks in flight on ``n_workers`` background
        threads (default ``k``) while the caller works on the current one.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> total = sum(len(d["positions"]) for _, d in s.iter_chunks(level=1, prefetch=2))
        >>> total == s.vertex_count(1)
        True
        """
        meta = self._open()
        if prefetch is None or int(prefetch) < 0:
            raise QueryError(f"prefetch must be >= 0, got {prefetch!r}", store=self.url)
        plan = _plan.plan_read(meta, level, bbox, None, attributes)
        coords = [tuple(c) for c in plan.cells.tolist()]
        attrs = list(plan.attributes)
        if plan.object_ids:
            self.owner_table(plan.level)  # decode the manifests once, before the threads start

        def one(c):
            cols = self._load(plan.level, [c], attrs, True, plan.object_ids)[0]
            return self._select(cols, plan, attrs)

        return _iterate(coords, one, int(prefetch), n_workers)

    # -- dask collections -----------------------------------------------------------------

    def _widths(self, level: int, attrs) -> dict:
        """Attribute widths; where row_shape is untrustworthy, from one chunk's blob sizes."""
        widths = {}
        lm = self._meta.levels[level]
        for a in attrs:
            if a.width_reliable or a.implied_by_key or lm.n_cells == 0:
                widths[a.name] = a.width
                continue
            with self._lock:
                hit = self._cache.get(("width", level, a.name))
            if hit is None:
                hit = self._probe_width(lm, a)
                with self._lock:
                    self._cache[("width", level, a.name)] = hit
            widths[a.name] = hit
        return widths

    def _probe_width(self, lm: LevelMeta, a: AttributeInfo) -> int:
        coord = tuple(lm.presence.coords(lm.presence.linear[:1])[0].tolist())
        arr = lm.arrays[a.path]
        if arr.access == "plain" and lm.vertices.access == "plain":
            from ._store import cell_key

            nv, na = self._loc.sizes([cell_key(lm.vertices, lm.level, coord),
                                      cell_key(arr, lm.level, coord)])
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
                                   int(chunks_per_partition), selection)

    def partitions(self, level=None, bbox=None, target_resolution=None,
                   chunks_per_partition: int = 1):
        """One row per partition of :meth:`to_dask_dataframe` with the same arguments:
        its chunk coordinate (``chunk``, ``chunk_0``...) and spatial box
        (``x_min``, ``x_max``, ...; the chunk's half-open box).

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
        groups = _graph.group_cells(plan.cells, int(chunks_per_partition))
        lengths = self._block_lengths(lm, plan, groups)
        return _graph.to_array(self._reader(plan.level), plan, name, attribute, lengths, width,
                               dtype, int(chunks_per_partition))

    def _block_lengths(self, lm: LevelMeta, plan, groups) -> list:
        nan = [float("nan")] * len(groups)
        if plan.bbox is not None or lm.vertices.access != "plain" or not groups:
            return nan
        from ._store import cell_key

        sizes = self._loc.sizes([cell_key(lm.vertices, lm.level, tuple(c))
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

    # -- objects, graphs, meshes (zv_dask._objects, zv_dask._links) ----------------------

    def _object_ids_all(self, level: int) -> np.ndarray:
        """Object id of every object-index row of ``level`` (read once, cached)."""
        key = ("object_ids", level)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            hit = self._reader(level).object_ids()
            with self._lock:
                self._cache[key] = hit
        return hit

    def _object_rows(self, level: int, object_ids) -> tuple:
        """(index rows, ids) of ``object_ids``; ``None`` means every row."""
        from . import _objects

        all_ids = self._object_ids_all(level)
        if object_ids is None:
            return np.arange(len(all_ids)), all_ids
        rows = _objects.rows_of_ids(all_ids, object_ids, self.url, level)
        return rows, all_ids[rows]

    def _object_plan(self, plan, object_ids):
        """Restrict a plan to the chunks that the objects' manifests reference."""
        from . import _objects

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

    def objects(self, level: int = 0, attributes=None, rows_per_partition=None):
        """Object attributes as a lazy dask DataFrame indexed by ``object_id``.

        Reads only ``object_index/object_ids`` and ``object_attributes/*`` (never a
        vertex blob), one partition per block of object-index rows.  A C-column
        attribute becomes ``name_0 ... name_{C-1}``.  Absent values are shown the way
        the store marks them: NaN for floats; the INT_MIN / UINT_MAX "absent"
        sentinels of integer attributes become ``<NA>`` in pandas nullable dtypes
        (``Int32``, ``UInt16``...).  Every object-index row is listed: at a coarse
        pyramid level, objects dropped by sparsity keep their row with absent values
        (use :meth:`read_objects` to see which have vertices).

        Parameters
        ----------
        level : int
            Resolution level.
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
        from . import _graph, _objects

        lm = self._level(level)
        oi = lm.object_index
        if oi is None:
            raise ArrayNotFoundError("this level has no object index, so it has no objects",
                                     store=self.url, level=lm.level, array="object_index")
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
        return _graph.objects_frame(self._reader(lm.level), arrays,
                                    _objects.row_ranges(n_rows, int(rows_per_partition)))

    def read_objects(self, object_ids=None, level: int = 0, attributes=None) -> dict:
        """Whole objects (streamlines, graph components, meshes...) into numpy.

        Each object's vertices come in stored (manifest) order, reassembled across
        chunks.  Only the chunks the selected objects live in are fetched (one
        concurrent batch: vertices, fragment index and the requested attributes);
        the level's manifests are read from ``object_index/manifests`` for the
        selected rows only.

        Parameters
        ----------
        object_ids : sequence of int, optional
            Objects to read, in this order (duplicates dropped).  ``None`` reads every
            object present at the level (non-empty manifest), in object-index order.
            An id that exists but has no vertices at this level (dropped from a
            pyramid level) gets zero rows; an unknown id raises ``QueryError``.
        level : int
            Resolution level.
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
        """
        from . import _objects

        lm = self._level(level)
        if lm.object_index is None:
            raise ArrayNotFoundError("this level has no object index, so it has no objects",
                                     store=self.url, level=lm.level, array="object_index")
        attrs = list(_plan.resolve_attributes(lm, attributes, self.url))
        rows, ids = self._object_rows(lm.level, object_ids)
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

        Uncompressed vertex chunks: from the blob sizes (a ``stat``/HEAD per chunk),
        no data read.  With a bbox only the chunks that straddle its faces are read
        and counted (chunks entirely inside use their size); compressed or sharded
        vertex chunks are read and counted (one vertex blob per chunk)."""
        from ._store import cell_key

        lm = self._meta.levels[plan.level]
        coords = [tuple(c) for c in plan.cells.tolist()]
        if not coords:
            return []
        lead = lm.rank - len(lm.chunk_shape)
        inside = np.zeros(len(coords), bool)
        if lm.vertices.access == "plain":
            inside[:] = True
            if plan.bbox is not None:
                lo, hi = plan.bbox
                cs = lm.chunk_shape
                sp = plan.cells[:, lead:].astype(np.float64)
                eps = 1e-9 * cs
                inside = ((sp * cs - lo >= eps) & (hi - (sp + 1) * cs >= eps)).all(1)
        out = [0] * len(coords)
        if inside.any():
            idx = np.flatnonzero(inside).tolist()
            sizes = self._loc.sizes([cell_key(lm.vertices, lm.level, coords[i]) for i in idx])
            row = self.spatial_dims * lm.vertices.dtype.itemsize
            for i, n in zip(idx, sizes):
                if n is None or n < 8 or (n - 8) % row:
                    inside[i] = False  # not the plain framing after all: count it
                else:
                    out[i] = (n - 8) // row
        rest = np.flatnonzero(~inside).tolist()
        if rest:
            cells = self._load(plan.level, [coords[i] for i in rest], [], True, False)
            for i, cols in zip(rest, cells):
                out[i] = len(clip_columns({"positions": cols["positions"]}, plan.bbox)["positions"])
        return out

    def _link_family(self, level: int):
        """``links/0`` metadata of a level (documents and listings; cached)."""
        from . import _links

        key = ("links", level)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            hit = (_links.load_family(self._loc, self._meta.levels[level], self.url),)
            with self._lock:
                self._cache[key] = hit
        return hit[0]

    def _row_starts(self, level: int):
        """First level-wide row of every non-empty cell (from blob sizes when raw)."""
        from . import _links

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
        from . import _graph, _links

        lm, family = self._connectivity(level, ("graph", "skeleton"), "edges()")
        box = _plan.normalize_bbox(bbox, self.spatial_dims, self.url)
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
        return _graph.edges_frame(func, coords.tolist(), lm.level)

    def _link_width(self, family, name: str) -> int:
        """Columns of a link attribute: row_shape, or (when the writer left it empty)
        value bytes / record count of one chunk, from the blob sizes."""
        from ._store import cell_key

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
            nl, na = self._loc.sizes([cell_key(lk.arr, family.level, c),
                                      cell_key(am, family.level, c)])
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
        from . import _graph, _links

        lm, family = self._connectivity(level, ("mesh",), "faces()")
        box = _plan.normalize_bbox(bbox, self.spatial_dims, self.url)
        if family is None:
            family = _links.LinkFamily(lm.level, 3, False, ())
        func = _links.LinkReader(self._reader(lm.level), family, self._row_starts(lm.level),
                                 "mesh", box)
        coords = family.source_cells()
        coords = coords[_links.cells_in_bbox(coords, lm, box)]
        return _graph.faces_array(func, coords.tolist(), family.link_width)

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

    # -- raw access -----------------------------------------------------------------------

    def raw_array(self, array_path: str, level: int = 0):
        """A read-only ``zarr.Array`` of the level (e.g. ``"vertices"``,
        ``"vertex_attributes/intensity"``, ``"object_attributes/mean_fa"``).

        Grid arrays hold one variable-length byte blob per chunk; slice them
        (``a[i:i+1, j:j+1, k:k+1]``), never index with scalars.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> s.raw_array("vertices").ndim
        3
        """
        lm = self._level(level)
        path = _safe_array_path(array_path, self.url, lm.level)
        if path in lm.arrays:
            return self._loc.zarr_array(lm.arrays[path], lm.level)
        import zarr

        try:
            return zarr.open_array(store=self._loc.zarr_store(), path=f"{lm.level}/{path}",
                                   mode="r", zarr_format=3)
        except Exception:
            raise ArrayNotFoundError(
                f"no array {path!r} at this level; known arrays: {sorted(lm.arrays)}",
                store=self.url, level=lm.level, array=path,
            ) from None

    def level_group(self, level: int = 0):
        """The level as a read-only ``zarr.Group``."""
        import zarr

        lm = self._level(level)
        return zarr.open_group(store=self._loc.zarr_store(), path=str(lm.level), mode="r",
                               zarr_format=3, use_consolidated=False)


def _safe_array_path(array_path: str, store: str, level: int) -> str:
    p = str(array_path).strip()
    parts = p.split("/")
    if not p or p.startswith("/") or "\\" in p or any(x in ("", ".", "..") for x in parts) \
            or ":" in parts[0]:
        raise QueryError(
            f"array path {array_path!r} must be relative to the level, without '..', "
            "e.g. 'vertices' or 'vertex_attributes/intensity'",
            store=store, level=level, array=array_path,
        )
    return p


def _concat(parts, empty):
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty
    return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


def _empty_attribute(a: AttributeInfo) -> np.ndarray:
    shape = (0,) if a.width == 1 else (0, a.width)
    return np.zeros(shape, a.value_dtype)


def _iterate(coords, one, prefetch: int, n_workers):
    if prefetch == 0:
        for c in coords:
            yield c, one(c)
        return
    workers = int(n_workers) if n_workers else prefetch
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="zv_dask-prefetch")
    try:
        pending = []
        it = iter(coords)
        for c in it:
            pending.append((c, pool.submit(one, c)))
            if len(pending) > prefetch:
                break
        while pending:
            c, fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(one, nxt)))
            yield c, fut.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
