"""Writing bytes to a store location: the IO half of ``to_zv``.

Builds on :class:`~zv_dask.io.location.StoreLocation` (same filesystem, same storage
options, same bounded retry of transient failures as reads).  Objects are put
concurrently and blindly: no existence check (no HEAD) before a PUT.  Every write is
of bytes that depend only on the input rows, so a re-run task writes the same bytes.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Mapping

from zv_dask.errors import StoreExistsError, StoreWriteError
from zv_dask.io import targets as T
from zv_dask.io.location import StoreLocation, _scrub, is_transient

ROOT_DOC = T.ROOT_DOC
LOCAL_SEQUENTIAL_PUTS = 32


class StoreWriter:
    """Puts, checks and removals on one location; picklable (carries the location)."""

    def __init__(self, location: StoreLocation, writer_id: str | None = None,
                 locked: bool = False):
        self.loc = location
        self.writer_id = writer_id or uuid.uuid4().hex
        self.locked = locked  # the lock is released after the root document is put
        self.made_root = False  # the lock created the target folder (removed on failure)

    def __reduce__(self):
        return (StoreWriter, (self.loc, self.writer_id, self.locked))

    @property
    def url(self) -> str:
        return self.loc.url

    def _put_one(self, rel: str, data: bytes):
        path = self.loc._full(rel)
        try:
            if self.loc._local:  # its directory exists (made once per batch)
                tmp = f"{path}.{os.getpid()}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                os.replace(tmp, path)  # a killed task never leaves a torn file
            else:
                self.loc.fs.pipe_file(path, data)
            return None
        except Exception as exc:  # classified by put_many
            return exc

    def _make_dirs(self, items: list) -> None:
        """Every directory the batch writes into, each made once (a local store)."""
        for d in sorted({os.path.dirname(self.loc._full(rel)) for rel, _ in items}):
            if not os.path.isdir(d):  # a stat is far cheaper than mkdir's EEXIST here
                os.makedirs(d, exist_ok=True)

    def _put_batch(self, items: list) -> list:
        if self.loc._local:
            try:
                self._make_dirs(items)
            except Exception as exc:  # classified by put_many, per object
                return [exc] * len(items)
        if len(items) <= 1 or (self.loc._local and len(items) <= LOCAL_SEQUENTIAL_PUTS):
            return [self._put_one(r, d) for r, d in items]
        if self.loc._local:  # a few slices, not one task per small file
            k = self.loc.n_workers
            slices = [items[i::k] for i in range(k)]
            done = list(self.loc._executor().map(
                lambda part: [self._put_one(r, d) for r, d in part], slices))
            out = [None] * len(items)
            for i, res in enumerate(done):
                out[i::k] = res
            return out
        return list(self.loc._executor().map(lambda kv: self._put_one(*kv), items))

    def put_many(self, blobs: Mapping[str, bytes]) -> None:
        """Write every object, concurrently; retry transient failures a bounded number of
        times (the reads' policy); raise :class:`StoreWriteError` naming the object."""
        self.loc._ensure()
        items = list(blobs.items())
        for attempt in range(self.loc.retries + 1):
            results = self._put_batch(items)
            failed = []
            for (rel, data), r in zip(items, results):
                if r is None:
                    continue
                if not is_transient(r) or attempt == self.loc.retries:
                    raise self._error(rel, r, attempt + 1)
                failed.append((rel, data))
            if not failed:
                if ROOT_DOC in blobs and self.locked:  # the store is complete: let others in
                    self.unlock()
                return
            items = failed
            delay = min(self.loc.retry_backoff * 2 ** attempt, 5.0)
            time.sleep(delay * (0.5 + random.random()))

    def _error(self, rel: str, exc: BaseException, attempts: int) -> StoreWriteError:
        hint = ("access denied: check the credentials in storage_options"
                if isinstance(exc, PermissionError) else
                f"still failing after {attempts} attempts; retry the write"
                if is_transient(exc) else "check the target and the storage_options")
        err = StoreWriteError(f"writing {rel!r} failed ({type(exc).__name__}: "
                              f"{_scrub(str(exc), self.loc._options)}); {hint}", store=self.url)
        err.key = rel
        return err

    # -- before and after (rules in zv_dask.io.targets) -------------------------------

    def check_target(self, overwrite: bool) -> None:
        """Refuse a target inside a store or a running write, one another writer holds,
        and (``overwrite`` false) anything there or (true) anything but a ZV store or
        an interrupted write's leftovers.  Touches nothing."""
        encl = T.enclosing(self.loc)
        if encl is not None:
            kind, parent = encl
            what = "a Zarr Vectors store" if kind == "store" else "a store being written"
            raise StoreExistsError(
                f"this path lies inside {what} at {parent}; writing here would change "
                "that store (overwrite=True would delete part of it): choose a path "
                "outside it", store=self.url)
        holder = T.read_doc(self.loc, self.loc._full(T.LOCK_NAME))
        if holder is not None and holder.get("writer") != self.writer_id \
                and not T.stale(holder):
            raise self._busy(holder)
        kind, names = T.contents(self.loc)
        if kind in ("absent", "empty"):
            return
        if not overwrite:
            raise StoreExistsError(
                "something already exists here; pass overwrite=True to replace it, or "
                "choose another path", store=self.url)
        if kind == "file":
            raise StoreExistsError(
                "this path is a file, not a store; overwrite=True replaces only a Zarr "
                "Vectors store: choose another path", store=self.url)
        if kind == "foreign":
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise StoreExistsError(
                f"this folder holds files that are not a Zarr Vectors store ({shown}); "
                "overwrite=True replaces only a store or the leftovers of an interrupted "
                "write, never other files: choose an empty or new path", store=self.url)

    def _busy(self, holder: dict) -> StoreExistsError:
        who = ", ".join(f"{k} {holder[k]}" for k in ("writer", "host", "pid", "started")
                        if k in holder)
        err = StoreExistsError(
            f"another to_zv is writing here ({who or 'unknown writer'}); wait for it to "
            f"finish, or, if that write no longer runs, delete {self.loc._full(T.LOCK_NAME)}"
            " and write again", store=self.url)
        err.holder = holder
        return err

    def lock(self) -> None:
        """Take the target's write lock (exclusive create) or raise
        :class:`StoreExistsError` naming its holder."""
        self.made_root = self.loc._local and not os.path.lexists(self.loc.root)
        try:
            holder = T.try_lock(self.loc, self.writer_id)
        except Exception as exc:
            raise StoreWriteError(f"could not create the write lock ({type(exc).__name__}: "
                                  f"{_scrub(str(exc), self.loc._options)}); check the target "
                                  "and the storage_options", store=self.url) from None
        if holder is not None:
            raise self._busy(holder)
        self.locked = True

    def unlock(self, failed: bool = False) -> None:
        """Release the lock if still ours; after a failure also remove the folder the
        lock created, when nothing else was written into it."""
        if not self.locked:
            return
        T.unlock(self.loc, self.writer_id)
        self.locked = False
        if failed and getattr(self, "made_root", False):
            try:
                os.rmdir(self.loc.root)  # only succeeds when empty
            except OSError:
                pass

    def clear(self) -> None:
        """Remove whatever is at the target but the lock: the root document first, so
        an old store stops opening before any of its data goes (never a mix)."""
        fs = self.loc.fs
        root = self.loc.root
        try:
            if fs.exists(f"{root}/{ROOT_DOC}"):
                fs.rm(f"{root}/{ROOT_DOC}")
            names = [n for n in T._names(self.loc) if n != T.LOCK_NAME]
            for n in names:
                fs.rm(f"{root}/{n}", recursive=True)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StoreWriteError(f"could not remove the existing store ({type(exc).__name__}:"
                                  f" {_scrub(str(exc), self.loc._options)})",
                                  store=self.url) from None
        if self.loc._local:
            os.makedirs(root, exist_ok=True)
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache()
