"""TRX tractograms (trx-python, memory-mapped): header and offsets at build time,
streamline ranges in tasks.

Positions are RAS+ mm as stored (float16 widened to float32, float64 kept); data per
vertex (dpv) become vertex attributes, data per streamline (dps) object attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from zv_dask.errors import InputFileError, MissingDependencyError
from zv_dask.ingest.tractography import INSTALL, empty_vertices, vertex_frame


def _trx():
    try:
        from trx import trx_file_memmap
    except ImportError:
        raise MissingDependencyError(f"reading TRX needs trx-python; {INSTALL}") from None
    return trx_file_memmap


def _open(path: str):
    import zipfile

    try:
        return _trx().load(path)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputFileError(
            f"{path} is not a readable TRX file ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); check the file") from None


def _widen(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype == np.float16 else a


def _columns(name: str, width: int) -> list:
    return [name] if width == 1 else [f"{name}_{j}" for j in range(width)]


@dataclass(frozen=True)
class TrxFile:
    """What a TRX file's header and offsets say; small and picklable."""

    path: str
    offsets: np.ndarray        # (streamlines + 1,) vertex offsets
    position_dtype: str        # as read (float16 widened)
    vertex_columns: tuple      # ((column, dtype), ...)
    properties: object         # pandas DataFrame of dps, one row per streamline
    header: dict

    @property
    def streamline_count(self) -> int:
        return len(self.offsets) - 1

    def describe(self) -> dict:
        return {"path": self.path, "streamline_count": self.streamline_count,
                "point_count": int(self.offsets[-1]), **self.header}

    def part(self, first: int, stop: int) -> "TrxFile":
        """This file's offsets cut to streamlines ``first..stop``."""
        return replace(self, offsets=self.offsets[first:stop + 1],
                       properties=self.properties.iloc[:0], header={})


def read_trx_header(path: str) -> TrxFile:
    """Header, offsets and per-streamline data of a TRX file (positions untouched)."""
    import pandas as pd

    trx = _open(path)
    try:
        lines = trx.streamlines
        n = len(lines)
        offsets = np.zeros(n + 1, np.int64)
        if n:
            offsets[:-1] = np.asarray(lines._offsets, np.int64)
            offsets[-1] = offsets[-2] + int(lines._lengths[-1])
        cols = []
        for name, seq in trx.data_per_vertex.items():
            data = _widen(seq._data[:0])
            width = 1 if data.ndim == 1 else data.shape[1]
            cols += [(c, data.dtype.str) for c in _columns(name, width)]
        props = {}
        for name, values in trx.data_per_streamline.items():
            v = _widen(values)
            v = v.reshape(len(v), -1)
            for j, c in enumerate(_columns(name, v.shape[1])):
                props[c] = v[:, j].copy()
        h = trx.header
        header = {"voxel_to_rasmm": np.asarray(h["VOXEL_TO_RASMM"], float).tolist(),
                  "dimensions": [int(v) for v in h["DIMENSIONS"]],
                  "groups": sorted(trx.groups)}
        pos_dtype = _widen(lines._data[:0]).dtype.str
    finally:
        trx.close()
    return TrxFile(path=path, offsets=offsets, position_dtype=pos_dtype,
                   vertex_columns=tuple(cols), properties=pd.DataFrame(props),
                   header=header)


class TrxRangeReader:
    """Reads the streamlines of ``info`` (a :meth:`TrxFile.part`) in a task,
    memory-mapped: ``reader((info, first_object_id))``."""

    def __dask_tokenize__(self):
        return ("TrxRangeReader",)

    def __call__(self, part):
        info, first = part
        if info.streamline_count == 0:
            return empty_vertices([(n, t) for n, t in info.vertex_columns],
                                  info.position_dtype)
        a, b = int(info.offsets[0]), int(info.offsets[-1])
        trx = _open(info.path)
        try:
            pts = np.array(_widen(trx.streamlines._data[a:b]))
            attrs = {}
            for name, seq in trx.data_per_vertex.items():
                v = np.array(_widen(seq._data[a:b])).reshape(b - a, -1)
                for j, c in enumerate(_columns(name, v.shape[1])):
                    attrs[c] = v[:, j]
        finally:
            trx.close()
        counts = np.diff(info.offsets)
        ids = np.repeat(np.arange(first, first + len(counts), dtype=np.int64), counts)
        return vertex_frame(pts, ids, attrs)
