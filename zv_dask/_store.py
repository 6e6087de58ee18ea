"""The only module that does IO: locate a store, read its documents, fetch cells.

A :class:`StoreLocation` is small and picklable (URL + storage options); the
filesystem behind it is created lazily once per process, so dask workers open
each store once.  Storage options (credentials) never appear in reprs.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import _metadata as M
from .errors import (
    LevelNotFoundError,
    MetadataError,
    StoreNotFoundError,
    StoreReadError,
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
    protocol = fsspec.core.split_protocol(spec)[0]
    if protocol in ("s3", "s3a"):
        opts.setdefault("max_concurrency", 1)
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        opts["config_kwargs"] = config
    return opts


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: timeouts, resets, 5xx/throttling (s3fs maps those to OSError)."""
    import asyncio

    if isinstance(exc, (PermissionError, FileNotFoundError, IsADirectoryError,
                        NotADirectoryError, KeyError, ValueError, TypeError)):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError, asyncio.TimeoutError, OSError)):
        return True
    return type(exc).__module__.split(".")[0] in ("aiohttp", "botocore", "urllib3", "http")


class StoreLocation:
    """Where a store lives; picklable; creates its filesystem lazily per process.

    Examples
    --------
    >>> loc = StoreLocation("memory://demo.zarrvectors")
    >>> loc.url
    'memory://demo.zarrvectors'
    """

    def __init__(self, path_or_url, storage_options: Mapping | None = None,
                 n_workers: int | None = None, retries: int = 4, retry_backoff: float = 0.2):
        s = os.fspath(path_or_url) if not isinstance(path_or_url, str) else path_or_url
        self._spec = s.rstrip("/") or s
        self._options = dict(storage_options or {})
        self.url = display_url(self._spec)
        self.n_workers = int(n_workers) if n_workers else 8
        self.retries = max(0, int(retries))
        self.retry_backoff = max(0.0, float(retry_backoff))
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
                                   self.retry_backoff))

    def token(self) -> str:
        """A credential-free identity for task keys and process caches."""
        from dask.base import tokenize

        return tokenize(self._spec, sorted(self._options.items(), key=lambda kv: kv[0]))

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
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None

    # -- reads ----------------------------------------------------------------------------

    def _get_one(self, rel: str):
        """One object's bytes, ``None`` if missing; other failures are returned, not raised."""
        path = self._full(rel)
        try:
            if self._local:
                with open(path, "rb") as f:
                    return f.read()
            return self.fs.cat_file(path)
        except _MISSING_ERRORS:
            return None
        except Exception as exc:  # classified by get_many
            return exc

    def _fetch_batch(self, rels: list) -> list:
        # local files: threads cost more than they save unless the batch is large
        if len(rels) <= 1 or (self._local and len(rels) <= LOCAL_SEQUENTIAL_BATCH):
            return [self._get_one(r) for r in rels]
        if getattr(self.fs, "async_impl", False):
            paths = [self._full(r) for r in rels]
            try:
                got = self.fs.cat(paths, on_error="return", batch_size=max(self.n_workers, 1) * 4)
            except Exception as exc:  # the whole batch failed (e.g. connection refused)
                return [exc] * len(rels)
            if not isinstance(got, dict):  # a single path comes back bare
                got = {paths[0]: got}
            return [None if isinstance(got.get(p), _MISSING_ERRORS) else got.get(p) for p in paths]
        return list(self._executor().map(self._get_one, rels))

    def get_many(self, rels: Sequence[str]) -> list:
        """Fetch many objects concurrently; ``None`` for each one that does not exist.

        Transient failures (timeouts, resets, 5xx, throttling) are retried up to
        ``retries`` times with exponential backoff; what still fails raises
        :class:`StoreReadError` whose ``key`` attribute names the object.  Never returns
        a partial result.
        """
        import random
        import time

        self._ensure()
        rels = list(rels)
        out: list = [None] * len(rels)
        pending = list(range(len(rels)))
        for attempt in range(self.retries + 1):
            results = self._fetch_batch([rels[i] for i in pending])
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
            delay = min(self.retry_backoff * 2 ** attempt, 5.0)
            time.sleep(delay * (0.5 + random.random()))
        return out  # pragma: no cover - the loop returns or raises

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
        """Object sizes in bytes (``None`` when missing): a stat locally, a HEAD remotely."""
        def one(rel):
            path = self._full(rel)
            try:
                if self._local:
                    return os.stat(path).st_size
                return int(self.fs.size(path))
            except _MISSING_ERRORS:
                return None
            except Exception as exc:
                raise StoreReadError(f"size of {rel!r}: {exc}", store=self.url) from None
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
            try:
                out.append(json.loads(raw))
            except ValueError as exc:
                raise MetadataError(f"{rel} is not valid JSON ({exc})", store=self.url) from None
        return out

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the sub-folders (zarr child nodes) of ``rel``."""
        import time

        path = self._full(rel)
        for attempt in range(self.retries + 1):
            try:
                entries = self.fs.ls(path, detail=True)
                break
            except _MISSING_ERRORS:
                return []
            except Exception as exc:
                if not is_transient(exc) or attempt == self.retries:
                    raise self._read_error(rel + "/", exc, attempt + 1) from None
                time.sleep(min(self.retry_backoff * 2 ** attempt, 5.0))
        names = []
        for e in entries:
            if e.get("type") == "directory":
                names.append(e["name"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(names)

    def list_files(self, rel: str) -> list[str]:
        """Every file below ``rel``, relative to it (used only without presence lists)."""
        base = self._full(rel)
        try:
            found = self.fs.find(base)
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
        import time

        self._ensure()
        for attempt in range(self.retries + 1):
            try:
                return self._list_sizes_once(rel)
            except _MISSING_ERRORS:
                return {}
            except (PermissionError, NotImplementedError):
                return None
            except Exception as exc:
                if not is_transient(exc) or attempt == self.retries:
                    raise self._read_error(rel + "/", exc, attempt + 1) from None
                time.sleep(min(self.retry_backoff * 2 ** attempt, 5.0))
        return {}  # pragma: no cover - the loop returns or raises

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


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def _shared_location(spec, options, n_workers, retries=4, retry_backoff=0.2) -> StoreLocation:
    from dask.base import tokenize

    key = tokenize(spec, sorted(options.items(), key=lambda kv: kv[0]), n_workers, retries,
                   retry_backoff)
    with _SHARED_LOCK:
        loc = _SHARED.get(key)
        if loc is None:
            loc = _SHARED[key] = StoreLocation(spec, options, n_workers, retries, retry_backoff)
        return loc


# --------------------------------------------------------------------------- metadata


class _Consolidated:
    """zarr v3 consolidated metadata in the root document: no further request at all."""

    def __init__(self, cm: Mapping):
        self.docs = {k.strip("/"): v for k, v in (cm.get("metadata") or {}).items()}

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
    root = M.parse_root(root_doc, name)
    cm = root_doc.get("consolidated_metadata")
    src = _Consolidated(cm) if isinstance(cm, Mapping) and cm.get("metadata") else loc
    levels = [int(n) for n in root.level_names]
    level_docs = src.read_jsons([f"{lv}/zarr.json" for lv in levels])
    listings = _map(loc, src.list_dirs, [str(lv) for lv in levels])
    wanted: list[str] = []
    per_level: dict[int, list[str]] = {}
    sub_lists = []
    for lv, doc, children in zip(levels, level_docs, listings):
        if doc is None:
            raise LevelNotFoundError(
                "the root lists this level but its group (zarr.json) is missing; "
                "the store is incomplete",
                store=name, level=lv,
            )
        if "vertices" not in children:
            raise MetadataError("level has no 'vertices' array", store=name, level=lv, array="vertices")
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
                oi_attrs = (d or {}).get("attributes") or {}
                continue
            if d is None and p == "object_index/object_ids":
                continue
            arrays[p] = M.parse_array(d, p, name, lv)
        vdoc = docs[f"{lv}/vertices/zarr.json"]
        presence = M.parse_presence(vdoc, arrays["vertices"], name, lv)
        if presence is None:
            presence = _list_presence(loc, arrays["vertices"], name, lv)
        parsed[lv] = M.build_level(
            store=name, level=lv, root=root, level_attrs=lattrs, arrays=arrays,
            presence=presence, object_index_attrs=oi_attrs,
        )
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
    return f"{level}/{arr.path}/{arr.chunk_key_prefix}{arr.chunk_separator.join(map(str, idx))}"
