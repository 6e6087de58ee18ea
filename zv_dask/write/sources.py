"""Which stores and files a dask DataFrame reads, so that ``to_zv`` never writes over
(or into) its own input.

Found by walking the frame's expression (no graph is built and nothing is read):

* zv_dask's own readers (``open_zv(...).to_dask_dataframe()``, and ``from_map`` over
  them): the :class:`~zv_dask.io.location.StoreLocation` their partition functions
  carry;
* ``dd.read_parquet``: its ``path`` operand (a file, directory, glob or list);
* ``dd.read_csv`` and other ``fsspec``-based readers: the ``OpenFile`` objects in
  their tasks.

Not found: data a user function reads by itself (``map_partitions``/``from_delayed``
opening files), and pandas frames (already in memory, nothing to protect).
"""

from __future__ import annotations

import functools

from zv_dask.errors import WriteInputError
from zv_dask.io.location import StoreLocation
from zv_dask.io.paths import relation

_MAX_OBJECTS = 200_000  # a bound on the walk (a read_csv over many files stays cheap)


def _url_of_openfile(f):
    try:
        return f.fs.unstrip_protocol(f.path)
    except Exception:  # pragma: no cover - filesystems without unstrip_protocol
        return str(f.path)


class _Walk:
    def __init__(self):
        self.found: list = []
        self.seen: set = set()
        self.budget = _MAX_OBJECTS

    def add(self, url) -> None:
        if url and url not in self.found:
            self.found.append(url)

    def visit(self, obj, depth: int = 0) -> None:
        if depth > 12 or self.budget <= 0 or obj is None or isinstance(obj, (int, float, bool)):
            return
        if isinstance(obj, StoreLocation):
            self.add(obj._spec)
            return
        if isinstance(obj, (str, bytes)) or id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        self.budget -= 1
        t = type(obj)
        mod = t.__module__ or ""
        if t.__name__ == "OpenFile" and mod.startswith("fsspec"):
            self.add(_url_of_openfile(obj))
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for v in obj:
                self.visit(v, depth + 1)
        elif isinstance(obj, dict):
            for v in obj.values():
                self.visit(v, depth + 1)
        elif isinstance(obj, functools.partial):
            self.visit(obj.func, depth + 1)
            self.visit(obj.args, depth + 1)
            self.visit(obj.keywords, depth + 1)
        elif mod.startswith("dask._task_spec"):  # a task: its arguments
            self.visit(getattr(obj, "args", None), depth + 1)
            self.visit(getattr(obj, "kwargs", None), depth + 1)
            self.visit(getattr(obj, "value", None), depth + 1)
        elif mod.startswith("zv_dask") and hasattr(obj, "__dict__"):
            self.visit(vars(obj), depth + 1)  # readers carry their location


def _is_expr(v) -> bool:
    return hasattr(v, "_parameters") and hasattr(v, "operand") and hasattr(v, "walk")


def frame_sources(ddf) -> list:
    """Paths and URLs the frame reads (see the module docstring for what is found).

    Examples
    --------
    >>> import zv_dask
    >>> p = zv_dask.example_store()
    >>> frame_sources(zv_dask.open_zv(p).to_dask_dataframe()) == [p]
    True
    """
    expr = getattr(ddf, "expr", None)
    if expr is None:
        return []
    walk = _Walk()
    for e in expr.walk():
        for name in getattr(e, "_parameters", ()):
            try:
                v = e.operand(name)
            except Exception:  # pragma: no cover - an operand dask cannot give back
                continue
            if _is_expr(v):
                continue  # walked on its own
            if name == "path" and "parquet" in type(e).__name__.lower():
                for p in (v if isinstance(v, (list, tuple)) else [v]):
                    if isinstance(p, str) or hasattr(p, "__fspath__"):
                        walk.add(str(p))
                continue
            walk.visit(v)
    return walk.found


def refuse_own_input(ddf, target: str, name: str) -> None:
    """Raise :class:`WriteInputError` when the target is, holds or lies inside a
    location the frame reads: writing there would delete or change the input while
    the job still reads it."""
    for src in frame_sources(ddf):
        rel = relation(target, src)
        if rel is None:
            continue
        what = {"is": "is", "holds": "holds", "inside": "lies inside"}[rel]
        raise WriteInputError(
            f"the target {what} {src}, which the DataFrame reads; writing there would "
            "delete or change the input before it is read: write to a new path, then "
            "replace the old store with it once the write has finished", store=name)
