"""The object writer's shuffle on the local schedulers: keyed partitions parked in spill
files, one frame per output task read back from them.

::

    keyed input partition i ──split by output task──► one spill file per output task
      (all its columns) ──► output task o: its files, concatenated into one frame

dask's in-memory ``tasks`` shuffle keeps every split of every input partition until the
last output partition is built, so a local streamline write held every vertex a few
times over.  Here a keyed partition is parked on disk and freed as soon as it is split.
Which output task a block goes to does not change the store: cells are built per block
and sorted, so the frames feed the same per-partition writers as the shuffle's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zv_dask.io.spill import SpillDir
from zv_dask.write.block import _stable_order


def parkable(meta: pd.DataFrame) -> bool:
    """True when every column of the keyed frames is a plain numpy number or bool (spill
    files hold numeric arrays only); other frames take dask's shuffle."""
    return all(isinstance(t, np.dtype) and t.kind in "biuf" for t in meta.dtypes)


def local_frames(keyed, labels: np.ndarray, key_column: str, nparts: int, writer,
                 token: str) -> list:
    """``nparts`` delayed pandas frames, output task ``o`` holding the rows of the blocks
    whose rank ``r`` (the position of their label in ``labels``) has ``r % nparts == o``.

    The spill folder is the writer's scratch (``to_zv`` removes it when the write fails);
    :func:`done` removes it after the final task.
    """
    import dask

    spill = SpillDir(dask.config.get("temporary-directory", None))
    writer.scratch = spill
    sorter = np.argsort(labels, kind="stable")
    meta = keyed._meta
    parked = [dask.delayed(_park, pure=False)(part, i, key_column, labels[sorter], sorter,
                                              nparts, spill,
                                              dask_key_name=f"zv-park-objects-{token}-{i}")
              for i, part in enumerate(keyed.to_delayed())]
    return [dask.delayed(_take, pure=False)(o, meta, spill, parked,
                                            dask_key_name=f"zv-take-objects-{token}-{o}")
            for o in range(nparts)]


def done(result, spill: SpillDir):
    """``result`` once the spill folder is gone (the final task's dependant)."""
    spill.remove()
    return result


def _park(frame: pd.DataFrame, i: int, key_column: str, sorted_labels, sorter, nparts: int,
          spill: SpillDir) -> np.ndarray:
    """Split keyed partition ``i`` by output task and park each part; returns the rows
    parked per output task."""
    keys = frame[key_column].to_numpy()
    target = sorter[np.searchsorted(sorted_labels, keys)] % nparts
    columns = [frame[c].to_numpy() for c in frame.columns]
    del frame
    return spill.put_split(i, target, _stable_order(target), columns, nparts)


def _take(o: int, meta: pd.DataFrame, spill: SpillDir, parked) -> pd.DataFrame:
    """Output task ``o``'s frame: its parts from every input, in input order."""
    cols = spill.take_columns(o, parked, len(meta.columns))
    if cols is None:
        return meta.iloc[:0].copy()
    data = {name: col.astype(dtype, copy=False)
            for name, dtype, col in zip(meta.columns, meta.dtypes, cols)}
    del cols
    return pd.DataFrame(data, columns=meta.columns)
