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
from typing import Mapping

from zv_dask.errors import StoreExistsError, StoreWriteError
from zv_dask.io.location import StoreLocation, _scrub, is_transient

ROOT_DOC = "zarr.json"
LOCAL_SEQUENTIAL_PUTS = 32


class StoreWriter:
    """Puts, checks and removals on one location; picklable (carries the location)."""

    def __init__(self, location: StoreLocation):
        self.loc = location

    def __reduce__(self):
        return (StoreWriter, (self.loc,))

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

    # -- before and after ------------------------------------------------------------

    def occupied(self) -> bool:
        """Is there anything at the target (a store, a leftover, any file)?"""
        fs = self.loc.fs
        root = self.loc.root
        try:
            if not fs.exists(root):
                return False
            if fs.isfile(root):
                return True
            return bool(fs.ls(root, detail=False))
        except FileNotFoundError:
            return False

    def refuse_existing(self) -> None:
        if self.occupied():
            raise StoreExistsError(
                "something already exists here; pass overwrite=True to replace it, or "
                "choose another path", store=self.url)

    def clear(self) -> None:
        """Remove whatever is at the target: the root document first, so an old store
        stops opening before any of its data goes (never a mix of old and new)."""
        fs = self.loc.fs
        root = self.loc.root
        try:
            if fs.isfile(root):
                fs.rm(root)
                return
            if fs.exists(f"{root}/{ROOT_DOC}"):
                fs.rm(f"{root}/{ROOT_DOC}")
            if fs.exists(root):
                fs.rm(root, recursive=True)
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
