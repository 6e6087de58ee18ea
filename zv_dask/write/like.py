"""``to_zv(..., like=store)``: a store's metadata -> the writer options that rebuild its
layout.  Pure: it reads a parsed :class:`~zv_dask.format.values.StoreMeta`, no IO.

The options are the ones the store was written with by ``write_points`` (+
``build_pyramid``) or by ``to_zv``: axes, chunk and bin shape, bounds, levels, position
dtype, the level-0 codecs (``compressor`` list and ``shard_shape``) and whether the
coarse levels are sharded as level 0 (``shard_levels``, the reference's ``shard_store``
repack).  A store that ``to_zv`` could not have written (objects, links between vertices,
coarse attributes, another pyramid, other codecs on coarse levels, ``.`` chunk keys) is
refused with
:class:`~zv_dask.errors.WriteInputError` saying why, so a copy never silently differs.
"""

from __future__ import annotations

import json

import numpy as np

from zv_dask.errors import WriteInputError

#: the ``to_zv`` keywords ``like=`` fills (an explicit keyword wins over the store's value)
LIKE_OPTIONS = ("axes", "chunk_shape", "bin_shape", "bounds", "levels", "dtype",
                "compressor", "shard_shape", "shard_levels")
PLAIN_CELL_CODECS = [{"name": "vlen-bytes", "configuration": {}}]
_ATTRIBUTE_PREFIX = "vertex_attributes/"


def _refuse(why: str, name: str):
    return WriteInputError(f"to_zv cannot copy the layout of this store (like=): {why}; "
                           "give the layout as options (chunk_shape=..., levels=...) "
                           "instead of like=", store=name)


def normal_codecs(codecs) -> list:
    """A codecs document with empty ``configuration`` entries dropped (zarr writes
    ``{"name": "vlen-bytes", "configuration": {}}``, other writers ``{"name": ...}``).

    Examples
    --------
    >>> normal_codecs([{"name": "vlen-bytes", "configuration": {}}])
    [{'name': 'vlen-bytes'}]
    """
    out = []
    for c in codecs:
        c = {k: v for k, v in dict(c).items() if not (k == "configuration" and not v)}
        conf = c.get("configuration")
        if isinstance(conf, dict) and isinstance(conf.get("codecs"), list):
            c["configuration"] = {**conf, "codecs": normal_codecs(conf["codecs"]),
                                  "index_codecs": normal_codecs(conf.get("index_codecs") or [])}
        out.append(c)
    return out


def _number(x):
    return int(x) if float(x).is_integer() else float(x)


def cell_codecs(arr) -> tuple:
    """``(compressors, shard_shape, codecs document)`` of a grid array written with the
    reference's ``create_array(dtype="bytes", serializer=vlen-bytes, compressors=...,
    shards=...)``; ``None`` when the array was not (inner chunks other than one cell)."""
    doc = arr.document
    codecs = list(doc.get("codecs") or ())
    outer = list(doc.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape") or ())
    shards = None
    inner = codecs
    if len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
        conf = codecs[0].get("configuration") or {}
        if list(conf.get("chunk_shape") or ()) != [1] * arr.rank:
            return None
        inner = list(conf.get("codecs") or ())
        shards = tuple(int(s) for s in outer)
    elif outer != [1] * arr.rank:
        return None
    if not inner or inner[0].get("name") != "vlen-bytes":
        return None
    return [dict(c) for c in inner[1:]], shards, normal_codecs(codecs)


def layout_of(meta, name: str) -> dict:
    """The ``to_zv`` options that rebuild the layout of a point-cloud store.

    Parameters
    ----------
    meta : zv_dask.format.values.StoreMeta
        The parsed metadata of the store (``ZVStore.metadata``).
    name : str
        The store's name or URL, for messages.

    Returns
    -------
    dict
        ``axes``, ``chunk_shape``, ``bin_shape`` (``None`` when the store records no
        ``base_bin_shape``), ``bounds``, ``levels``, ``dtype``, ``compressor`` (a list
        of codec documents, ``"none"`` for none), ``shard_shape``, ``shard_levels``
        (coarse levels sharded, uncompressed, with the level-0 shard shape),
        ``level0_codecs``: the level-0 codecs document the copy must get, and
        ``levels_codecs``: the coarse levels' (``None`` when plain).

    Raises
    ------
    WriteInputError
        When ``to_zv`` cannot write the store's layout, saying which part.

    Examples
    --------
    >>> import zv_dask
    >>> opts = layout_of(zv_dask.open_zv(zv_dask.example_store()).metadata, "example")
    >>> opts["chunk_shape"], opts["bin_shape"], opts["levels"], opts["compressor"]
    ((500, 500, 500), (125, 125, 125), 3, 'none')
    """
    geoms = tuple(meta.geometry_types)
    if geoms != ("point_cloud",):
        raise _refuse(f"its geometry is {', '.join(geoms)} and to_zv writes point clouds "
                      "only (objects, streamlines, graphs, skeletons and meshes are not "
                      "written yet)", name)
    levels = sorted(meta.levels)
    if levels != list(range(len(levels))) or not levels:
        raise _refuse(f"its levels are {levels}; to_zv writes levels 0, 1, ..., n-1", name)
    base = np.asarray(meta.base_bin_shape, np.float64)
    chunk = np.asarray(meta.chunk_shape, np.float64)
    level0, coarse = None, []  # coarse: (path, codecs) of every coarse-level array
    for lv in levels:
        lm = meta.levels[lv]
        where = f"level {lv}"
        if lm.object_index is not None or lm.object_attributes:
            raise _refuse(f"{where} has an object index; to_zv writes no objects", name)
        if lm.chunk_attribute is not None or lm.rank != len(meta.axes):
            raise _refuse(f"{where} is chunked by an attribute; to_zv chunks by space "
                          "only", name)
        if not np.array_equal(np.asarray(lm.chunk_shape, np.float64), chunk):
            raise _refuse(f"{where} has chunk shape {list(lm.chunk_shape)}, not the "
                          f"store's {list(chunk)}; to_zv keeps one chunk shape", name)
        if not np.allclose(np.asarray(lm.bin_shape, np.float64), base * 2.0 ** lv,
                           rtol=1e-12, atol=0):
            raise _refuse(f"{where} has bin shape {list(lm.bin_shape)}; to_zv's level k "
                          f"has bins 2**k times level 0's ({list(base * 2.0 ** lv)})", name)
        allowed = {"vertices", "vertex_fragments"}
        extra = sorted(a for a in lm.arrays if a not in allowed
                       and not (lv == 0 and a.startswith(_ATTRIBUTE_PREFIX)))
        if extra and lv and all(a.startswith(_ATTRIBUTE_PREFIX) for a in extra):
            raise _refuse(f"{where} carries attributes ({', '.join(extra)}); to_zv's "
                          "coarse levels hold positions only", name)
        if extra:
            raise _refuse(f"{where} holds arrays to_zv does not write ({', '.join(extra)})",
                          name)
        for path, arr in lm.arrays.items():
            if arr.chunk_separator != "/" or arr.chunk_key_prefix != "c/":
                raise _refuse(f"{where} array {path} uses chunk keys "
                              f"'{arr.chunk_key_prefix}0{arr.chunk_separator}0'; to_zv "
                              "writes 'c/0/0'", name)
            got = cell_codecs(arr)
            if got is None:
                raise _refuse(f"{where} array {path} is not one variable-length cell per "
                              "chunk (vlen-bytes, optionally sharded)", name)
            if lv == 0:
                if level0 is None:
                    level0 = (path, got)
                elif got[2] != level0[1][2]:
                    raise _refuse(f"level 0 arrays {level0[0]} and {path} use different "
                                  "codecs; to_zv gives every level-0 array the same", name)
            else:
                coarse.append((f"{where} array {path}", got))
        if lv and lm.vertices.dtype not in (np.float32, meta.levels[0].vertices.dtype):
            raise _refuse(f"{where} stores {lm.vertices.dtype} positions; to_zv's coarse "
                          "levels are in level 0's dtype", name)
    dtype = meta.levels[0].vertices.dtype
    if dtype not in (np.float32, np.float64):
        raise _refuse(f"level 0 stores {dtype} positions; to_zv writes float32 or "
                      "float64", name)
    compressors, shards, codecs = level0[1]
    levels_codecs = _coarse_codecs(coarse, shards, name)
    recorded_bin = meta.attrs.get("base_bin_shape") is not None
    return {
        "axes": tuple(str(a) for a in meta.axes),
        "chunk_shape": tuple(_number(c) for c in chunk),
        "bin_shape": tuple(_number(b) for b in base) if recorded_bin else None,
        "bounds": (tuple(float(v) for v in meta.bounds[0]),
                   tuple(float(v) for v in meta.bounds[1])),
        "levels": len(levels),
        "dtype": str(dtype),
        "compressor": compressors or "none",
        "shard_shape": shards,
        "shard_levels": levels_codecs is not None,
        "level0_codecs": codecs,
        "levels_codecs": levels_codecs,
    }


def _coarse_codecs(coarse: list, shards, name: str):
    """The coarse levels' codecs document: ``None`` when every coarse array is plain
    (as ``build_pyramid`` writes them), the sharded document when every one is sharded
    uncompressed with the level-0 shard shape (``shard_levels=True``); else refused."""
    plain = normal_codecs(PLAIN_CELL_CODECS)
    if all(got[2] == plain for _, got in coarse):
        return None
    first = next(got for _, got in coarse if got[2] != plain)
    for where, got in coarse:
        if got[0] or got[1] is None or got[1] != shards or got[2] != first[2]:
            raise _refuse(f"{where} is compressed, or sharded unlike the other coarse "
                          "arrays; to_zv writes coarse levels plain, as build_pyramid "
                          "does, or sharded uncompressed with the level-0 shard shape "
                          "(shard_levels=True)", name)
    return first[2]


def merge_options(layout: dict | None, given: dict) -> dict:
    """The options a write uses: each keyword given (not ``None``) wins over the
    layout's value; without a layout, today's defaults (``levels=1``, float32).

    Examples
    --------
    >>> merge_options({"levels": 3, "dtype": "float64"}, {"levels": None, "dtype": "float32"})
    {'levels': 3, 'dtype': 'float32'}
    >>> merge_options(None, {"levels": None, "dtype": None})
    {'levels': 1, 'dtype': 'float32'}
    """
    defaults = {"levels": 1, "dtype": "float32", "shard_levels": False}
    out = {}
    for key, value in given.items():
        if value is None:
            value = (layout or {}).get(key, defaults.get(key))
        out[key] = value
    return out


def taken_from_like(layout: dict | None, given: dict) -> list:
    """The keywords whose value comes from ``like=`` (for messages)."""
    if layout is None:
        return []
    return [k for k in LIKE_OPTIONS if given.get(k) is None and k in layout]


def check_codecs(layout: dict, level0_codecs: str, name: str,
                 levels_codecs: str = "") -> None:
    """Refuse a copy whose level-0 or coarse-level codecs documents (JSON, as the
    writer resolved them; ``""`` = plain coarse levels) are not the store's: zarr would
    encode the cells differently."""
    got = normal_codecs(json.loads(level0_codecs))
    if got != layout["level0_codecs"]:
        raise _refuse(f"its level-0 codecs {json.dumps(layout['level0_codecs'])} are not "
                      f"the ones to_zv writes for them ({json.dumps(got)})", name)
    want = layout.get("levels_codecs")
    got = normal_codecs(json.loads(levels_codecs)) if levels_codecs else None
    if want is not None and got != want:
        raise _refuse(f"its coarse-level codecs {json.dumps(want)} are not the ones "
                      f"to_zv writes for them ({json.dumps(got)})", name)
