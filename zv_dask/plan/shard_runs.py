"""``chunks_per_partition=k`` on a sharded level: runs of whole shards (pure: numpy
only, no IO, no dask), so an integer grouping reads each shard object in one task
whenever a shard fits in ``k`` chunks.
"""

from __future__ import annotations

import numpy as np


def shard_runs(coords: np.ndarray, k: int, shard_shape, origin,
               lead: int = 0) -> list[np.ndarray]:
    """Indices of ``coords`` cut into partitions of at most ``k`` cells that respect
    shard objects: shards in row-major order, cells row-major inside each, whole shards
    packed together while they fit in ``k``; a shard of more than ``k`` cells is cut
    into runs of ``k`` of its own cells (a task then never reads two shards' parts).

    Along the ``lead`` (non-spatial) axes every coordinate is its own shard, as in
    :func:`~zv_dask.plan.partitioning.shard_groups`.

    Examples
    --------
    >>> c = np.array([[i, j] for i in range(4) for j in range(4)])  # 2x2 shards of 2x2
    >>> [c[g].tolist() for g in shard_runs(c, 4, (2, 2), (0, 0))][:2]
    [[[0, 0], [0, 1], [1, 0], [1, 1]], [[0, 2], [0, 3], [1, 2], [1, 3]]]
    >>> [len(g) for g in shard_runs(c, 9, (2, 2), (0, 0))]
    [8, 8]
    >>> [len(g) for g in shard_runs(c, 3, (2, 2), (0, 0))][:3]
    [3, 1, 3]
    """
    c = np.asarray(coords, np.int64).reshape(len(coords), -1)
    k = max(int(k), 1)
    if not len(c):
        return []
    step = np.asarray(shard_shape, np.int64).copy()
    step[:lead] = 1
    shard = (c - np.asarray(origin, np.int64)) // step
    order = np.lexsort(tuple(c.T[::-1]) + tuple(shard.T[::-1]))
    ss = shard[order]
    starts = np.flatnonzero(np.r_[True, np.any(ss[1:] != ss[:-1], axis=1)])
    sizes = np.diff(np.r_[starts, len(c)])
    groups: list[np.ndarray] = []
    run_start, run_size = 0, 0  # the whole shards packed so far (positions in order)
    for a, n in zip(starts.tolist(), sizes.tolist()):
        if run_size and run_size + n > k:
            groups.append(order[run_start:run_start + run_size])
            run_size = 0
        if n > k:  # alone, in runs of k of its own cells
            groups.extend(order[i:min(i + k, a + n)] for i in range(a, a + n, k))
            continue
        if not run_size:
            run_start = a
        run_size += n
    if run_size:
        groups.append(order[run_start:run_start + run_size])
    return groups
