"""``zv-dask stats``: count/mean/std/min/max/sum per column as one dask reduction."""

from __future__ import annotations

import argparse

from zv_dask.cli.common import (
    add_query_args,
    add_store_arg,
    box_text,
    check_columns,
    columns_arg,
    compute_with_progress,
    fmt,
    para,
    parse_bbox,
    resolved_level,
    scheduler,
)

NAME = "stats"
OPENS_STORE = True

EPILOG = """\
examples:
  zv-dask stats                                   # the example store, level 0
  zv-dask stats cells.zarrvectors --level 2 --columns intensity fa
  zv-dask stats cells.zarrvectors --bbox 0 0 0 500 500 500 --target-resolution 250
  zv-dask stats s3://bucket/cells.zarrvectors --scheduler tcp://10.0.0.5:8786

Categorical columns are skipped (describe needs numbers).  std uses ddof=1.
A box that selects no row prints count 0 (and nan) for every column.
Put STORE before --columns (which takes every word after it).
"""


def add_parser(subparsers):
    """Register ``stats`` on the ``zv-dask`` subparsers; returns its parser."""
    p = subparsers.add_parser(
        NAME, help="count, mean, std, min, max, sum per column (a dask reduction)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description=para(
            "Compute count, mean, std, min, max and sum of every numeric column (axes and "
            "attributes) with zv_dask.stats.describe, a dask reduction over the chunks "
            "(grouped into tasks of about a million rows), and print them as a table, one "
            "row per column.  A progress bar shows on stderr when the work takes more "
            "than a second."))
    add_store_arg(p)
    add_query_args(p)
    return p


def run(args, store) -> str:
    """The ``stats`` command's output for an open store."""
    return run_stats(store, args, parse_bbox(args.bbox, store.spatial_dims))


def stats_table(table) -> str:
    """The describe table (rows count..sum, one column per data column) as text, one
    line per data column.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"x": [2, 1.5, 0.5, 1.0, 2.0, 3.0]},
    ...                  index=["count", "mean", "std", "min", "max", "sum"])
    >>> print(stats_table(t).splitlines()[1].split())
    ['x', '2', '1.5', '0.5', '1', '2', '3']
    """
    rows = list(table.index)
    width = max([6] + [len(str(c)) for c in table.columns])
    lines = [f"{'column':<{width}}" + "".join(f"{r:>16}" for r in rows)]
    for col in table.columns:
        cells = []
        for r in rows:
            v = table.loc[r, col]
            cells.append(f"{int(v):>16d}" if r == "count" else f"{float(v):>16.10g}")
        lines.append(f"{str(col):<{width}}" + "".join(cells))
    return "\n".join(lines)


def run_stats(store, args, bbox) -> str:
    """Compute and format the statistics of one query."""
    from zv_dask.stats import describe

    columns = columns_arg(args.columns)
    level = resolved_level(store, args.level, args.target_resolution)
    check_columns(store, level, columns)
    lazy = describe(store, columns=columns, level=args.level, bbox=bbox,
                    target_resolution=args.target_resolution)
    with scheduler(args.scheduler) as client:
        table = compute_with_progress(lazy, client)
    head = [f"store  {store.url}",
            f"level  {level} (bin_shape {fmt(store.bin_shape_at(level))}), "
            f"bbox {box_text(bbox)}, {len(store.chunks(level, bbox))} chunks", ""]
    if columns is None:
        all_cols = store.to_dask_dataframe(level=level, bbox=bbox).columns
        skipped = [c for c in all_cols if c not in table.columns]
        if skipped:
            head[-1:] = [f"skipped (not numeric): {', '.join(skipped)}", ""]
    return "\n".join(head) + "\n" + stats_table(table)
