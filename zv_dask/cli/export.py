"""``zv-dask export``: one Parquet file per chunk plus a partition index.

What OUT may be and what ``--overwrite`` removes is decided in :mod:`zv_dask.cli.outdir`
before anything is written.
"""

from __future__ import annotations

import argparse
import json

from zv_dask.cli.common import (
    add_query_args,
    add_store_arg,
    attributes_for,
    check_columns,
    columns_arg,
    compute_with_progress,
    para,
    parse_bbox,
    resolved_level,
    scheduler,
)
from zv_dask.cli.outdir import PARTITION_INDEX, OutputRefusedError, plan_output
from zv_dask.errors import QueryError, ZVError

NAME = "export"
OPENS_STORE = True

EPILOG = f"""\
output layout:
  OUT/part.000000.parquet, part.000001.parquet, ...
      one file per non-empty chunk touching the bbox, in row-major chunk order;
      rows are clipped to the bbox; no index column is written.  Categorical
      attributes are stored as Parquet dictionaries (they read back as
      categoricals).  Every file's key-value metadata holds "zv_dask": a JSON
      object with the store, level, bbox and axes.
  OUT/{PARTITION_INDEX}
      the partition index, for readers that prune by space: "partitions" lists,
      in file order, each file's "file" name, its chunk coordinate "chunk" and
      the chunk's box "x_min", "x_max", "y_min", ... (closed, in store
      coordinates; every row of the file lies inside it).  The leading "_"
      keeps Parquet readers from taking it for data.  When no chunk touches the
      bbox, one empty file keeps the schema and its "chunk" is null.

safety:
  OUT may not be the store, hold it or lie inside it.  A non-empty OUT needs
  --overwrite and must hold a previous export (a valid {PARTITION_INDEX}):
  only the files that index lists and the index are removed, never other
  files.  Refusals exit with code 3 before anything is written or deleted.

examples:
  zv-dask export cells.zarrvectors out_dir
  zv-dask export cells.zarrvectors out_dir --level 1 --columns x y z intensity
  zv-dask export cells.zarrvectors out_dir --bbox 0 0 0 1000 1000 1000 --overwrite

  python -c "import dask.dataframe as dd; print(dd.read_parquet('out_dir').head())"
"""


def add_parser(subparsers):
    """Register ``export`` on the ``zv-dask`` subparsers; returns its parser."""
    p = subparsers.add_parser(
        NAME, help="write the vertices as Parquet, one file per chunk",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description=para(
            "Write the rows of one level (optionally a bbox and some columns) through dask "
            "as a Parquet dataset that dask.dataframe.read_parquet, pandas and pyarrow "
            "read back, with a partition index giving each file's chunk and spatial box."))
    add_store_arg(p, required=True)
    p.add_argument("out", metavar="OUT", help="output directory (path or URL)")
    p.add_argument("--format", choices=["parquet"], default="parquet",
                   help="output format (default: parquet)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous export in OUT (only the files its "
                        f"{PARTITION_INDEX} lists are removed)")
    add_query_args(p)
    return p


def run(args, store) -> str:
    """The ``export`` command for an open store."""
    return run_export(store, args, parse_bbox(args.bbox, store.spatial_dims))


def export_frame(store, level=None, bbox=None, target_resolution=None, columns=None):
    """The dask DataFrame ``export`` writes: ``to_dask_dataframe`` restricted to
    ``columns`` (which fetches only the arrays they need).

    Examples
    --------
    >>> import zv_dask
    >>> s = zv_dask.open_zv(zv_dask.example_store())
    >>> list(export_frame(s, level=0, columns=["x", "intensity"]).columns)
    ['x', 'intensity']
    """
    lv = resolved_level(store, level, target_resolution)
    check_columns(store, lv, columns)
    ddf = store.to_dask_dataframe(level=level, bbox=bbox, target_resolution=target_resolution,
                                  attributes=attributes_for(store, lv, columns))
    if columns is None:
        return ddf
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise QueryError(f"unknown columns {missing}; available: {list(ddf.columns)}",
                         store=store.url, level=lv)
    return ddf[list(columns)]


def part_name(i: int) -> str:
    """File name of partition ``i``; zero-padded so name order is partition order."""
    return f"part.{i:06d}.parquet"


def partition_index(store, level=None, bbox=None, target_resolution=None, columns=None) -> dict:
    """The ``_zv_partitions.json`` document: the query and, per file, its chunk and box.

    Examples
    --------
    >>> import zv_dask
    >>> idx = partition_index(zv_dask.open_zv(zv_dask.example_store()), level=0)
    >>> p = idx["partitions"][0]
    >>> p["file"], p["chunk"], p["x_min"], p["x_max"]
    ('part.000000.parquet', [0, 0, 0], -1.235e-321, 499.99999999999994)
    """
    lv = resolved_level(store, level, target_resolution)
    table = store.partitions(level=level, bbox=bbox, target_resolution=target_resolution)
    box_cols = [f"{ax}_{e}" for ax in store.axes for e in ("min", "max")]
    parts = []
    for i, row in enumerate(table.itertuples(index=False)):
        row = row._asdict()
        entry = {"file": part_name(i), "chunk": [int(c) for c in row["chunk"]]}
        entry.update({k: float(row[k]) for k in box_cols})
        parts.append(entry)
    return {
        "format": "zv_dask parquet export 1",
        "store": store.url,
        "level": lv,
        "axes": list(store.axes),
        "bbox": None if bbox is None else [[float(v) for v in b] for b in bbox],
        "columns": columns,
        "box": "closed box [min, max] per axis, store coordinates: the smallest and largest "
               "value the writer's cell rule puts in the partition's chunks",
        "partitions": parts,
    }


def run_export(store, args, bbox) -> str:
    """Check OUT, build the frame and index, remove a previous export, write."""
    columns = columns_arg(args.columns)
    store_spec = getattr(args, "store_url", None) or args.store or store.url
    # the query is checked before OUT is touched: a bad column deletes nothing
    ddf = export_frame(store, args.level, bbox, args.target_resolution, columns)
    index = partition_index(store, args.level, bbox, args.target_resolution, columns)
    common = {k: index[k] for k in ("store", "level", "axes", "bbox")}
    if not index["partitions"]:  # nothing touches the bbox: one empty file keeps the schema
        index["partitions"] = [{"file": part_name(0), "chunk": None}]
    writes = [p["file"] for p in index["partitions"]] + [PARTITION_INDEX]
    out = plan_output(args.out, store_spec, bool(args.overwrite), writes)
    out.clear()
    # never overwrite=True: dask would delete all of OUT, files it did not write included
    lazy = ddf.to_parquet(args.out, write_index=False, compute=False, overwrite=False,
                          write_metadata_file=False, name_function=part_name,
                          custom_metadata={"zv_dask": json.dumps(common)})
    try:
        # the index goes first: an interrupted export is still recognised (and replaced
        # by --overwrite) instead of leaving parts no index claims
        out.fs.makedirs(out.path, exist_ok=True)
        with out.fs.open(f"{out.path}/{PARTITION_INDEX}", "w") as f:
            json.dump(index, f, indent=1)
        with scheduler(args.scheduler) as client:
            compute_with_progress(lazy, client)
    except ZVError:
        raise
    except OSError as exc:
        raise ExportWriteError(f"writing the export to {args.out} failed: {exc}; check "
                               "that OUT is writable and has space") from None
    n = len(index["partitions"])
    return (f"wrote {n} Parquet file{'s' * (n != 1)} (level {index['level']}, "
            f"columns {', '.join(ddf.columns)}) to {args.out}\n"
            f"partition index: {args.out.rstrip('/')}/{PARTITION_INDEX}")


class ExportWriteError(ZVError, OSError):
    """Writing the export's files failed (permissions, space, network)."""


__all__ = ["OutputRefusedError", "ExportWriteError", "export_frame", "partition_index",
           "part_name", "run_export", "add_parser", "run"]
