"""Level-0 cell codecs of ``to_zv``: the ``compressor`` and ``shard_shape`` options.

The reference writer hands these options to zarr (``create_array(dtype="bytes",
serializer=vlen-bytes, compressors=..., shards=...)``) and lets zarr encode every cell
and every shard.  :func:`resolve` creates an in-memory zarr array with those very
arguments once, before the write, so the codec documents are zarr's own.  Only level
0's vertex, fragment and attribute arrays carry these codecs; links and coarse levels
are plain, as ``build_pyramid`` writes them.

The block builder frames level-0 cells itself (``vlen-bytes``; with ``"zstd"`` and no
sharding it compresses them too).  Every other case is re-encoded in the task by
:func:`level0_recoder`'s choice: :mod:`zv_dask.write.shards` (numcodecs for ``zstd``,
``gzip`` and ``blosc``, shard objects built by hand, the bytes zarr writes), or, for a
codec zv_dask does not encode itself, :class:`CellRecoder` on an in-memory zarr array.
No store IO here: the in-memory array never leaves the task.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np

from zv_dask.errors import WriteInputError
from zv_dask.write.plan import WriteSpec, level0_chunks
from zv_dask.write.shards import GridEncoder, is_level0_cell, plan_level0

_ZSTD_DEFAULT = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}
_BLOSC_DEFAULT = {"name": "blosc", "configuration": {
    "cname": "zstd", "clevel": 5, "shuffle": "bitshuffle", "typesize": 4, "blocksize": 0}}
_ACCEPTED = ("None, False, 'none', 'zstd', 'blosc', or a list of codec dicts such as "
             "[{'name': 'gzip', 'configuration': {'level': 5}}]")


def compressors_of(compressor, store: str) -> list:
    """The ``create_array(compressors=...)`` list for a ``compressor`` option, as the
    reference resolves it (a leading ``{"name": "bytes"}`` entry is dropped)."""
    if compressor is None or compressor is False or (isinstance(compressor, str)
                                                      and compressor == "none"):
        return []
    if isinstance(compressor, str) and compressor == "zstd":
        return [json.loads(json.dumps(_ZSTD_DEFAULT))]
    if isinstance(compressor, str) and compressor == "blosc":
        return [json.loads(json.dumps(_BLOSC_DEFAULT))]
    if isinstance(compressor, list):
        if not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in compressor):
            raise WriteInputError(f"compressor list entries must be dicts with a 'name' key; got "
                                  f"{compressor!r}. Accepted: {_ACCEPTED}", store=store)
        out = [json.loads(json.dumps(c)) for c in compressor]
        return out[1:] if out and out[0]["name"] == "bytes" else out
    raise WriteInputError(f"compressor {compressor!r} is not supported. Accepted: {_ACCEPTED}",
                          store=store)


def shard_shape_of(shard_shape, ndim: int, store: str):
    """``None`` or a tuple of ``ndim`` positive ints (an int applies to every axis)."""
    if shard_shape is None:
        return None
    vals = [shard_shape] * ndim if np.ndim(shard_shape) == 0 else list(shard_shape)
    ok = len(vals) == ndim and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in vals)
    if not ok:
        raise WriteInputError(f"shard_shape must be a positive int or {ndim} positive ints "
                              f"(level-0 cells per shard along each axis), got {shard_shape!r}",
                              store=store)
    return tuple(int(v) for v in vals)


# zarr's codec document of an uncompressed, unsharded bytes array (checked against zarr
# by tests/test_write_units.py)
PLAIN_CODECS = '[{"name": "vlen-bytes", "configuration": {}}]'


def _memory_array(grid_shape, compressors, shard_shape):
    """An in-memory array created exactly as the reference creates level-0 grid arrays."""
    import zarr
    from zarr.codecs import VLenBytesCodec

    data: dict = {}
    kw = {"shape": tuple(grid_shape), "chunks": (1,) * len(grid_shape), "dtype": "bytes",
          "serializer": VLenBytesCodec(), "compressors": list(compressors)}
    if shard_shape is not None:
        kw["shards"] = tuple(shard_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(zarr.storage.MemoryStore(data), **kw)
    return arr, data


def resolve(compressor, shard_shape, ndim: int, grid_shape, store: str,
            shard_levels=False) -> dict:
    """Check the options and settle what the write will use (before anything is written).

    Returns the ``WriteSpec`` fields: ``compressor`` (what the block builder applies
    itself: None or "zstd"), ``shard_shape``, ``level0_codecs`` (JSON of the codec
    document), ``recode_compressors`` (JSON, or "" when the builder's frames stand) and
    ``levels_codecs`` (JSON codec document of links and coarse levels: sharded as level
    0, uncompressed, with ``shard_levels=True``; "" plain).
    A codec zarr cannot build or cannot run on a sample cell raises :class:`~zv_dask.errors.WriteInputError`.
    """
    comps = compressors_of(compressor, store)
    shards = shard_shape_of(shard_shape, ndim, store)
    if not isinstance(shard_levels, (bool, np.bool_)):
        raise WriteInputError(f"shard_levels must be True or False, got {shard_levels!r}",
                              store=store)
    if shard_levels and shards is None:
        raise WriteInputError("shard_levels=True shards links and coarse levels with the "
                              "level-0 shard shape: give shard_shape too", store=store)
    if not comps and shards is None:  # the default: no zarr import (0.2 s, ~6 MB)
        return {"compressor": None, "shard_shape": None, "level0_codecs": PLAIN_CODECS,
                "recode_compressors": "", "levels_codecs": ""}
    grid_shape = shards or (1,) * ndim  # the codec document does not depend on the grid
    try:
        arr, data = _memory_array(grid_shape, comps, shards)
        doc = json.loads(data["zarr.json"].to_bytes())
        _encode_cells(arr, data, [((0,) * ndim, b"\x00" * 16)])
    except WriteInputError:
        raise
    except Exception as exc:
        raise WriteInputError(f"compressor {compressor!r} / shard_shape {shard_shape!r} is not "
                              f"usable by zarr ({type(exc).__name__}: {exc}). Accepted "
                              f"compressors: {_ACCEPTED}", store=store) from None
    fast = None if not comps else "zstd" if comps == [_ZSTD_DEFAULT] else False
    recode = shards is not None or fast is False
    levels_codecs = ""
    if shard_levels:  # as the reference's shard_store repacks them: sharded, uncompressed
        levels_codecs = json.dumps(
            json.loads(_memory_array(shards, [], shards)[1]["zarr.json"].to_bytes())["codecs"])
    return {"compressor": None if recode else fast, "shard_shape": shards,
            "level0_codecs": json.dumps(doc["codecs"]),
            "recode_compressors": json.dumps(comps) if recode else "",
            "levels_codecs": levels_codecs}


def _encode_cells(arr, data: dict, cells) -> dict:
    """zarr's stored objects (``c/...`` keys) for ``[(index tuple, payload)]`` of one array."""
    idx = np.array([c for c, _ in cells], np.int64).reshape(len(cells), -1)
    values = np.empty(len(cells), dtype=object)
    values[:] = [bytes(p) for _, p in cells]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr.set_coordinate_selection(tuple(idx.T), values)
    out = {k: v.to_bytes() for k, v in data.items() if k.startswith("c/")}
    for k in out:
        del data[k]
    return out


def level0_recoder(spec):
    """What re-encodes a task's cells: ``None`` when the builder's frames stand; for
    level 0 zv_dask's own encoder (:class:`~zv_dask.write.shards.GridEncoder`: numcodecs
    and hand-built shards) when every codec is one it encodes, else :class:`CellRecoder`;
    with ``shard_levels`` a second encoder shards links and coarse levels."""
    if not spec.recode:
        return None
    planned = plan_level0(json.loads(spec.level0_codecs), spec.shard_shape)
    level0 = CellRecoder(spec) if planned is None else GridEncoder(*planned)
    if not spec.levels_codecs:
        return level0
    return Recoders([level0, GridEncoder(*plan_level0(json.loads(spec.levels_codecs),
                                                      spec.shard_shape), which="others")])


class Recoders:
    """Several recoders, each taking the cells it encodes and passing on the rest."""

    def __init__(self, recoders):
        self.recoders = recoders

    def take(self, blobs: dict) -> dict:
        for r in self.recoders:
            blobs = r.take(blobs)
        return blobs

    def flush(self) -> dict:
        out = {}
        for r in self.recoders:
            out.update(r.flush())
        return out


class CellRecoder:
    """Re-encodes the level-0 cells one task built with the store's codecs.

    Unsharded: each batch is encoded and returned at once.  Sharded: cells are held
    until :meth:`flush`, which encodes every shard once (so a task must hold every cell
    of its shards: the shuffle groups rows by :func:`~zv_dask.write.plan.group_keys`).
    """

    def __init__(self, spec):
        self.spec = spec
        # cells are encoded a tile at a time on an array of one tile (one shard when
        # sharded): zarr's selection costs grow with the array's chunk grid, which may
        # have 10^12 cells; a shard's or a cell's bytes do not depend on the array size
        self.outer = spec.shard_shape or (1,) * spec.ndim
        self.tile = spec.shard_shape or tuple(min(16, n) for n in spec.grid()[1])
        self.arr, self.data = _memory_array(self.tile, json.loads(spec.recode_compressors),
                                            spec.shard_shape)
        self.held: dict = {}

    def take(self, blobs: dict) -> dict:
        """Blobs to put now; level-0 cells are re-encoded (or held when sharded)."""
        now, cells = {}, {}
        for rel, raw in blobs.items():
            if not is_level0_cell(rel):
                now[rel] = raw
                continue
            array, _, idx = rel[2:].partition("/c/")
            # the builder's vlen frame is "uint32 1, uint32 n, payload": keep the payload
            cells.setdefault(array, []).append((tuple(int(i) for i in idx.split("/")), raw[8:]))
        if self.spec.shard_shape is None:
            now.update(self._encode(cells))
        else:
            for array, lst in cells.items():
                self.held.setdefault(array, []).extend(lst)
        return now

    def flush(self) -> dict:
        """Every held shard, encoded (empty when unsharded)."""
        out = self._encode(self.held)
        self.held = {}
        return out

    def _encode(self, cells: dict) -> dict:
        out = {}
        for array, lst in cells.items():
            tiles: dict = {}
            for idx, payload in lst:
                t = tuple(i // n for i, n in zip(idx, self.tile))
                local = tuple(i - a * n for i, a, n in zip(idx, t, self.tile))
                tiles.setdefault(t, []).append((local, payload))
            for t, part in tiles.items():
                for key, b in _encode_cells(self.arr, self.data, part).items():
                    k = [int(v) for v in key[2:].split("/")]
                    g = (a * n // o + v for a, n, o, v in zip(t, self.tile, self.outer, k))
                    out[f"0/{array}/c/" + "/".join(map(str, g))] = b
        return out


# ----------------------------------------------------------------------------- shards


def group_keys(pos: np.ndarray, spec: WriteSpec) -> np.ndarray:
    """Shuffle key of a sharded write: the smallest groups of chunks made of whole
    blocks (absolute, ``block_chunks`` per axis) and whole shards (``shard_shape``
    per axis from the grid origin), so one task writes every cell of a shard."""
    chunks = level0_chunks(pos, spec)[0]
    if len(chunks) == 0:
        return np.zeros(0, np.int64)
    comp, shape = _group_coords(chunks, spec)
    return np.ravel_multi_index(tuple(comp.T), shape).astype(np.int64)


def group_coords(chunks: np.ndarray, spec: WriteSpec) -> np.ndarray:
    """Group coordinates ``(N, D)`` of level-0 chunk coordinates (the sparse form of
    :func:`group_keys`: no product of the group grid, which may not fit int64)."""
    return _group_coords(np.asarray(chunks, np.int64), spec)[0]


def group_count(spec: WriteSpec) -> int:
    origin, shape = spec.grid()
    corners = np.array([origin, np.asarray(origin) + np.asarray(shape) - 1], np.int64)
    return int(np.prod(_group_coords(corners, spec)[1]))


def _group_coords(chunks: np.ndarray, spec: WriteSpec) -> tuple:
    """Per-axis group of each chunk coordinate, from 0, and the group grid shape.

    Along an axis, blocks start at multiples of ``m`` and shards at ``origin + k*s``;
    both tile groups of ``lcm(m, s)`` chunks starting where a block start and a shard
    start meet.  When they never meet (``origin`` not a multiple of ``gcd(m, s)``)
    the whole axis is one group.
    """
    origin, shape = spec.grid()
    out = np.zeros_like(chunks)
    dims = []
    for a, (m, s, o, n) in enumerate(zip(spec.block_chunks, spec.shard_shape, origin, shape)):
        start = next((k * m for k in range(s) if (k * m - o) % s == 0), None)
        if start is None:
            dims.append(1)
            continue
        period = m * s // math.gcd(m, s)
        lo = (o - start) // period
        out[:, a] = (chunks[:, a] - start) // period - lo
        dims.append(int((o + n - 1 - start) // period - lo + 1))
    return out, tuple(dims)
