"""Where ``zv-dask export`` may write, and what it may delete there.

Rules (the export never deletes what it did not write):

* OUT must not be the store, hold the store or lie inside it.  Local paths are
  compared after resolving symlinks and ``..``; URLs after normalising them
  (protocol, no trailing ``/``, no ``.``/``..`` segments).
* A non-empty OUT is used only with ``--overwrite`` and only when it holds a previous
  export, recognised by a valid partition index.  Then exactly the files that index
  lists, and the index itself, are removed; every other file stays.
* No file the new export writes may already exist (after that removal): an unrelated
  ``part.000003.parquet`` is refused, not overwritten.

Every refusal is an :class:`OutputRefusedError` raised before anything is written or
deleted.
"""

from __future__ import annotations

import json
import posixpath
import re

from zv_dask.errors import QueryError
from zv_dask.io.paths import normalised, relation

PARTITION_INDEX = "_zv_partitions.json"
INDEX_FORMAT = "zv_dask parquet export"
_PART_FILE = re.compile(r"part\.[0-9]{6,}\.parquet")


class OutputRefusedError(QueryError):
    """``export`` refused its output location; nothing was written or deleted."""


def _filesystem(out: str):
    """(fsspec filesystem, path) where OUT is written."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(str(out))
    except (ImportError, ValueError, OSError) as exc:
        raise OutputRefusedError(f"cannot write to OUT {out}: {exc}") from None
    if normalised(out)[0] == "file":
        return fs, normalised(out)[1]
    return fs, path.rstrip("/")


def store_relation(out: str, store: str):
    """How OUT relates to the store: ``"is"``, ``"holds"``, ``"inside"`` or ``None``
    (:func:`zv_dask.io.paths.relation`).

    Examples
    --------
    >>> store_relation("s3://b/data", "s3://b/data/cells.zarrvectors/")
    'holds'
    >>> store_relation("s3://b/other", "s3://b/data/cells.zarrvectors") is None
    True
    """
    return relation(out, store)


def previous_export(fs, path: str, names) -> list | None:
    """The file names a previous export in ``path`` wrote (its partition index's files
    and the index), or ``None`` when ``path`` holds no valid partition index."""
    if PARTITION_INDEX not in names:
        return None
    try:
        with fs.open(f"{path}/{PARTITION_INDEX}", "r") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith(INDEX_FORMAT):
        return None
    parts = doc.get("partitions")
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        return None
    files = [p.get("file") for p in parts]
    # only plain part names: an index naming "../x" or "zarr.json" is not ours
    if not all(isinstance(f, str) and _PART_FILE.fullmatch(f) for f in files):
        return None
    return sorted(set(files)) + [PARTITION_INDEX]


class OutputPlan:
    """A checked output location: what to remove (a previous export) before writing.

    Built by :func:`plan_output`; :meth:`clear` removes the previous export.
    """

    def __init__(self, fs, path: str, out: str, remove: list):
        self.fs = fs
        self.path = path
        self.out = out
        self.remove = remove

    def clear(self) -> None:
        """Delete the previous export's files: the parts first, the index last (so an
        interrupted clear can be repeated)."""
        for name in self.remove:
            target = f"{self.path}/{name}"
            try:
                if self.fs.isfile(target):
                    self.fs.rm_file(target)
            except OSError as exc:
                raise OutputRefusedError(f"cannot remove {target} of the previous export: "
                                         f"{exc}; check permissions on OUT") from None


def plan_output(out: str, store: str, overwrite: bool, writes) -> OutputPlan:
    """Check OUT against the export rules (module docstring) before anything is written.

    Parameters
    ----------
    out : str
        OUT as given (path or URL).
    store : str
        The store's path or URL as opened.
    overwrite : bool
        ``--overwrite``: allow replacing a previous export.
    writes : list of str
        File names the new export will create in OUT.

    Returns
    -------
    OutputPlan

    Raises
    ------
    OutputRefusedError
        When OUT is, holds or lies inside the store; is a file; is not empty and
        ``overwrite`` is false; is not empty and holds no previous export; or holds
        a file the new export would overwrite that the previous one did not write.

    Examples
    --------
    >>> import tempfile, zv_dask
    >>> d = tempfile.mkdtemp()
    >>> plan_output(d + "/new", zv_dask.example_store(), False, ["part.000000.parquet"]).remove
    []
    """
    rel = store_relation(out, store)
    if rel is not None:
        what = {"is": "is the store", "holds": "holds the store",
                "inside": "lies inside the store"}[rel]
        raise OutputRefusedError(f"OUT {out} {what} {store}; export into a directory "
                                 "outside the store")
    fs, path = _filesystem(out)
    try:
        fs.invalidate_cache(path)  # a listing cached before this run is not evidence
        if not fs.exists(path):
            return OutputPlan(fs, path, out, [])
        if not fs.isdir(path):
            raise OutputRefusedError(f"{out} exists and is not a directory; choose another OUT")
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    except OSError as exc:
        raise OutputRefusedError(f"cannot inspect OUT {out}: {exc}") from None
    if not names:
        return OutputPlan(fs, path, out, [])
    if not overwrite:
        raise OutputRefusedError(f"{out} exists and is not empty; pass --overwrite to replace "
                                 "a previous zv-dask export there, or choose another OUT")
    remove = previous_export(fs, path, names)
    if remove is None:
        raise OutputRefusedError(
            f"{out} is not empty and holds no zv-dask export (no valid {PARTITION_INDEX}); "
            "--overwrite only replaces a previous export, never other files: choose an "
            "empty or new OUT")
    clash = sorted(set(writes) & (set(names) - set(remove)))
    if clash:
        raise OutputRefusedError(
            f"{out} holds {', '.join(clash)}, which the previous export did not write and "
            "this export would overwrite; move them or choose another OUT")
    return OutputPlan(fs, path, out, [n for n in remove if n in names])
