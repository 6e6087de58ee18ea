"""Pieces every ``zv-dask`` command shares: argument types, the query options, the
scheduler context and the progress bar."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import textwrap

from zv_dask.errors import QueryError

LOCAL_SCHEDULERS = ("threads", "processes", "sync")
PROGRESS_AFTER_S = 1.0  # no progress bar for work that finishes sooner


class UsageError(Exception):
    """A command-line argument that only the open store can reject (exit code 2)."""


def fmt(values) -> str:
    """``(1, 2.5, 3)``-style text of numbers."""
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def para(text: str) -> str:
    """One paragraph of help text, wrapped at 79 columns."""
    return textwrap.fill(" ".join(text.split()), 79)


def box_text(bbox) -> str:
    return "-" if bbox is None else f"{fmt(bbox[0])} .. {fmt(bbox[1])}"


# Python advice in the library's messages -> the flag a command-line user types
_CLI_WORDS = (
    (re.compile(r"\bto_zv\(\.\.\., overwrite=True\)"), "zv-dask convert ... --overwrite"),
    (re.compile(r"\boverwrite=True\b"), "--overwrite"),
    (re.compile(r"\bmax_overhead=None\b"), "--max-overhead none"),
    (re.compile(r"\bmax_overhead="), "--max-overhead "),
    (re.compile(r"\bbounds=\(\[min\.\.\.\], \[max\.\.\.\]\)"), "--bounds MIN... MAX..."),
    (re.compile(r"\b(axes|attributes)=\[\.\.\.\]"), r"--\1 ..."),
    (re.compile(r"\bretries=(?=\W|$)"), "--retries"),
    (re.compile(r"\bleave bounds=None\b"), "leave out --bounds"),
    # keyword= alone ("give levels= to change it") or with a value ("like=STORE")
    (re.compile(r"\b(like|levels|dtype|compressor|bounds|axes|attributes|chunk_shape|"
                r"bin_shape|shard_shape)=(?=[\s,;:)]|$)"),
     lambda m: "--" + m.group(1).replace("_", "-")),
    (re.compile(r"\b(like|levels|dtype|compressor|chunk_shape|bin_shape|shard_shape)="),
     lambda m: "--" + m.group(1).replace("_", "-") + " "),
    (re.compile(r"\b(chunk_shape|bin_shape|shard_shape)\b(?==|\W|$)"),
     lambda m: "--" + m.group(1).replace("_", "-")),
    (re.compile(r"\bstorage_options\b"), "--storage-option (or the AWS_* variables)"),
)


def cli_words(message: str) -> str:
    """A library message with its Python keyword advice in command-line flags.

    Examples
    --------
    >>> cli_words("something already exists here; pass overwrite=True to replace it")
    'something already exists here; pass --overwrite to replace it'
    >>> cli_words("still failing after 5 attempts; retry later or raise retries=")
    'still failing after 5 attempts; retry later or raise --retries'
    >>> cli_words("chunk_shape is required, or like=STORE; give levels= to change it")
    '--chunk-shape is required, or --like STORE; give --levels to change it'
    """
    for pattern, replacement in _CLI_WORDS:
        message = pattern.sub(replacement, message)
    return message


# --------------------------------------------------------------------------- arguments


def parse_bbox(values, ndim: int):
    """``--bbox`` numbers -> ``(lo, hi)`` lists, checked against the store's dimensionality.

    Parameters
    ----------
    values : list of str
        Numbers, each possibly a comma-separated group (``"0,0,0"``).
    ndim : int
        The store's spatial dimensionality; ``2 * ndim`` numbers are expected.

    Returns
    -------
    (list of float, list of float) or None

    Raises
    ------
    UsageError
        When a value is not a number or the count is not ``2 * ndim``.

    Examples
    --------
    >>> parse_bbox(["0", "0", "500,500"], 2)
    ([0.0, 0.0], [500.0, 500.0])
    """
    if values is None:
        return None
    tokens = [t for v in values for t in str(v).replace(",", " ").split()]
    try:
        numbers = [float(t) for t in tokens]
    except ValueError:
        raise UsageError(f"--bbox values must be numbers, got {' '.join(tokens)}") from None
    if len(numbers) != 2 * ndim:
        raise UsageError(
            f"--bbox needs {2 * ndim} numbers for this {ndim}-D store (the low corner, then "
            f"the high corner), got {len(numbers)}")
    return numbers[:ndim], numbers[ndim:]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def glue_bbox(argv: list) -> list:
    """Join the numbers after ``--bbox`` into one ``--bbox=a,b,...`` token, so that
    values such as ``-1e3`` or ``-inf`` are not taken for options.

    Examples
    --------
    >>> glue_bbox(["stats", "--bbox", "-inf", "0", "5", "1e3", "store"])
    ['stats', '--bbox=-inf,0,5,1e3', 'store']
    """
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok != "--bbox":
            out.append(tok)
            continue
        numbers = []
        while i < len(argv) and _is_number(argv[i]):
            numbers.append(argv[i])
            i += 1
        out.append("--bbox=" + ",".join(numbers) if numbers else tok)
    return out


def _scheduler_arg(value: str) -> str:
    if value in LOCAL_SCHEDULERS or "://" in value:
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r}: use threads, processes, sync or a scheduler address such as "
        "tcp://127.0.0.1:8786")


def columns_arg(values):
    """``--columns a b,c`` -> ``["a", "b", "c"]`` (None when not given).

    Examples
    --------
    >>> columns_arg(["x", "y,z"])
    ['x', 'y', 'z']
    """
    if values is None:
        return None
    return [c for v in values for c in v.split(",") if c]


def add_store_arg(p, required=False):
    """The positional STORE (optional: the example store by default)."""
    if required:
        p.add_argument("store", metavar="STORE", help="path or URL of a .zarrvectors store")
    else:
        p.add_argument("store", metavar="STORE", nargs="?", default=None,
                       help="path or URL of a .zarrvectors store (default: the example "
                            "store shipped with zv_dask)")


def storage_option_arg(text: str) -> tuple:
    """``--storage-option KEY=VALUE`` -> ``(KEY, value)``; VALUE is JSON when it parses
    (``true``, ``3``, ``{"region_name": "eu-west-1"}``), else the plain string.

    Examples
    --------
    >>> storage_option_arg("endpoint_url=http://127.0.0.1:9000")
    ('endpoint_url', 'http://127.0.0.1:9000')
    >>> storage_option_arg('client_kwargs={"region_name": "eu-west-1"}')
    ('client_kwargs', {'region_name': 'eu-west-1'})
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give KEY=VALUE, e.g. --storage-option endpoint_url=http://host:9000")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_storage_args(p, applies_to="STORE", access="read"):
    """--storage-option KEY=VALUE (repeatable) / --anon / --retries: how ``applies_to``
    (the STORE, or the locations a writing command reaches) is reached."""
    g = p.add_argument_group(
        "remote stores",
        para(f"fsspec options of an s3://, gs://, ... {applies_to}.  Credentials also come from "
             "the usual environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
             "AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_PROFILE for S3); they are never "
             "printed."))
    g.add_argument("--storage-option", dest="storage_option", action="append",
                   type=storage_option_arg, default=[], metavar="KEY=VALUE",
                   help="one fsspec storage option (repeatable; VALUE may be JSON), e.g. "
                        "endpoint_url=http://127.0.0.1:9000 or "
                        "client_kwargs='{\"region_name\": \"eu-west-1\"}'")
    g.add_argument("--anon", action="store_true",
                   help="read without credentials (public buckets); the same as "
                        "--storage-option anon=true")
    g.add_argument("--retries", type=_retries_arg, default=4, metavar="N",
                   help=f"retries of an object {access} after a transient failure (timeout, "
                        "5xx, dropped connection) before giving up (default 4)")


def _retries_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 0")
    return n


def storage_options(args) -> dict | None:
    """The fsspec storage options the arguments ask for (None when none are given).

    Examples
    --------
    >>> p = argparse.ArgumentParser(); add_storage_args(p)
    >>> storage_options(p.parse_args(["--anon", "--storage-option", "requester_pays=true"]))
    {'requester_pays': True, 'anon': True}
    """
    options = dict(getattr(args, "storage_option", None) or [])
    if getattr(args, "anon", False):
        options["anon"] = True
    return options or None


def add_query_args(p):
    """--level / --target-resolution / --bbox / --columns / --scheduler."""
    lod = p.add_mutually_exclusive_group()
    lod.add_argument("--level", type=int, metavar="N",
                     help="resolution level to read (default: 0, the finest)")
    lod.add_argument("--target-resolution", type=float, metavar="R",
                     help="read the coarsest level whose bin edge is <= R (level 0 if none)")
    p.add_argument("--bbox", nargs=1, metavar="X0 Y0 Z0 X1 Y1 Z1",
                   help="closed box: the low corner then the high corner, one number per "
                        "axis (X0 Y0 X1 Y1 for a 2-D store; -inf/inf for an open side); "
                        "only chunks touching it are read.  Also --bbox=X0,Y0,Z0,X1,Y1,Z1")
    p.add_argument("--columns", nargs="+", metavar="COL",
                   help="columns to use (space- or comma-separated), e.g. x intensity; "
                        "default: all")
    p.add_argument("--scheduler", type=_scheduler_arg, default="threads",
                   metavar="{threads,processes,sync,ADDRESS}",
                   help="dask scheduler: threads (default), processes, sync, or the "
                        "address of a running dask.distributed scheduler (tcp://host:8786)")


# --------------------------------------------------------------------------- queries


def resolved_level(store, level=None, target_resolution=None) -> int:
    """The level a query with these arguments reads (what ``read`` would pick)."""
    if target_resolution is not None:
        return store.select_level(target_resolution)
    return min(store.levels) if level is None else level


def check_columns(store, level: int, columns) -> None:
    """Raise ``QueryError`` naming the valid choices when a column is not in the level
    or is named twice.

    Valid: the axes, attribute names, ``name_i`` columns of multi-column attributes,
    and ``object_id`` when the level has an object index.

    Examples
    --------
    >>> import zv_dask
    >>> check_columns(zv_dask.open_zv(zv_dask.example_store()), 0, ["x", "intensity"])
    """
    if columns is None:
        return
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise QueryError(f"columns {twice} are named more than once; name each column once",
                         store=store.url, level=level)
    attrs = store.attributes_at(level)
    valid = list(store.axes) + list(attrs)
    if store.object_count_at(level) is not None:
        valid.append("object_id")
    bad = [c for c in columns if c not in valid and c.rsplit("_", 1)[0] not in attrs]
    if bad:
        raise QueryError(f"unknown columns {bad}; level {level} has {', '.join(valid)} "
                         "(multi-column attributes as name_0, name_1, ...)", store=store.url)


def attributes_for(store, level: int, columns):
    """The stored attributes that ``columns`` (axes, attributes, ``name_i``) need."""
    if columns is None:
        return None
    known = store.attributes_at(level)
    return sorted({c if c in known else c.rsplit("_", 1)[0] for c in columns} & set(known))


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def scheduler(spec: str):
    """Run the block's dask work on ``spec``; yields a ``distributed.Client`` for an
    address, else ``None`` (a local scheduler set through ``dask.config``).

    Examples
    --------
    >>> with scheduler("sync") as client:
    ...     client is None
    True
    """
    import dask

    if spec in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=spec):
            yield None
        return
    from distributed import Client

    try:
        client = Client(spec, set_as_default=True)
    except OSError as exc:
        raise QueryError(f"cannot reach the dask scheduler at {spec}: {exc}") from None
    try:
        yield client
    finally:
        client.close()


def compute_with_progress(obj, client=None):
    """``obj.compute()`` with a progress bar on stderr: dask's ``ProgressBar`` (shown
    only after a second) locally, ``distributed.progress`` on a cluster.

    Examples
    --------
    >>> import dask.array as da
    >>> int(compute_with_progress(da.ones(4, chunks=2).sum()))
    4
    """
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=PROGRESS_AFTER_S, out=sys.stderr):
            return obj.compute()
    from distributed import progress

    future = client.compute(obj)
    with contextlib.redirect_stdout(sys.stderr):  # progress() prints to stdout
        progress(future)
    print(file=sys.stderr)
    return future.result()
