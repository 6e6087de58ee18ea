"""Dask wiring of the neighbour searches: a dask query frame -> a dask result frame
(one task per input partition, which groups its queries by chunk), and the
self-join as one task per chunk.  The work of a task is in ``zv_dask.neighbours``."""

from __future__ import annotations

import numpy as np

from zv_dask.neighbours import run as _run
from zv_dask.neighbours.cells import CellSource


def _offsets(*lengths) -> list:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64).tolist()


def _query_task(part, offsets, i, source, grid, meta, kind, store, level, kw):
    pts = _run.query_points(part, source.axes, store, level)
    rows = offsets[i] + np.arange(len(pts), dtype=np.int64)
    if kind == "nearest":
        return _run.run_nearest(grid, source, pts, rows, kw["k"], kw["max_distance"], meta,
                                store, level)
    return _run.run_within(grid, source, pts, rows, kw["radius"], meta, store, level)


def query_frame(points, reader, axes, infos, columns, grid, meta, kind: str, store, **kw):
    """``nearest``/``within`` of a dask DataFrame of queries, partitioned like it;
    ``query`` counts rows across the partitions (their lengths are a small first step
    of the same graph)."""
    import dask
    import dask.dataframe as dd

    source = CellSource(reader, axes, infos, columns, in_task=True)
    parts = points[list(axes)].to_delayed()
    offsets = dask.delayed(_offsets)(*[dask.delayed(len)(p) for p in parts])
    level = reader.level.level
    out = [dask.delayed(_query_task, pure=True)(p, offsets, i, source, grid, meta, kind,
                                                store, level, kw)
           for i, p in enumerate(parts)]
    return dd.from_delayed(out, meta=meta, verify_meta=False)


def _pairs_task(tasks, source, grid, radius, bbox, meta, store, level):
    return _run.run_pairs(grid, source, tasks, radius, bbox, meta, store, level)


def pairs_frame(reader, axes, grid, tasks, radius, bbox, meta, store):
    """The self-join as a dask DataFrame: one partition per run of consecutive chunks
    (about 2**19 rows; a run reads each of its chunks and halo chunks once), holding
    the pairs whose smaller id lies in those chunks."""
    import dask
    import dask.dataframe as dd

    source = CellSource(reader, axes, [], [], in_task=True)
    level = reader.level.level
    out = [dask.delayed(_pairs_task, pure=True)(run, source, grid, radius, bbox, meta, store,
                                                level) for run in _run.batches(tasks, grid)]
    if not out:
        return dd.from_pandas(meta, npartitions=1)
    return dd.from_delayed(out, meta=meta, verify_meta=False)
