"""The dask graph of a local ``to_zv`` (no ``distributed`` client): rows reach their
blocks through spill files instead of an in-memory shuffle.

::

    input partition i ──keys, stored dtypes──► one spill file per output task (rows
      of the blocks that task builds) ──► output task o: its files, block by block:
      encode every level's cells and put them ──► finalize: documents, root last

dask's in-memory ``tasks`` shuffle keeps every split of every input partition until
the last output partition is built, so a local write held the whole input (12 M LAZ
points: 1.1 GB).  Here an input partition is parked on disk as soon as it is keyed and
freed; a thread holds one input or one output partition at a time, so memory follows
the partition size, not the input size.  The blocks each output task builds, and so
the store, are those of the shuffle path (:func:`zv_dask.write.graph.write_graph`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zv_dask.io.puts import StoreWriter
from zv_dask.io.spill import SpillDir
from zv_dask.write import plan as P
from zv_dask.write.block import _stable_order, build_block
from zv_dask.write.codecs import level0_recoder
from zv_dask.write.graph import (_SUMMARY_META, _attribute_arrays, block_ranks, finalize,
                                 row_numbers, seq_offsets)


def write_graph_local(ddf, spec: P.WriteSpec, writer: StoreWriter, blocks, counts,
                      nparts: int):
    """The delayed local write of ``ddf`` (already the written columns): ``blocks`` as
    :func:`~zv_dask.write.graph.write_graph` finds them, ``nparts`` output tasks (block
    or group rank ``r`` goes to task ``r % nparts``)."""
    import dask

    spill = SpillDir(dask.config.get("temporary-directory", None))
    writer.scratch = spill  # to_zv removes it when the write fails
    offsets = seq_offsets(counts, ddf.npartitions)
    token = dask.base.tokenize(spec, writer.loc.token())
    parked = [dask.delayed(_park, pure=False)(part, i, spec, blocks, offsets, nparts, spill,
                                              dask_key_name=f"zv-park-{token}-{i}")
              for i, part in enumerate(ddf.to_delayed())]
    written = [dask.delayed(_write_parked, pure=False)(
        o, spec, writer, spill, parked, dask_key_name=f"zv-write_partition-{token}-{o}")
               for o in range(nparts)]
    return dask.delayed(_finalize, pure=False)(spec, writer, spill, written,
                                               dask_key_name=f"zv-finalize-{token}")


def _park(frame, i: int, spec: P.WriteSpec, blocks, offsets, nparts: int,
          spill: SpillDir) -> np.ndarray:
    """Key partition ``i``, cast its columns to their stored dtypes and park each output
    task's rows in that task's file; returns the rows parked per output task."""
    keys, groups = block_ranks(frame, spec, blocks, i)
    run = groups if groups is not None else keys
    arrays = [run, P.positions_of(frame, spec.axes, spec.dtype),
              row_numbers(len(frame), i, offsets)]
    attrs = _attribute_arrays(frame, spec)
    arrays += [attrs[at.name] for at in spec.attributes]
    del frame, attrs, keys, groups
    target = run % nparts
    # a radix sort of 16-bit keys when they fit
    return spill.put_split(i, target, _stable_order(target), arrays, nparts)


def _write_parked(o: int, spec: P.WriteSpec, writer: StoreWriter, spill: SpillDir,
                  parked) -> list:
    """Output task ``o``: read its rows from every input's file, then build and put its
    blocks (groups when sharded) one at a time; returns the cells written."""
    cols = spill.take_columns(o, parked, 3 + len(spec.attributes))
    if cols is None:
        return []
    run, pos, seq = cols[:3]
    attrs = dict(zip((at.name for at in spec.attributes), cols[3:]))
    order = _stable_order(run)
    run = run[order]
    cuts = np.flatnonzero(run[1:] != run[:-1]) + 1
    rows = []
    recoder = level0_recoder(spec)
    for a, b in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(run)]))):
        idx = order[a:b]
        # np.take: a row gather of an (N, D) array is ~4x faster than pos[idx]
        res = build_block(spec, np.take(pos, idx, axis=0),
                          {k: np.take(v, idx, axis=0) for k, v in attrs.items()}, seq[idx])
        writer.put_many(res.blobs if recoder is None else recoder.take(res.blobs))
        if recoder is not None:  # the group's shards are whole: each put once
            writer.put_many(recoder.flush())
        rows.extend(res.cells)
        del res
    return rows


def _finalize(spec: P.WriteSpec, writer: StoreWriter, spill: SpillDir, written) -> dict:
    spill.remove()
    rows = [r for part in written for r in part]
    summary = pd.DataFrame(rows, columns=["level", "array", "key", "n"]) if rows else \
        _SUMMARY_META.copy()
    return finalize(spec, writer, summary)
