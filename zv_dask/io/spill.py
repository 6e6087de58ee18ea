"""Local spill files of ``to_zv``'s local write: rows parked on disk between the pass
that keys them and the tasks that build their blocks.

Each input partition writes one file per output task holding its rows for that task
(numpy arrays, ``np.save`` one after the other, no pickle); each output task reads its
files and deletes them.  So a local write holds about one input and one output
partition per thread, not the whole input (the in-memory shuffle held every row until
the last output was built).  The files are scratch, never part of a store: the
folder (``zv-dask-write-<id>`` in dask's ``temporary-directory``) is removed by the
write's last task, or by ``to_zv`` when the write fails (a ``compute=False`` job that
fails when the caller computes it leaves it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import numpy as np


class SpillDir:
    """A scratch folder of spill files; picklable (a path)."""

    def __init__(self, root: str | None = None, path: str | None = None):
        # made by the first put: a graph never computed leaves nothing behind
        self.path = path or os.path.join(root or tempfile.gettempdir(),
                                         f"zv-dask-write-{uuid.uuid4().hex}")

    def __reduce__(self):
        return (SpillDir, (None, self.path))

    def _file(self, out: int, part: int) -> str:
        return os.path.join(self.path, f"{int(out)}-{int(part)}.npy")

    def put(self, out: int, part: int, arrays: list) -> None:
        """Park ``arrays`` (numeric numpy arrays) of input ``part`` for output ``out``."""
        os.makedirs(self.path, exist_ok=True)
        with open(self._file(out, part), "wb") as f:
            for a in arrays:
                np.save(f, np.ascontiguousarray(a), allow_pickle=False)

    def take(self, out: int, part: int, count: int) -> list:
        """The ``count`` arrays parked by ``put(out, part, ...)``; the file is removed."""
        path = self._file(out, part)
        with open(path, "rb") as f:
            arrays = [np.load(f, allow_pickle=False) for _ in range(count)]
        os.remove(path)
        return arrays

    def put_split(self, part: int, target: np.ndarray, order: np.ndarray, arrays: list,
                  nparts: int) -> np.ndarray:
        """Park the rows of input ``part`` by output task: row ``r`` of every array goes
        to task ``target[r]``; ``order`` is ``target``'s stable sort order (callers pick
        the sort).  Returns the rows parked per output task.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> spill = SpillDir(tempfile.mkdtemp())
        >>> t = np.array([1, 0, 1])
        >>> spill.put_split(0, t, np.argsort(t, kind="stable"), [np.arange(3)], 2).tolist()
        [1, 2]
        >>> spill.take_columns(1, [np.array([1, 2])], 1)[0].tolist()
        [0, 2]
        >>> spill.remove()
        """
        cuts = np.searchsorted(target[order], np.arange(nparts + 1))
        for o in range(nparts):
            a, b = cuts[o], cuts[o + 1]
            if b > a:
                self.put(o, part, [np.take(x, order[a:b], axis=0) for x in arrays])
        return np.diff(cuts)

    def take_columns(self, out: int, parked: list, width: int) -> list | None:
        """Output task ``out``'s ``width`` arrays, each concatenated over the inputs in
        input order (``parked[i]``: what :meth:`put_split` returned for input ``i``);
        ``None`` when no input parked rows for it.  The files are removed."""
        pieces = [self.take(out, i, width) for i, n in enumerate(parked) if n[out]]
        if not pieces:
            return None
        cols = []
        for j in range(width):  # one column at a time: the pieces go as they are copied
            cols.append(np.concatenate([p[j] for p in pieces]))
            for p in pieces:
                p[j] = None
        return cols

    def remove(self) -> None:
        """Delete the folder and whatever is left in it."""
        shutil.rmtree(self.path, ignore_errors=True)
