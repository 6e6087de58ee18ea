"""Comparing locations without touching a store: how two paths or URLs nest.

Shared by ``to_zv`` (is the target one of its inputs?) and the ``zv-dask`` commands
that write (``export``, ``convert``).  Local paths are compared after resolving
symlinks and ``..``; URLs after normalising them (protocol aliases, no trailing ``/``,
no ``.``/``..`` segments, no credentials or query).
"""

from __future__ import annotations

import os
import posixpath

_SCHEME_ALIASES = {"s3a": "s3", "gcs": "gs", "local": "file"}


def normalised(location: str) -> tuple:
    """``(scheme, absolute path)`` of a path or URL, without touching any filesystem:
    local paths resolved (symlinks, ``..``, relative), URL paths without ``.``/``..``
    segments, trailing ``/``, credentials or query.

    Examples
    --------
    >>> normalised("s3a://bucket/data/./cells.zarrvectors/")
    ('s3', '/bucket/data/cells.zarrvectors')
    """
    s = os.fspath(location) if not isinstance(location, str) else location
    s = s.split("::")[-1]  # chained URLs: the last one holds the data
    scheme, sep, rest = s.partition("://")
    scheme = _SCHEME_ALIASES.get(scheme.lower(), scheme.lower()) if sep else "file"
    if scheme == "file":
        return "file", os.path.realpath(os.path.expanduser(rest if sep else s))
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    head, _, tail = rest.partition("/")
    head = head.rsplit("@", 1)[-1]  # user:secret@host -> host
    return scheme, posixpath.normpath("/" + f"{head}/{tail}".strip("/"))


def parts(path: str) -> tuple:
    """The non-empty segments of a path."""
    return tuple(p for p in path.replace(os.sep, "/").split("/") if p)


def relation(a: str, b: str):
    """How location ``a`` relates to ``b``: ``"is"``, ``"holds"`` (``b`` lies inside
    ``a``), ``"inside"`` (``a`` lies inside ``b``) or ``None``.

    Examples
    --------
    >>> relation("s3://b/data", "s3://b/data/cells.zarrvectors/")
    'holds'
    >>> relation("s3://b/data/cells.zarrvectors/./x", "s3://b/data/cells.zarrvectors")
    'inside'
    >>> relation("s3://b/data/cells.zarrvectors2", "s3://b/data/cells.zarrvectors") is None
    True
    """
    scheme_a, pa = normalised(a)
    scheme_b, pb = normalised(b)
    if scheme_a != scheme_b:
        return None
    pa, pb = parts(pa), parts(pb)
    if pa == pb:
        return "is"
    if pb[:len(pa)] == pa:
        return "holds"
    if pa[:len(pb)] == pb:
        return "inside"
    return None
