"""Read policy shared by the store IO: which failures are transient, how reads are
cancelled, what a refused object looks like, and how URLs and credentials are
shown.  No IO here.
"""

from __future__ import annotations

import threading
from typing import Mapping


def _scrub(text: str, options: Mapping) -> str:
    """Remove any credential value from a message."""
    for k, v in options.items():
        if isinstance(v, str) and len(v) >= 4 and any(
                w in k.lower() for w in ("key", "secret", "token", "password", "credential")):
            text = text.replace(v, "***")
    return text


def display_url(path_or_url: str) -> str:
    """The URL without any ``user:password@`` part (safe for messages and reprs)."""
    import re

    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", str(path_or_url))


class ReadCancelled(BaseException):
    """Raised inside a read whose consumer went away (see :func:`cancel_scope`).

    A ``BaseException`` so that no ``except Exception`` wraps it into a read error."""


_SCOPE = threading.local()


class cancel_scope:
    """Reads made by this thread inside the ``with`` block stop at the next attempt or
    backoff once ``event`` is set (raising :class:`ReadCancelled`); used by prefetch
    threads so an abandoned iterator sends no further requests."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __enter__(self):
        self._outer = getattr(_SCOPE, "event", None)
        _SCOPE.event = self.event
        return self.event

    def __exit__(self, *exc):
        _SCOPE.event = self._outer


def check_cancelled() -> None:
    """Raise :class:`ReadCancelled` when the calling thread's reads were cancelled."""
    ev = getattr(_SCOPE, "event", None)
    if ev is not None and ev.is_set():
        raise ReadCancelled()


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: timeouts, resets, 5xx/throttling (s3fs maps those to OSError)."""
    import asyncio

    if isinstance(exc, (PermissionError, FileNotFoundError, IsADirectoryError,
                        NotADirectoryError, KeyError, ValueError, TypeError)):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError, asyncio.TimeoutError, OSError)):
        return True
    return type(exc).__module__.split(".")[0] in ("aiohttp", "botocore", "urllib3", "http")


class BlobRefused:
    """Returned by :meth:`StoreLocation.get_many` instead of bytes for an object that
    was not read in full: larger than the caller's limit, or not a regular file."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"BlobRefused({self.reason!r})"


def _too_large(size, limit: int) -> BlobRefused:
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return BlobRefused(f"the chunk object holds {what}, more than the level can hold "
                       f"({limit} bytes from its vertex_count)")


def _empty_range(exc: BaseException) -> bool:
    """S3 answers a ranged GET of a 0-byte object with 416 InvalidRange."""
    import re

    if is_transient(exc) and "timeout" in f"{type(exc).__name__} {exc}".lower():
        return False  # a timed-out read, whatever its message holds
    text = f"{type(exc).__name__} {exc}".lower()
    # the status code on its own: not digits of a port, an address or a request id
    return "invalidrange" in text or re.search(r"(?<![\w.:/])416(?![\w.:])", text) \
        is not None or "range is not satisfiable" in text or "range not satisfiable" in text
