"""Typed checks for values read from ``zarr.json``: metadata is untrusted input.

Each checker takes the raw JSON value, the field name as stored and ``where``
(``store``/``level``/``array`` keywords for the error) and returns a clean
Python value or raises :class:`MetadataError` naming the field.  JSON numbers
arrive as ``int`` or ``float``; ``bool`` is an ``int`` subclass and is never
accepted as a number.  Pure: no IO.
"""

from __future__ import annotations

import math
from typing import Mapping

from zv_dask.errors import MetadataError

# Grid indices are linearised into int64 (Presence): shapes and origins stay far below.
MAX_INDEX = 2**62
MAX_RANK = 32
_FIX = "the store's metadata is damaged or was not written by zarr-vectors; rewrite it"


def short(value, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (values can be megabytes)."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def fail(field: str, problem: str, where: Mapping, cls=MetadataError):
    """Raise ``cls`` with a message that starts with the field name."""
    raise cls(f"field {field!r} {problem}; {_FIX}", **where)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def mapping(v, field: str, where: Mapping, *, optional: bool = False) -> Mapping:
    """A JSON object (``{}`` for an absent optional one)."""
    if v is None and optional:
        return {}
    if not isinstance(v, Mapping):
        fail(field, f"must be a JSON object, got {short(v)}", where)
    return v


def string(v, field: str, where: Mapping, *, optional: bool = False):
    if v is None and optional:
        return None
    if not isinstance(v, str):
        fail(field, f"must be a string, got {short(v)}", where)
    return v


def strings(v, field: str, where: Mapping, *, optional: bool = False) -> tuple:
    """A list of strings (``()`` for an absent optional one)."""
    if v is None and optional:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        fail(field, f"must be a list of strings, got {short(v)}", where)
    return tuple(v)


def boolean(v, field: str, where: Mapping, default: bool = False) -> bool:
    if v is None:
        return default
    if not isinstance(v, bool):
        fail(field, f"must be true or false, got {short(v)}", where)
    return v


def integer(v, field: str, where: Mapping, *, lo: int | None = None,
            hi: int | None = None, optional: bool = False):
    """An integer in ``[lo, hi]`` (``None`` for an absent optional one)."""
    if v is None and optional:
        return None
    if not is_int(v):
        fail(field, f"must be an integer, got {short(v)}", where)
    if lo is not None and v < lo:
        fail(field, f"must be >= {lo}, got {v}", where)
    if hi is not None and v > hi:
        fail(field, f"must be <= {hi}, got {v}", where)
    return int(v)


def numbers(v, field: str, where: Mapping, *, n: int | None = None,
            positive: bool = False, optional: bool = False):
    """A list of finite numbers, ``n`` long when given (``None`` if absent and optional)."""
    if v is None and optional:
        return None
    if not isinstance(v, list) or not v or len(v) > MAX_RANK or not all(map(is_number, v)):
        fail(field, f"must be a list of numbers, got {short(v)}", where)
    if n is not None and len(v) != n:
        fail(field, f"must have {n} entries (one per axis), got {len(v)}", where)
    out = tuple(float(x) for x in v)
    if not all(math.isfinite(x) for x in out):
        fail(field, f"must hold finite numbers, got {short(v)}", where)
    if positive and not all(x > 0 for x in out):
        fail(field, f"must hold positive numbers, got {short(v)}", where)
    return out


def ints(v, field: str, where: Mapping, *, n: int | None = None, lo: int = -MAX_INDEX,
         hi: int = MAX_INDEX, allow_empty: bool = False) -> tuple:
    """A list of integers in ``[lo, hi]``, ``n`` long when given."""
    if (not isinstance(v, list) or (not v and not allow_empty) or len(v) > MAX_RANK
            or not all(map(is_int, v))):
        fail(field, f"must be a list of integers, got {short(v)}", where)
    if n is not None and len(v) != n:
        fail(field, f"must have {n} entries, got {len(v)}", where)
    bad = [x for x in v if not lo <= x <= hi]
    if bad:
        fail(field, f"holds {bad[0]}, outside [{lo}, {hi}]", where)
    return tuple(int(x) for x in v)
