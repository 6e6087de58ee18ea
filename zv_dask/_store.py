"""The only module that does IO: locate a store, read its documents, fetch cells.

A :class:`StoreLocation` is small and picklable (URL + storage options); the
filesystem behind it is created lazily once per process, so dask workers open
each store once.  Storage options (credentials) never appear in reprs.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import _metadata as M
from .errors import (
    IncompleteStoreError,
    LevelNotFoundError,
    MetadataError,
    StoreNotFoundError,
    StoreReadError,
    ZVError,
)

LOCAL_SEQUENTIAL_BATCH = 128
_MISSING_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, KeyError)


def _scrub(text: str, options: Mapping) -> str:
    """Remove any credential value from a message."""
    for k, v in options.items():
        if isinstance(v, str) and len(v) >= 4 and any(
                w in k.lower() for w in ("key", "secret", "token", "password", "credential")):
            text = text.replace(v, "***")
    return text


def display_url(path_or_url: str) -> str:
    """The URL without any ``user:password@`` part (safe for messages and reprs)."""
    import re

    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", str(path_or_url))


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


class ReadCancelled(BaseException):
    """Raised inside a read whose consumer went away (see :func:`cancel_scope`).

    A ``BaseException`` so that no ``except Exception`` wraps it into a read error."""


_SCOPE = threading.local()


class cancel_scope:
    """Reads made by this thread inside the ``with`` block stop at the next attempt or
    backoff once ``event`` is set (raising :class:`ReadCancelled`); used by prefetch
    threads so an abandoned iterator sends no further requests."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __enter__(self):
        self._outer = getattr(_SCOPE, "event", None)
        _SCOPE.event = self.event
        return self.event

    def __exit__(self, *exc):
        _SCOPE.event = self._outer


def check_cancelled() -> None:
    """Raise :class:`ReadCancelled` when the calling thread's reads were cancelled."""
    ev = getattr(_SCOPE, "event", None)
    if ev is not None and ev.is_set():
        raise ReadCancelled()


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: timeouts, resets, 5xx/throttling (s3fs maps those to OSError)."""
    import asyncio

    if isinstance(exc, (PermissionError, FileNotFoundError, IsADirectoryError,
                        NotADirectoryError, KeyError, ValueError, TypeError)):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError, asyncio.TimeoutError, OSError)):
        return True
    return type(exc).__module__.split(".")[0] in ("aiohttp", "botocore", "urllib3", "http")


class BlobRefused:
    """Returned by :meth:`StoreLocation.get_many` instead of bytes for an object that
    was not read in full: larger than the caller's limit, or not a regular file."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"BlobRefused({self.reason!r})"


class StoreLocation:
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
                    "protocol (e.g. `pip install zv_dask[s3]` for s3://) or check the URL",
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
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.n_workers, thread_name_prefix="zv_dask-io")
            return self._pool

    def close(self) -> None:
        """Stop the IO threads and drop this open's filesystem and process-cache entry."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
            self._fs = None
            self._zarr_store = None
        forget_open(self.open_id)

    # -- reads ----------------------------------------------------------------------------

    def _get_one(self, rel: str, limit: int | None = None):
        """One object's bytes, ``None`` if missing, :class:`BlobRefused` if larger than
        ``limit`` (never read past it) or not a regular file; other failures are
        returned, not raised."""
        path = self._full(rel)
        try:
            if self._local:
                # non-blocking: opening a FIFO must not wait for a writer
                with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)),
                               "rb") as f:
                    st = os.fstat(f.fileno())
                    if stat.S_ISDIR(st.st_mode):
                        return None  # as a missing object (open() would raise)
                    if not stat.S_ISREG(st.st_mode):  # a device, pipe... (e.g. /dev/zero)
                        return BlobRefused("the chunk object is not a regular file")
                    if limit is not None and st.st_size > limit:
                        return _too_large(st.st_size, limit)
                    data = f.read() if limit is None else f.read(limit + 1)
            elif limit is None:
                data = self.fs.cat_file(path)
            else:  # a ranged GET: at most limit + 1 bytes cross the network
                data = self.fs.cat_file(path, start=0, end=limit + 1)
        except _MISSING_ERRORS:
            return None
        except Exception as exc:  # classified by get_many
            if limit is not None and _empty_range(exc):
                return b""  # a ranged GET of a 0-byte object: the caller names the damage
            return exc
        if limit is not None and len(data) > limit:
            return _too_large(None, limit)
        return data

    def _fetch_batch(self, rels: list, limits: list) -> list:
        # local files: threads cost more than they save unless the batch is large
        if len(rels) <= 1 or (self._local and len(rels) <= LOCAL_SEQUENTIAL_BATCH):
            return [self._get_one(r, m) for r, m in zip(rels, limits)]
        if getattr(self.fs, "async_impl", False):
            return self._fetch_async(rels, limits)
        return list(self._executor().map(self._get_one, rels, limits))

    def _fetch_async(self, rels: list, limits: list) -> list:
        paths = [self._full(r) for r in rels]
        batch = max(self.n_workers, 1) * 4
        try:
            if any(m is not None for m in limits):
                # the whole object where no limit applies: no HEAD, no size needed
                got = self.fs.cat_ranges(paths, [None if m is None else 0 for m in limits],
                                         [None if m is None else m + 1 for m in limits],
                                         on_error="return", batch_size=batch)
            else:
                got = self.fs.cat(paths, on_error="return", batch_size=batch)
                if not isinstance(got, dict):  # a single path comes back bare
                    got = {paths[0]: got}
                got = [got.get(p) for p in paths]
        except Exception as exc:  # the whole batch failed (e.g. connection refused)
            return [exc] * len(rels)
        out = []
        for r, m in zip(got, limits):
            if isinstance(r, _MISSING_ERRORS):
                r = None
            elif isinstance(r, BaseException):
                r = b"" if m is not None and _empty_range(r) else r
            elif m is not None and len(r) > m:
                r = _too_large(None, m)
            out.append(r)
        return out

    def get_many(self, rels: Sequence[str], limits: Sequence | None = None) -> list:
        """Fetch many objects concurrently; ``None`` for each one that does not exist.

        ``limits[i]`` (optional) is the most bytes object ``i`` may hold: a larger one
        is not read past it and comes back as :class:`BlobRefused` (so is a local path
        that is not a regular file, such as a link to ``/dev/zero``).
        Transient failures (timeouts, resets, 5xx, throttling) are retried up to
        ``retries`` times with exponential backoff; what still fails raises
        :class:`StoreReadError` whose ``key`` attribute names the object.  Never returns
        a partial result.
        """
        self._ensure()
        rels = list(rels)
        limits = [None] * len(rels) if limits is None else list(limits)
        out: list = [None] * len(rels)
        pending = list(range(len(rels)))
        for attempt in range(self.retries + 1):
            check_cancelled()
            results = self._fetch_batch([rels[i] for i in pending], [limits[i] for i in pending])
            failed = []
            for i, r in zip(pending, results):
                if isinstance(r, BaseException):
                    if not is_transient(r) or attempt == self.retries:
                        raise self._read_error(rels[i], r, attempt + 1)
                    failed.append(i)
                else:
                    out[i] = r
            if not failed:
                return out
            pending = failed
            self._backoff(attempt)
        return out  # pragma: no cover - the loop returns or raises

    def _backoff(self, attempt: int) -> None:
        """Wait before attempt ``attempt + 2`` (jittered exponential, capped at 5 s);
        wakes up at once, raising :class:`ReadCancelled`, when the reads are cancelled."""
        import random
        import time

        delay = min(self.retry_backoff * 2 ** attempt, 5.0) * (0.5 + random.random())
        ev = getattr(_SCOPE, "event", None)
        if ev is None:
            time.sleep(delay)
        elif ev.wait(delay):
            raise ReadCancelled()

    def retry(self, fn, key: str):
        """``fn()`` under the same bounded retry policy as :meth:`get_many`.

        Every remote read that does not go through :meth:`get_many` (sizes, listings,
        reads through zarr) calls this.  Transient failures are retried up to
        ``retries`` times with backoff; missing objects (``FileNotFoundError``,
        ``KeyError``...) propagate unchanged; anything else, or a transient failure
        on the last attempt, raises :class:`StoreReadError` whose ``key`` attribute
        is ``key`` (the object or selection that failed).

        Examples
        --------
        >>> loc = StoreLocation("memory://demo.zarrvectors")
        >>> loc.retry(lambda: 42, "0/vertices/c/0/0/0")
        42
        """
        for attempt in range(self.retries + 1):
            check_cancelled()
            try:
                return fn()
            except (_MISSING_ERRORS + (ZVError,)):  # missing, or already a typed error
                raise
            except Exception as exc:
                if not is_transient(exc) or attempt == self.retries:
                    raise self._read_error(key, exc, attempt + 1) from None
            self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_error(self, rel: str, exc: BaseException, attempts: int) -> StoreReadError:
        if isinstance(exc, PermissionError):
            hint = "access denied: check the credentials in storage_options"
        elif is_transient(exc):
            hint = f"still failing after {attempts} attempts; retry later or raise retries="
        else:
            hint = "check the store and the storage_options"
        err = StoreReadError(f"reading {rel!r} failed ({type(exc).__name__}: "
                             f"{_scrub(str(exc), self._options)}); {hint}", store=self.url)
        err.key = rel
        return err

    def sizes(self, rels: Sequence[str]) -> list:
        """Object sizes in bytes (``None`` when missing): a stat locally, a HEAD remotely.

        Retried like every read; a final failure raises :class:`StoreReadError` whose
        ``key`` names the object."""
        def stat(path):
            return os.stat(path).st_size if self._local else int(self.fs.size(path))

        def one(rel):
            path = self._full(rel)
            try:
                return self.retry(lambda: stat(path), rel)
            except _MISSING_ERRORS:
                return None
        self._ensure()
        if len(rels) <= 1:
            return [one(r) for r in rels]
        return list(self._executor().map(one, rels))

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
        try:
            return bool(self.fs.exists(self.root))
        except Exception:
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


def _too_large(size, limit: int) -> BlobRefused:
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return BlobRefused(f"the chunk object holds {what}, more than the level can hold "
                       f"({limit} bytes from its vertex_count)")


def _empty_range(exc: BaseException) -> bool:
    """S3 answers a ranged GET of a 0-byte object with 416 InvalidRange."""
    text = f"{type(exc).__name__} {exc}".lower()
    return "invalidrange" in text or "416" in text or "range is not satisfiable" in text \
        or "range not satisfiable" in text


# Unpickled locations, one per (URL, options, open): a worker opens each store once per
# open_zv.  Bounded, least recently used dropped first (a dropped one is rebuilt on use).
_SHARED: OrderedDict = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 32


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


# --------------------------------------------------------------------------- metadata


class _Consolidated:
    """zarr v3 consolidated metadata in the root document: no further request at all."""

    def __init__(self, cm: Mapping):
        self.docs = {str(k).strip("/"): v for k, v in cm["metadata"].items()}

    def read_jsons(self, rels):
        return [self.docs.get(r[: -len("/zarr.json")]) for r in rels]

    def list_dirs(self, rel: str) -> list[str]:
        pre = rel.strip("/") + "/"
        return sorted({k[len(pre):].split("/")[0] for k in self.docs if k.startswith(pre)})


def read_metadata(loc: StoreLocation) -> M.StoreMeta:
    """Read the ``zarr.json`` documents of a store and parse them (no chunk data).

    Requests: the root document; then, unless it holds consolidated metadata, the level
    documents, one listing per level group and per attribute family (attribute names
    are recorded nowhere else), and the array documents, each batch concurrently.
    """
    name = loc.url
    root_doc = loc.read_json("zarr.json")
    if root_doc is None:
        if not loc.exists():
            raise StoreNotFoundError(
                "nothing exists at this path or URL; check the spelling, the bucket and "
                "the storage_options (credentials, endpoint_url)",
                store=name,
            )
        if any(n.isdigit() for n in loc.list_dirs("")):
            raise IncompleteStoreError(
                "level data exists but the root zarr.json does not: the write that made "
                "this store failed, was cancelled or is still running; write it again "
                "(to_zv(..., overwrite=True))",
                store=name,
            )
    root = M.parse_root(root_doc, name)
    cm = root_doc.get("consolidated_metadata")
    use_cm = isinstance(cm, Mapping) and isinstance(cm.get("metadata"), Mapping) and cm["metadata"]
    src = _Consolidated(cm) if use_cm else loc
    listed = [int(n) for n in root.level_names]
    listed_docs = src.read_jsons([f"{lv}/zarr.json" for lv in listed])
    levels, level_docs = [], []
    for lv, doc in zip(listed, listed_docs):
        if doc is None:  # e.g. after zarr-vectors' remove_resolution_level
            warnings.warn(f"store {name}: the root lists level {lv} but its group (zarr.json) "
                          "is missing; opening the other levels", UserWarning, stacklevel=3)
            continue
        levels.append(lv)
        level_docs.append(doc)
    if not levels:
        raise LevelNotFoundError(
            f"the root lists levels {listed} but none of their groups exists; "
            "the store is incomplete", store=name)
    listings = _map(loc, src.list_dirs, [str(lv) for lv in levels])
    wanted: list[str] = []
    per_level: dict[int, list[str]] = {}
    sub_lists = []
    for lv, children in zip(levels, listings):
        if "vertices" not in children:
            raise MetadataError("level has no 'vertices' array", store=name, level=lv,
                                array="vertices")
        paths = ["vertices"]
        if "vertex_fragments" in children:
            paths.append("vertex_fragments")
        if "geometry_index" in children:
            paths.append("geometry_index")
        for family in ("vertex_attributes", "object_attributes"):
            if family in children:
                sub_lists.append(f"{lv}/{family}")
        if "object_index" in children:
            paths += ["object_index", "object_index/manifests", "object_index/object_ids"]
        per_level[lv] = paths
    for rel, names in zip(sub_lists, _map(loc, src.list_dirs, sub_lists)):
        lv, family = rel.split("/", 1)
        per_level[int(lv)] += [f"{family}/{n}" for n in names]
    for lv in levels:
        wanted += [f"{lv}/{p}/zarr.json" for p in per_level[lv]]
    docs = dict(zip(wanted, src.read_jsons(wanted)))
    parsed = {}
    for lv, doc in zip(levels, level_docs):
        lattrs = M.parse_level_attrs(doc, lv, name)
        if "geometry_index" in per_level[lv]:
            raise M.UnsupportedFormatError(
                "composite stores (geometry_index) are not supported", store=name, level=lv
            )
        arrays = {}
        oi_attrs = None
        for p in per_level[lv]:
            d = docs.get(f"{lv}/{p}/zarr.json")
            if p == "object_index":
                oi_attrs = (d.get("attributes") or {}) if isinstance(d, Mapping) else (d or {})
                continue
            if d is None and p in ("object_index/object_ids", "object_index/manifests"):
                continue
            arrays[p] = M.parse_array(d, p, name, lv)
        if "object_index/manifests" not in arrays and "layout" not in (oi_attrs or {}):
            oi_attrs = None  # an index not built yet (streaming writers before their reduce)
        vdoc = docs[f"{lv}/vertices/zarr.json"]
        presence = M.parse_presence(vdoc, arrays["vertices"], name, lv)
        if presence is None:
            presence = _list_presence(loc, arrays["vertices"], name, lv)
        parsed[lv] = M.build_level(
            store=name, level=lv, root=root, level_attrs=lattrs, arrays=arrays,
            presence=presence, object_index_attrs=oi_attrs,
        )
    loc.seal_version(root_doc)
    return M.build_store(name, root, parsed)


def _map(loc: StoreLocation, fn, items: list) -> list:
    """``fn`` over items, concurrently when there are several (listings are round trips)."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    return list(loc._executor().map(fn, items))


def _list_presence(loc: StoreLocation, arr: M.ArrayMeta, name: str, lv: int) -> M.Presence:
    """Without ``nonempty_chunks``: list the chunk files (unsharded arrays only)."""
    if arr.access == "zarr" and "sharding_indexed" in json.dumps(arr.document.get("codecs")):
        raise MetadataError(
            "the vertices array has no nonempty_chunks list and is sharded, so its cells "
            "cannot be enumerated; rebuild the presence lists with zarr-vectors",
            store=name, level=lv, array="vertices",
        )
    files = loc.list_files(f"{lv}/vertices/{arr.chunk_key_prefix.rstrip('/')}")
    coords = []
    for f in files:
        parts = f.replace(arr.chunk_separator, "/").split("/")
        try:
            coords.append([int(x) for x in parts])
        except ValueError:
            continue
    c = np.asarray(coords, np.int64).reshape(-1, arr.rank) + np.asarray(arr.origin, np.int64)
    return M.presence_from_coords(c, arr, name, lv)


def cell_key(arr: M.ArrayMeta, level: int, coord: Iterable[int]) -> str:
    """Relative path of one cell's object: ``<level>/<array>/c/<i>/<j>/<k>``."""
    idx = [int(c) - o for c, o in zip(coord, arr.origin)]
    prefix = arr.chunk_key_prefix
    if prefix == "c/":  # zarr v3 default encoding: "c", then the separator (c/0/1 or c.0.1)
        prefix = "c" + arr.chunk_separator
    return f"{level}/{arr.path}/{prefix}{arr.chunk_separator.join(map(str, idx))}"
