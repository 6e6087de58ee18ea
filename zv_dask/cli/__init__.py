"""The ``zv-dask`` command line (also ``python -m zv_dask``): parser and entry point.

Each command lives in its own module listed in :data:`COMMANDS`.  A command module
exposes:

* ``NAME`` - the subcommand word;
* ``OPENS_STORE`` - true when :func:`main` should open ``args.store`` (the example
  store when it is omitted) and pass the open store to ``run``; false for commands
  that handle their own inputs (``run`` then gets ``None``);
* ``add_parser(subparsers)`` - registers the subcommand, returns its parser;
* ``run(args, store)`` - does the work and returns the text to print.  It raises a
  :class:`~zv_dask.errors.ZVError` for bad input or data (exit 1; 3 when ``export``
  or ``convert`` refuses OUT) and :class:`UsageError` for arguments only the store can reject (exit 2).

Adding a command (e.g. ``convert``) is a new ``zv_dask/cli/<name>.py`` module plus one
entry in :data:`COMMANDS`.

Exit codes: 0 success, 1 a zv_dask error (``zv-dask: error: ...``, one line, no
traceback), 2 a usage error, 3 ``export`` or ``convert`` refused OUT (nothing written or
deleted),
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from zv_dask.cli import convert, export, index, info, stats
from zv_dask.cli.common import (
    UsageError,
    add_storage_args,
    cli_words,
    glue_bbox,
    parse_bbox,
    storage_options,
)
from zv_dask.cli.export import export_frame, part_name, partition_index
from zv_dask.cli.info import info_text
from zv_dask.cli.outdir import PARTITION_INDEX, OutputRefusedError
from zv_dask.cli.stats import stats_table
from zv_dask.errors import ZVError

# names importers of zv_dask.cli used before the commands moved to their own modules
__all__ = ["main", "build_parser", "COMMANDS", "UsageError", "glue_bbox", "parse_bbox",
           "export_frame", "part_name", "partition_index", "info_text", "stats_table",
           "PARTITION_INDEX", "error_line"]

#: the subcommand modules, in the order ``--help`` lists them
COMMANDS = (info, stats, export, convert, index)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

MAIN_EPILOG = """\
exit codes: 0 success
            1 zv_dask error (bad store, level, column, bbox corners, damaged chunk)
            2 usage error (unknown option, wrong number of --bbox values, --level
              together with --target-resolution)
            3 export refused OUT, or convert did (is, holds or lies inside the
              store or SOURCE; not empty without --overwrite; not a previous export
              or store; another writer is writing there): nothing was written
            130 interrupted (Ctrl-C)

examples:
  zv-dask info
  zv-dask stats cells.zarrvectors --level 1
  zv-dask export cells.zarrvectors out_dir
  zv-dask convert points.parquet points.zarrvectors --chunk-shape 250 --levels 3
  zv-dask index streamlines.zarrvectors

Run 'zv-dask COMMAND --help' for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``zv-dask`` argument parser, one subcommand per module in :data:`COMMANDS`.

    Examples
    --------
    >>> args = build_parser().parse_args(["stats", "s.zarrvectors", "--level", "1"])
    >>> args.command, args.store, args.level
    ('stats', 's.zarrvectors', 1)
    """
    parser = argparse.ArgumentParser(
        prog="zv-dask", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=MAIN_EPILOG,
        description="Read and analyse Zarr Vectors (ZV 0.9.x) stores with dask.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        p = module.add_parser(sub)
        if getattr(module, "OPENS_STORE", True):
            add_storage_args(p)
        p.set_defaults(_zv_module=module, _zv_parser=p)
    return parser


def error_line(exc: BaseException) -> str:
    """``zv-dask: error: <message>`` on one line (the message names store, level,
    array and chunk where they apply; Python advice is given as the CLI flag).

    Examples
    --------
    >>> from zv_dask.errors import QueryError
    >>> error_line(QueryError("bad box\\nswap the corners", store="s.zarrvectors"))
    'zv-dask: error: store s.zarrvectors: bad box swap the corners'
    """
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"zv-dask: error: {cli_words(message)}"


def _run(args):
    from zv_dask import example_store
    from zv_dask import open_zv

    module = args._zv_module
    if not getattr(module, "OPENS_STORE", True):
        return module.run(args, None)
    args.store_url = args.store or example_store()
    with open_zv(args.store_url, storage_options=storage_options(args),
                 retries=args.retries) as store:
        return module.run(args, store)


def main(argv=None) -> int:
    """Entry point of ``zv-dask``; returns the exit code (see the module docstring).

    Examples
    --------
    >>> main(["info"])  # doctest: +ELLIPSIS
    store      .../example.zarrvectors
    ...
    0
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(glue_bbox(argv))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        text = _run(args)
    except UsageError as exc:
        args._zv_parser.error(str(exc))  # prints usage, exits 2
    except OutputRefusedError as exc:
        print(error_line(exc), file=sys.stderr)
        return EXIT_REFUSED
    except ZVError as exc:
        print(error_line(exc), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("zv-dask: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(text)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
