"""The dask graph of ``to_zv(geometry="streamline" | "polyline")``; the object half of
:mod:`zv_dask.write.graph` (same shuffle, same puts, same final task)::

    input partitions ──(pre-pass: counts, extent, chunks, rows per object id)
    input partitions ──add chunk key, object id, rank within the object──► shuffle on
      the chunk key ──► one task per output partition: encode and put its cells, return
      their fragments (one row per run of an object in a cell) ──► one final task:
      manifests, object ids, object attributes, bridge links, documents, root last

Vertex order is the frame's order within each object id, across partitions: the
pre-pass counts each partition's rows per object id, and a row's rank is its object's
rows in earlier partitions plus its position among that object's rows in its own
partition.  The final task holds the fragment table (one row per fragment, not per
vertex); vertices never meet in one task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zv_dask.errors import WriteInputError
from zv_dask.format import encode as E
from zv_dask.io.puts import ROOT_DOC, StoreWriter
from zv_dask.write import grid as G
from zv_dask.write import objects as O
from zv_dask.write import plan as P
from zv_dask.write.documents import dumps
from zv_dask.write.graph import (_attribute_arrays, _balanced_labels, _shuffle_method,
                                 compute_options)
from zv_dask.write.object_documents import object_arrays, object_documents, object_root_document
from zv_dask.write.local_objects import done, local_frames, parkable
from zv_dask.write.object_pyramid import coarse_levels, fragment_pairs, fragment_starts


def check_object_ids(frame, column: str, store: str, partition: int = 0) -> np.ndarray:
    """The object ids of a partition as int64; floats, booleans and <NA> are refused."""
    s = frame[column]
    dt = s.dtype
    kind = getattr(dt, "kind", "O")
    if kind not in "iu" or str(dt) == "bool":
        raise WriteInputError(
            f"column {column!r} has dtype {dt}: object ids must be integers (a float id "
            "cannot say which rows are one object); convert it, e.g. "
            f"df[{column!r}].astype('int64') after checking it holds whole numbers",
            store=store)
    if s.isna().any():
        raise WriteInputError(f"column {column!r} holds <NA> in partition {partition}: every "
                              "row needs an object id; drop or fill those rows", store=store)
    ids = s.to_numpy(dtype=np.int64)
    if kind == "u" and len(ids) and (ids < 0).any():
        raise WriteInputError(f"column {column!r} holds ids above 2**63 - 1", store=store)
    return ids


def _partition_facts(frame, axes, dtype, bounds, cat_columns, chunk_shape, column, store,
                     partition_info=None, raw_extent=True, fragments=False):
    i = (partition_info or {}).get("number", 0)
    st = P.partition_stats(frame, axes, dtype, bounds, cat_columns, store)
    raw = P.positions_of(frame, axes, "float64")  # write_polylines' bounds: the input's
    fin = np.isfinite(raw).all(axis=1)
    if raw_extent and fin.any():
        st["lo"], st["hi"] = raw[fin].min(axis=0).tolist(), raw[fin].max(axis=0).tolist()
    chunks = G.chunk_counts(P.positions_of(frame, axes, dtype), chunk_shape,
                            (1,) * len(axes))
    oid = check_object_ids(frame, column, store, i)
    ids, counts = np.unique(oid, return_counts=True)
    pairs = _pairs(frame, axes, dtype, chunk_shape, oid)[:2] if fragments else None
    return st, chunks, ids, counts, pairs


def _pairs(frame, axes, dtype, chunk_shape, oid) -> tuple:
    """:func:`fragment_pairs` of a partition's rows with finite positions (the others
    are refused before the write)."""
    pos = P.positions_of(frame, axes, dtype)
    fin = np.isfinite(pos).all(axis=1)
    chunks = np.floor(pos[fin] / np.asarray(chunk_shape, np.float64)).astype(np.int64)
    return fragment_pairs(oid[fin], chunks)


def prepass(ddf, axes, dtype, bounds, cat_columns, chunk_shape, column, store,
            raw_extent=True, fragments=False) -> dict:
    """The point pre-pass's facts (extent from the input positions, as ``write_polylines``)
    plus, per partition, the rows of each object id and (``fragments``: graph and mesh
    pyramids) the manifest rank of each of its fragments' first row."""
    import dask

    cols = list(dict.fromkeys(list(axes) + list(cat_columns.values()) + [column]))
    parts = ddf[cols].to_delayed()
    fn = dask.delayed(_partition_facts, pure=True)
    facts = dask.compute(*[fn(p, tuple(axes), dtype, bounds, cat_columns, chunk_shape, column,
                              store, {"number": i}, raw_extent, fragments)
                           for i, p in enumerate(parts)],
                         **compute_options())
    out = P.merge_stats([f[0] for f in facts])
    out["counts"] = [int(f[0]["n"]) for f in facts]
    out["chunks"], out["chunk_rows"] = G.merge_chunk_counts([f[1] for f in facts])
    ids = [f[2] for f in facts]
    counts = [f[3] for f in facts]
    out["object_ids"], out["object_rows"], out["rank_offsets"] = _rank_offsets(ids, counts)
    if fragments:
        out["fragment_starts"] = fragment_starts([f[4][0] for f in facts],
                                                 [f[4][1] for f in facts])
    return out


def _rank_offsets(ids: list, counts: list) -> tuple:
    """Sorted object ids, rows per id, and per partition ``(ids, rows of that id in
    earlier partitions)``."""
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), []
    all_ids = np.concatenate(ids)
    all_n = np.concatenate(counts).astype(np.int64)
    part = np.concatenate([np.full(len(x), i) for i, x in enumerate(ids)])
    order = np.lexsort([part, all_ids])
    s_ids, s_n = all_ids[order], all_n[order]
    csum = np.cumsum(s_n) - s_n
    first = np.searchsorted(s_ids, s_ids, side="left")
    before = np.empty_like(csum)
    before[order] = csum - csum[first]
    uniq, inv = np.unique(all_ids, return_inverse=True)
    totals = np.bincount(inv.reshape(-1), weights=all_n, minlength=len(uniq)).astype(np.int64)
    bounds = np.cumsum([0] + [len(x) for x in ids])
    per_part = [(ids[i], before[bounds[i]:bounds[i + 1]]) for i in range(len(ids))]
    return uniq.astype(np.int64), totals, per_part


def _add_keys(frame, spec: P.WriteSpec, labels, blocks, offsets, column, partition_info=None):
    i = (partition_info or {}).get("number", 0)
    pos = P.positions_of(frame, spec.axes, spec.dtype)
    keys, found = G.ranks(blocks, np.floor_divide(O.polyline_chunks(pos, spec),
                                                  np.asarray(spec.block_chunks, np.int64)))
    oid = check_object_ids(frame, column, spec.store_name, i)
    ids, before = offsets[i] if i < len(offsets) else (np.zeros(0, np.int64),) * 2
    at = np.minimum(np.searchsorted(ids, oid), max(len(ids) - 1, 0))
    if not found or (len(oid) and not (len(ids) and (ids[at] == oid).all())):
        raise WriteInputError(
            f"partition {i} has rows the pre-pass did not see: the input changed between "
            "the two passes over it; persist it (ddf.persist()) or write from stored data",
            store=spec.store_name)
    order = np.argsort(oid, kind="stable")  # rank within the partition, frame order kept
    s = oid[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, np.int64)
    run = np.repeat(starts, np.diff(np.append(starts, len(s))))
    rank = np.empty(len(oid), np.int64)
    rank[order] = np.arange(len(s)) - run
    cols = [a for a in spec.axes] + [c for at_ in spec.attributes for c in at_.columns]
    out = frame[list(dict.fromkeys(cols))].assign(**{
        P.KEY_COLUMN: labels[keys], O.OID_COLUMN: oid,
        O.VIDX_COLUMN: (before[at] if len(ids) else 0) + rank})
    return out


def write_partition(frame, spec: P.WriteSpec, writer: StoreWriter) -> pd.DataFrame:
    """Encode and put the cells of one shuffled partition; return their fragments.  A
    single level needs no pyramid blocks: the partition's cells are built in one go."""
    if not len(frame):
        return O.fragment_meta(spec.ndim)
    res = O.build_polyline_block(
        spec, P.positions_of(frame, spec.axes, spec.dtype), _attribute_arrays(frame, spec),
        frame[O.OID_COLUMN].to_numpy(np.int64), frame[O.VIDX_COLUMN].to_numpy(np.int64))
    writer.put_many(res.blobs)
    return res.fragments


def write_pyramid_partition(frame, spec: P.WriteSpec, writer: StoreWriter,
                            runs: bool = True) -> tuple:
    """Encode and put every level's cells of one shuffled partition (whole blocks);
    return ``(level-0 fragments, coarse manifest entries per level, coarse cells)``.
    ``runs=False``: a graph or mesh (one fragment per object per cell, the rows carry
    their fragment's manifest rank)."""
    if not len(frame):
        return O.fragment_meta(spec.ndim), [], []
    pos = P.positions_of(frame, spec.axes, spec.dtype)
    oid = frame[O.OID_COLUMN].to_numpy(np.int64)
    vidx = frame[O.VIDX_COLUMN].to_numpy(np.int64)
    res = O.build_polyline_block(spec, pos, _attribute_arrays(frame, spec), oid, vidx,
                                 runs=runs)
    writer.put_many(res.blobs)
    del res.blobs
    fstart = None if runs else frame[O.FSTART_COLUMN].to_numpy(np.int64)
    coarse, entries = coarse_levels(spec, pos, oid, vidx, fstart)
    writer.put_many(coarse.blobs)
    return res.fragments, entries, coarse.cells


def coarse_parts(spec: P.WriteSpec, parts: list, object_ids, object_attributes: dict) -> tuple:
    """``(level-0 fragments, coarse cells, coarse object arrays)`` of the pyramid
    partitions' results: the coarse manifests from their entry tables (one row per
    manifest entry, no vertices)."""
    d = spec.ndim
    fragments = pd.concat([p[0] for p in parts], ignore_index=True)
    cells = [c for p in parts for c in p[2]]
    blobs = {}
    for lv in range(1, spec.levels):
        tabs = [p[1][lv - 1] for p in parts if p[1]]
        t = {k: np.concatenate([x[k] for x in tabs]) for k in tabs[0]}
        order = np.lexsort([t["vstart"], t["oid"]])
        t = {k: v[order] for k, v in t.items()}
        blobs.update(object_arrays(spec, object_ids, O.manifest_blobs(t, d, object_ids),
                                   object_attributes, level=lv))
    return fragments, cells, blobs


def add_coarse_counts(out: dict, levels: int, cells: list) -> dict:
    """``out``'s per-level vertex and chunk counts extended by the coarse levels'."""
    counts = [0] * levels
    nchunks = [set() for _ in range(levels)]
    for lv, array, key, n in cells:
        if array == "vertices":
            counts[lv] += n
            nchunks[lv].add(key)
    out["vertex_count"] += counts[1:]
    out["chunks"] += [len(c) for c in nchunks[1:]]
    return out


def finalize_pyramid(spec: P.WriteSpec, writer: StoreWriter, parts: list, object_ids,
                     object_rows, object_attributes: dict, geometry: str) -> dict:
    """:func:`finalize` with the coarse levels (:func:`coarse_parts`)."""
    fragments, cells, blobs = coarse_parts(spec, parts, object_ids, object_attributes)
    out = finalize(spec, writer, fragments, object_ids, object_rows, object_attributes,
                   geometry, coarse_cells=cells, coarse_blobs=blobs)
    return add_coarse_counts(out, spec.levels, cells)


def finalize(spec: P.WriteSpec, writer: StoreWriter, fragments, object_ids, object_rows,
             object_attributes: dict, geometry: str, coarse_cells=(),
             coarse_blobs=None) -> dict:
    """Manifests, object arrays, bridges and documents; the root document last."""
    d = spec.ndim
    t = O.sort_fragments(fragments, d)
    uniq, inv = np.unique(t["oid"], return_inverse=True)
    rows = np.bincount(inv.reshape(-1), weights=t["n"], minlength=len(uniq)).astype(np.int64)
    if not (np.array_equal(uniq, object_ids) and np.array_equal(rows, object_rows)):
        raise WriteInputError("the objects written differ from those the pre-pass counted: "
                              "the input changed between the two passes over it; persist it "
                              "(ddf.persist()) or write from stored data", store=spec.store_name)
    origin = spec.grid()[0]
    blobs = object_arrays(spec, object_ids, O.manifest_blobs(t, d, object_ids),
                          object_attributes)
    blobs.update(coarse_blobs or {})
    link_cells: dict = {}
    n_links = 0
    for (seg, src), recs in O.bridge_links(t, d).items():
        blobs["0/" + E.cell_path(f"links/0/{seg}", src, origin)] = E.frame(E.ragged_links(recs), spec.compressor)
        link_cells.setdefault(seg, set()).add(E.cell_key(src))
        n_links += len(recs)
    coords = np.stack([t[f"c{a}"] for a in range(d)], axis=1)
    cells_c, cells_n = G.unique_rows(coords, t["n"]) if len(coords) else (coords, [])
    cells = [(0, "vertices", ".".join(str(int(x)) for x in c), int(n))
             for c, n in zip(cells_c, cells_n)]
    docs = object_documents(spec, cells + list(coarse_cells), link_cells, n_links, geometry,
                            len(object_ids))
    docs.update({k: v for k, v in blobs.items() if isinstance(v, dict)})
    writer.put_many({k: v for k, v in blobs.items() if not isinstance(v, dict)})
    writer.put_many({k: dumps(v) for k, v in docs.items()})
    writer.put_many({ROOT_DOC: dumps(object_root_document(spec, geometry))})
    return {"url": writer.url, "vertex_count": [int(rows.sum())], "objects": len(object_ids),
            "chunks": [len(cells)]}


def write_graph(ddf, spec: P.WriteSpec, writer: StoreWriter, stats: dict, column: str,
                object_attributes: dict, geometry: str):
    """The delayed object write: shuffle rows to their chunks, write cells, then the rest."""
    import dask

    chunks = stats["chunks"] if len(stats["chunks"]) else np.zeros((0, spec.ndim), np.int64)
    blocks = G.sorted_keys(np.floor_divide(chunks, np.asarray(spec.block_chunks, np.int64)))
    nparts = max(1, min(ddf.npartitions, len(blocks)))
    labels = _balanced_labels(max(1, len(blocks)), nparts, P.KEY_COLUMN)
    cols = list(dict.fromkeys(list(spec.axes) + [c for at in spec.attributes
                                                 for c in at.columns] + [column]))
    src = ddf[cols]
    meta = src._meta[[c for c in cols if c != column]].assign(**{
        P.KEY_COLUMN: np.zeros(0, labels.dtype), O.OID_COLUMN: np.zeros(0, np.int64),
        O.VIDX_COLUMN: np.zeros(0, np.int64)})
    keyed = src.map_partitions(_add_keys, spec, labels, blocks, stats["rank_offsets"], column,
                               meta=meta)
    token = dask.base.tokenize(spec, writer.loc.token())
    local = _shuffle_method() == "tasks" and parkable(keyed._meta)
    if local:  # spill files, not a shuffle holding every row
        frames = local_frames(keyed, labels, P.KEY_COLUMN, nparts, writer, token)
    else:
        frames = keyed.shuffle(on=P.KEY_COLUMN, npartitions=nparts,
                               shuffle_method=_shuffle_method()).to_delayed()
    if spec.levels > 1:
        fn = dask.delayed(write_pyramid_partition, pure=False)
        parts = [fn(p, spec, writer, dask_key_name=f"zv-write-objects-{token}-{i}")
                 for i, p in enumerate(frames)]
        final = dask.delayed(finalize_pyramid, pure=False)(
            spec, writer, parts, stats["object_ids"], stats["object_rows"],
            object_attributes, geometry, dask_key_name=f"zv-finalize-objects-{token}")
    else:
        fn = dask.delayed(write_partition, pure=False)
        written = [fn(p, spec, writer, dask_key_name=f"zv-write_partition-objects-{token}-{i}")
                   for i, p in enumerate(frames)]
        final = dask.delayed(finalize, pure=False)(
            spec, writer, dask.delayed(pd.concat)(written, ignore_index=True),
            stats["object_ids"], stats["object_rows"], object_attributes, geometry,
            dask_key_name=f"zv-finalize-objects-{token}")
    if local:
        return dask.delayed(done, pure=False)(final, writer.scratch,
                                              dask_key_name=f"zv-done-objects-{token}")
    return final
