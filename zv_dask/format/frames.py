"""Chunk object -> payload: zarr's one-item ``vlen-bytes`` framing and byte codecs.

Pure: no IO, no zarr, no dask.  Every size a blob declares is checked against the
blob's length and the caller's bound before anything is allocated.
"""

from __future__ import annotations

import struct


class DecodeProblem(ValueError):
    """A blob does not decode; the message says how."""


def strip_vlen_frame(raw) -> memoryview:
    """Return the payload of a one-item zarr ``vlen-bytes`` chunk (8-byte header).

    A chunk listed as non-empty always holds a header and a payload: 0 bytes (an
    interrupted copy) or an empty payload is corrupt, never "no rows".

    Examples
    --------
    >>> bytes(strip_vlen_frame(b"\\x01\\x00\\x00\\x00\\x02\\x00\\x00\\x00hi"))
    b'hi'
    """
    mv = memoryview(raw).cast("B")
    if len(mv) == 0:
        raise DecodeProblem("the chunk object is empty (0 bytes; a vlen-bytes chunk has an "
                            "8-byte header), probably an interrupted copy or sync")
    if len(mv) < 8:
        raise DecodeProblem(f"vlen-bytes chunk of {len(mv)} bytes is shorter than its 8-byte header")
    n_items, nbytes = struct.unpack_from("<II", mv, 0)
    if n_items != 1 or nbytes != len(mv) - 8:
        raise DecodeProblem(
            f"vlen-bytes header says {n_items} item(s) of {nbytes} bytes but the chunk "
            f"holds {len(mv) - 8} payload bytes"
        )
    if nbytes == 0:
        raise DecodeProblem("the chunk holds an empty value although it is listed as non-empty")
    return mv[8:]


_ZSTD_MAGIC = 0xFD2FB528


def _zstd_content_size(raw) -> int | None:
    """Decompressed size recorded in the first zstd frame header (``None`` if absent)."""
    mv = memoryview(raw).cast("B")
    if len(mv) < 5 or struct.unpack_from("<I", mv, 0)[0] != _ZSTD_MAGIC:
        return None
    fhd = mv[4]
    fcs_flag, single = fhd >> 6, (fhd >> 5) & 1
    off = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if size == 0 or len(mv) < off + size:
        return None
    value = int.from_bytes(mv[off:off + size], "little")
    return value + 256 if size == 2 else value


def _declared_size(name: str, raw) -> int | None:
    """What a compressed blob says it expands to, read from its header (no decoding)."""
    if name == "zstd":
        return _zstd_content_size(raw)
    if name == "blosc" and len(raw) >= 16:
        return struct.unpack_from("<I", memoryview(raw).cast("B"), 4)[0]
    return None


def declared_size(name: str, raw) -> int | None:
    """The decoded size a ``zstd`` or ``blosc`` blob records in its first bytes (the
    zstd frame content size, blosc's ``nbytes``), ``None`` when it records none.

    Examples
    --------
    >>> import numcodecs
    >>> declared_size("zstd", numcodecs.Zstd().encode(b"x" * 1000)[:32])
    1000
    """
    return _declared_size(name, raw)


def decode_byte_codecs(raw: bytes, codecs: tuple, max_out: int | None = None) -> bytes:
    """Undo byte-to-byte codecs (applied in reverse order of the codec list).

    ``max_out`` bounds every stage's output: a blob whose header declares more is
    refused before anything is allocated, and gzip is inflated at most that far.
    """
    import zlib

    import numcodecs

    out = raw
    for name, config in reversed(codecs):
        declared = _declared_size(name, out) if max_out is not None else None
        if declared is not None and declared > max_out:
            raise DecodeProblem(f"{name} header says the chunk expands to {declared} bytes, "
                                f"more than the level can hold ({max_out})")
        try:
            if name == "gzip" and max_out is not None:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                res = d.decompress(bytes(out), max_out + 1)
                if len(res) > max_out or d.unconsumed_tail:
                    raise DecodeProblem(f"gzip expands past {max_out} bytes, more than the "
                                        "level can hold")
                out = res
                continue
            if name == "zstd":
                codec = numcodecs.Zstd()
            elif name == "gzip":
                codec = numcodecs.GZip()
            elif name == "blosc":
                codec = numcodecs.Blosc()
            else:  # pragma: no cover - format.metadata only routes known names here
                raise DecodeProblem(f"unknown codec {name!r}")
            out = codec.decode(out)
        except DecodeProblem:
            raise
        except Exception as exc:
            raise DecodeProblem(f"{name} decompression failed: {exc}") from None
        if max_out is not None and len(out) > max_out:
            raise DecodeProblem(f"{name} expanded to {len(out)} bytes, more than the level "
                                f"can hold ({max_out})")
    return bytes(out) if not isinstance(out, bytes) else out
