"""Which columns ``to_zv`` stores, under which names and types.  Pure: no IO, no dask.

Every check here runs on the column names and dtypes alone (or, for ``<NA>`` in
nullable columns, on counts the caller gathers), before the pre-pass over the data
and before a target is cleared, so bad input never leaves a byte behind.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from zv_dask.errors import InvalidPointsError, WriteInputError

RESERVED_COLUMNS = ("object_id",)
INTERNAL_PREFIX = "_zv_"        # the writer's own columns (block key, input order)
RESERVED_NAMES = ("zarr.json",)  # the one non-attribute entry of vertex_attributes/
MAX_NAME_BYTES = 255             # a file name on every common file system
_MULTI = re.compile(r"^(.+)_(0|[1-9][0-9]*)$")  # canonical indices only: a_00 is no a_0
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class AttrSpec:
    """One vertex attribute: its source columns and how it is stored."""

    name: str
    columns: tuple
    dtype: str                      # stored element type (codes dtype when categorical)
    width: int = 0                  # 0: scalar column; C: (N, C) from name_0..name_{C-1}
    categories: tuple | None = None
    fill_code: int | None = None    # code of missing values (categorical with gaps)

    @property
    def categorical(self) -> bool:
        return self.categories is not None


# ----------------------------------------------------------------------------- names


def _fold(name: str) -> str:
    # the key under which case- and normalisation-insensitive file systems (macOS,
    # Windows) see a directory name
    return unicodedata.normalize("NFC", name).casefold()


# names Windows keeps for devices, with any extension ("nul.txt" is NUL too)
_WINDOWS_DEVICE = re.compile(r"^(con|prn|aux|nul|(com|lpt)[0-9\u00b9\u00b2\u00b3])(\..*)?$",
                             re.IGNORECASE)


def check_name(name, store: str, kind: str = "column",
               folder: str = "vertex_attributes") -> None:
    """Refuse a name that is not a safe single path step of the store.

    Every name ``to_zv`` turns into a directory (vertex, link and object attributes)
    passes here before anything is written.

    Parameters
    ----------
    name : object
        The name as the user gave it (a column label).
    store : str
        The target store, named in the error.
    kind : str, default "column"
        What the name labels, for the message ("link attribute", ...).
    folder : str, default "vertex_attributes"
        The group the name would become a directory of, for the message.

    Raises
    ------
    WriteInputError
        When the name is not a string, is empty, holds a path separator, starts with
        ``.``, is ``zarr.json``, holds control characters, is a Windows device name
        (``CON``, ``nul.txt``, ...) or is longer than a file name may be.

    Examples
    --------
    >>> check_name("intensity", "out.zv")
    >>> check_name("../x", "out.zv", "link attribute", "link_attributes")
    Traceback (most recent call last):
    ...
    zv_dask.errors.WriteInputError: store out.zv: link attribute '../x' cannot be stored ...
    """
    fix = ("rename it (df.rename(columns={...})) or leave it out with attributes=[...]"
           if kind == "column" else "rename the column")

    def bad(why):
        raise WriteInputError(f"{kind} {name!r} cannot be stored as an attribute: {why}; "
                              f"{fix}", store=store)

    if not isinstance(name, str):
        bad(f"it is a {type(name).__name__}, and stored names are strings")
    if name == "":
        bad("the name is empty")
    if "/" in name or "\\" in name:
        bad(f"'/' and '\\' would make it a path, writing outside {folder}/")
    if name.startswith("."):
        bad("names starting with '.' are '.', '..' (path steps) or hidden files, and zarr "
            "v2 keeps its own '.zarray'/'.zattrs' there")
    if _fold(name) in RESERVED_NAMES:
        bad(f"'zarr.json' is the document of the {folder} group itself")
    if _CONTROL.search(name):
        bad("it holds control characters")
    if _WINDOWS_DEVICE.match(name.strip()):
        bad("it is a Windows device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9), which no "
            "Windows file system can hold as a directory")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        bad("it is not valid Unicode text (lone surrogates)")
    if size > MAX_NAME_BYTES:
        bad(f"it is {size} bytes in UTF-8, more than a file name may hold ({MAX_NAME_BYTES})")


def _check_selected(pairs, used: list, store: str) -> None:
    """Column labels the write reads: strings, each once, none of the writer's own."""
    labels = [c for c, _ in pairs]
    for c in used:
        if not isinstance(c, str):
            raise WriteInputError(
                f"column {c!r} has a {type(c).__name__} name; stored names are strings: "
                "rename the columns (df.columns = df.columns.map(str)) or leave it out "
                "with attributes=[...]", store=store)
        if labels.count(c) > 1:
            raise WriteInputError(
                f"column {c!r} appears {labels.count(c)} times in the DataFrame; one name "
                "holds one column: rename or drop the copies", store=store)
        if c.startswith(INTERNAL_PREFIX):
            raise WriteInputError(
                f"column {c!r}: names starting with {INTERNAL_PREFIX!r} are reserved for "
                "the writer's own columns (shuffle key, input order); rename it or leave it "
                "out with attributes=[...]", store=store)


# ----------------------------------------------------------------------------- types


def _kind(dtype) -> str:
    """'num', 'bool', 'cat' or 'other' for a pandas/numpy dtype."""
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return "cat"
    if isinstance(dtype, pd.SparseDtype):
        return _kind(dtype.subtype)
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "num"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "cat"
    return "other"


def _numpy_dtype(dtype) -> np.dtype:
    import pandas as pd

    if isinstance(dtype, pd.SparseDtype):  # stored dense: the same values
        return np.dtype(dtype.subtype)
    np_dtype = getattr(dtype, "numpy_dtype", None)  # pandas nullable / arrow numeric
    try:
        return np.dtype(np_dtype if np_dtype is not None else dtype)
    except TypeError:
        return np.dtype(object)


def nullable(dtype) -> bool:
    """A masked (``Int64``, ``boolean``, ``Float64``) or arrow column: it can hold <NA>."""
    import pandas as pd

    return (pd.api.types.is_extension_array_dtype(dtype)
            and not isinstance(dtype, (pd.CategoricalDtype, pd.SparseDtype))
            and _kind(dtype) in ("num", "bool"))


def _refuse_type(name, dtype, store: str):
    import pandas as pd

    dt = _numpy_dtype(dtype)
    if dt.kind == "c":
        how = (f"store the real and imaginary parts as columns {name}_0 and {name}_1 "
               f"(one (N, 2) float attribute {name!r})")
    elif dt.kind in "mM" or pd.api.types.is_datetime64_any_dtype(dtype) \
            or pd.api.types.is_timedelta64_dtype(dtype):
        how = (f"store df[{name!r}].astype('int64') (counts of the dtype's unit) or "
               "strings as a category")
    else:
        how = "convert it to numbers or to a category"
    raise WriteInputError(f"attribute {name!r} has dtype {dtype}, which ZV attributes cannot "
                          f"hold (bool, int, uint, float or categories): {how}", store=store)


def missing_columns(dtypes, axes, planned) -> list:
    """Columns whose <NA> the writer cannot keep: nullable axes, nullable int/bool
    attributes (nullable float attributes store <NA> as NaN)."""
    dt = dict(dtypes)
    out = [a for a in axes if nullable(dt[a])]
    for _, members, kind, npdt in planned:
        if kind != "cat" and npdt.kind != "f":
            out += [c for c in members if nullable(dt[c])]
    return out


def refuse_missing(counts: dict, dtypes, axes, store: str) -> None:
    """Raise on the first column of ``{column: rows holding <NA>}`` with any."""
    dt = dict(dtypes)
    for c, n in counts.items():
        if not n:
            continue
        if c in axes:
            raise InvalidPointsError(
                f"{n} rows have <NA> in axis column {c!r}; drop or fix them first "
                "(df.dropna(subset=axes))", store=store, count=int(n))
        raise WriteInputError(
            f"column {c!r} ({dt[c]}) holds <NA> in {n} rows, and integer or bool "
            f"attributes have no missing value: fill them (df[{c!r}].fillna(...)) or cast "
            f"to float (df[{c!r}].astype('float64'), <NA> becomes NaN, as zarr_vectors "
            "stores it)", store=store)


# ----------------------------------------------------------------------------- roles


def plan_columns(dtypes, axes, attributes, store: str) -> tuple:
    """Decide axis and attribute columns from the frame's ``(column, dtype)`` pairs.

    ``dtypes`` is a mapping or a sequence of pairs (``list(ddf.dtypes.items())``, which
    keeps duplicate names so they can be refused).  Returns ``(axes,
    [(name, columns, kind, numpy dtype or None)])``; categories are filled in later
    from the data.  Raises :class:`WriteInputError` naming the column.

    The rules (all checked before any data is read):

    * **Stored as given.**  Every non-axis column is stored under its own name
      (``attributes=None``), or the ones listed; nothing is dropped or renamed.  A
      name must be a ``str``, appear once, be a safe single path step (no ``/``,
      ``\\``, control characters, not empty, not starting with ``.``, not
      ``zarr.json``, at most 255 UTF-8 bytes) and not start with ``_zv_`` (the
      writer's own columns).  Stored names must differ beyond case and Unicode
      normalisation (on macOS and Windows ``T`` and ``t`` are one directory).
      ``object_id`` is refused (it names objects: ``to_zv(geometry=...)``).
    * **Multi-column attributes.**  Columns ``name_0, name_1, ..., name_{C-1}``
      (``C >= 2``, indices written without leading zeros, all present from 0, one
      dtype, numeric or bool) become one ``(N, C)`` attribute ``name``, read back as
      the same columns.  They stay separate scalar attributes, under their own names,
      when a column ``name`` exists, when an index is missing (``a_0, a_2``; ``a_1,
      a_2``), when only ``a_0`` exists, when indices have leading zeros (``a_00,
      a_01``), or when ``name`` is ``object_id``.  ``attributes=[...]`` asks by the
      stored name (``"rgb"``, not ``"rgb_0"``).
    * **Types.**  bool/int/uint/float (numpy, nullable, arrow, sparse: stored dense)
      keep their dtype; categorical, string and object columns are dictionary-encoded
      with the values as they are (an object column of ints keeps int categories);
      ``<NA>`` in a nullable float column becomes NaN, in a nullable int/bool column
      it is refused (see :func:`refuse_missing`).  Complex, datetime, timedelta and
      other dtypes are refused, saying how to convert them.
    """
    pairs = list(dtypes.items()) if hasattr(dtypes, "items") else list(dtypes)
    dtypes = dict(pairs)
    cols = list(dtypes)
    for bad in RESERVED_COLUMNS:
        if bad in cols and (attributes is None or bad in attributes):
            raise WriteInputError(
                f"column {bad!r} names objects, which a point cloud has not: pass "
                "geometry='streamline' (or 'polyline') to write lines, or drop it / pass "
                "attributes=[...] without it", store=store)
    if axes is None:
        axes = ("x", "y", "z") if "z" in cols else ("x", "y")
    axes = tuple(axes)
    if len(axes) < 1:
        raise WriteInputError(f"axes must name the position columns, got {axes!r}", store=store)
    if len(set(axes)) != len(axes):
        raise WriteInputError(f"axes repeat a column: {axes!r}", store=store)
    for a in axes:
        if a not in dtypes:
            raise WriteInputError(f"axis column {a!r} is missing; the DataFrame has {cols}. "
                                  "Pass axes=[...] naming the position columns", store=store)
        if _kind(dtypes[a]) != "num" or _numpy_dtype(dtypes[a]).kind not in "iuf":
            raise WriteInputError(f"axis column {a!r} has dtype {dtypes[a]}, not numeric",
                                  store=store)
    rest = [c for c in cols if c not in axes]
    available, members_of = _attribute_columns(rest, dtypes)
    if attributes is None:
        names = list(available)
    else:
        names = list(attributes)
        for n in names:
            if names.count(n) > 1:
                raise WriteInputError(f"attributes lists {n!r} twice", store=store)
            if n in axes:
                raise WriteInputError(f"{n!r} is an axis column, not an attribute", store=store)
            if n in members_of:
                whole = members_of[n]
                raise WriteInputError(
                    f"column {n!r} is part of the ({len(available[whole])}-column) attribute "
                    f"{whole!r}; ask for {whole!r}, or rename the columns to store them "
                    "apart", store=store)
            if n not in available:
                raise WriteInputError(f"attribute {n!r} is not a column (nor {n}_0, {n}_1, ...)"
                                      f" of the DataFrame; it has {cols}", store=store)
    _check_selected(pairs, list(axes) + [c for n in names for c in available[n]], store)
    seen: dict = {}
    for n in names:
        check_name(n, store)
        other = seen.setdefault(_fold(n), n)
        if other != n:
            raise WriteInputError(
                f"attributes {other!r} and {n!r} differ only in case or Unicode form, so "
                "they would share one directory on macOS/Windows file systems: rename one",
                store=store)
    return axes, [_plan_one(n, available[n], dtypes, store) for n in names]


def _attribute_columns(rest: list, dtypes: dict) -> tuple:
    """``({stored name: columns}, {member column: multi name})`` in column order."""
    groups: dict = {}
    for c in rest:
        m = _MULTI.match(c) if isinstance(c, str) else None
        if m and m.group(1) not in dtypes and m.group(1) not in RESERVED_COLUMNS:
            groups.setdefault(m.group(1), {})[int(m.group(2))] = c
    multi = {b: tuple(g[i] for i in range(len(g))) for b, g in groups.items()
             if len(g) >= 2 and sorted(g) == list(range(len(g)))}
    members_of = {c: b for b, cs in multi.items() for c in cs}
    available = {c: (c,) for c in rest if c not in members_of}
    available.update(multi)  # scalars first, then multi-column ones (the store's order)
    return available, members_of


def _plan_one(n: str, members: tuple, dtypes: dict, store: str) -> tuple:
    kinds = {_kind(dtypes[c]) for c in members}
    for c in members:
        if _kind(dtypes[c]) == "other" or (
                _kind(dtypes[c]) != "cat" and _numpy_dtype(dtypes[c]).kind not in "biuf"):
            _refuse_type(c, dtypes[c], store)
    if len(members) > 1:
        if kinds != {"num"} and kinds != {"bool"}:
            raise WriteInputError(f"multi-column attribute {n!r} ({', '.join(members)}) must "
                                  "be numeric or bool; rename the columns to store them "
                                  "apart", store=store)
        dts = {_numpy_dtype(dtypes[c]) for c in members}
        if len(dts) > 1:
            raise WriteInputError(f"columns of {n!r} have different dtypes {sorted(map(str, dts))}"
                                  "; cast them to one", store=store)
    kind = kinds.pop()
    dt = None if kind == "cat" else _numpy_dtype(dtypes[members[0]])
    return (n, tuple(members), kind, dt)


def attribute_specs(planned, categories: dict, store: str | None = None) -> tuple:
    """AttrSpecs once the categorical values present in the data are known."""
    specs = []
    for name, members, kind, dt in planned:
        if kind == "cat":
            cats, missing = categories.get(name, ((), False))
            for v in cats:
                if not isinstance(v, (str, int, float)):  # bool is an int
                    raise WriteInputError(
                        f"column {name!r} holds a {type(v).__name__} value ({v!r}); "
                        "categories are strings or numbers: convert the column "
                        f"(df[{name!r}].astype(str))", store=store)
            code = _code_dtype(len(cats), missing)
            specs.append(AttrSpec(name, members, code.name, 0, tuple(cats),
                                  -1 if missing else None))
        else:
            specs.append(AttrSpec(name, members, np.dtype(dt).name,
                                  len(members) if len(members) > 1 else 0))
    return tuple(specs)


def _code_dtype(n: int, has_fill: bool) -> np.dtype:
    # the reference's choice: smallest unsigned type, signed when a fill code is needed
    if has_fill:
        for t in (np.int8, np.int16):
            if n <= np.iinfo(t).max:
                return np.dtype(t)
        return np.dtype(np.int32)
    for t in (np.uint8, np.uint16):
        if n <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.uint32)
