"""The ``zv-dask`` command line (also ``python -m zv_dask``).

Commands: ``info`` (metadata), ``stats`` (count/mean/std/min/max/sum per column as a
dask reduction) and ``export`` (one Parquet file per chunk plus a partition index).
Exit codes: 0 success, 1 a zv_dask error (``zv-dask: error: ...``), 2 a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import textwrap

from .errors import QueryError, ZVError

PARTITION_INDEX = "_zv_partitions.json"
LOCAL_SCHEDULERS = ("threads", "processes", "sync")
PROGRESS_AFTER_S = 1.0  # no progress bar for work that finishes sooner


class UsageError(Exception):
    """A command-line argument that only the open store can reject (exit code 2)."""


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def info_text(store) -> str:
    """A plain-text summary of a store, from metadata only.

    Examples
    --------
    >>> import zv_dask
    >>> print(info_text(zv_dask.open_zv(zv_dask.example_store())).splitlines()[1])
    zv_version 0.9.2, geometry point_cloud, 3-D axes (x, y, z)
    """
    meta = store.metadata
    lo, hi = meta.bounds
    lines = [
        f"store      {store.url}",
        f"zv_version {meta.zv_version}, geometry {meta.geometry_type}, "
        f"{meta.spatial_dims}-D axes ({', '.join(meta.axes)})",
        f"bounds     {_fmt(lo)} .. {_fmt(hi)}",
        f"capabilities {', '.join(meta.capabilities) or '-'}",
        "",
        f"{'level':>5} {'vertices':>10} {'chunks':>7} {'grid':>14} {'chunk_shape':>22} "
        f"{'bin_shape':>22} {'objects':>8}",
    ]
    for lv, lm in meta.levels.items():
        oi = lm.object_index
        grid = "x".join(str(s) for s in lm.presence.shape)
        lines.append(
            f"{lv:>5} {lm.vertex_count:>10} {lm.n_cells:>7} {grid:>14} "
            f"{_fmt(lm.chunk_shape):>22} {_fmt(lm.bin_shape):>22} "
            f"{(oi.num_present if oi else '-'):>8}"
        )
    lines.append("")
    for lv, lm in meta.levels.items():
        if not lm.attributes:
            lines.append(f"level {lv} attributes: -")
            continue
        parts = []
        for a in lm.attributes.values():
            kind = f"categorical[{len(a.categories)}]" if a.is_categorical else str(a.dtype)
            parts.append(f"{a.name} {kind}" + (f" x{a.width}" if a.width > 1 else ""))
        lines.append(f"level {lv} attributes: " + ", ".join(parts))
    return "\n".join(lines)


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


def _columns(values):
    """``--columns a b,c`` -> ``["a", "b", "c"]`` (None when not given)."""
    if values is None:
        return None
    return [c for v in values for c in v.split(",") if c]


def _store_arg(p, required=False):
    if required:
        p.add_argument("store", metavar="STORE", help="path or URL of a .zarrvectors store")
    else:
        p.add_argument("store", metavar="STORE", nargs="?", default=None,
                       help="path or URL of a .zarrvectors store (default: the example "
                            "store shipped with zv_dask)")


def _query_args(p):
    lod = p.add_mutually_exclusive_group()
    lod.add_argument("--level", type=int, metavar="N",
                     help="resolution level to read (default: 0, the finest)")
    lod.add_argument("--target-resolution", type=float, metavar="R",
                     help="read the coarsest level whose bin edge is <= R (level 0 if none)")
    p.add_argument("--bbox", nargs=1, metavar="X0 Y0 Z0 X1 Y1 Z1",
                   help="closed box: the low corner then the high corner, one number per "
                        "axis (X0 Y0 X1 Y1 for a 2-D store); only chunks touching it are "
                        "read.  Also --bbox=X0,Y0,Z0,X1,Y1,Z1")
    p.add_argument("--columns", nargs="+", metavar="COL",
                   help="columns to use (space- or comma-separated), e.g. x intensity; "
                        "default: all")
    p.add_argument("--scheduler", type=_scheduler_arg, default="threads",
                   metavar="{threads,processes,sync,ADDRESS}",
                   help="dask scheduler: threads (default), processes, sync, or the "
                        "address of a running dask.distributed scheduler (tcp://host:8786)")


STATS_EPILOG = """\
examples:
  zv-dask stats                                   # the example store, level 0
  zv-dask stats cells.zarrvectors --level 2 --columns intensity fa
  zv-dask stats cells.zarrvectors --bbox 0 0 0 500 500 500 --target-resolution 250
  zv-dask stats s3://bucket/cells.zarrvectors --scheduler tcp://10.0.0.5:8786

Categorical columns are skipped (describe needs numbers).  std uses ddof=1.
Put STORE before --columns (which takes every word after it).
"""

EXPORT_EPILOG = f"""\
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
      the chunk's box "x_min", "x_max", "y_min", ... (half-open, in store
      coordinates; every row of the file lies inside it).  The leading "_"
      keeps Parquet readers from taking it for data.  When no chunk touches the
      bbox, one empty file keeps the schema and its "chunk" is null.

examples:
  zv-dask export cells.zarrvectors out_dir
  zv-dask export cells.zarrvectors out_dir --level 1 --columns x y z intensity
  zv-dask export cells.zarrvectors out_dir --bbox 0 0 0 1000 1000 1000 --overwrite

  python -c "import dask.dataframe as dd; print(dd.read_parquet('out_dir').head())"
"""

MAIN_EPILOG = """\
exit codes: 0 success, 1 zv_dask error (bad store, level, column, bbox corners),
            2 usage error (unknown option, wrong number of --bbox values, --level
            together with --target-resolution)

examples:
  zv-dask info
  zv-dask stats cells.zarrvectors --level 1
  zv-dask export cells.zarrvectors out_dir

Run 'zv-dask COMMAND --help' for the options of a command.
"""


def _para(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), 79)


def build_parser() -> argparse.ArgumentParser:
    """The ``zv-dask`` argument parser (commands ``info``, ``stats``, ``export``).

    Examples
    --------
    >>> args = build_parser().parse_args(["stats", "s.zarrvectors", "--level", "1"])
    >>> args.command, args.store, args.level
    ('stats', 's.zarrvectors', 1)
    """
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="zv-dask", formatter_class=fmt, epilog=MAIN_EPILOG,
        description="Read and analyse Zarr Vectors (ZV 0.9.x) stores with dask.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_info = sub.add_parser(
        "info", help="levels, counts, chunk and bin shapes, attributes (metadata only)",
        description="Print the store's levels, vertex and chunk counts, chunk and bin "
                    "shapes and attributes.  Reads metadata only, no chunk data.")
    _store_arg(p_info)
    p_stats = sub.add_parser(
        "stats", help="count, mean, std, min, max, sum per column (a dask reduction)",
        formatter_class=fmt, epilog=STATS_EPILOG,
        description=_para("Compute count, mean, std, min, max and sum of every numeric column "
                    "(axes and attributes) with zv_dask.stats.describe, a dask reduction over "
                    "the chunks (grouped into tasks of about a million rows), and print them as a table, one row per column.  A progress "
                    "bar shows on stderr when the work takes more than a second."))
    _store_arg(p_stats)
    _query_args(p_stats)
    p_export = sub.add_parser(
        "export", help="write the vertices as Parquet, one file per chunk",
        formatter_class=fmt, epilog=EXPORT_EPILOG,
        description=_para("Write the rows of one level (optionally a bbox and some columns) "
                    "through dask as a Parquet dataset that dask.dataframe.read_parquet, "
                    "pandas and pyarrow read back, with a partition index giving each "
                    "file's chunk and spatial box."))
    _store_arg(p_export, required=True)
    p_export.add_argument("out", metavar="OUT", help="output directory (path or URL)")
    p_export.add_argument("--format", choices=["parquet"], default="parquet",
                          help="output format (default: parquet)")
    p_export.add_argument("--overwrite", action="store_true",
                          help="replace OUT when it exists and is not empty")
    _query_args(p_export)
    from . import cli_convert  # hook: the convert command lives in its own module

    p_convert = cli_convert.add_parser(sub, _scheduler_arg)
    parser._zv_commands = {"info": p_info, "stats": p_stats, "export": p_export,
                           "convert": p_convert}
    return parser


# --------------------------------------------------------------------------- running


def resolved_level(store, level=None, target_resolution=None) -> int:
    """The level a query with these arguments reads (what ``read`` would pick)."""
    if target_resolution is not None:
        return store.select_level(target_resolution)
    return min(store.levels) if level is None else level


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
    only after a second) locally, ``distributed.progress`` on a cluster."""
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


def _box_text(bbox) -> str:
    return "-" if bbox is None else f"{_fmt(bbox[0])} .. {_fmt(bbox[1])}"


def run_stats(store, args, bbox) -> str:
    """The ``stats`` command's output for an open store."""
    from .stats import describe

    columns = _columns(args.columns)
    level = resolved_level(store, args.level, args.target_resolution)
    check_columns(store, level, columns)
    lazy = describe(store, columns=columns, level=args.level, bbox=bbox,
                    target_resolution=args.target_resolution)
    with scheduler(args.scheduler) as client:
        table = compute_with_progress(lazy, client)
    head = [f"store  {store.url}",
            f"level  {level} (bin_shape {_fmt(store.bin_shape_at(level))}), "
            f"bbox {_box_text(bbox)}, {len(store.chunks(level, bbox))} chunks", ""]
    if columns is None:
        all_cols = store.to_dask_dataframe(level=level, bbox=bbox).columns
        skipped = [c for c in all_cols if c not in table.columns]
        if skipped:
            head[-1:] = [f"skipped (not numeric): {', '.join(skipped)}", ""]
    return "\n".join(head) + "\n" + stats_table(table)


def check_columns(store, level: int, columns) -> None:
    """Raise ``QueryError`` naming the valid choices when a column is not in the level.

    Valid: the axes, attribute names, ``name_i`` columns of multi-column attributes,
    and ``object_id`` when the level has an object index.

    Examples
    --------
    >>> import zv_dask
    >>> check_columns(zv_dask.open_zv(zv_dask.example_store()), 0, ["x", "intensity"])
    """
    if columns is None:
        return
    attrs = store.attributes_at(level)
    valid = list(store.axes) + list(attrs)
    if store.object_count_at(level) is not None:
        valid.append("object_id")
    bad = [c for c in columns if c not in valid and c.rsplit("_", 1)[0] not in attrs]
    if bad:
        raise QueryError(f"unknown columns {bad}; level {level} has {', '.join(valid)} "
                         "(multi-column attributes as name_0, name_1, ...)", store=store.url)


def _attributes_for(store, level: int, columns):
    """The stored attributes that ``columns`` (axes, attributes, ``name_i``) need."""
    if columns is None:
        return None
    known = store.attributes_at(level)
    return sorted({c if c in known else c.rsplit("_", 1)[0] for c in columns} & set(known))


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
                                  attributes=_attributes_for(store, lv, columns))
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
    ('part.000000.parquet', [0, 0, 0], 0.0, 500.0)
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
        "box": "half-open chunk box [min, max) per axis, store coordinates",
        "partitions": parts,
    }


def _prepare_out(out: str, overwrite: bool):
    import fsspec

    fs, path = fsspec.core.url_to_fs(out)
    if fs.exists(path):
        if not fs.isdir(path):
            raise QueryError(f"{out} exists and is not a directory; choose another OUT")
        if fs.ls(path) and not overwrite:
            raise QueryError(f"{out} exists and is not empty; pass --overwrite to replace it")
    return fs, path


def run_export(store, args, bbox) -> str:
    """The ``export`` command: write the Parquet files, then the partition index."""
    columns = _columns(args.columns)
    fs, path = _prepare_out(args.out, args.overwrite)
    ddf = export_frame(store, args.level, bbox, args.target_resolution, columns)
    index = partition_index(store, args.level, bbox, args.target_resolution, columns)
    common = {k: index[k] for k in ("store", "level", "axes", "bbox")}
    if not index["partitions"]:  # nothing touches the bbox: one empty file keeps the schema
        index["partitions"] = [{"file": part_name(0), "chunk": None}]
    lazy = ddf.to_parquet(args.out, write_index=False, compute=False,
                          overwrite=bool(args.overwrite and fs.exists(path)),
                          name_function=part_name,
                          custom_metadata={"zv_dask": json.dumps(common)})
    with scheduler(args.scheduler) as client:
        compute_with_progress(lazy, client)
    with fs.open(f"{path.rstrip('/')}/{PARTITION_INDEX}", "w") as f:
        json.dump(index, f, indent=1)
    n = len(index["partitions"])
    return (f"wrote {n} Parquet file{'s' * (n != 1)} (level {index['level']}, "
            f"columns {', '.join(ddf.columns)}) to {args.out}\n"
            f"partition index: {args.out.rstrip('/')}/{PARTITION_INDEX}")


def _run(store, args, parser) -> str:
    if args.command == "info":
        return info_text(store)
    try:
        bbox = parse_bbox(args.bbox, store.spatial_dims)
    except UsageError as exc:
        parser._zv_commands[args.command].error(str(exc))
    if args.command == "stats":
        return run_stats(store, args, bbox)
    return run_export(store, args, bbox)


def main(argv=None) -> int:
    """Entry point of ``zv-dask``; returns the exit code (0, 1 or 2).

    Examples
    --------
    >>> main(["info"])  # doctest: +ELLIPSIS
    store      .../example.zarrvectors
    ...
    0
    """
    from . import example_store, open_zv

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(glue_bbox(argv))
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "convert":  # hook: writes a store instead of opening one
        from . import cli_convert

        try:
            print(cli_convert.run(args, scheduler, compute_with_progress))
        except ZVError as exc:
            print(f"zv-dask: error: {exc}", file=sys.stderr)
            return 1
        return 0
    url = args.store or example_store()
    try:
        with open_zv(url) as store:
            print(_run(store, args, parser))
    except ZVError as exc:
        print(f"zv-dask: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
