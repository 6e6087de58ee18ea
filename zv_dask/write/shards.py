"""Level-0 cells encoded with the store's codecs, and shard objects built by hand.

Pure: no IO, no zarr, no dask.  The block builder frames every cell as zarr's
``vlen-bytes`` codec does (``uint32 1, uint32 nbytes, payload``); this module applies
the byte codecs after it with numcodecs (the objects zarr's ``zstd``, ``gzip`` and
``blosc`` codecs wrap, configured from the resolved codec document) and, for a sharded
array, lays the inner chunks out as zarr's ``sharding_indexed`` encoder does:

* inner chunks in Morton order (zarr's compressed Morton code over the full shard
  shape, axis 0 in the lowest bit), each right after the previous one;
* empty inner chunks not stored: index entry ``(2**64-1, 2**64-1)``; a shard with no
  stored inner chunk is no object at all;
* the index, ``(offset, nbytes)`` little-endian uint64 pairs in C order of the inner
  chunks, then (``crc32c`` index codec) the CRC32C of the pairs, little endian; at the
  end of the object, or at the start with offsets counted from the object's start.

The layout itself (shard shape, inner codecs, index place and size) is
:class:`zv_dask.format.shards.ShardLayout`, parsed from the same document the reader
parses.  One task builds every cell of a shard (the shuffle groups rows by whole
shards), so a shard is encoded once and put once.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from zv_dask.format.shards import EMPTY, ShardLayout, crc32c, parse_sharding
from zv_dask.format.values import DIRECT_BYTES_CODECS

_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def _name_conf(c):
    if isinstance(c, str):
        return c, {}
    return c["name"], dict(c.get("configuration") or {})


def byte_codec(name: str, conf: dict):
    """The numcodecs object zarr's byte codec ``name`` encodes with, or ``None`` when
    zv_dask does not encode that codec itself.

    Examples
    --------
    >>> byte_codec("zstd", {"level": 0, "checksum": False})
    Zstd(level=0)
    >>> byte_codec("numcodecs.lz4", {}) is None
    True
    """
    import numcodecs

    if name == "zstd":
        return numcodecs.Zstd(level=int(conf.get("level", 0)),
                              checksum=bool(conf.get("checksum", False)))
    if name == "gzip":
        return numcodecs.GZip(level=int(conf.get("level", 5)))
    if name == "blosc":  # as zarr's BloscCodec._blosc_codec (typesize: numcodecs >= 0.16)
        shuffle = conf.get("shuffle", "bitshuffle")
        return numcodecs.Blosc(cname=conf.get("cname", "zstd"), clevel=int(conf.get("clevel", 5)),
                               shuffle=_BLOSC_SHUFFLE.get(shuffle, shuffle),
                               blocksize=int(conf.get("blocksize", 0)),
                               typesize=int(conf.get("typesize", 1)))
    return None


class CellEncoder:
    """The byte codecs after ``vlen-bytes`` of one array, applied to framed cells.

    Examples
    --------
    >>> enc = CellEncoder((("gzip", {"level": 1}),))
    >>> import gzip; gzip.decompress(enc.encode(b"\\x01\\x00\\x00\\x00\\x01\\x00\\x00\\x00a"))[8:]
    b'a'
    """

    def __init__(self, codecs: tuple):
        self.codecs = [byte_codec(n, c) for n, c in codecs]
        if any(c is None for c in self.codecs):
            raise ValueError(f"codecs {codecs!r} are not all encoded by zv_dask")

    def encode(self, framed: bytes) -> bytes:
        out = framed
        for c in self.codecs:
            out = c.encode(out)
        return out if isinstance(out, bytes) else bytes(out)


def plan_level0(codecs_doc: list, shard_shape: tuple | None):
    """How to encode level-0 cells under the array codec document ``codecs_doc``
    (cells per shard ``shard_shape`` when sharded):
    ``(CellEncoder, ShardLayout or None)``, or ``None`` when a codec is one zv_dask
    leaves to zarr (the writer then goes through zarr).

    Examples
    --------
    >>> enc, lay = plan_level0([{"name": "vlen-bytes"}, {"name": "zstd", "configuration":
    ...                         {"level": 0, "checksum": False}}], None)
    >>> lay is None, len(enc.codecs)
    (True, 1)
    """
    parsed = tuple(_name_conf(c) for c in codecs_doc)
    if parsed and parsed[0][0] == "sharding_indexed":
        layout = parse_sharding(tuple(shard_shape or ()), parsed)
        if layout is None:
            return None
        rest = layout.inner_codecs
    elif parsed and parsed[0][0] == "vlen-bytes":
        layout, rest = None, parsed[1:]
    else:
        return None
    if any(n not in DIRECT_BYTES_CODECS for n, _ in rest):
        return None
    return CellEncoder(rest), layout


# ----------------------------------------------------------------------------- Morton order


@lru_cache(maxsize=16)
def morton_rank(shape: tuple) -> np.ndarray:
    """Rank of each inner chunk (C order) in zarr's Morton order over ``shape``.

    zarr's compressed Morton code takes bit ``b`` of every axis that has one, axis 0
    first, from the lowest bit up; inner chunks are stored by increasing code.

    Examples
    --------
    >>> morton_rank((2, 2)).tolist()        # (0,0) (1,0) (0,1) (1,1)
    [0, 2, 1, 3]
    >>> morton_rank((3,)).tolist()
    [0, 1, 2]
    """
    coords = np.indices(shape).reshape(len(shape), -1).T.astype(np.int64)
    bits = [(int(c) - 1).bit_length() for c in shape]
    code = np.zeros(len(coords), np.int64)
    out_bit = 0
    for b in range(max(bits, default=0)):
        for a, nb in enumerate(bits):
            if b < nb:
                code |= ((coords[:, a] >> b) & 1) << out_bit
                out_bit += 1
    rank = np.empty(len(coords), np.int64)
    rank[np.argsort(code, kind="stable")] = np.arange(len(coords))
    rank.flags.writeable = False
    return rank


def encode_shard(inner: dict, layout: ShardLayout) -> bytes | None:
    """One shard object from ``{C-order inner index: encoded inner chunk}`` (empty
    chunks may be missing or ``b""``), or ``None`` when nothing is stored.

    Examples
    --------
    >>> lay = ShardLayout((2,), (), index_at_end=True, index_crc=False)
    >>> obj = encode_shard({1: b"abc"}, lay)
    >>> obj[:3], np.frombuffer(obj[3:], "<u8").tolist()
    (b'abc', [18446744073709551615, 18446744073709551615, 0, 3])
    """
    keys = [k for k, v in inner.items() if len(v)]
    if not keys:
        return None
    rank = morton_rank(tuple(layout.shard_shape))
    keys.sort(key=rank.__getitem__)
    pairs = np.full((layout.n_inner, 2), EMPTY, "<u8")
    parts = []
    at = layout.index_nbytes if not layout.index_at_end else 0
    for k in keys:
        v = inner[k]
        pairs[k, 0], pairs[k, 1] = at, len(v)
        parts.append(v)
        at += len(v)
    index = pairs.tobytes()
    if layout.index_crc:
        index += crc32c(index).to_bytes(4, "little")
    if layout.index_at_end:
        parts.append(index)
    else:
        parts.insert(0, index)
    return b"".join(parts)


class GridEncoder:
    """Re-encodes the grid cells a task built (``rel path -> framed bytes``) with one
    array family's codecs; with a shard layout, holds them until :meth:`flush` builds
    each shard once (so the task must hold every cell of its shards).

    ``which`` picks the cells: ``"level0"`` (level 0's vertices, fragments and
    attributes, which carry the ``compressor`` and ``shard_shape`` options) or
    ``"others"`` (links and coarse levels); every other blob passes through.

    Examples
    --------
    >>> lay = ShardLayout((2, 2), (), index_at_end=True, index_crc=True)
    >>> enc = GridEncoder(CellEncoder(()), lay)
    >>> enc.take({"0/vertices/c/1/3": b"x", "0/links/+1/0.0/c/1/3": b"y"})
    {'0/links/+1/0.0/c/1/3': b'y'}
    >>> sorted(enc.flush())
    ['0/vertices/c/0/1']
    """

    def __init__(self, encoder: CellEncoder, layout: ShardLayout | None, which: str = "level0"):
        self.encoder = encoder
        self.layout = layout
        self.level0 = which == "level0"
        self.held: dict = {}   # (level/array, shard index) -> {inner C index: bytes}
        if layout is not None:
            self._shape = tuple(layout.shard_shape)
            self._strides = [math.prod(self._shape[a + 1:]) for a in range(len(self._shape))]

    def take(self, blobs: dict) -> dict:
        """Blobs to put now: the chosen cells encoded (held when sharded), others as
        they are."""
        now = {}
        codecs = self.encoder.codecs
        for rel, raw in blobs.items():
            if "/c/" not in rel or is_level0_cell(rel) != self.level0:
                now[rel] = raw
                continue
            data = self.encoder.encode(raw) if codecs else raw
            if self.layout is None:
                now[rel] = data
                continue
            array, _, idx = rel.partition("/c/")
            shard, inner = [], 0
            for i, s, st in zip(idx.split("/"), self._shape, self._strides):
                q, r = divmod(int(i), s)
                shard.append(q)
                inner += r * st
            self.held.setdefault((array, tuple(shard)), {})[inner] = data
        return now

    def flush(self) -> dict:
        """Every held shard as one object (empty when unsharded)."""
        out = {}
        for (array, shard), inner in self.held.items():
            obj = encode_shard(inner, self.layout)
            if obj is not None:
                out[f"{array}/c/" + "/".join(map(str, shard))] = obj
        self.held = {}
        return out


def is_level0_cell(rel: str) -> bool:
    """A level-0 vertex, fragment or attribute cell (not a link)."""
    return rel.startswith("0/") and not rel.startswith("0/links/") and "/c/" in rel
