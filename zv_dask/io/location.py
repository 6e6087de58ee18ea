"""Where a store lives and how its objects are read: the IO entry point.

A :class:`StoreLocation` is small and picklable (URL + storage options); the
filesystem behind it is created lazily once per process, so dask workers open
each store once.  Storage options (credentials) never appear in reprs.  The IO
lives in this module and its three parts: ``io.reads`` (fetching objects under
the retry policy), ``io.documents`` (reading the metadata documents) and
``io.policy`` (transient failures, cancellation; no IO).  Everything else
imports them from here.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Mapping, Sequence

from zv_dask.format import metadata as M
from zv_dask.io.documents import read_metadata
from zv_dask.io.policy import (BlobRefused, ReadCancelled, _scrub, cancel_scope,  # noqa: F401
                            check_cancelled, display_url, is_transient)
from zv_dask.errors import MetadataError, StoreNotFoundError
from zv_dask.io.reads import _MISSING_ERRORS, LOCAL_SEQUENTIAL_BATCH, ObjectReads

__all__ = ["BlobRefused", "LOCAL_SEQUENTIAL_BATCH", "ReadCancelled", "StoreLocation",
           "cancel_scope", "cell_key", "check_cancelled", "display_url", "forget_open",
           "is_transient", "read_metadata"]


def _fs_options(spec: str, options: Mapping) -> dict:
    """Storage options with our defaults for object stores.

    s3fs: ``max_concurrency=1`` (otherwise it sends a HEAD before every GET to decide on
    ranged reads) and no botocore retries (s3fs's own are set to one attempt when the
    filesystem is made), because zv_dask retries transient failures itself, with a
    bounded number of attempts (see ``get_many``).
    """
    import fsspec

    opts = dict(options)
    # a filesystem of our own per open: fsspec's shared instances keep listing caches
    # (s3fs's dircache) that would show a store as it was at an earlier open
    opts.setdefault("skip_instance_cache", True)
    protocol = fsspec.core.split_protocol(spec)[0]
    if protocol in ("s3", "s3a"):
        opts.setdefault("max_concurrency", 1)
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        opts["config_kwargs"] = config
    return opts


class StoreLocation(ObjectReads):
    """Where a store lives; picklable; creates its filesystem lazily per process.

    Examples
    --------
    >>> loc = StoreLocation("memory://demo.zarrvectors")
    >>> loc.url
    'memory://demo.zarrvectors'
    """

    def __init__(self, path_or_url, storage_options: Mapping | None = None,
                 n_workers: int | None = None, retries: int = 4, retry_backoff: float = 0.2,
                 open_id: str | None = None, version: str = ""):
        s = os.fspath(path_or_url) if not isinstance(path_or_url, str) else path_or_url
        self._spec = s.rstrip("/") or s
        self._options = dict(storage_options or {})
        self.url = display_url(self._spec)
        self.n_workers = int(n_workers) if n_workers else 8
        self.retries = max(0, int(retries))
        self.retry_backoff = max(0.0, float(retry_backoff))
        # one per open_zv: process caches are keyed by it, so a store rewritten at the
        # same URL and opened again never sees what an earlier open decoded
        self.open_id = open_id or uuid.uuid4().hex
        # what the open saw of the store's files (listing dates, sizes, root document):
        # part of task keys, so a rewritten store never shares keys (nor dask's
        # expression instances) with an earlier open of the same URL
        self.version = version
        self._seen: list = []
        self._fs = None
        self._root = None
        self._local = False
        self._pool = None
        self._zarr_store = None
        self._lock = threading.Lock()
        self._listings: dict = {}  # rel -> list_sizes(rel), for this open in this process
        self._listing_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StoreLocation({self.url!r})"

    def __reduce__(self):
        # unpickling returns the process-wide instance: a worker opens each store once
        return (_shared_location, (self._spec, self._options, self.n_workers, self.retries,
                                   self.retry_backoff, self.open_id, self.version))

    def token(self) -> str:
        """A credential-free identity for task keys and process caches."""
        from dask.base import tokenize

        return tokenize(self._spec, sorted(self._options.items(), key=lambda kv: kv[0]),
                        self.version)

    def cache_key(self) -> tuple:
        """Key of process caches (decoded owner tables...): the identity of this open,
        so that a later open of a rewritten store never reuses them."""
        return (self.token(), self.open_id)

    # -- filesystem ---------------------------------------------------------------------

    def _ensure(self):
        if self._fs is None:
            import fsspec
            from fsspec.implementations.local import LocalFileSystem

            try:
                fs, root = fsspec.core.url_to_fs(self._spec, **_fs_options(self._spec, self._options))
            except (ImportError, ValueError) as exc:
                raise StoreNotFoundError(
                    f"cannot open this URL: {exc}. Install the filesystem package for the "
                    "protocol (e.g. `pip install s3fs` for s3://, or "
                    "`pip install -e \".[s3]\"` in a clone of zv_dask) or check the URL",
                    store=self.url,
                ) from None
            if type(fs).__module__.startswith("s3fs") and hasattr(fs, "retries"):
                fs.retries = 1  # one attempt inside s3fs: the retry policy is ours
            try:  # a shared instance (skip_instance_cache=False) may list an older store
                fs.invalidate_cache()
            except Exception:  # pragma: no cover - filesystems without listing caches
                pass
            self._root = root.rstrip("/")
            self._local = type(fs) is LocalFileSystem  # subclasses (wrappers) keep their hooks
            self._fs = fs
        return self._fs

    @property
    def fs(self):
        return self._ensure()

    @property
    def root(self) -> str:
        self._ensure()
        return self._root

    def _full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _executor(self) -> ThreadPoolExecutor:
        """The process's IO threads for this worker count, shared by every open: a
        fresh ``open_zv`` starts no thread (starting 8 took half of a 0.1 s read)."""
        with self._lock:
            if self._pool is None:
                self._pool = io_pool(self.n_workers)
            return self._pool

    def map_threads(self, fn, *iterables) -> list:
        """``[fn(*args)]`` run on the process's IO threads (for work that releases the
        GIL, such as decompressing several chunks); the first exception is raised."""
        return list(self._executor().map(fn, *iterables))

    def close(self) -> None:
        """Drop this open's filesystem and process-cache entry (the shared IO threads
        stay for the next open)."""
        with self._lock:
            self._pool = None
            self._fs = None
            self._zarr_store = None
        forget_open(self.open_id)

    def read_json(self, rel: str) -> dict | None:
        return self.read_jsons([rel])[0]

    def read_jsons(self, rels: Sequence[str]) -> list:
        out = []
        for rel, raw in zip(rels, self.get_many(rels)):
            if raw is None:
                out.append(None)
                continue
            if isinstance(raw, BlobRefused):
                raise MetadataError(f"{rel}: {raw.reason}", store=self.url)
            try:
                out.append(json.loads(raw))
            except ValueError as exc:
                raise MetadataError(f"{rel} is not valid JSON ({exc})", store=self.url) from None
        return out

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the sub-folders (zarr child nodes) of ``rel``."""
        path = self._full(rel)
        try:
            entries = self.retry(lambda: self.fs.ls(path, detail=True), rel + "/")
        except _MISSING_ERRORS:
            return []
        names = []
        for e in entries:
            if e.get("type") == "directory":
                names.append(e["name"].rstrip("/").rsplit("/", 1)[-1])
            else:  # the documents' dates and sizes: they change when the store is rewritten
                self._seen.append((str(e.get("name")), e.get("size"), str(e.get("mtime", "")),
                                   str(e.get("LastModified", "")), str(e.get("ETag", "")),
                                   e.get("ino")))
        return sorted(names)

    def seal_version(self, root_doc) -> None:
        """Fix :attr:`version` from what the open read and listed (no extra request
        remotely; one ``stat`` of the root document locally)."""
        from dask.base import tokenize

        parts = sorted(self._seen, key=lambda t: t[0])
        if self._local:
            try:
                st = os.stat(self._full("zarr.json"))
                parts.append((st.st_mtime_ns, st.st_ino, st.st_size))
            except OSError:
                pass
        self.version = tokenize(parts, json.dumps(root_doc, sort_keys=True, default=str))

    def list_files(self, rel: str) -> list[str]:
        """Every file below ``rel``, relative to it (used only without presence lists)."""
        base = self._full(rel)
        try:
            found = self.retry(lambda: self.fs.find(base), rel + "/")
        except _MISSING_ERRORS:
            return []
        return [p[len(base) + 1:] for p in found if p.startswith(base + "/")]

    def exists(self) -> bool:
        """Whether anything exists at the store's root, under the retry policy: a
        failure that outlasts the retries raises :class:`StoreReadError` rather than
        passing for "nothing there"."""
        try:
            return bool(self.retry(lambda: self.fs.exists(self.root), "(the store root)"))
        except _MISSING_ERRORS:
            return False

    def list_sizes(self, rel: str) -> dict[str, int] | None:
        """``{key relative to the store root: size in bytes}`` of every object below
        ``rel``, from one recursive listing; ``{}`` when ``rel`` does not exist, ``None``
        when the store cannot be listed (no list permission, a filesystem without
        listings).

        Never a stat or HEAD per object: remotely one ``find(detail=True)`` (on object
        stores the LIST pages carry the sizes, 1000 keys a page), locally one
        ``os.scandir`` walk (the sizes come with the directory entries).  Transient
        failures are retried like every read.
        """
        def once():
            try:
                return self._list_sizes_once(rel)
            except (PermissionError, NotImplementedError):  # refused or not listable
                return None

        self._ensure()
        try:
            return self.retry(once, rel + "/")
        except _MISSING_ERRORS:
            return {}

    def listed_sizes(self, rel: str) -> dict[str, int] | None:
        """:meth:`list_sizes` made once per location and process: every task of a query
        that sizes chunks shares one listing of the array (one LIST per array, never a
        HEAD per chunk)."""
        with self._listing_lock:
            if rel not in self._listings:
                self._listings[rel] = self.list_sizes(rel)
            return self._listings[rel]

    def _list_sizes_once(self, rel: str) -> dict[str, int]:
        base = self._full(rel)
        n = len(self.root) + 1
        out: dict[str, int] = {}
        if self._local:
            stack = [base]
            while stack:
                with os.scandir(stack.pop()) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        else:
                            out[e.path[n:].replace(os.sep, "/")] = e.stat().st_size
            return out
        found = self.fs.find(base, detail=True)
        for path, info in found.items():
            if info.get("type", "file") != "directory" and path.startswith(base + "/"):
                out[path[n:]] = int(info.get("size") or 0)
        return out

    # -- zarr -------------------------------------------------------------------------------

    def zarr_store(self):
        """A read-only zarr store over the same location (for sharded arrays, raw access)."""
        with self._lock:
            if self._zarr_store is None:
                self._ensure()
                if self._local:
                    from zarr.storage import LocalStore

                    self._zarr_store = LocalStore(self.root, read_only=True)
                else:  # zarr wants its own asynchronous filesystem instance
                    from zarr.storage import FsspecStore

                    self._zarr_store = FsspecStore.from_url(
                        self._spec, storage_options=_fs_options(self._spec, self._options) or None,
                        read_only=True)
                    zfs = self._zarr_store.fs
                    if type(zfs).__module__.startswith("s3fs") and hasattr(zfs, "retries"):
                        zfs.retries = 1  # reads through zarr are retried by ``retry``
            return self._zarr_store

    def zarr_array(self, arr: M.ArrayMeta, level: int):
        """A read-only ``zarr.Array`` built from the parsed document (no IO)."""
        import zarr
        from zarr.core.array import AsyncArray
        from zarr.core.metadata import ArrayV3Metadata
        from zarr.storage import StorePath

        with warnings.catch_warnings():  # zarr warns that vlen-bytes has no v3 spec yet
            warnings.simplefilter("ignore")
            meta = ArrayV3Metadata.from_dict(dict(arr.document))
        sp = StorePath(self.zarr_store(), f"{level}/{arr.path}")
        return zarr.Array(AsyncArray(metadata=meta, store_path=sp))


# Unpickled locations, one per (URL, options, open): a worker opens each store once per
# open_zv.  Bounded, least recently used dropped first (a dropped one is rebuilt on use).
_SHARED: OrderedDict = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 32


_POOLS: dict = {}  # (process id, n_workers) -> ThreadPoolExecutor
_POOLS_LOCK = threading.Lock()


def io_pool(n_workers: int) -> ThreadPoolExecutor:
    """The process-wide IO thread pool of ``n_workers`` threads (one per process id: a
    forked child never uses its parent's threads, which it does not have)."""
    key = (os.getpid(), int(n_workers))
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(int(n_workers),
                                                    thread_name_prefix="zv_dask-io")
        return pool


def _shared_location(spec, options, n_workers, retries=4, retry_backoff=0.2,
                     open_id=None, version="") -> StoreLocation:
    from dask.base import tokenize

    key = tokenize(spec, sorted(options.items(), key=lambda kv: kv[0]), n_workers, retries,
                   retry_backoff, open_id, version)
    with _SHARED_LOCK:
        loc = _SHARED.get(key)
        if loc is None:
            loc = _SHARED[key] = StoreLocation(spec, options, n_workers, retries, retry_backoff,
                                               open_id, version)
            while len(_SHARED) > _SHARED_MAX:
                _SHARED.popitem(last=False)
        _SHARED.move_to_end(key)
        return loc


def forget_open(open_id: str) -> None:
    """Drop the process-wide location of one open (``ZVStore.close``)."""
    with _SHARED_LOCK:
        for key in [k for k, v in _SHARED.items() if v.open_id == open_id]:
            del _SHARED[key]


def cell_key(arr: M.ArrayMeta, level: int, coord: Iterable[int]) -> str:
    """Relative path of one cell's object: ``<level>/<array>/c/<i>/<j>/<k>``."""
    idx = [int(c) - o for c, o in zip(coord, arr.origin)]
    prefix = arr.chunk_key_prefix
    if prefix == "c/":  # zarr v3 default encoding: "c", then the separator (c/0/1 or c.0.1)
        prefix = "c" + arr.chunk_separator
    return f"{level}/{arr.path}/{prefix}{arr.chunk_separator.join(map(str, idx))}"
