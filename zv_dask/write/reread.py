"""Decode once: a local write of file-backed input keeps the pre-pass's rows on disk
instead of reading the files again.

``to_zv`` reads its input twice: the pre-pass (counts, extent, non-empty chunks,
checks) and the write.  For frames of :func:`~zv_dask.read_las` or
:func:`~zv_dask.read_ply` the second read decodes the files again (a 12 M-point LAZ:
~10 s of task time of ~55).  On a local scheduler the pre-pass task here writes the
written columns of its partition to a scratch file as it reads them, and the write's
partitions are those files (one ``np.fromfile`` a column), each removed once read.
In-memory frames (nothing to decode) and ``distributed`` writes (the workers may not
share a disk) read their input twice as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zv_dask.io.spill import SpillDir


def wants_cache(df, columns, local: bool) -> bool:
    """Whether the write of ``columns`` of ``df`` should decode its input once: a local
    write of a frame from a file reader whose written columns are plain numpy numbers."""
    from zv_dask.collections.ingest import source_attributes

    if not local or source_attributes(df) is None:
        return False
    dtypes = df._meta.dtypes
    return all(isinstance(dtypes[c], np.dtype) and dtypes[c].kind in "biuf" for c in columns)


class InputCache:
    """The parked partitions of one write; picklable (a folder path and the columns)."""

    def __init__(self, columns, root: str | None = None):
        self.columns = tuple(columns)
        self.spill = SpillDir(root)

    def __dask_tokenize__(self):
        return ("zv-InputCache", self.spill.path, self.columns)

    def park(self, frame: pd.DataFrame, i: int) -> None:
        """Keep ``frame``'s columns as partition ``i`` (the pre-pass's copy)."""
        self.spill.put(0, i, [frame[c].to_numpy() for c in self.columns])

    def __call__(self, i: int, meta: pd.DataFrame) -> pd.DataFrame:
        """Partition ``i`` as it was parked; its file is removed (read once)."""
        arrays = self.spill.take(0, i, len(self.columns))
        return pd.DataFrame(dict(zip(self.columns, arrays)), columns=meta.columns)

    def frame(self, ddf):
        """The dask DataFrame of the parked partitions of ``ddf`` (same partitions,
        rows in the same order)."""
        import dask.dataframe as dd

        meta = ddf._meta[list(self.columns)]
        return dd.from_map(self, range(ddf.npartitions), meta=meta, label="zv-reread",
                           enforce_metadata=False, args=[meta])

    def remove(self) -> None:
        """Delete whatever is still parked."""
        self.spill.remove()
