"""The dask graph of ``to_zv``: the only writer module that talks to dask.

::

    input partitions ──(pre-pass: counts, extent, categories; checked before writing)
    input partitions ──add block key + input order──► shuffle on the block key (p2p on
      distributed) ──► one task per output partition: for each block in it, encode every
      level's cells and put them ──► one final task: level/array documents, root last

A block (``WriteSpec.block_chunks`` level-0 chunks per axis) is written whole by one
task, so every output chunk, all its arrays and its pyramid parents, come from one task.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from zv_dask.format.encode import category_codes
from zv_dask.io.puts import ROOT_DOC, StoreWriter
from zv_dask.write import plan as P
from zv_dask.write.block import build_block
from zv_dask.errors import WriteInputError
from zv_dask.write import grid as G
from zv_dask.write.codecs import group_coords, level0_recoder
from zv_dask.write.documents import documents, dumps, root_document

SLICE_ROWS = 1 << 16  # rows binned at a time by the pre-pass and the shuffle keys
_SUMMARY_META = pd.DataFrame({"level": pd.Series(dtype="int64"), "array": pd.Series(dtype=object),
                              "key": pd.Series(dtype=object), "n": pd.Series(dtype="int64")})


def to_dask_frame(df, rows_per_partition: int = 1_000_000):
    """A dask DataFrame for a dask or pandas one (pandas: partitions that are views of
    ``rows_per_partition`` rows, the frame not copied).

    Object columns stay object: dask's string conversion would store an object
    column of ints as string categories ('3', not 3)."""
    import dask
    import dask.dataframe as dd

    from zv_dask.collections.build import pandas_partitions

    if isinstance(df, pd.DataFrame):
        with dask.config.set({"dataframe.convert-string": False}):
            return pandas_partitions(df, rows_per_partition)
    if isinstance(df, dd.DataFrame):
        return df
    return None


def missing_counts(ddf, columns) -> dict:
    """Rows holding <NA> per column (one pass over those columns only; none if empty)."""
    import dask

    if not columns:
        return {}
    counts = ddf[list(dict.fromkeys(columns))].isna().sum()
    return {k: int(v) for k, v in dask.compute(counts, **compute_options())[0].items()}


def prepass(ddf, axes, dtype: str, bounds, cat_columns: dict, binning=None,
            store: str | None = None, cache=None) -> dict:
    """Counts, NaN/inf and out-of-bounds examples, extent and categories of the input
    (one pass reading only the axis and categorical columns).  With ``binning`` (base
    bin, bins per chunk) also ``chunks`` and ``chunk_rows``: the non-empty level-0
    chunks and their rows, so nothing later is sized by the grid.  With ``cache`` (an
    :class:`~zv_dask.write.reread.InputCache`) the pass reads the cached columns too
    and parks each partition for the write."""
    import dask

    cols = list(dict.fromkeys(list(axes) + list(cat_columns.values())))
    parts = (ddf[cols] if cache is None else ddf[list(cache.columns)]).to_delayed()
    fn = dask.delayed(_partition_facts, pure=cache is None)
    stats = dask.compute(*[fn(p, tuple(axes), dtype, bounds, cat_columns, binning, store,
                              cache, i) for i, p in enumerate(parts)], **compute_options())
    out = P.merge_stats([s for s, _ in stats])
    out["counts"] = [int(s["n"]) for s, _ in stats]  # rows per partition: input-order offsets
    if binning is not None:
        out["chunks"], out["chunk_rows"] = G.merge_chunk_counts([c for _, c in stats])
    return out


def _partition_facts(frame, axes, dtype, bounds, cat_columns, binning, store=None,
                     cache=None, i=0):
    if cache is not None:
        cache.park(frame, i)
    # in slices of SLICE_ROWS: the float64/int64 temporaries of binning a whole
    # partition (~100 MB a million rows) would set the write's peak memory
    stats, chunks = [], []
    for a in range(0, max(len(frame), 1), SLICE_ROWS):
        part = frame.iloc[a:a + SLICE_ROWS]
        pos = P.positions_of(part, axes, dtype)
        stats.append(P.partition_stats(part, axes, dtype, bounds, cat_columns, store, pos=pos))
        if binning is not None:
            chunks.append(G.chunk_counts(pos, *binning))
        del pos
    st = P.merge_stats(stats)
    return st, (None if binning is None else G.merge_chunk_counts(chunks))


def _add_keys(frame, spec: P.WriteSpec, labels, blocks, offsets, partition_info=None):
    i = (partition_info or {}).get("number", 0)
    keys, groups = block_ranks(frame, spec, blocks, i)
    out = frame.assign(**{
        P.KEY_COLUMN: keys if groups is not None else labels[keys],
        P.SEQ_COLUMN: row_numbers(len(frame), i, offsets)})
    if groups is not None:  # shuffle whole shards (and blocks) to one task
        out[P.GROUP_COLUMN] = labels[groups]
    return out


def row_numbers(n: int, i: int, offsets) -> np.ndarray:
    """Input order of partition ``i``'s ``n`` rows (see :func:`seq_offsets`)."""
    if offsets is not None:  # global row number, 4 bytes a row
        return offsets[i] + np.arange(n, dtype=offsets.dtype)
    return np.int64(i) * P.SEQ_STRIDE + np.arange(n, dtype=np.int64)


def block_ranks(frame, spec: P.WriteSpec, blocks, i: int) -> tuple:
    """Rank of each row's block among the non-empty blocks the pre-pass found (sized by
    the data), and with shards of its group (else None); binned in slices of
    ``SLICE_ROWS`` (bounded temporaries)."""
    sharded = spec.shard_shape is not None
    keys = np.empty(len(frame), np.int64)
    groups = np.empty(len(frame), np.int64) if sharded else None
    found = True
    by_block = G.Ranker(blocks[0])
    by_group = G.Ranker(blocks[1]) if sharded else None
    for a in range(0, len(frame), SLICE_ROWS):
        chunks = P.level0_chunks(P.positions_of(frame.iloc[a:a + SLICE_ROWS], spec.axes,
                                                spec.dtype), spec)[0]
        k, ok = by_block.ranks(np.floor_divide(chunks, np.asarray(spec.block_chunks)))
        keys[a:a + len(k)] = k
        if sharded:
            g, ok_g = by_group.ranks(group_coords(chunks, spec))
            groups[a:a + len(g)] = g
            ok = ok and ok_g
        found = found and ok
    if not found:
        raise WriteInputError(
            f"partition {i} has rows in a chunk the pre-pass did not see: the input changed "
            "between the two passes over it; persist it (ddf.persist()) or write from "
            "stored data", store=spec.store_name)
    return keys, groups


def _balanced_labels(n_keys: int, nparts: int, on: str) -> np.ndarray:
    """A distinct shuffle label per key such that dask's hash partitioning sends key
    ``k`` to partition ``k % nparts``.  The keys themselves (0, 1, 2, ...) collide (8
    blocks hashed to 8 partitions land in 4, one holding half the rows); the labels only
    balance the work, any distinct values give the same store."""
    try:  # dask's hash partitioning (numeric shuffle columns are hashed as float64)
        from dask.dataframe.shuffle import partitioning_index
    except ImportError:  # pragma: no cover - other dask layouts: hashed keys as they are
        return np.arange(n_keys, dtype=np.int64)
    labels = np.full(n_keys, -1, np.int64)
    free = [list(range(t, n_keys, nparts)) for t in range(nparts)]  # keys wanting part t
    start, size = 0, max(64, 4 * n_keys)
    while any(free):
        cand = np.arange(start, start + size, dtype=np.int64)
        part = np.asarray(partitioning_index(
            pd.DataFrame({on: cand.astype(np.float64)}), nparts))
        for c, t in zip(cand, part):
            if free[t]:
                labels[free[t].pop()] = c
        start += size
    # the shuffled key column is 4 bytes a row when the labels allow (hashed as float64
    # either way, so the partitions are the same)
    return labels.astype(np.int32) if labels.max(initial=0) < 2**31 else labels


def _attribute_arrays(block, spec: P.WriteSpec) -> dict:
    out = {}
    for at in spec.attributes:
        if at.categorical:
            out[at.name] = category_codes(block[at.columns[0]], at.categories,
                                          np.dtype(at.dtype), at.fill_code)
        elif at.width:
            out[at.name] = np.stack([_values(block[c], at.dtype) for c in at.columns], 1)
        else:
            out[at.name] = _values(block[at.columns[0]], at.dtype)
    return out


def _values(s, dtype: str) -> np.ndarray:
    # <NA> of a nullable float column is NaN (int/bool ones with <NA> were refused)
    if np.dtype(dtype).kind == "f":
        return s.to_numpy(dtype=dtype, na_value=np.nan)
    return s.to_numpy(dtype=dtype)


def write_partition(frame, spec: P.WriteSpec, writer: StoreWriter) -> pd.DataFrame:
    """Encode and put every block in one shuffled partition; return what was written.

    Unsharded, blocks are built one at a time.  Sharded, a group (whole shards and
    whole blocks) is built in one go and its shards put before the next group: one
    build per group, not per block (a block may be a single chunk), and a task holds
    the cells of one group at a time."""
    rows = []
    recoder = level0_recoder(spec)
    on = P.GROUP_COLUMN if spec.shard_shape is not None else P.KEY_COLUMN
    for block in _runs(frame, on):
        res = build_block(spec, P.positions_of(block, spec.axes, spec.dtype),
                          _attribute_arrays(block, spec), block[P.SEQ_COLUMN].to_numpy())
        writer.put_many(res.blobs if recoder is None else recoder.take(res.blobs))
        if recoder is not None:  # the group's shards are whole: each put once
            writer.put_many(recoder.flush())
        rows.extend(res.cells)
    if not rows:
        return _SUMMARY_META.copy()
    out = pd.DataFrame(rows, columns=["level", "array", "key", "n"])
    return out.astype({"level": "int64", "n": "int64", "array": object, "key": object})


def _runs(frame, on: str):
    """The rows of each value of column ``on``, one frame per value (the frame itself
    when it holds one value, the usual case)."""
    if not len(frame):
        return
    keys = frame[on].to_numpy()
    order = None if (keys == keys[0]).all() else np.argsort(keys, kind="stable")
    if order is None:
        yield frame
        return
    keys = keys[order]
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    for a, b in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(keys)]))):
        yield frame.take(order[a:b])


def finalize(spec: P.WriteSpec, writer: StoreWriter, summary) -> dict:
    """Write the level and array documents, then the root document (last: only now does
    the store open)."""
    cells = list(zip(summary["level"], summary["array"], summary["key"], summary["n"]))
    docs = documents(spec, cells)
    writer.put_many({k: dumps(v) for k, v in docs.items()})
    writer.put_many({ROOT_DOC: dumps(root_document(spec))})
    counts = [0] * spec.levels
    for level, array, _, n in cells:
        if array == "vertices":
            counts[int(level)] += int(n)
    return {"url": writer.url, "vertex_count": counts,
            "chunks": [int(((summary["level"] == lv) & (summary["array"] == "vertices")).sum())
                       for lv in range(spec.levels)]}


def compute_options() -> dict:
    """dask's threaded scheduler, given as the function, when nothing else could be
    chosen: no scheduler configured and ``distributed`` not imported (so no client).
    That is dask's own default for these collections; naming it as a function spares
    dask importing ``distributed`` (0.3 s, ~12 MB) only to find no client (the name
    ``"threads"`` does not: dask looks for a client before it reads a named scheduler)."""
    import dask

    if "distributed" in sys.modules or dask.config.get("scheduler", None) \
            or dask.config.get("get", None):
        return {}
    import dask.threaded

    return {"scheduler": dask.threaded.get}


def _shuffle_method():
    """p2p on a distributed cluster, in-memory tasks locally (dask's local default
    spills through disk, which measured ~1.8x slower here), or the user's setting."""
    import dask

    if dask.config.get("dataframe.shuffle.method", None):
        return None
    if "distributed" not in sys.modules:  # no client without it; importing costs ~10 MB
        return "tasks"
    try:
        from distributed import default_client

        default_client()
        return "p2p"
    except (ImportError, ValueError):
        return "tasks"


def seq_offsets(counts, npartitions: int):
    """First row number of each partition (the pre-pass counts) as int32 when the total
    leaves room (rows are ordered by it only, so a partition longer on this pass than
    counted merely ties with the next), else None: partition * SEQ_STRIDE + row."""
    if counts is None or len(counts) != npartitions or sum(counts) >= 2**30:
        return None
    return np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int32)


def write_graph(ddf, spec: P.WriteSpec, writer: StoreWriter, chunks, counts=None):
    """The delayed write: shuffle rows to their blocks, write blocks, then documents.

    ``chunks`` are the non-empty level-0 chunks (the pre-pass's); the shuffle keys are
    ranks among their blocks, so the graph is sized by the data, not the grid."""
    import dask

    cols = list(dict.fromkeys(list(spec.axes) + [c for at in spec.attributes for c in at.columns]))
    src = ddf[cols]
    chunks = chunks if len(chunks) else np.zeros((0, spec.ndim), np.int64)
    blocks = (G.sorted_keys(np.floor_divide(chunks, np.asarray(spec.block_chunks))), None)
    on, n_blocks = P.KEY_COLUMN, len(blocks[0])
    if spec.shard_shape is not None:
        blocks = (blocks[0], G.sorted_keys(group_coords(chunks, spec)))
        on, n_blocks = P.GROUP_COLUMN, len(blocks[1])
    nparts = max(1, min(ddf.npartitions, n_blocks))
    method = _shuffle_method()
    if method == "tasks":  # local: spill files, not a shuffle holding every row
        from zv_dask.write.local_graph import write_graph_local

        return write_graph_local(src, spec, writer, blocks, counts, nparts)
    labels = _balanced_labels(max(1, n_blocks), nparts, on)
    offsets = seq_offsets(counts, ddf.npartitions)
    meta = src._meta.assign(**{
        P.KEY_COLUMN: np.zeros(0, np.int64 if spec.shard_shape is not None else labels.dtype),
        P.SEQ_COLUMN: np.zeros(0, np.int64 if offsets is None else offsets.dtype)})
    if spec.shard_shape is not None:
        meta[P.GROUP_COLUMN] = np.zeros(0, labels.dtype)
    keyed = src.map_partitions(_add_keys, spec, labels, blocks, offsets, meta=meta)
    shuffled = keyed.shuffle(on=on, npartitions=nparts, shuffle_method=method)
    written = shuffled.map_partitions(write_partition, spec, writer, meta=_SUMMARY_META,
                                      enforce_metadata=False)
    return dask.delayed(finalize, pure=False)(spec, writer, written,
                                              dask_key_name=f"zv-finalize-{dask.base.tokenize(spec, writer.loc.token())}")
