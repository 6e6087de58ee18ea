"""One error hierarchy for zv_dask.

Every error derives from :class:`ZVError` and from the builtin a caller would
naturally catch (``FileNotFoundError``, ``ValueError``, ``KeyError``), so both
``except ZVError`` and ``except ValueError`` work.  Messages name the store and,
where it applies, the level, array and chunk, and end with what to do.
"""

from __future__ import annotations


def _where(store=None, level=None, array=None, chunk=None) -> str:
    parts = []
    if store is not None:
        parts.append(f"store {store!s}")
    if level is not None:
        parts.append(f"level {level}")
    if array is not None:
        parts.append(f"array {array!r}")
    if chunk is not None:
        parts.append(f"chunk {tuple(int(c) for c in chunk)}")
    return ", ".join(parts)


class ZVError(Exception):
    """Base class of every zv_dask error.

    Parameters
    ----------
    message : str
        What went wrong and what to do about it.
    store, level, array, chunk : optional
        Where it went wrong; kept as attributes and prefixed to the message.

    Examples
    --------
    >>> try:
    ...     raise ZVError("bad thing; do this", store="s.zarrvectors", level=0)
    ... except ZVError as e:
    ...     print(e)
    store s.zarrvectors, level 0: bad thing; do this
    """

    def __init__(self, message: str, *, store=None, level=None, array=None, chunk=None):
        self.store = store
        self.level = level
        self.array = array
        self.chunk = None if chunk is None else tuple(int(c) for c in chunk)
        where = _where(store, level, array, chunk)
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self):  # keep keyword state across pickling (dask workers)
        return (_rebuild, (type(self), self.message, self.store, self.level, self.array, self.chunk))

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0] if self.args else ""


def _rebuild(cls, message, store, level, array, chunk):
    return cls(message, store=store, level=level, array=array, chunk=chunk)


class StoreNotFoundError(ZVError, FileNotFoundError):
    """The path or URL does not exist or cannot be reached."""


class NotAZVStoreError(ZVError, ValueError):
    """The location exists but is not a Zarr Vectors store (or not zarr v3)."""


class UnsupportedFormatError(ZVError, ValueError):
    """The store uses a format version, capability or encoding zv_dask refuses."""


class MetadataError(ZVError, ValueError):
    """A ``zarr.json`` document is inconsistent with the ZV 0.9.x layout."""


class LevelNotFoundError(ZVError, KeyError):
    """The requested resolution level is not in the store."""


class ArrayNotFoundError(ZVError, KeyError):
    """The requested array or attribute is not in the level."""


class QueryError(ZVError, ValueError):
    """The arguments of a read are malformed (bbox, level, attributes)."""


class ColumnNotFoundError(QueryError, KeyError):
    """A dataframe column that the frame does not have (the message lists those it has)."""


class ChunkMissingError(ZVError, FileNotFoundError):
    """A chunk listed in ``nonempty_chunks`` has no data in the store."""


class ChunkDecodeError(ZVError, ValueError):
    """A chunk's bytes do not decode (wrong length, bad header, corrupt blob)."""


class StoreReadError(ZVError, OSError):
    """Reading bytes from the store failed."""


class StoreClosedError(ZVError, ValueError):
    """The store object was used after ``close()``."""


class MissingDependencyError(ZVError, ImportError):
    """An optional package a call needs is not installed; the message names it and the
    command that installs it.

    Examples
    --------
    >>> issubclass(MissingDependencyError, ImportError)
    True
    """


class InputFileError(ZVError, ValueError):
    """A file given to an ingest reader (LAS/LAZ, PLY, SWC, OBJ, STL) cannot be read:
    not that format, truncated, a malformed line, or tiles that do not go together; the
    message names the file (and the line when there is one).

    Examples
    --------
    >>> issubclass(InputFileError, ValueError)
    True
    """


class ZVWarning(UserWarning):
    """Something is inconsistent but the read could still give a complete answer
    (for example a level's row total differs from its recorded ``vertex_count``).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warnings.warn(ZVWarning("level 0 holds 9 rows but records vertex_count 10"))
    >>> w[0].category.__name__
    'ZVWarning'
    """


class IncompleteStoreError(NotAZVStoreError):
    """The location holds level data but no root ``zarr.json``: a write that failed,
    was cancelled, or is still running.  Re-run the write (``overwrite=True``)."""


class StoreExistsError(ZVError, FileExistsError):
    """``to_zv`` found something at the target and ``overwrite`` is False."""


class WriteInputError(ZVError, ValueError):
    """The DataFrame or the options given to ``to_zv`` cannot be written as a store."""


class InvalidPointsError(WriteInputError):
    """Some positions cannot be stored (NaN/inf, or outside the given bounds).

    ``count`` is how many rows are affected and ``example`` one of their positions.
    """

    def __init__(self, message: str, *, count: int = 0, example=None, **where):
        super().__init__(message, **where)
        self.count = int(count)
        self.example = example

    def __reduce__(self):
        return (_rebuild_points, (self.message, self.store, self.count, self.example))


def _rebuild_points(message, store, count, example):
    return InvalidPointsError(message, store=store, count=count, example=example)


class StoreWriteError(ZVError, OSError):
    """Writing bytes to the store failed (after retrying transient failures)."""
