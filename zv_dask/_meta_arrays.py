"""One array's ``zarr.json`` -> :class:`ArrayMeta`, and presence lists -> :class:`Presence`.

Every value that later builds a path, sizes an allocation or picks a decoder is
checked here: shape, origin, chunk grid, key separator, codecs, dtype.  Pure.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np

from . import _meta_check as C
from ._meta_values import DIRECT_BYTES_CODECS, KNOWN_CODECS, ArrayMeta, FrozenMap, Presence
from .errors import MetadataError, UnsupportedFormatError

SEPARATORS = (".", "/")
# dtypes a payload can be decoded as: bool, integers, floats (no strings, objects, "S0")
_NUMERIC_KINDS = "biuf"
_MAX_CELLS = 2**63 - 1  # linear cell indices are int64


def parse_array(doc, path: str, store: str, level: int) -> ArrayMeta:
    """Parse and validate one array ``zarr.json`` (grid or object-level).

    Parameters
    ----------
    doc : dict or None
        The parsed document.
    path : str
        The array's path inside the level (``"vertices"``, ``"object_index/manifests"``).
    store, level
        Where it is, for errors.

    Returns
    -------
    ArrayMeta

    Examples
    --------
    >>> doc = {"zarr_format": 3, "node_type": "array", "shape": [2, 2],
    ...        "data_type": "variable_length_bytes",
    ...        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1]}},
    ...        "codecs": [{"name": "vlen-bytes"}], "attributes": {"dtype": "float32"}}
    >>> a = parse_array(doc, "vertices", "demo", 0)
    >>> a.shape, a.chunk_separator, a.access
    ((2, 2), '/', 'plain')
    """
    where = {"store": store, "level": level, "array": path}
    if doc is None:
        raise MetadataError(f"array {path!r} has no zarr.json", **where)
    doc = C.mapping(doc, "zarr.json", where)
    if doc.get("node_type") != "array" or doc.get("zarr_format") != 3:
        raise MetadataError("expected a zarr v3 array here (node_type 'array', zarr_format 3)",
                            **where)
    attrs = C.mapping(doc.get("attributes"), "attributes", where, optional=True)
    shape = C.ints(doc.get("shape"), "shape", where, lo=0, hi=C.MAX_INDEX)
    if math.prod(shape) > _MAX_CELLS:
        C.fail("shape", f"{list(shape)} has more than 2**63 cells", where)
    origin = (0,) * len(shape)
    if attrs.get("chunk_grid_origin") is not None:
        origin = C.ints(attrs["chunk_grid_origin"], "chunk_grid_origin", where, n=len(shape),
                        lo=-(2**53), hi=2**53)
    dtype = None
    if "dtype" in attrs:
        dtype = parse_dtype(attrs["dtype"], "dtype", where)
    data_type = doc.get("data_type")
    if not isinstance(data_type, str) and not (
            isinstance(data_type, Mapping) and isinstance(data_type.get("name"), str)):
        C.fail("data_type", f"must be a data type name, got {C.short(data_type)}", where)
    grid = _chunk_grid(doc.get("chunk_grid"), len(shape), where)
    codecs = _codecs(doc.get("codecs"), "codecs", where)
    access, byte_codecs = _classify_codecs(data_type, grid, codecs)
    prefix, sep = _key_encoding(doc.get("chunk_key_encoding"), where)
    kind = attrs.get("zv_array", attrs.get("zvf_array", ""))
    clean = {k: v for k, v in attrs.items() if k != "nonempty_chunks"}
    return ArrayMeta(
        path=path,
        kind=C.string(kind, "zv_array", where),
        shape=shape,
        origin=origin,
        dtype=dtype,
        encoding=C.string(attrs.get("encoding"), "encoding", where, optional=True),
        access=access,
        byte_codecs=byte_codecs,
        chunk_key_prefix=prefix,
        chunk_separator=sep,
        attrs=FrozenMap(clean),
        # without the presence list: tasks carry this document, and it can be megabytes
        document=FrozenMap({**doc, "attributes": clean}),
    )


def parse_dtype(value, field: str, where: Mapping) -> np.dtype:
    """A numeric numpy dtype (little-endian) from its JSON spelling."""
    if not isinstance(value, str):
        C.fail(field, f"must be a numpy dtype name, got {C.short(value)}", where)
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError):
        C.fail(field, f"{C.short(value)} is not a numpy dtype", where)
    if dt.kind not in _NUMERIC_KINDS or dt.itemsize == 0 or dt.fields is not None:
        C.fail(field, f"{value!r} is not a numeric dtype (bool, int, uint or float)", where)
    return dt.newbyteorder("<")


def _chunk_grid(grid, rank: int, where) -> tuple:
    grid = C.mapping(grid, "chunk_grid", where)
    if grid.get("name") != "regular":
        C.fail("chunk_grid.name", f"{C.short(grid.get('name'))} is not supported (only "
               "'regular')", where, UnsupportedFormatError)
    conf = C.mapping(grid.get("configuration"), "chunk_grid.configuration", where)
    return C.ints(conf.get("chunk_shape"), "chunk_grid.configuration.chunk_shape", where,
                  n=rank, lo=1, hi=C.MAX_INDEX, allow_empty=rank == 0)


def _codecs(codecs, field: str, where) -> tuple:
    """``((name, configuration), ...)``; unknown names -> UnsupportedFormatError."""
    if not isinstance(codecs, list) or len(codecs) > 16:
        C.fail(field, f"must be a list of codecs, got {C.short(codecs)}", where)
    out = []
    for i, c in enumerate(codecs):
        f = f"{field}[{i}]"
        if isinstance(c, str):
            c = {"name": c}
        c = C.mapping(c, f, where)
        name = C.string(c.get("name"), f + ".name", where)
        if name not in KNOWN_CODECS:
            C.fail(f + ".name", f"is the unknown codec {name!r}; zv_dask decodes "
                   f"{sorted(n for n in KNOWN_CODECS if '.' not in n)} (and numcodecs.*)",
                   where, UnsupportedFormatError)
        conf = C.mapping(c.get("configuration"), f + ".configuration", where, optional=True)
        if name == "sharding_indexed":
            _codecs(conf.get("codecs"), f + ".configuration.codecs", where)
            _codecs(conf.get("index_codecs", []), f + ".configuration.index_codecs", where)
        out.append((name, dict(conf)))
    return tuple(out)


def _classify_codecs(data_type, grid: tuple, codecs: tuple) -> tuple[str, tuple]:
    if data_type != "variable_length_bytes":
        return "zarr", ()
    if grid and all(g == 1 for g in grid) and codecs[:1] and codecs[0][0] == "vlen-bytes":
        rest = codecs[1:]
        if not rest:
            return "plain", ()
        if all(name in DIRECT_BYTES_CODECS for name, _ in rest):
            return "bytes_codecs", tuple(rest)
    return "zarr", ()


def _key_encoding(cke, where) -> tuple[str, str]:
    """(prefix, separator); the separator builds object paths, so only "." or "/"."""
    cke = C.mapping(cke, "chunk_key_encoding", where, optional=True)
    name = cke.get("name", "default")
    if name not in ("default", "v2"):
        C.fail("chunk_key_encoding.name", f"{C.short(name)} is not supported (known: "
               "'default', 'v2')", where, UnsupportedFormatError)
    conf = C.mapping(cke.get("configuration"), "chunk_key_encoding.configuration", where,
                     optional=True)
    sep = conf.get("separator", "." if name == "v2" else "/")
    if sep not in SEPARATORS:
        C.fail("chunk_key_encoding.configuration.separator",
               f"must be '.' or '/', got {C.short(sep)}", where)
    return ("" if name == "v2" else "c/"), sep


# --------------------------------------------------------------------------- presence


def parse_presence(doc: Mapping, arr: ArrayMeta, store: str, level: int) -> Presence | None:
    """``nonempty_chunks`` -> :class:`Presence`; ``None`` when the list is absent.

    Examples
    --------
    >>> doc = {"zarr_format": 3, "node_type": "array", "shape": [2, 2],
    ...        "data_type": "variable_length_bytes",
    ...        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1]}},
    ...        "codecs": [{"name": "vlen-bytes"}],
    ...        "attributes": {"nonempty_chunks": ["1.0", "0.1"]}}
    >>> parse_presence(doc, parse_array(doc, "vertices", "demo", 0), "demo", 0).coords()
    array([[0, 1],
           [1, 0]])
    """
    attrs = doc.get("attributes") if isinstance(doc, Mapping) else None
    keys = attrs.get("nonempty_chunks") if isinstance(attrs, Mapping) else None
    if keys is None:
        return None
    where = {"store": store, "level": level, "array": arr.path}
    if not isinstance(keys, list):
        C.fail("nonempty_chunks", f"must be a list of chunk keys, got {C.short(keys)}", where)
    try:
        coords = parse_keys(keys, arr.rank)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        C.fail("nonempty_chunks", f"must hold keys of {arr.rank} dot-separated integers "
               f"(like {'.'.join(['0'] * arr.rank)!r}): {exc}", where)
    return presence_from_coords(coords, arr, store, level)


_ALLOWED = b"0123456789.-,"
_DOT, _COMMA, _MINUS = ord("."), ord(","), ord("-")


def parse_keys(keys: list, rank: int) -> np.ndarray:
    """Dotted chunk keys -> ``(K, rank)`` int64, strictly, without a Python loop per key.

    Every key must be ``rank`` fields of an optional ``-`` and ASCII digits joined by
    ``.``; anything else raises ``ValueError`` (``TypeError`` for a non-string).  The
    checks are scans of the joined text; numpy's text parser then reads the validated
    text in one call.

    Examples
    --------
    >>> parse_keys(["0.-1", "10.2"], 2)
    array([[ 0, -1],
           [10,  2]])
    """
    if not isinstance(keys, (list, tuple)):
        raise TypeError(f"expected a list of keys, got {type(keys).__name__}")
    n = len(keys)
    if n == 0:
        return np.zeros((0, rank), np.int64)
    joined = ",".join(keys)  # TypeError if a key is not a string
    raw = joined.encode("ascii")  # UnicodeEncodeError on any non-ASCII character
    if raw.translate(None, _ALLOWED):
        bad = next(k for k in keys if k.encode("ascii").translate(None, _ALLOWED))
        raise ValueError(f"key {C.short(bad)} holds a character other than digits, '.', '-'")
    if raw.count(b",") != n - 1:
        raise ValueError(f"a key holds ',': {C.short(next(k for k in keys if ',' in k))}")
    b = np.frombuffer(raw, np.uint8)
    sep = (b == _DOT) | (b == _COMMA)
    seps = np.flatnonzero(sep)
    if len(seps) != n * rank - 1:
        raise ValueError(_odd_key(keys, rank))
    kinds = np.empty(n * rank, np.uint8)  # '.' between fields, ',' after each key's last
    kinds[:-1] = b[seps]
    kinds[-1] = _COMMA
    kinds = kinds.reshape(n, rank)
    if not ((kinds[:, :-1] == _DOT).all() and (kinds[:, -1] == _COMMA).all()):
        raise ValueError(_odd_key(keys, rank))
    if sep[0] or sep[-1] or (sep[1:] & sep[:-1]).any():
        raise ValueError("an empty field")
    minus = np.flatnonzero(b == _MINUS)
    if len(minus) and not (
            (minus + 1 < len(b)).all()
            and ((minus == 0) | sep[minus - 1]).all()
            and (b[np.minimum(minus + 1, len(b) - 1)] - 48 < 10).all()):
        raise ValueError("a '-' that does not start a number")
    with warnings.catch_warnings():  # validated above: numpy's text parser reads it all
        warnings.simplefilter("error")
        vals = np.fromstring(joined.replace(",", "."), dtype=np.int64, sep=".")
    if len(vals) != n * rank:  # pragma: no cover - the checks above rule it out
        raise ValueError("keys did not parse")
    # numpy saturates numbers beyond int64: anything this large is refused
    if vals.max() > C.MAX_INDEX or vals.min() < -C.MAX_INDEX:
        raise ValueError("a coordinate beyond +-2**62")
    return vals.reshape(n, rank)


def _odd_key(keys: list, rank: int) -> str:
    bad = next((k for k in keys if k.count(".") != rank - 1), None)
    return f"key {C.short(bad)} has {bad.count('.') + 1} fields" if bad is not None else \
        "keys of different lengths"


def presence_from_coords(coords: np.ndarray, arr: ArrayMeta, store: str, level: int) -> Presence:
    """Absolute cell coordinates -> :class:`Presence` (refusing cells outside the grid).

    Examples
    --------
    >>> doc = {"zarr_format": 3, "node_type": "array", "shape": [3],
    ...        "data_type": "variable_length_bytes",
    ...        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1]}},
    ...        "codecs": [{"name": "vlen-bytes"}]}
    >>> arr = parse_array(doc, "vertices", "demo", 0)
    >>> len(presence_from_coords(np.array([[2], [0], [2]]), arr, "demo", 0))
    2
    """
    if len(coords) == 0:
        return Presence(arr.shape, arr.origin, np.zeros(0, np.int64))
    idx = coords - np.asarray(arr.origin, np.int64)
    try:  # ravel_multi_index refuses any index outside the shape
        lin = np.ravel_multi_index(tuple(idx.T), arr.shape).astype(np.int64, copy=False)
    except ValueError:
        bad = coords[np.flatnonzero(((idx < 0) | (idx >= np.asarray(arr.shape))).any(1))[0]]
        raise MetadataError(
            f"field 'nonempty_chunks' lists chunk {tuple(bad.tolist())} outside the array grid "
            f"(shape {arr.shape}, origin {arr.origin}); rebuild the presence list with "
            "zarr-vectors",
            store=store, level=level, array=arr.path,
        ) from None
    lin.sort()  # np.unique is far slower on a million keys (numpy 2.x hashes first)
    if len(lin) > 1 and not (lin[1:] > lin[:-1]).all():
        lin = lin[np.r_[True, lin[1:] != lin[:-1]]]
    return Presence(arr.shape, arr.origin, lin)
