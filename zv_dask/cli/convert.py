"""``zv-dask convert SOURCE... OUT``: build a store from LAS/LAZ, PLY, Parquet or CSV
points, SWC skeletons, OBJ/STL/PLY meshes or TRK/TCK/TRX streamlines with ``to_zv``.

One of the command modules listed in ``zv_dask.cli.COMMANDS``: :func:`add_parser`
adds it, :func:`run` runs it (it writes a store instead of opening one).
"""

from __future__ import annotations

import argparse
import math
import sys

from zv_dask.cli.common import (_scheduler_arg, add_storage_args, compute_with_progress,
                                scheduler, storage_options)
from zv_dask.cli.outdir import OutputRefusedError

NAME = "convert"
OPENS_STORE = False

#: --format choices and the file name endings that pick them
FORMATS = {"las": (".las", ".laz"), "ply": (".ply",), "csv": (".csv", ".csv.gz", ".txt"),
           "parquet": (".parquet", ".pq"), "swc": (".swc",), "obj": (".obj",),
           "stl": (".stl",), "ply-points": (), "trk": (".trk",), "tck": (".tck",),
           "trx": (".trx",)}
#: formats read as streamlines (an ObjectSource, not a DataFrame)
TRACT_FORMATS = ("trk", "tck", "trx")

EPILOG = """\
examples:
  zv-dask convert 'tiles/*.laz' city.zarrvectors --chunk-shape 100 --levels 3
  zv-dask convert scan.ply scan.zarrvectors --chunk-shape 0.5
  zv-dask convert 'neurons/*.swc' neurons.zarrvectors --chunk-shape 5000
  zv-dask convert 'meshes/*.obj' meshes.zarrvectors --chunk-shape 1000
  zv-dask convert 'subjects/*.trk' tracts.zarrvectors --chunk-shape 20
  zv-dask convert points.parquet points.zarrvectors --chunk-shape 250 --levels 3
  zv-dask convert points.parquet sharded.zarrvectors --chunk-shape 250 --shard-shape 4 \\
      --compressor zstd
  zv-dask convert 'tiles/*.csv' s3://bucket/pts.zarrvectors --chunk-shape 100 100 \\
      --bin-shape 25 25 --bounds 0 0 1000 1000 --scheduler tcp://10.0.0.5:8786
  zv-dask export old.zarrvectors rows && zv-dask convert rows copy.zarrvectors \\
      --like old.zarrvectors        (the same layout: chunks, bins, bounds, levels, codecs)
"""


def add_parser(sub):
    """Add the ``convert`` sub-command to ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser(
        NAME, help="build a store (pyramid included) from LAS/LAZ, PLY, Parquet or CSV "
                   "points, SWC skeletons, OBJ/STL/PLY meshes or TRK/TCK/TRX streamlines",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Read SOURCE (LAS/LAZ or PLY files, a Parquet file, directory or glob, "
                    "or CSV files; several paths or globs of one format) with dask and write "
                    "it as a Zarr Vectors point-cloud store with zv_dask.to_zv: every "
                    "non-axis column becomes a vertex attribute.  LAS/LAZ: positions are "
                    "stored as float64 when float32 cannot hold the file's scale, and the "
                    "scales, offsets and CRS go into the store's root attributes "
                    "(zv_dask_source).  PLY: a mesh when a file has faces (--format "
                    "ply-points: its vertices as points).  SWC: one skeleton object per "
                    "tree; OBJ (one object per g/o group), STL, PLY with faces: meshes.  TRK, TCK, "
                    "TRX: streamlines (RAS+ mm, as nibabel loads them) with per-point and "
                    "per-streamline data; the header's affine goes into zv_dask_source.")
    p.add_argument("source", metavar="SOURCE", nargs="+",
                   help="LAS/LAZ, PLY, Parquet (file/directory/glob) or CSV; several paths "
                        "or globs of one format")
    p.add_argument("out", metavar="OUT", help="store path or URL to create")
    p.add_argument("--format", choices=sorted(FORMATS), default=None,
                   help="the SOURCE format (default: from the file name ending: "
                        ".las/.laz, .ply, .csv/.csv.gz/.txt, .swc, .obj, .stl, .trk, .tck, "
                        ".trx, otherwise Parquet); ply-points reads a PLY's vertices only")
    p.add_argument("--like", metavar="STORE",
                   help="copy the layout of this store: axes, chunk and bin shape, bounds, "
                        "levels, dtype, compressor and shard shape default to its values "
                        "(an option given as well wins)")
    p.add_argument("--chunk-shape", type=float, nargs="+",
                   help="chunk edge lengths (one value, or one per axis); required "
                        "without --like")
    p.add_argument("--bin-shape", type=float, nargs="+", help="level-0 bin edge lengths")
    p.add_argument("--levels", type=int, default=None,
                   help="resolution levels (default 1, or --like's)")
    p.add_argument("--bounds", type=float, nargs="+",
                   help="min... max... (2 x axes values); default: the data extent")
    p.add_argument("--axes", nargs="+", help="position columns (default x y [z])")
    p.add_argument("--attributes", nargs="*", help="attribute columns (default: all others)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="stored position type (default float32, or --like's; float64 for "
                        "LAS/LAZ or PLY coordinates that float32 cannot hold)")
    p.add_argument("--compressor", type=_compressor_arg, default=None,
                   help="level-0 cell codecs: none (default), zstd, blosc, or a JSON list "
                        "of zarr codec documents, e.g. '[{\"name\": \"gzip\", "
                        "\"configuration\": {\"level\": 5}}]'")
    p.add_argument("--shard-shape", type=int, nargs="+",
                   help="level-0 cells per shard (one value, or one per axis)")
    p.add_argument("--shard-levels", action="store_true",
                   help="shard links and coarse levels too, with --shard-shape and no "
                        "compression (what zarr_vectors.sharding.shard_store makes)")
    p.add_argument("--max-overhead", type=_overhead_arg, default=100,
                   help="refuse a layout estimated above 256 MiB and this many times the "
                        "rows' bytes (default 100; none: never refuse)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--scheduler", type=_scheduler_arg, default="threads",
                   help="threads (default), processes, sync, or a scheduler address")
    add_storage_args(p, applies_to="OUT, SOURCE and --like STORE", access="read or write")
    return p


def _compressor_arg(text: str):
    """``none``, ``zstd``, ``blosc`` or a JSON list of codec documents."""
    import json

    if text.strip().startswith("["):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"--compressor is not valid JSON: {exc}") from None
    if text not in ("none", "zstd", "blosc"):
        raise argparse.ArgumentTypeError(
            f"--compressor must be none, zstd, blosc or a JSON list, got {text!r}")
    return None if text == "none" else text


_GLOB = ("*", "?", "[")


def is_remote(url: str) -> bool:
    """True for an fsspec URL other than ``file://`` (storage options apply to it)."""
    return "://" in url and not url.startswith("file://")


def source_files(source: str, options=None) -> list:
    """The files a glob SOURCE matches (``[source]`` for a plain path or URL); raises
    :class:`~zv_dask.errors.StoreNotFoundError` when there is nothing to read.
    ``options`` are the fsspec storage options of a remote SOURCE."""
    import fsspec

    from zv_dask.errors import StoreNotFoundError

    try:
        fs, path = fsspec.core.url_to_fs(source, **(options or {}))
        if any(c in path for c in _GLOB):
            found = [fs.unstrip_protocol(f) if "://" in source else f for f in fs.glob(path)]
            if not found:
                raise StoreNotFoundError(f"SOURCE {source} matches no files; check the "
                                         "pattern (quote it so the shell leaves it alone)")
            return found
        if not fs.exists(path):
            raise StoreNotFoundError(f"SOURCE {source} does not exist; check the path")
    except (ImportError, ValueError, OSError) as exc:
        if isinstance(exc, StoreNotFoundError):
            raise
        raise StoreNotFoundError(f"cannot reach SOURCE {source} ({type(exc).__name__}: "
                                 f"{exc})") from None
    return [source]


def check_out(out: str, source: str, files: list) -> None:
    """Refuse an OUT that is, holds or lies inside SOURCE (``--overwrite`` would delete
    the input before it is read); the other OUT rules are ``to_zv``'s."""
    from zv_dask.io.paths import relation

    for src in dict.fromkeys([source] + files):
        rel = relation(out, src)
        if rel is not None:
            what = {"is": "is", "holds": "holds", "inside": "lies inside"}[rel]
            raise OutputRefusedError(f"OUT {out} {what} SOURCE {src}; write the store to a "
                                     "path outside the source")


def _positive(name: str, values) -> None:
    from zv_dask.errors import WriteInputError

    if values is not None and not all(math.isfinite(v) and v > 0 for v in values):
        raise WriteInputError(f"{name} takes positive finite numbers, got "
                              f"{' '.join(f'{v:g}' for v in values)}")


def _overhead_arg(text: str):
    """A number > 0, or ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(
            f"--max-overhead must be a number > 0 or none, got {text!r}")
    return v


def source_format(sources: list, forced=None) -> str:
    """The format of SOURCE: ``forced`` (``--format``), else from the name endings;
    a mix of formats is refused.

    Examples
    --------
    >>> source_format(["tiles/*.LAZ", "extra.las"]), source_format(["pts"])
    ('las', 'parquet')
    """
    from zv_dask.errors import WriteInputError

    if forced is not None:
        return forced
    found = set()
    for src in sources:
        low = src.lower().rstrip("/")
        found.add(next((f for f, ends in FORMATS.items() if low.endswith(ends)), "parquet"))
    if len(found) > 1:
        raise WriteInputError(f"SOURCE mixes formats ({', '.join(sorted(found))}): "
                              f"{' '.join(sources)}; convert one format at a time")
    return found.pop()


# points per LAS/LAZ task: a thread holds one range as it is read and keyed (about
# 100 bytes a point), so peak memory follows this, not the file (1 M: ~440 MB in all)
LAS_POINTS_PER_TASK = 250_000


def read_source(source, options=None, fmt=None):
    """A dask DataFrame of SOURCE, or an ObjectSource of TRK/TCK/TRX streamlines (a
    path or list; ``options``: fsspec storage options; ``fmt``: the format, by default
    from the name)."""
    import dask.dataframe as dd

    from zv_dask.collections import ingest_objects as IO
    from zv_dask.collections.ingest import read_las, read_ply

    sources = [source] if isinstance(source, str) else list(source)
    fmt = fmt or source_format(sources)
    if fmt in TRACT_FORMATS:  # streamlines: an ObjectSource for to_zv
        from zv_dask.collections import ingest_tracts

        reader = getattr(ingest_tracts, f"read_{fmt}")
        return reader(sources) if fmt == "trx" else reader(sources, storage_options=options)
    one = sources[0] if len(sources) == 1 else sources
    if fmt == "las":
        return read_las(sources, storage_options=options,
                        points_per_partition=LAS_POINTS_PER_TASK)
    if fmt == "ply" and IO.ply_has_faces(sources, options):
        return IO.read_ply_mesh(sources, storage_options=options)
    if fmt in ("ply", "ply-points"):
        return read_ply(sources, storage_options=options)
    if fmt in ("swc", "obj", "stl"):
        return getattr(IO, f"read_{fmt}")(sources, storage_options=options)
    if fmt == "csv":
        return dd.read_csv(one, storage_options=options)
    return dd.read_parquet(one, storage_options=options)


def _read_errors() -> tuple:
    """Exception types of a SOURCE that does not parse (pyarrow, pandas' CSV parser)."""
    import pandas as pd

    out = [pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError]
    try:
        import pyarrow

        out.append(pyarrow.ArrowException)
    except ImportError:  # pragma: no cover - pyarrow is a dask[dataframe] dependency
        pass
    return tuple(out)


def _unreadable(source: str, exc: BaseException):
    from zv_dask.errors import WriteInputError

    first = " ".join(str(exc).split())[:300]
    return WriteInputError(f"cannot read SOURCE {source} ({type(exc).__name__}: {first}); "
                           "check that it is Parquet (a file, directory or glob) or CSV "
                           "(.csv, .csv.gz, .txt)")


def _progress(line: str) -> None:
    """One line per phase on stderr (stdout keeps the summary)."""
    print(f"zv-dask convert: {line}", file=sys.stderr, flush=True)


def _ingest_choices(df, args) -> tuple:
    """The position dtype and root attributes of a LAS/LAZ or PLY source (what its
    headers said), with a progress line; ``(args.dtype, None)`` for other sources."""
    from zv_dask.collections.ingest import SOURCE_KEY, source_attributes
    from zv_dask.ingest.source import ObjectSource

    if isinstance(df, ObjectSource) and "float32_exact" not in df.source:
        # skeletons, meshes: to_zv records their facts itself
        info = df.source
        _progress(f"read {len(info['files'])} {info['format'].upper()} files: "
                  f"{info['vertex_count']} vertices, {info['object_count']} "
                  f"{'trees' if df.geometry == 'skeleton' else 'objects'} in "
                  f"{df.vertices.npartitions} partitions")
        return args.dtype, None
    info = getattr(df, "source", None) or source_attributes(df)
    if info is None:  # Parquet/CSV: quiet as before (the progress bar shows the work)
        return args.dtype, None
    frame = getattr(df, "vertices", df)
    lines = (f"{info['streamline_count']} streamlines, " if "streamline_count" in info
             else "")
    _progress(f"read headers of {len(info['files'])} {info['format'].upper()} files: "
              f"{lines}{info['point_count']} points in {frame.npartitions} partitions")
    dtype = args.dtype
    if not info["float32_exact"]:
        if dtype is None and args.like is None:
            dtype = "float64"
            why = ("the file's scale at these offsets" if info["format"] == "las"
                   else "the file's float64 coordinates")
            _progress(f"positions stored as float64: float32 cannot hold {why}; "
                      "--dtype float32 to force it")
        elif str(dtype) == "float32":
            _progress("warning: float32 positions do not keep the file's scale")
    return dtype, {SOURCE_KEY: info}


def run(args, store=None) -> str:
    """Run ``convert``; returns the text to print."""
    from zv_dask.errors import StoreExistsError, WriteInputError, ZVError
    from zv_dask.write.writer import to_zv

    bounds = None
    if args.bounds is not None:
        if len(args.bounds) % 2:
            raise WriteInputError("--bounds takes the min of every axis then the max of "
                                  f"every axis; got {len(args.bounds)} values", store=args.out)
        h = len(args.bounds) // 2
        bounds = (args.bounds[:h], args.bounds[h:])
    _positive("--chunk-shape", args.chunk_shape)
    _positive("--bin-shape", args.bin_shape)
    options = storage_options(args)
    sources = [args.source] if isinstance(args.source, str) else list(args.source)
    fmt = source_format(sources, getattr(args, "format", None))
    source_options = options if any(is_remote(s) for s in sources) else None
    for src in sources:
        check_out(args.out, src, source_files(src, source_options))
    chunk = None if args.chunk_shape is None else (
        args.chunk_shape[0] if len(args.chunk_shape) == 1 else args.chunk_shape)
    bins = None if args.bin_shape is None else (
        args.bin_shape[0] if len(args.bin_shape) == 1 else args.bin_shape)
    shards = None if args.shard_shape is None else (
        args.shard_shape[0] if len(args.shard_shape) == 1 else tuple(args.shard_shape))
    unreadable = _read_errors()
    shown = " ".join(sources)
    try:
        with scheduler(args.scheduler) as client:
            try:
                df = read_source(sources, source_options, fmt)
            except ZVError:
                raise
            except (ValueError, OSError) + unreadable as exc:
                raise _unreadable(shown, exc) from None
            dtype, extra = _ingest_choices(df, args)
            if extra is not None or getattr(df, "geometry", None):
                _progress(f"writing {args.out}")
            job = to_zv(df, args.out, chunk_shape=chunk, bin_shape=bins, bounds=bounds,
                        levels=args.levels, axes=args.axes, attributes=args.attributes,
                        compressor=args.compressor, shard_shape=shards, dtype=dtype,
                        overwrite=args.overwrite, max_overhead=args.max_overhead,
                        like=args.like, storage_options=options, retries=args.retries,
                        store_attributes=extra, shard_levels=args.shard_levels or None,
                        compute=False)
            summary = compute_with_progress(job, client)
    except StoreExistsError as exc:  # OUT refused: nothing was written or deleted
        raise OutputRefusedError(str(exc)) from None
    except unreadable as exc:
        raise _unreadable(shown, exc) from None
    lines = [f"wrote {summary['url']}"]
    objects = f", {summary['objects']} objects" if "objects" in summary else ""
    for lv, (n, c) in enumerate(zip(summary["vertex_count"], summary["chunks"])):
        lines.append(f"  level {lv}: {n} vertices{objects} in {c} chunks")
    return "\n".join(lines)
