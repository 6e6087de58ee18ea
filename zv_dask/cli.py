"""The ``zv-dask`` command line (also ``python -m zv_dask``)."""

from __future__ import annotations

import argparse
import sys

from .errors import ZVError


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


def _store_arg(p):
    p.add_argument("store", nargs="?", default=None,
                   help="path or URL of a .zarrvectors store (default: the example store "
                        "shipped with zv_dask)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zv-dask",
        description="Read and analyse Zarr Vectors stores with dask.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_info = sub.add_parser("info", help="levels, counts, chunk and bin shapes, attributes "
                                         "(metadata only, no chunk data read)")
    _store_arg(p_info)
    return parser


def main(argv=None) -> int:
    from . import example_store, open_zv

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    url = args.store or example_store()
    try:
        with open_zv(url) as store:
            if args.command == "info":
                print(info_text(store))
    except ZVError as exc:
        print(f"zv-dask: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
