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
- ``collections/`` - the only builder of dask collections;
- ``read/`` - readers run inside tasks: cells, object arrays, objects, links of a level;
- ``plan/`` - pure: which level, chunks and columns; predicates; partitions;
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
    IncompleteStoreError,
    InvalidPointsError,
    LevelNotFoundError,
    MetadataError,
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
from zv_dask.fragments import read_fragment_index
from zv_dask.store import ZVStore, open_zv
from zv_dask.write.writer import to_zv
from zv_dask.xarray.datasets import read_zv


def example_store() -> str:
    """Path of the small example store shipped inside the package.

    Written once by the reference ``zarr-vectors`` writer: 5,000 3-D points in
    0..2000, chunk 500, bin 125, attributes ``intensity`` (float32), ``label``
    (int32) and ``region`` (categorical), and a 3-level pyramid.

    Examples
    --------
    >>> import zv_dask
    >>> zv_dask.example_store().endswith("example.zarrvectors")
    True
    """
    from pathlib import Path

    return str(Path(__file__).parent / "data" / "example.zarrvectors")


__all__ = [
    "open_zv", "to_zv", "ZVStore", "stats", "read_zv", "read_fragment_index", "FragmentIndex", "example_store",
    "ZVError", "StoreNotFoundError", "NotAZVStoreError", "UnsupportedFormatError",
    "MetadataError", "LevelNotFoundError", "ArrayNotFoundError", "QueryError",
    "ChunkMissingError", "ChunkDecodeError", "StoreReadError", "StoreClosedError",
    "ZVWarning",
    "IncompleteStoreError", "StoreExistsError", "WriteInputError", "InvalidPointsError",
    "StoreWriteError",
    "__version__",
]
