"""``zv-dask info``: a plain-text summary of a store, from metadata only."""

from __future__ import annotations

from zv_dask.cli.common import add_store_arg, fmt

NAME = "info"
OPENS_STORE = True


def add_parser(subparsers):
    """Register ``info`` on the ``zv-dask`` subparsers; returns its parser."""
    p = subparsers.add_parser(
        NAME, help="levels, counts, chunk and bin shapes, attributes (metadata only)",
        description="Print the store's levels, vertex and chunk counts, chunk and bin "
                    "shapes and attributes.  Reads metadata only, no chunk data.")
    add_store_arg(p)
    return p


def run(args, store) -> str:
    """The ``info`` command's output for an open store."""
    return info_text(store)


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
        f"bounds     {fmt(lo)} .. {fmt(hi)}",
        f"capabilities {', '.join(meta.capabilities) or '-'}",
        "",
        f"{'level':>5} {'vertices':>10} {'chunks':>7} {'grid':>14} {'chunk_shape':>22} "
        f"{'bin_shape':>22} {'objects':>8}",
    ]
    for lv, lm in meta.levels.items():
        oi = lm.object_index
        grid = "x".join(str(s) for s in lm.presence.shape)
        lines.append(
            f"{lv:>5} {'?' if lm.vertex_count is None else lm.vertex_count:>10} {lm.n_cells:>7} {grid:>14} "
            f"{fmt(lm.chunk_shape):>22} {fmt(lm.bin_shape):>22} "
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
