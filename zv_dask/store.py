"""``open_zv`` and :class:`ZVStore`: the seed's eager API on top of plan/read/decode.

:class:`ZVStore` keeps the metadata accessors (``levels``, ``chunks``, ``vertex_count``,
``attributes_at``, ...) here; its other methods live in mixins in ``zv_dask/api/``,
one job each:

- ``api/eager.py`` (:class:`ReadMethods`) - numpy reads: ``read``, ``iter_chunks``,
  ``owner_table``;
- ``api/raw.py`` (:class:`RawMethods`) - zarr access: ``raw_array``, ``level_group``;
- ``api/lazy.py`` (:class:`DaskMethods`) - dask collections and statistics:
  ``to_dask_dataframe``, ``partitions``, ``to_dask_array``, ``describe``, ``histogram``,
  ``bounds``, ``density``;
- ``api/objects.py`` (:class:`ObjectMethods`) - objects and links: ``objects``,
  ``read_objects``, ``edges``, ``faces``;
- ``api/neighbours.py`` (:class:`NeighbourMethods`) - neighbourhoods across chunks:
  ``nearest``, ``within``, ``pairs``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from zv_dask import stats
from zv_dask.api.eager import ReadMethods, check_row_total  # noqa: F401  (public before)
from zv_dask.api.lazy import DaskMethods
from zv_dask.api.neighbours import NeighbourMethods
from zv_dask.api.objects import ObjectMethods
from zv_dask.api.raw import RawMethods
from zv_dask.errors import QueryError, StoreClosedError
from zv_dask.format.metadata import LevelMeta, StoreMeta
from zv_dask.io.location import StoreLocation, read_metadata
from zv_dask.plan import select as _select
from zv_dask.read.level import LevelReader, drop_process_caches


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


class ZVStore(ReadMethods, RawMethods, DaskMethods, ObjectMethods, NeighbourMethods):
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
        self._cache: OrderedDict = OrderedDict()  # (level, coord) -> decoded columns (LRU)
        self._derived: dict = {}  # small per-level facts computed once (widths, ids, links)
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
        """Free the caches (this store's and the process-wide ones of this open); the
        IO threads are the process's, shared by every open, and stay; later reads raise
        ``StoreClosedError``."""
        with self._lock:
            self._closed = True
            self._cache.clear()
            self._derived.clear()
        drop_process_caches(self._loc.open_id)
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
        return meta.levels[_select.resolve_level(meta, level)]

    def vertex_count(self, level: int = 0) -> int | None:
        """Rows stored at ``level`` (from metadata; no data read).

        ``None`` when the store does not record it: the level's ``vertex_count`` is
        missing, or is 0 although chunks are listed (some reference writers record 0).
        """
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
        box = _select.normalize_bbox(bbox, meta.spatial_dims, meta.name)
        return [tuple(c) for c in lm.presence.coords(_select.plan_cells(lm, box)).tolist()]

    def select_level(self, target_resolution: float) -> int:
        """The coarsest level with ``max(bin_shape) <= target_resolution`` (0 if none)."""
        return _select.select_level(self._open(), target_resolution)

    # -- reading --------------------------------------------------------------------------

    def _memo(self, key, compute):
        """``compute()`` once per key for the store's lifetime (outside the chunk LRU)."""
        with self._lock:
            if key in self._derived:
                return self._derived[key]
        value = compute()
        with self._lock:
            return self._derived.setdefault(key, value)

    def _reader(self, level: int) -> LevelReader:
        meta = self._open()
        return LevelReader(self._loc, meta.levels[level], meta.spatial_dims)


stats.register_store(ZVStore, open_zv)
