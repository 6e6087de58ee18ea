"""What is at a write target, what encloses it, and the writer's lock.

Rules ``to_zv`` enforces through :class:`~zv_dask.io.puts.StoreWriter`:

* a path inside an existing store is never a new store: the target's parents are
  walked up to the filesystem (or bucket) root and one holding a ZV root
  ``zarr.json`` (``attributes.zarr_vectors``) or a write lock refuses the write;
* ``overwrite=True`` replaces only a ZV store or the leftovers of an interrupted
  write (level folders, ``*.tmp``, no other entry), never a file or other files;
* one writer at a time: a lock object ``<target>/.zv-write.lock`` holding the
  writer's id, host, pid and start time is created exclusively before anything is
  removed or written, and removed after the root document is written.  Locally
  ``O_CREAT | O_EXCL``; on fsspec filesystems ``pipe_file(mode="create")`` (S3:
  a conditional PUT ``If-None-Match: *``), read back to confirm it is ours.  A
  filesystem without exclusive create falls back to check-then-put, which two
  writers starting at the same instant can both pass.  A lock whose writer ran on
  this host and has exited is stale and taken over.
"""

from __future__ import annotations

import datetime
import json
import os
import socket

LOCK_NAME = ".zv-write.lock"
ROOT_DOC = "zarr.json"
LOCK_FORMAT = "zv_dask write lock"


def _parse(raw):
    try:
        doc = json.loads(raw)
    except (ValueError, TypeError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def read_doc(loc, path: str):
    """The JSON object at ``path`` (a full path on ``loc``'s filesystem): ``None`` when
    there is nothing, ``{}`` when it is not a JSON object."""
    try:
        if loc._local:
            with open(path, "rb") as f:
                return _parse(f.read())
        return _parse(loc.fs.cat_file(path))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def is_zv_root(doc) -> bool:
    return bool(doc) and isinstance((doc.get("attributes") or {}).get("zarr_vectors"), dict)


def _parents(loc):
    fs, p = loc.fs, loc.root
    while True:
        q = os.path.dirname(p) if loc._local else fs._parent(p).rstrip("/")
        if q == p or not q:  # the filesystem root, or above a bucket
            return
        yield q
        p = q


def enclosing(loc):
    """``(kind, parent path)`` of the nearest parent that is a ZV store (``"store"``)
    or holds a running write (``"writing"``), or ``None``."""
    for parent in _parents(loc):
        base = f"{parent.rstrip('/')}/" if parent else ""
        if is_zv_root(read_doc(loc, base + ROOT_DOC)):
            return "store", parent
        if read_doc(loc, base + LOCK_NAME) is not None:
            return "writing", parent
    return None


def _names(loc) -> list:
    fs, root = loc.fs, loc.root
    if loc._local:
        return sorted(os.listdir(root))
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))


def contents(loc):
    """``(kind, names)`` of the target: ``"absent"``, ``"file"``, ``"empty"``,
    ``"store"`` (a ZV root document), ``"leftover"`` (level folders and ``.tmp`` files
    of an interrupted write) or ``"foreign"`` (anything else); ``names`` excludes the
    lock."""
    fs, root = loc.fs, loc.root
    try:
        if loc._local:
            if not os.path.lexists(root):
                return "absent", []
            if not os.path.isdir(root):
                return "file", []
        else:
            fs.invalidate_cache(root)  # a listing cached before this write is not evidence
            if not fs.exists(root):
                return "absent", []
            if fs.isfile(root):
                return "file", []
        names = [n for n in _names(loc) if n != LOCK_NAME]
    except (FileNotFoundError, NotADirectoryError):
        return "absent", []
    if not names:
        return "empty", names
    if ROOT_DOC in names and is_zv_root(read_doc(loc, f"{root}/{ROOT_DOC}")):
        return "store", names
    if all(n.isdigit() or n.endswith(".tmp") for n in names):
        return "leftover", names
    return "foreign", names


# -- the lock ---------------------------------------------------------------------------


def lock_body(writer_id: str, url: str) -> bytes:
    return json.dumps({"format": LOCK_FORMAT, "writer": writer_id, "store": url,
                       "host": socket.gethostname(), "pid": os.getpid(),
                       "started": datetime.datetime.now(datetime.timezone.utc)
                       .isoformat(timespec="seconds")}).encode()


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # another user's process, or nothing to judge by: assume it runs
    return True


def stale(holder: dict) -> bool:
    """Was the lock taken by a process of this host that has exited?"""
    return holder.get("host") == socket.gethostname() and holder.get("pid") is not None \
        and not _alive(holder["pid"])


def _create_local(path: str, body: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    try:
        os.write(fd, body)
    finally:
        os.close(fd)
    return True


def _create_remote(loc, path: str, body: bytes, writer_id: str) -> bool:
    fs = loc.fs
    try:
        fs.pipe_file(path, body, mode="create")
    except TypeError:  # no exclusive create here: check, then put (not atomic)
        if read_doc(loc, path) is not None:
            return False
        fs.pipe_file(path, body)
    except OSError:  # FileExistsError, or S3's 412 PreconditionFailed (EINVAL in s3fs)
        if read_doc(loc, path) is None:
            raise
        return False
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache(path)
    return (read_doc(loc, path) or {}).get("writer") == writer_id  # ignored conditions


def try_lock(loc, writer_id: str):
    """Take the lock; ``None`` when taken, else the holder's lock document."""
    path = f"{loc.root}/{LOCK_NAME}"
    body = lock_body(writer_id, loc.url)
    for _ in range(2):  # a second try after removing a stale lock
        if loc._local:
            os.makedirs(loc.root, exist_ok=True)
            if _create_local(path, body):
                return None
        elif _create_remote(loc, path, body, writer_id):
            return None
        holder = read_doc(loc, path)
        if holder is None:
            continue  # released meanwhile
        if not stale(holder):
            return holder
        _remove_stale(loc, path, writer_id)
    return read_doc(loc, path) or {}


def _remove_stale(loc, path: str, writer_id: str) -> None:
    if loc._local:  # a rename has one winner among writers taking over the same lock
        aside = f"{path}.{writer_id}.stale"
        try:
            os.rename(path, aside)
            os.remove(aside)
        except FileNotFoundError:
            pass
    else:
        try:
            loc.fs.rm_file(path)
        except FileNotFoundError:
            pass


def unlock(loc, writer_id: str) -> None:
    """Remove the lock if it is still this writer's."""
    path = f"{loc.root}/{LOCK_NAME}"
    holder = read_doc(loc, path)
    if holder is None or holder.get("writer") != writer_id:
        return
    try:
        if loc._local:
            os.remove(path)
        else:
            loc.fs.rm_file(path)
            if hasattr(loc.fs, "invalidate_cache"):
                loc.fs.invalidate_cache(loc.root)
    except FileNotFoundError:
        pass
