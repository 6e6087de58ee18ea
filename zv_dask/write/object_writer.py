"""The object side of ``to_zv``: which geometries it writes and what it refuses first.

``to_zv(geometry="streamline" | "polyline")`` takes one row per vertex with an integer
``object_id`` column; everything else (targets, lock, column rules, estimate) is the
point writer's.  The graph is :mod:`zv_dask.write.objects_graph`, the cells and
object-wide tables :mod:`zv_dask.write.objects`.
"""

from __future__ import annotations

from zv_dask.errors import WriteInputError
from zv_dask.write.objects_graph import prepass as _prepass

OBJECT_ID = "object_id"
POLYLINES = ("streamline", "polyline")
RECORD_WIDTH = {"graph": 2, "skeleton": 2, "mesh": 3}
GEOMETRIES = ("point",) + POLYLINES + tuple(RECORD_WIDTH)


def check_geometry(geometry, options: dict, attributes, store: str) -> bool:
    """True for an object geometry (after its options are checked), False for points."""
    if not isinstance(geometry, str) or geometry not in GEOMETRIES:
        raise WriteInputError(f"geometry must be one of {', '.join(map(repr, GEOMETRIES))}, "
                              f"got {geometry!r}", store=store)
    if geometry == "point":
        return False
    why = [k for k, bad in (("compressor other than 'zstd'",
                             options.get("compressor") not in (None, False, "none", "zstd")),
                            ("shard_shape", options.get("shard_shape") is not None)) if bad]
    if why:
        raise WriteInputError(f"geometry={geometry!r} is written with compressor None or 'zstd' "
                              f"and no shard_shape; drop {', '.join(why)}", store=store)
    if attributes is not None and OBJECT_ID in attributes:
        raise WriteInputError(f"{OBJECT_ID!r} names the objects, not an attribute: leave it "
                              "out of attributes=[...]", store=store)
    return True


def with_object_ids(ddf, geometry: str):
    """Graphs and meshes without an ``object_id`` column are one object 0 (the
    reference's default)."""
    if geometry in RECORD_WIDTH and OBJECT_ID not in ddf.columns:
        return ddf.assign(**{OBJECT_ID: 0})
    return ddf


def records(geometry: str, edges, faces, n_vertices: int, store: str) -> tuple:
    """``(records frame, link attribute columns, rows per partition)`` of ``edges=`` or
    ``faces=``, checked (integers, inside the vertices) before anything is written."""
    from zv_dask.write.edges_graph import check_records, record_frame

    width = RECORD_WIDTH[geometry]
    given, other = (edges, faces) if width == 2 else (faces, edges)
    name, other_name = ("edges", "faces") if width == 2 else ("faces", "edges")
    if given is None:
        raise WriteInputError(f"geometry={geometry!r} needs {name}=", store=store)
    if other is not None:
        raise WriteInputError(f"{other_name}= is for geometry="
                              f"{'mesh' if width == 2 else 'graph'!r}", store=store)
    rdf, extra = record_frame(given, width, store)
    return rdf, extra, check_records(rdf, width, n_vertices, store)


def prepass(ddf, axes, dtype, bounds, cat_columns, chunk_shape, column, store,
            raw_extent=True, fragments=False) -> dict:
    """The objects' pre-pass (``fragments``: with each partition's fragment starts, for a
    graph or mesh pyramid); a frame without the id column or without rows is refused."""
    if column not in ddf.columns:
        raise WriteInputError(f"geometry needs an integer {column!r} column naming each "
                              f"vertex's object; the DataFrame has {list(ddf.columns)}",
                              store=store)
    stats = _prepass(ddf, axes, dtype, bounds, cat_columns, chunk_shape, column, store,
                     raw_extent, fragments)
    if stats["n"] == 0:
        raise WriteInputError("the DataFrame has no rows, so there are no objects to write",
                              store=store)
    return stats
