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
    """A local filesystem that records every read and listing (protocol ``zvcount``)."""

    protocol = "zvcount"
    cachable = False
    log: list = []

    def ls(self, path, detail=True, **kw):
        CountingFileSystem.log.append(("list", self._strip_protocol(path)))
        return super().ls(path, detail=detail, **kw)

    def _open(self, path, mode="rb", **kw):
        if "r" in mode:
            CountingFileSystem.log.append(("get", self._strip_protocol(path)))
        else:
            CountingFileSystem.log.append(("write", self._strip_protocol(path)))
        return super()._open(path, mode=mode, **kw)

    def find(self, path, **kw):
        CountingFileSystem.log.append(("list", self._strip_protocol(path)))
        return super().find(path, **kw)


fsspec.register_implementation("zvcount", CountingFileSystem, clobber=True)


@pytest.fixture
def counting():
    """Clears and returns the read log of ``zvcount://`` URLs."""
    CountingFileSystem.log = []
    return CountingFileSystem.log
