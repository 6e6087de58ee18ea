"""The check a frame runs once per compute, before its first chunk is read, when its
handle cannot check rows chunk by chunk: are the arrays it decodes still described
as when the store was opened?  A store rewritten since (another dtype, codec or grid)
would otherwise decode as garbage rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from zv_dask.errors import StoreReadError, ZVError
from zv_dask.format.arrays import parse_array
from zv_dask.format.values import ArrayMeta
from zv_dask.io.location import StoreLocation

# what decides how a cell's bytes decode into rows (the document's other fields may
# differ between a consolidated copy and the array's own zarr.json)
_DECODING = ("dtype", "shape", "origin", "encoding", "access", "byte_codecs",
             "chunk_key_prefix", "chunk_separator")


def changed_fields(then: ArrayMeta, now: ArrayMeta) -> list[str]:
    """The decoding-relevant fields in which ``now`` differs from ``then``."""
    return [f for f in _DECODING if getattr(then, f) != getattr(now, f)]


class UnchangedCheck:
    """Picklable ``() -> True``: re-reads the ``zarr.json`` of each array (one batched
    request round) and raises :class:`~zv_dask.errors.StoreReadError` naming the first
    array whose decoding changed since the handle parsed it.

    Examples
    --------
    >>> import zv_dask
    >>> s = zv_dask.open_zv(zv_dask.example_store())
    >>> lm = s._meta.levels[0]
    >>> UnchangedCheck(s._loc, 0, [lm.vertices])()
    True
    """

    def __init__(self, location: StoreLocation, level: int, arrays: Sequence[ArrayMeta]):
        self.location = location
        self.level = int(level)
        self.arrays = tuple(arrays)

    def __dask_tokenize__(self):
        return ("zv_dask.UnchangedCheck", self.location.url, self.level,
                tuple(a.path for a in self.arrays))

    def only(self, paths) -> UnchangedCheck | None:
        """The check of those of its arrays in ``paths`` (``None`` when none is)."""
        keep = [a for a in self.arrays if a.path in paths]
        return UnchangedCheck(self.location, self.level, keep) if keep else None

    def __call__(self) -> bool:
        loc, level = self.location, self.level
        docs = loc.read_jsons([f"{level}/{a.path}/zarr.json" for a in self.arrays])
        for then, doc in zip(self.arrays, docs):
            if doc is None:
                how = "is gone"
            else:
                try:
                    now = parse_array(doc, then.path, loc.url, level)
                    if now.dtype is None and then.path == "vertices":  # the format's default
                        now = replace(now, dtype=np.dtype("<f4"))
                except ZVError:
                    how = "has an unreadable zarr.json now"
                else:
                    fields = changed_fields(then, now)
                    if not fields:
                        continue
                    how = (f"now holds {now.dtype} values, not {then.dtype}"
                           if "dtype" in fields else f"has another {', '.join(fields)} now")
            raise StoreReadError(
                f"the level's {then.path} array {how}: the store changed since it was "
                "opened (rewritten); its chunks would decode as garbage, so open it again "
                "(open_zv)", store=loc.url, level=level, array=then.path)
        return True
