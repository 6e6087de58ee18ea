"""zv_dask: Dask-native reading and analysis of Zarr Vectors (ZV) stores.

The public face is this module's ``__all__``, :mod:`zv_dask.stats`, the ``zv-dask``
command (:mod:`zv_dask.cli`) and the ``zarr_vectors`` xarray engine.  Inside, one wing a
job; imports point down this list (checked by import-linter, see ``setup.cfg``):

- ``cli/`` - the ``zv-dask`` command line, one module per command;
- ``xarray/`` - :func:`read_zv` and the xarray backend engine;
- ``write/`` - :func:`to_zv`: plan, encode and put a store from a dask DataFrame;
- ``store.py`` - :func:`open_zv` and :class:`ZVStore`; ``fragments.py`` - fragment indexes;
- ``api/`` - the methods of ``ZVStore``, one mixin per job;
- ``stats/`` - statistics as dask reductions;
- ``collections/`` - the only builder of dask collections (:func:`read_las`,
  :func:`read_ply`, :func:`read_swc`, :func:`read_obj`, :func:`read_stl`,
  :func:`read_ply_mesh`, :func:`read_trk`, :func:`read_tck` and :func:`read_trx`
  included);
- ``neighbours/`` - neighbour searches in a task: a chunk and its halo, KD-trees;
- ``read/`` - readers run inside tasks: cells, object arrays, objects, links of a level;
- ``ingest/`` - readers of foreign files (LAS/LAZ, PLY, SWC, OBJ, STL, TRK/TCK/TRX):
  headers, per-task ranges, vectorised parsers;
- ``plan/`` - pure: which level, chunks and columns; predicates; partitions; halos;
- ``io/`` - the only wing that touches a store: locations, reads, documents, puts;
- ``format/`` - pure: zarr.json documents -> metadata values, chunk bytes <-> numpy;
- ``errors.py`` - the one error hierarchy.

Examples
--------
>>> import zv_dask
>>> store = zv_dask.open_zv(zv_dask.example_store())
>>> store.vertex_count(0) > 0
True
"""

from __future__ import annotations

from zv_dask._version import __version__
from zv_dask.format.decode import FragmentIndex
from zv_dask.errors import (
    ArrayNotFoundError,
    ChunkDecodeError,
    ChunkMissingError,
    ColumnNotFoundError,
    IncompleteStoreError,
    InputFileError,
    InvalidPointsError,
    LevelNotFoundError,
    MetadataError,
    MissingDependencyError,
    NotAZVStoreError,
    QueryError,
    StoreClosedError,
    StoreNotFoundError,
    StoreExistsError,
    StoreReadError,
    StoreWriteError,
    UnsupportedFormatError,
    WriteInputError,
    ZVError,
    ZVWarning,
)
from zv_dask import stats  # noqa: E402  (zv_dask.stats.describe etc. after `import zv_dask`)
from zv_dask.collections.ingest import read_las, read_ply, source_attributes
from zv_dask.collections.ingest_objects import read_obj, read_ply_mesh, read_stl, read_swc
from zv_dask.collections.ingest_tracts import read_tck, read_trk, read_trx
from zv_dask.fragments import read_fragment_index
from zv_dask.store import ZVStore, open_zv
from zv_dask.write.writer import to_zv
from zv_dask.xarray.datasets import read_zv


EXAMPLE_KINDS = ("points", "streamlines", "graph", "skeleton", "mesh")


def example_store(kind: str = "points") -> str:
    """Path of a small example store shipped inside the package.

    The stores were written once by the reference ``zarr-vectors`` writers
    (``scripts/make_example_store.py``, fixed seeds) and are committed, so they need
    nothing but zv_dask at run time.  All live in 0..2000 on every axis, chunk 500:

    - ``"points"`` (``point_cloud``): 5,000 points, bin 125, attributes ``intensity``
      (float32), ``label`` (int32) and ``region`` (categorical) on level 0; levels 1 and
      2 (504 and 63 points) hold positions only, as the reference ``build_pyramid``
      writes them;
    - ``"streamlines"`` (``streamline``): 40 streamlines (1,559 vertices), 2 levels,
      vertex attribute ``fa`` (level 0), object attributes ``mean_fa``, ``length``;
    - ``"graph"`` (``graph``): 3 clusters of 200 vertices (objects 0-2) joined to their
      nearest neighbours, vertex attribute ``degree``, link attribute ``length``, object
      attribute ``cluster_size``; 1 level;
    - ``"skeleton"`` (``skeleton``): 2 trees of 300 nodes (objects 0, 1), vertex
      attribute ``radius``; edges are (child, parent); 1 level;
    - ``"mesh"`` (``mesh``): 2 UV spheres (976 vertices, 1,840 triangles, objects 0, 1),
      vertex attribute ``curv``, object attribute ``area``; 1 level.

    Parameters
    ----------
    kind : str, default "points"
        One of ``"points"``, ``"streamlines"``, ``"graph"``, ``"skeleton"``, ``"mesh"``.

    Returns
    -------
    str
        The local path of the store (read it with :func:`open_zv`; do not write to it).

    Raises
    ------
    ValueError
        (a :class:`ZVError`, :class:`QueryError`) for another ``kind``, listing the kinds.

    Examples
    --------
    >>> import zv_dask
    >>> zv_dask.example_store().endswith("example.zarrvectors")
    True
    >>> zv_dask.open_zv(zv_dask.example_store("mesh")).geometry_type
    'mesh'
    """
    from pathlib import Path

    if kind not in EXAMPLE_KINDS:
        raise QueryError(f"example_store: unknown kind {kind!r}; choose one of "
                         + ", ".join(repr(k) for k in EXAMPLE_KINDS))
    name = "example" if kind == "points" else f"example_{kind}"
    return str(Path(__file__).parent / "data" / f"{name}.zarrvectors")


__all__ = [
    "open_zv", "to_zv", "ZVStore", "stats", "read_zv", "read_fragment_index", "FragmentIndex", "example_store",
    "ZVError", "StoreNotFoundError", "NotAZVStoreError", "UnsupportedFormatError",
    "MetadataError", "MissingDependencyError", "LevelNotFoundError", "ArrayNotFoundError", "QueryError",
    "ChunkMissingError", "ColumnNotFoundError", "ChunkDecodeError", "StoreReadError", "StoreClosedError",
    "ZVWarning",
    "IncompleteStoreError", "StoreExistsError", "WriteInputError", "InvalidPointsError",
    "StoreWriteError", "InputFileError", "read_las", "read_ply", "source_attributes",
    "read_swc", "read_obj", "read_stl", "read_ply_mesh",
    "read_trk", "read_tck", "read_trx",
    "__version__",
]
