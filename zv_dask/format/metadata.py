"""``zarr.json`` documents -> frozen metadata values (the one import point).

Every format-version rule and every refusal lives in the modules re-exported here,
each with one job: ``format.values`` (the values), ``format.checks`` (typed checks of
untrusted JSON values), ``format.root`` (root document), ``format.arrays`` (array
documents, presence lists), ``format.levels`` (levels, attributes, object index).
All pure: they take parsed JSON documents and never do IO.
"""

from __future__ import annotations

from zv_dask.format.arrays import (  # noqa: F401
    SEPARATORS,
    parse_array,
    parse_dtype,
    parse_keys,
    parse_presence,
    presence_from_coords,
)
from zv_dask.format.levels import (  # noqa: F401
    attribute_info,
    build_level,
    level_geometry,
    parse_level_attrs,
)
from zv_dask.format.root import build_store, check_version, parse_root  # noqa: F401
from zv_dask.format.values import (  # noqa: F401
    DIRECT_BYTES_CODECS,
    KNOWN_CAPABILITIES,
    KNOWN_CODECS,
    KNOWN_GEOMETRIES,
    KNOWN_LINK_CONVENTIONS,
    KNOWN_MANIFEST_LAYOUTS,
    ArrayMeta,
    AttributeInfo,
    LevelMeta,
    ObjectIndexMeta,
    Presence,
    RootInfo,
    StoreMeta,
)
from zv_dask.errors import MetadataError, NotAZVStoreError, UnsupportedFormatError  # noqa: F401
