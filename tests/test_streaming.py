"""iter_chunks streams: bounded live chunks, nothing kept in the chunk cache, errors
raised at their chunk, prefetch threads gone once the iterator is closed.

Live decoded chunks are counted exactly: every positions array that
``LevelReader.load`` returns gets a weakref finalizer, and the count of live ones is
sampled each time a chunk is decoded and inside the consumer's loop."""

from __future__ import annotations

import shutil
import threading
import weakref

import numpy as np
import pytest

import zv_dask
from zv_dask import errors as E
from zv_dask.read import level as _read


class LiveChunks:
    """Counts decoded chunks still referenced anywhere (reference counting frees them)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live = 0
        self.peak = 0
        self.decoded = 0

    def _gone(self):
        with self.lock:
            self.live -= 1

    def track(self, cells):
        with self.lock:
            for cols in cells:
                weakref.finalize(cols["positions"], self._gone)
                self.live += 1
                self.decoded += 1
            self.peak = max(self.peak, self.live)


@pytest.fixture
def live(monkeypatch):
    counter = LiveChunks()
    real = _read.LevelReader.load

    def load(self, *args, **kw):
        out = real(self, *args, **kw)
        counter.track(out)
        return out

    monkeypatch.setattr(_read.LevelReader, "load", load)
    return counter


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_iter_chunks_holds_at_most_prefetch_plus_one_chunks(store_path, live, prefetch):
    path = store_path("points_pyramid")
    want = zv_dask.open_zv(path, cache_size=0).read(level=0)
    store = zv_dask.open_zv(path)  # default chunk cache of 128: iter_chunks must not fill it
    n = len(store.chunks(0))
    assert n > 3 * (prefetch + 1)  # enough chunks for the bound to mean something
    assert live.live == 0  # the uncached reference read kept nothing
    live.decoded = live.peak = 0
    got = []
    in_loop = []
    for c, d in store.iter_chunks(level=0, prefetch=prefetch):
        got.append(d["positions"].copy())
        with live.lock:
            in_loop.append(live.live)
        del d  # the caller lets go of its chunk before asking for the next
    assert live.decoded == n  # each chunk decoded exactly once
    assert live.peak <= prefetch + 1, (live.peak, prefetch)
    assert max(in_loop) <= prefetch + 1
    assert live.live == 0  # nothing kept after the end
    assert len(store._cache) == 0
    np.testing.assert_array_equal(np.concatenate(got), want["positions"])


def test_read_still_uses_the_cache(store_path, live):
    # the contrast that makes the streaming bound meaningful: read() keeps chunks
    store = zv_dask.open_zv(store_path("points_pyramid"))
    store.read(level=1)
    assert len(store._cache) == len(store.chunks(1)) > 2
    assert live.live == len(store.chunks(1))


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "zv_dask-prefetch"]


def test_closed_iterator_leaves_no_thread_and_no_chunk(store_path, live):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    before = set(_prefetch_threads())  # earlier iterators' threads may still be exiting
    it = store.iter_chunks(level=0, prefetch=3)
    c, d = next(it)
    threads = [t for t in _prefetch_threads() if t not in before]
    assert 1 <= len(threads) <= 3
    assert all(t.daemon for t in threads)  # never keep the process alive
    del d
    it.close()
    for t in threads:
        t.join(60)  # a guard only: they exit as soon as their current chunk is done
    assert not any(t.is_alive() for t in threads)
    assert live.live == 0  # prefetched chunks were dropped with the iterator
    with pytest.raises(StopIteration):
        next(it)


def test_error_in_a_prefetched_chunk_is_raised_at_that_chunk(store_path, tmp_path):
    from zv_dask.io.location import cell_key

    copy = tmp_path / "broken.zarrvectors"
    shutil.copytree(store_path("points_pyramid"), copy)
    store = zv_dask.open_zv(str(copy))
    coords = store.chunks(0)
    bad = coords[5]
    (copy / cell_key(store.metadata.levels[0].vertices, 0, bad)).unlink()
    seen = []
    with pytest.raises(E.ChunkMissingError) as ei:
        for c, _ in store.iter_chunks(level=0, prefetch=3):
            seen.append(c)
    assert seen == coords[:5]  # every chunk before the broken one, in order
    assert (ei.value.level, ei.value.array, ei.value.chunk) == (0, "vertices", bad)
    for t in _prefetch_threads():
        t.join(60)
    assert not _prefetch_threads()
