"""One array's ``zarr.json`` -> :class:`ArrayMeta`, and presence lists -> :class:`Presence`.

Every value that later builds a path, sizes an allocation or picks a decoder is
checked here: shape, origin, chunk grid, key separator, codecs, dtype.  Pure.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import numpy as np

from zv_dask.errors import MetadataError, UnsupportedFormatError
from zv_dask.format import checks as C
from zv_dask.format.shards import parse_sharding
from zv_dask.format.values import DIRECT_BYTES_CODECS, KNOWN_CODECS, ArrayMeta, FrozenMap, Presence

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
    shards = parse_sharding(grid, codecs) if access == "zarr" and \
        data_type == "variable_length_bytes" else None
    if shards is not None:
        access, byte_codecs = "sharded", shards.inner_codecs
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
        shards=shards,
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
    return _presence(coords, arr, store, level)


_ALLOWED = b"0123456789.-,"
_DOT, _COMMA, _MINUS, _ZERO = ord("."), ord(","), ord("-"), ord("0")
_MINUS_DIGIT = (_MINUS - _ZERO) % 256  # a '-' byte after subtracting '0'
# up to 18 digits a field is below 10**18 < 2**62: it cannot overflow nor need a range check
_FAST_DIGITS = 18
_PAD = _FAST_DIGITS + 4  # separators before the text: a backward scan never leaves it
_FIELD = re.compile(r"-?[0-9]+")


def parse_keys(keys: list, rank: int) -> np.ndarray:
    """Dotted chunk keys -> ``(K, rank)`` int64, strictly, without a Python loop per key.

    Every key must be ``rank`` fields of an optional ``-`` and ASCII digits joined by
    ``.``; anything else raises ``ValueError`` (``TypeError`` for a non-string).  The
    keys are joined with ``,``; byte scans check the characters and the separator
    pattern, then every field is read backwards from its end, one vectorised gather
    per decimal place, which also checks it is ``-?[0-9]+`` (a ``-`` only right after
    the separator).

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
    raw = ",".join(keys).encode("ascii")  # TypeError: not a string; UnicodeEncodeError
    if raw.translate(None, _ALLOWED):
        bad = next(k for k in keys if k.encode("ascii").translate(None, _ALLOWED))
        raise ValueError(f"key {C.short(bad)} holds a character other than digits, '.', '-'")
    # separators before and after the text: every field lies between two separators
    b = np.full(len(raw) + _PAD + 1, _COMMA, np.uint8)
    b[_PAD:-1] = np.frombuffer(raw, np.uint8)
    del raw
    core = b[_PAD - 1:]  # ',' + text + ','
    flag = np.bitwise_or(core, 2).view(np.bool_)  # of the allowed bytes, '.' and ',' -> '.'
    seps = np.flatnonzero(np.equal(flag.view(np.uint8), _DOT, out=flag))
    del flag
    if len(seps) != n * rank + 1:
        raise ValueError(_explain(keys, rank))
    kinds = np.take(core, seps)  # ',' before each key's first field, '.' between fields
    if (kinds[::rank] != _COMMA).any() or np.count_nonzero(kinds == _COMMA) != n + 1:
        raise ValueError(_explain(keys, rank))
    # a field ends before the separator at ``hi`` (in ``core``); the byte ``j`` places
    # before its last is ``b[_PAD - 2 - j:][hi]``: a view, no index arithmetic
    got = _read_fields(b, seps[1:])
    if got is None:
        raise ValueError(_explain(keys, rank))
    if got == "long":  # a field of more than 18 digits (leading zeros?): exact Python ints
        return _parse_long(keys, rank)
    vals, neg = got
    if neg.any():  # the signs applied while widening to int64
        vals = np.multiply(vals, 1 - 2 * neg.view(np.int8), dtype=np.int64)
    else:
        vals = vals.astype(np.int64)
    return vals.reshape(n, rank)


def _read_fields(b: np.ndarray, hi: np.ndarray):
    """(unsigned values, negative flags) of the fields of ``b``, read from their last
    byte backwards, one gather per place; ``None`` when a field is not ``-?[0-9]+``
    between its separators, ``"long"`` when one has more than 18 digits.

    Values are summed in the narrowest unsigned type that holds the digits seen so
    far.  The first non-digit before a field's digits is its separator or a ``-``
    that the next byte must show to be preceded by the separator: every byte of every
    field is checked.
    """
    f = len(hi)
    live = np.ones(f, bool)  # fields still in their digits
    neg = np.zeros(f, bool)
    minus = None  # fields whose '-' was the previous byte
    vals = np.zeros(f, np.uint16)
    tmp = np.empty_like(vals)
    for j in range(_FAST_DIGITS + 2):
        col = np.take(b[_PAD - 2 - j:], hi)
        if minus is not None and ((col[minus] | 2) != _DOT).any():
            return None  # a '-' not right after the separator
        if not live.any():
            return vals, neg
        col -= np.uint8(_ZERO)
        digit = col < 10
        if j == 0 and not digit.all():
            return None  # an empty field, or one ending in '-'
        ended = live & ~digit  # the digits of these fields started at the previous byte
        minus = None
        if ended.any():
            minus = ended & (col == _MINUS_DIGIT)
            neg |= minus
            minus = minus if minus.any() else None
            live &= digit
            if not live.any():
                continue  # done, but for what precedes a '-' (the next byte)
        if j == _FAST_DIGITS:
            return "long"
        if j in (4, 9):  # uint16 holds any 4 digits, uint32 any 9
            vals = vals.astype(np.uint32 if j == 4 else np.int64)
            tmp = np.empty_like(vals)
        col *= live  # fields whose digits are done add nothing
        np.multiply(col, vals.dtype.type(10 ** j), out=tmp)
        vals += tmp
    return vals, neg


def _parse_long(keys: list, rank: int) -> np.ndarray:
    """The keys with a field of more than 18 digits, one Python int per field (range
    checked: numbers beyond +-2**62 are refused)."""
    fields = [k.split(".") for k in keys]
    if any(len(f) != rank or not all(_FIELD.fullmatch(x) for x in f) for f in fields):
        raise ValueError(_explain(keys, rank))
    vals = [int(x) for f in fields for x in f]
    if max(vals) > C.MAX_INDEX or min(vals) < -C.MAX_INDEX:
        raise ValueError("a coordinate beyond +-2**62")
    return np.array(vals, np.int64).reshape(len(keys), rank)


def _explain(keys: list, rank: int) -> str:
    """Why the keys were refused: the first offending key, found the slow way."""
    for k in keys:
        if "," in k:
            return f"a key holds ',': {C.short(k)}"
        fields = k.split(".")
        if len(fields) != rank:
            return f"key {C.short(k)} has {len(fields)} fields"
        for x in fields:
            if not x:
                return f"key {C.short(k)} has an empty field"
            if not _FIELD.fullmatch(x):
                return f"key {C.short(k)}: {x!r} is not an integer ('-' only starts one)"
    return "keys of different lengths"  # pragma: no cover - the scans found a reason


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
    return _presence(np.array(coords, np.int64), arr, store, level)


def _presence(coords: np.ndarray, arr: ArrayMeta, store: str, level: int) -> Presence:
    """:func:`presence_from_coords` turning ``coords`` (int64, ours) into grid indices
    in place."""
    if len(coords) == 0:
        return Presence(arr.shape, arr.origin, np.zeros(0, np.int64))
    origin = np.asarray(arr.origin, np.int64)
    idx = coords
    idx -= origin
    try:  # ravel_multi_index refuses any index outside the shape
        lin = np.ravel_multi_index(tuple(idx.T), arr.shape).astype(np.int64, copy=False)
    except ValueError:
        bad = idx[np.flatnonzero(((idx < 0) | (idx >= np.asarray(arr.shape))).any(1))[0]] \
            + origin
        raise MetadataError(
            f"field 'nonempty_chunks' lists chunk {tuple(bad.tolist())} outside the array grid "
            f"(shape {arr.shape}, origin {arr.origin}); rebuild the presence list with "
            "zarr-vectors",
            store=store, level=level, array=arr.path,
        ) from None
    return Presence(arr.shape, arr.origin, _sorted_unique(lin, math.prod(arr.shape)))


def _sorted_unique(lin: np.ndarray, cells: int) -> np.ndarray:
    """``lin`` (indices below ``cells``) sorted without repeats.  A dense grid marks a
    bitmap and scans it (linear time); otherwise sort (np.unique is far slower on a
    million keys: numpy 2.x hashes first)."""
    if cells <= 8 * len(lin) + (1 << 20):
        seen = np.zeros(cells, bool)
        seen[lin] = True
        return np.flatnonzero(seen)
    lin.sort()
    if len(lin) > 1 and not (lin[1:] > lin[:-1]).all():
        lin = lin[np.r_[True, lin[1:] != lin[:-1]]]
    return lin
