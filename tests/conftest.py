from __future__ import annotations

import threading

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from zvfixtures import build


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory):
    return tmp_path_factory.mktemp("zv-stores")


@pytest.fixture(scope="session")
def store_path(fixture_root):
    """``store_path(name)`` -> path of a reference-written fixture store (built once)."""
    lock = threading.Lock()

    def get(name: str) -> str:
        with lock:
            return str(build(name, fixture_root))

    return get


class CountingFileSystem(LocalFileSystem):
    """A local filesystem that records every read, listing and stat (protocol ``zvcount``).

    A recursive ``find`` is one ``("list", path)`` entry; the folder reads it is made
    of are logged as ``("walk", path)`` (an object store answers it with LIST pages).
    ``("stat", path)`` is a size/info request made from outside a listing.
    """

    protocol = "zvcount"
    cachable = False
    log: list = []
    _inner = threading.local()

    def _nested(self) -> bool:
        return getattr(CountingFileSystem._inner, "depth", 0) > 0

    def ls(self, path, detail=True, **kw):
        op = "walk" if self._nested() else "list"
        CountingFileSystem.log.append((op, self._strip_protocol(path)))
        return self._quiet(super().ls, path, detail=detail, **kw)

    def _quiet(self, fn, *a, **kw):
        inner = CountingFileSystem._inner
        inner.depth = getattr(inner, "depth", 0) + 1
        try:
            return fn(*a, **kw)
        finally:
            inner.depth -= 1

    def info(self, path, **kw):
        if not self._nested():
            CountingFileSystem.log.append(("stat", self._strip_protocol(path)))
        return self._quiet(super().info, path, **kw)

    def _open(self, path, mode="rb", **kw):
        if "r" in mode:
            CountingFileSystem.log.append(("get", self._strip_protocol(path)))
        else:
            CountingFileSystem.log.append(("write", self._strip_protocol(path)))
        return super()._open(path, mode=mode, **kw)

    def find(self, path, **kw):
        CountingFileSystem.log.append(("list", self._strip_protocol(path)))
        inner = CountingFileSystem._inner
        inner.depth = getattr(inner, "depth", 0) + 1
        try:
            return super().find(path, **kw)
        finally:
            inner.depth -= 1


fsspec.register_implementation("zvcount", CountingFileSystem, clobber=True)


@pytest.fixture
def counting():
    """Clears and returns the read log of ``zvcount://`` URLs."""
    CountingFileSystem.log = []
    return CountingFileSystem.log
