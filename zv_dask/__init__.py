"""zv_dask: Dask-native reading and analysis of Zarr Vectors (ZV) stores.

Examples
--------
>>> import zv_dask
>>> store = zv_dask.open_zv(zv_dask.example_store())
>>> store.vertex_count(0) > 0
True
"""

from __future__ import annotations

from ._decode import FragmentIndex
from ._version import __version__
from .errors import (
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
from .fragments import read_fragment_index
from ._xarray import read_zv
from .store import ZVStore, open_zv
from .writer import to_zv
from . import stats  # noqa: E402  (zv_dask.stats.describe etc. after `import zv_dask`)


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
