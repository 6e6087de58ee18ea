"""Input paths: a path, a glob or a list of them -> the files, in order."""

from __future__ import annotations

import os

from zv_dask.errors import StoreNotFoundError

_GLOB = ("*", "?", "[")


def expand_paths(paths, what: str = "file", storage_options=None) -> list:
    """The files that ``paths`` (a path, a glob or a list of them) name, each glob
    sorted; raises :class:`~zv_dask.errors.StoreNotFoundError` for a path that does not
    exist or a glob that matches nothing.  ``storage_options`` are fsspec's, for URLs.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for n in ("b.las", "a.las"): _ = (d / n).write_bytes(b"")
    >>> [os.path.basename(p) for p in expand_paths(str(d / "*.las"))]
    ['a.las', 'b.las']
    """
    import fsspec

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise StoreNotFoundError(f"no {what} given; pass a path, a glob or a list of paths")
    out = []
    for item in items:
        text = os.fspath(item)
        fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
        if any(c in path for c in _GLOB):
            found = sorted(fs.glob(path))
            if not found:
                raise StoreNotFoundError(f"{text} matches no {what}s; check the pattern")
            out.extend(fs.unstrip_protocol(f) if "://" in text else f for f in found)
        elif not fs.exists(path):
            raise StoreNotFoundError(f"{what} {text} does not exist; check the path")
        else:
            out.append(text)
    return out


def open_binary(path: str, storage_options=None):
    """A seekable binary file object for a local path or fsspec URL."""
    import fsspec

    return fsspec.open(path, "rb", **(storage_options or {})).open()


def read_bytes(path: str, storage_options=None) -> bytes:
    """The whole content of a local path or fsspec URL (a task parsing one file)."""
    with open_binary(path, storage_options) as f:
        return f.read()
