"""Object reads of a :class:`~zv_dask.io.location.StoreLocation`: many objects at once
(concurrently, size-bounded), sizes, and the bounded retry policy every read goes
through.  A mixin: the location supplies the filesystem, root and settings.
"""

from __future__ import annotations

import os
import stat
from typing import Sequence

from zv_dask.io.policy import (_SCOPE, BlobRefused, ReadCancelled, _empty_range, _scrub,
                            _too_large, check_cancelled, is_transient)
from zv_dask.errors import StoreReadError, ZVError

LOCAL_SEQUENTIAL_BATCH = 128
_MISSING_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, KeyError)


class ObjectReads:
    """Fetching objects with retries (a mixin of ``StoreLocation``)."""

    def _get_one(self, rel: str, limit: int | None = None):
        """One object's bytes, ``None`` if missing, :class:`BlobRefused` if larger than
        ``limit`` (never read past it) or not a regular file; other failures are
        returned, not raised."""
        path = self._full(rel)
        try:
            if self._local:
                fd, size, refused = _open_local(path, limit)
                if fd is None:
                    return refused
                try:
                    data = _read_fd(fd, size, limit)
                finally:
                    os.close(fd)
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

    def _fetch_batch(self, rels: list, limits: list, in_task: bool = False) -> list:
        if in_task and self._local and len(rels) > 1:
            return self._get_local_batch(rels, limits)
        # local files: threads cost more than they save unless the batch is large
        if len(rels) <= 1 or (self._local and len(rels) <= LOCAL_SEQUENTIAL_BATCH):
            return [self._get_one(r, m) for r, m in zip(rels, limits)]
        if getattr(self.fs, "async_impl", False):
            return self._fetch_async(rels, limits)
        return list(self._executor().map(self._get_one, rels, limits))

    def _get_local_batch(self, rels: list, limits: list) -> list:
        """Local objects read one after another into one buffer (results are views of
        it), with :meth:`_get_one`'s checks and results.

        For the reads of one dask task: dask already runs tasks in parallel, so a
        thread pool only adds contention, and one allocation for the batch replaces one
        per object (each a fresh run of pages to fault in)."""
        import numpy as np

        out: list = [None] * len(rels)
        sized = []  # (index, fd, size) of the regular files to read
        try:
            for i, (rel, limit) in enumerate(zip(rels, limits)):
                try:
                    fd, size, out[i] = _open_local(self._full(rel), limit)
                except _MISSING_ERRORS:
                    continue
                except Exception as exc:  # classified by get_many
                    out[i] = exc
                    continue
                if fd is not None:
                    sized.append((i, fd, size))
            # one spare byte per object shows a file that grew since fstat
            buf = memoryview(np.empty(sum(s + 1 for _, _, s in sized), np.uint8))
            off = 0
            for i, fd, size in sized:
                view = buf[off:off + size + 1]
                off += size + 1
                try:
                    got = os.readv(fd, [view])
                except Exception as exc:
                    out[i] = exc
                    continue
                # a regular file returns all it holds up to the request: one call
                out[i] = view[:got] if got <= size else self._get_one(rels[i], limits[i])
        finally:
            for _, fd, _ in sized:
                os.close(fd)
        return out

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
        return [_classified(r, m) for r, m in zip(got, limits)]

    def _stream_async(self, rels: list, limits: list):
        """``(index, result)`` of each object as its GET completes (results as
        :meth:`_fetch_async`'s): the coroutines run on the filesystem's event loop,
        the caller's thread takes each result while the others are still arriving."""
        import asyncio
        import queue

        fs, done = self.fs, queue.SimpleQueue()
        paths = [self._full(r) for r in rels]
        width = max(self.n_workers, 1) * 4

        async def one(i, gate):
            m = limits[i]
            async with gate:
                try:  # a limit: a ranged GET, at most limit + 1 bytes cross the network
                    r = await (fs._cat_file(paths[i]) if m is None
                               else fs._cat_file(paths[i], start=0, end=m + 1))
                except Exception as exc:  # classified by the caller
                    r = exc
            done.put((i, _classified(r, m)))

        async def run():
            gate = asyncio.Semaphore(width)
            await asyncio.gather(*(one(i, gate) for i in range(len(paths))))

        fut = asyncio.run_coroutine_threadsafe(run(), fs.loop)
        fut.add_done_callback(lambda f: done.put(None))
        try:
            for _ in paths:
                got = done.get()
                if got is None:  # the run ended early: its own failure, for every object
                    exc = fut.exception() if not fut.cancelled() else ReadCancelled()
                    raise exc or RuntimeError("the reads ended early")
                yield got
        finally:
            fut.cancel()

    def iter_many(self, rels: Sequence[str], limits: Sequence | None = None,
                  in_task: bool = False):
        """:meth:`get_many`'s results one object at a time, ``(index, result)`` pairs
        in the order the objects arrive, so the caller can decode one while the
        others are still being read (remote stores with an async filesystem; other
        stores yield :meth:`get_many`'s list in order).  Retried like
        :meth:`get_many`: a transient failure is fetched again after the first pass;
        what still fails raises :class:`StoreReadError` naming the object.

        Examples
        --------
        >>> import os, tempfile
        >>> from zv_dask.io.location import StoreLocation
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, "blob"), "wb") as f:
        ...     _ = f.write(b"0123456789")
        >>> loc = StoreLocation(d)
        >>> [(i, bytes(b) if b is not None else b) for i, b in loc.iter_many(["blob", "gone"])]
        [(0, b'0123456789'), (1, None)]
        """
        self._ensure()
        rels = list(rels)
        limits = [None] * len(rels) if limits is None else list(limits)
        if self._local or len(rels) <= 1 or not getattr(self.fs, "async_impl", False):
            yield from enumerate(self.get_many(rels, limits, in_task))
            return
        pending = list(range(len(rels)))
        for attempt in range(self.retries + 1):
            check_cancelled()
            failed = []
            for j, r in self._stream_async([rels[i] for i in pending],
                                           [limits[i] for i in pending]):
                i = pending[j]
                if isinstance(r, BaseException):
                    if not is_transient(r) or attempt == self.retries:
                        raise self._read_error(rels[i], r, attempt + 1)
                    failed.append(i)
                else:
                    yield i, r
            if not failed:
                return
            pending = failed
            self._backoff(attempt)

    def get_many(self, rels: Sequence[str], limits: Sequence | None = None,
                 in_task: bool = False) -> list:
        """Fetch many objects concurrently; ``None`` for each one that does not exist.

        ``limits[i]`` (optional) is the most bytes object ``i`` may hold: a larger one
        is not read past it and comes back as :class:`BlobRefused` (so is a local path
        that is not a regular file, such as a link to ``/dev/zero``).  ``in_task``: the
        caller is a dask task, so local objects are read sequentially into one buffer
        (the results are then memoryviews of it).
        Transient failures (timeouts, resets, 5xx, throttling) are retried up to
        ``retries`` times with exponential backoff; what still fails raises
        :class:`StoreReadError` whose ``key`` attribute names the object.  Never returns
        a partial result.
        """
        self._ensure()
        rels = list(rels)
        limits = [None] * len(rels) if limits is None else list(limits)
        return self._retried(rels, lambda idx: self._fetch_batch(
            [rels[i] for i in idx], [limits[i] for i in idx], in_task))

    def get_ranges(self, rels: Sequence[str], starts: Sequence[int],
                   ends: Sequence, in_task: bool = False) -> list:
        """Byte ranges of objects, concurrently: ``rels[i][starts[i]:ends[i]]``.

        A negative start with ``end=None`` is the last ``-start`` bytes (an HTTP suffix
        range: no HEAD is needed to find the object's size).  Remote stores get one
        ranged GET per range (fsspec ``cat_ranges``, as many in flight as the
        filesystem allows); local files one ``os.pread`` each, a file opened once per
        call.  ``None`` for a missing object; a range past the end of an object comes
        back short (the caller checks lengths).  Retried like :meth:`get_many`; what
        still fails raises :class:`StoreReadError` whose ``key`` names the object.

        Examples
        --------
        >>> import os, tempfile
        >>> from zv_dask.io.location import StoreLocation
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, "blob"), "wb") as f:
        ...     _ = f.write(b"0123456789")
        >>> loc = StoreLocation(d)
        >>> [bytes(b) for b in loc.get_ranges(["blob", "blob"], [2, -3], [5, None])]
        [b'234', b'789']
        """
        self._ensure()
        rels, starts, ends = list(rels), list(starts), list(ends)
        return self._retried(rels, lambda idx: self._range_batch(
            [rels[i] for i in idx], [starts[i] for i in idx], [ends[i] for i in idx]))

    def _retried(self, rels: list, fetch) -> list:
        """``fetch(indices)`` (one result or exception per index) under the retry
        policy: the transient failures fetched again with backoff, up to ``retries``
        times; anything else, or a failure on the last attempt, raises
        :class:`StoreReadError` naming the object.  Never returns a partial result."""
        out: list = [None] * len(rels)
        pending = list(range(len(rels)))
        for attempt in range(self.retries + 1):
            check_cancelled()
            failed = []
            for i, r in zip(pending, fetch(pending)):
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

    def _range_batch(self, rels: list, starts: list, ends: list) -> list:
        if not rels:
            return []
        if self._local:
            return _local_ranges([self._full(r) for r in rels], starts, ends)
        paths = [self._full(r) for r in rels]
        try:
            got = self.fs.cat_ranges(paths, starts, ends, on_error="return",
                                     batch_size=max(self.n_workers, 1) * 4)
        except Exception as exc:  # the whole batch failed (e.g. connection refused)
            return [exc] * len(rels)
        return [None if isinstance(r, _MISSING_ERRORS) else r for r in got]

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
        >>> from zv_dask.io.location import StoreLocation
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


def _classified(r, limit):
    """One fetched object as :meth:`ObjectReads.get_many` returns it: ``None`` when
    missing, :class:`BlobRefused` past ``limit``, an exception for the retry policy."""
    if isinstance(r, _MISSING_ERRORS):
        return None
    if isinstance(r, BaseException):
        return b"" if limit is not None and _empty_range(r) else r
    if limit is not None and len(r) > limit:
        return _too_large(None, limit)
    return r


def _local_ranges(paths: list, starts: list, ends: list) -> list:
    """:meth:`ObjectReads.get_ranges` of local files: one ``pread`` a range."""
    out: list = [None] * len(paths)
    fds: dict = {}
    try:
        for i, (path, start, end) in enumerate(zip(paths, starts, ends)):
            try:
                if path not in fds:
                    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
                    fds[path] = (fd, os.fstat(fd))
                fd, st = fds[path]
                if stat.S_ISDIR(st.st_mode):
                    continue
                if not stat.S_ISREG(st.st_mode):
                    out[i] = BlobRefused("the chunk object is not a regular file")
                    continue
                size = st.st_size
                lo = max(size + start, 0) if start < 0 else min(start, size)
                hi = size if end is None else min(max(end, lo), size)
                out[i] = os.pread(fd, hi - lo, lo) if hi > lo else b""
            except _MISSING_ERRORS:
                continue
            except Exception as exc:  # classified by get_ranges
                out[i] = exc
    finally:
        for fd, _ in fds.values():
            os.close(fd)
    return out


def _open_local(path: str, limit: int | None):
    """``(fd, size, None)`` of a regular local file of at most ``limit`` bytes, else
    ``(None, None, result)``: ``None`` for a directory (as a missing object),
    :class:`BlobRefused` for a device, pipe... or a file past ``limit``.  A missing
    file raises, as ``os.open`` does."""
    # non-blocking: opening a FIFO must not wait for a writer
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if stat.S_ISREG(st.st_mode) and (limit is None or st.st_size <= limit):
        return fd, st.st_size, None
    os.close(fd)
    if stat.S_ISDIR(st.st_mode):
        return None, None, None
    if not stat.S_ISREG(st.st_mode):  # a device, pipe... (e.g. /dev/zero)
        return None, None, BlobRefused("the chunk object is not a regular file")
    return None, None, _too_large(st.st_size, limit)


def _read_fd(fd: int, size: int, limit: int | None) -> bytes:
    """A regular file's bytes: one ``read`` of its size (plus one byte, to see a file
    that grew), never past ``limit + 1``; a buffered read of a generous ``limit``
    costs 3x more because it allocates ``limit`` bytes first."""
    want = size + 1 if limit is None else min(size, limit) + 1
    parts = []
    while want > 0:
        got = os.read(fd, min(want, 1 << 30))
        if not got:
            break
        parts.append(got)
        want -= len(got)
    if limit is None and want <= 0:  # it grew since fstat: the rest too
        parts.append(_read_rest(fd))
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_rest(fd: int) -> bytes:
    with os.fdopen(os.dup(fd), "rb") as f:
        return f.read()
