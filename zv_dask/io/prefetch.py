"""Ordered iteration over chunks with a bounded number computed ahead on daemon threads."""

from __future__ import annotations

import threading
from collections import deque

from zv_dask.io.location import ReadCancelled, cancel_scope


def iterate(coords, one, prefetch: int, n_workers):
    """Yield ``(coord, one(coord))`` in order, computing up to ``prefetch`` ahead."""
    if prefetch == 0:
        for c in coords:
            yield c, one(c)
        return
    pf = _Prefetch(list(coords), one, prefetch, int(n_workers) if n_workers else prefetch)
    try:
        for i in range(len(pf.coords)):
            # ``pf.take`` hands its reference over: nothing here keeps the chunk alive
            yield pf.coords[i], pf.take(i)
    finally:
        pf.cancel()


class _Prefetch:
    """Daemon threads computing ``one(coords[i])`` for ``i < taken + prefetch + 1``.

    Results are held only until taken.  :meth:`cancel` never waits: queued work is
    dropped, and reads still running in a thread stop before their next attempt or
    backoff (:func:`~zv_dask.io.location.cancel_scope`).
    """

    def __init__(self, coords: list, one, prefetch: int, n_workers: int):
        self.coords = coords
        self.one = one
        self.prefetch = prefetch
        self.cancelled = threading.Event()
        self.cond = threading.Condition()
        self.queue: deque = deque()  # indices submitted, not yet started
        self.done: dict = {}  # index -> (ok, value), until taken
        self.submitted = 0
        self.threads = [threading.Thread(target=self._work, name="zv_dask-prefetch", daemon=True)
                        for _ in range(max(1, min(n_workers, prefetch + 1, len(coords))))]
        self._started = False

    def take(self, i: int):
        with self.cond:
            while self.submitted < min(i + self.prefetch + 1, len(self.coords)):
                self.queue.append(self.submitted)
                self.submitted += 1
            self.cond.notify_all()
            if not self._started:
                self._started = True
                for t in self.threads:
                    t.start()
            while i not in self.done:
                self.cond.wait()
            ok, value = self.done.pop(i)
        if not ok:
            raise value
        return value

    def _work(self):
        with cancel_scope(self.cancelled):
            while True:
                with self.cond:
                    while not self.queue and not self.cancelled.is_set():
                        self.cond.wait()
                    if self.cancelled.is_set():
                        return
                    i = self.queue.popleft()
                try:
                    res = (True, self.one(self.coords[i]))
                except ReadCancelled:
                    return
                except BaseException as exc:  # handed to the consumer, raised there
                    res = (False, exc)
                with self.cond:  # hand the result over: this thread keeps no reference
                    if self.cancelled.is_set():
                        return
                    self.done[i] = res
                    del res
                    self.cond.notify_all()

    def cancel(self):
        self.cancelled.set()
        with self.cond:
            self.queue.clear()
            self.done.clear()
            self.cond.notify_all()
