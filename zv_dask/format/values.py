"""The frozen metadata values a store is parsed into, and the format's known names.

Pure data: parsing and every refusal live in ``format.root``, ``format.levels`` and
``format.arrays``; ``format.metadata`` re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

KNOWN_CAPABILITIES = frozenset(
    {"shared_fragments", "preserved_object_ids", "multiscale_links", "fragment_index"}
)
KNOWN_GEOMETRIES = frozenset(
    {"point_cloud", "line", "polyline", "streamline", "skeleton", "graph", "mesh"}
)
KNOWN_LINK_CONVENTIONS = frozenset(
    {"implicit_sequential", "explicit", "implicit_sequential_with_branches"}
)
KNOWN_MANIFEST_LAYOUTS = frozenset({"vlen_manifests_v1", "vlen_manifests_v2"})
# Byte-to-byte codecs we decode ourselves after fetching a cell (numcodecs names).
DIRECT_BYTES_CODECS = frozenset({"zstd", "gzip", "blosc"})
# Codecs zarr 3.1 decodes; anything else is refused when the metadata is read.
KNOWN_CODECS = frozenset(
    {"blosc", "bytes", "endian", "crc32c", "gzip", "sharding_indexed", "zstd", "vlen-utf8",
     "vlen-bytes", "transpose"}
    | {f"numcodecs.{n}" for n in (
        "bz2", "crc32", "crc32c", "lz4", "lzma", "zfpy", "adler32", "astype", "bitround",
        "blosc", "delta", "fixedscaleoffset", "fletcher32", "gzip", "jenkins_lookup3", "pcodec",
        "packbits", "quantize", "shuffle", "zlib", "zstd")}
)


class FrozenMap(Mapping):
    """A read-only mapping that pickles (``types.MappingProxyType`` does not, so
    metadata holding one could not travel to worker processes with plain pickle).

    Examples
    --------
    >>> import pickle
    >>> m = FrozenMap({"a": 1})
    >>> pickle.loads(pickle.dumps(m)) == {"a": 1}
    True
    """

    __slots__ = ("_data",)

    def __init__(self, data=()):
        self._data = dict(data)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __reduce__(self):
        return (FrozenMap, (self._data,))

    def __dask_tokenize__(self):
        return ("zv_dask.FrozenMap", list(self._data.items()))


@dataclass(frozen=True, eq=False)
class ArrayMeta:
    """One array of a level, as far as its ``zarr.json`` tells.

    ``access`` says how cells are fetched: ``"plain"`` (file bytes are the vlen
    framing), ``"bytes_codecs"`` (framing wrapped by ``byte_codecs``, decoded with
    numcodecs), ``"sharded"`` (one object per shard of cells, ``shards`` says how it
    is laid out; decoded by zv_dask, see :mod:`zv_dask.format.shards`) or ``"zarr"``
    (unusual codecs, or sharding zv_dask does not decode: let zarr decode).
    """

    path: str
    kind: str
    shape: tuple
    origin: tuple
    dtype: np.dtype | None
    encoding: str | None
    access: str
    byte_codecs: tuple
    chunk_key_prefix: str
    chunk_separator: str
    attrs: Mapping
    document: Mapping
    shards: object = None  # a format.shards.ShardLayout when access == "sharded"

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, eq=False)
class AttributeInfo:
    """A per-vertex attribute of a level."""

    name: str
    path: str
    dtype: np.dtype
    width: int
    categories: tuple | None = None
    fill_code: int | None = None
    implied_by_key: bool = False  # chunk_by_attribute: value comes from the cell key
    # False when the writer may have recorded row_shape [] for a multi-column attribute
    # (write_polylines/graph/mesh do): the width then comes from the bytes of a chunk.
    width_reliable: bool = True

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None

    @property
    def value_dtype(self) -> np.dtype:
        """dtype of the decoded values (categoricals decode to objects)."""
        return np.dtype(object) if self.is_categorical else self.dtype


@dataclass(frozen=True, eq=False)
class ObjectIndexMeta:
    num_objects: int
    num_present: int
    sid_ndim: int
    layout: str
    manifests: ArrayMeta
    object_ids: ArrayMeta | None


@dataclass(frozen=True, eq=False)
class Presence:
    """The non-empty cells of a grid array as sorted row-major linear indices.

    Sorting linear indices of ``coord - origin`` equals numeric tuple order.
    """

    shape: tuple
    origin: tuple
    linear: np.ndarray  # (K,) int64, sorted, unique

    def coords(self, linear: np.ndarray | None = None) -> np.ndarray:
        lin = self.linear if linear is None else linear
        if len(lin) == 0:
            return np.zeros((0, len(self.shape)), np.int64)
        idx = np.stack(np.unravel_index(lin, self.shape), axis=1).astype(np.int64)
        return idx + np.asarray(self.origin, np.int64)

    def __len__(self) -> int:
        return len(self.linear)


@dataclass(frozen=True, eq=False)
class LevelMeta:
    level: int
    chunk_shape: np.ndarray
    bin_shape: np.ndarray
    bin_ratio: np.ndarray
    vertex_count: int | None  # None: not recorded (unknown)
    rank: int  # rank of cell keys: D, or D+1 with a leading attribute axis
    vertices: ArrayMeta
    vertex_fragments: ArrayMeta | None
    presence: Presence
    attributes: Mapping[str, AttributeInfo]
    object_index: ObjectIndexMeta | None
    object_attributes: Mapping[str, ArrayMeta]
    chunk_attribute: tuple | None  # (name, values) for chunk_by_attribute levels
    shared_fragments: bool
    fragments_tile: bool
    arrays: Mapping[str, ArrayMeta]
    attrs: Mapping

    @property
    def n_cells(self) -> int:
        return len(self.presence)


@dataclass(frozen=True, eq=False)
class StoreMeta:
    name: str
    zv_version: str
    capabilities: tuple
    geometry_types: tuple
    axes: tuple
    chunk_shape: np.ndarray
    bounds: tuple  # (lo, hi) float64
    base_bin_shape: np.ndarray
    levels: Mapping[int, LevelMeta] = field(default_factory=dict)
    attrs: Mapping = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return len(self.axes)

    @property
    def geometry_type(self) -> str:
        return self.geometry_types[0] if self.geometry_types else "point_cloud"


@dataclass(frozen=True)
class RootInfo:
    """What the root document says before the levels are read (validated values)."""

    zvm: Mapping
    multiscale: Mapping
    level_names: tuple
    chunk_shape: tuple
    base_bin_shape: tuple
    bounds: tuple
    axes: tuple
    transforms: Mapping  # level name -> (scale or None, translation or None)
