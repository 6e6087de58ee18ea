"""The dask graph of ``to_zv(geometry="graph" | "mesh")``: vertices as for polylines
(shuffled to their chunks, one fragment per object per cell, ordered by object id then
input row), plus explicit ``links/0`` records (edges, faces)::

    vertices ──shuffle on chunk──► cells written; each row's (global row, cell, row in cell)
    edges/faces ──merge on each endpoint's global row──► records with endpoint cells
      ──placed (zv_dask.write.links)──shuffle on the source cell──► link cells written
    fragments + link cells ──► one final task: manifests, documents, root last

The final task holds one row per fragment and per link cell, never per vertex or edge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zv_dask.errors import WriteInputError
from zv_dask.format import encode as E
from zv_dask.io.puts import ROOT_DOC, StoreWriter
from zv_dask.write import grid as G
from zv_dask.write import links as K
from zv_dask.write import objects as O
from zv_dask.write import objects_graph as OG
from zv_dask.write import plan as P
from zv_dask.write import skeleton as S
from zv_dask.write.columns import check_name
from zv_dask.write.documents import dumps
from zv_dask.write.graph import (_attribute_arrays, _balanced_labels, _shuffle_method,
                                 compute_options, to_dask_frame)
from zv_dask.write.object_documents import (graph_documents, object_arrays,
                                            object_root_document)
from zv_dask.write.object_pyramid import fragment_pairs
from zv_dask.write.objects_graph import check_object_ids

_LINK_META = pd.DataFrame({"seg": pd.Series(dtype=object), "key": pd.Series(dtype=object),
                           "n": pd.Series(dtype="int64")})


def record_frame(records, width: int, store: str):
    """``edges=`` / ``faces=`` as a dask DataFrame with endpoint columns ``e0..``."""
    names = ["source", "target"] if width == 2 else [f"v{i}" for i in range(width)]
    what = "edges" if width == 2 else "faces"
    if isinstance(records, np.ndarray):
        if records.ndim != 2 or records.shape[1] != width:
            raise WriteInputError(f"{what} must be ({'M'}, {width}), got shape {records.shape}",
                                  store=store)
        records = pd.DataFrame(records, columns=names)
    ddf = to_dask_frame(records)
    if ddf is None:
        raise WriteInputError(f"{what}= must be a DataFrame with columns {names} (or an "
                              f"(M, {width}) array), got {type(records).__name__}", store=store)
    missing = [c for c in names if c not in ddf.columns]
    if missing:
        raise WriteInputError(f"{what} has no column {missing[0]!r}; it needs {names}",
                              store=store)
    extra = [c for c in ddf.columns if c not in names]
    if width != 2 and extra:
        raise WriteInputError(f"faces has columns {extra} besides {names}; face attributes "
                              "are not written", store=store)
    for c in extra:
        check_name(c, store, "link attribute", "link_attributes")
        dt = ddf[c].dtype
        if not isinstance(dt, np.dtype) or dt.kind not in "iuf":
            raise WriteInputError(f"link attribute {c!r} has dtype {dt}; link attributes are "
                                  "numpy numbers", store=store)
    return ddf.rename(columns=dict(zip(names, [f"e{i}" for i in range(width)]))), extra


def _record_facts(frame, width, store):
    lo, hi = np.inf, -np.inf
    for i in range(width):
        s = frame[f"e{i}"]
        if getattr(s.dtype, "kind", "O") not in "iu" or s.isna().any():
            raise WriteInputError(f"vertex row positions must be integers without <NA>; "
                                  f"column {i} has dtype {s.dtype}", store=store)
        if len(s):
            lo, hi = min(lo, int(s.min())), max(hi, int(s.max()))
    return len(frame), lo, hi


def check_records(rdf, width: int, n_vertices: int, store: str) -> list:
    """Rows per partition; endpoints outside ``0 .. n_vertices - 1`` are refused."""
    import dask

    fn = dask.delayed(_record_facts, pure=True)
    cols = [f"e{i}" for i in range(width)]
    facts = dask.compute(*[fn(p, width, store) for p in rdf[cols].to_delayed()],
                         **compute_options())
    lo = min(f[1] for f in facts)
    hi = max(f[2] for f in facts)
    if lo < 0 or hi >= n_vertices:
        what = "edges" if width == 2 else "faces"
        bad = lo if lo < 0 else hi
        raise WriteInputError(f"{what} refer to vertex row {bad}, but the vertices have "
                              f"{n_vertices} rows (0-based positions in their order)",
                              store=store)
    return [f[0] for f in facts]


def _add_keys(frame, spec, labels, blocks, offsets, column, inverse, fstarts=None,
              partition_info=None):
    i = (partition_info or {}).get("number", 0)
    pos = P.positions_of(frame, spec.axes, spec.dtype)
    chunks = O.polyline_chunks(pos, spec)
    keys, found = G.ranks(blocks, np.floor_divide(chunks, np.asarray(spec.block_chunks,
                                                                     np.int64)))
    changed = WriteInputError(f"partition {i} has rows in a chunk the pre-pass did not see: "
                              "the input changed between the two passes over it; persist "
                              "it (ddf.persist())", store=spec.store_name)
    if not found:
        raise changed
    oid = check_object_ids(frame, column, spec.store_name, i)
    cols = list(dict.fromkeys(list(spec.axes) + [c for a in spec.attributes for c in a.columns]))
    extra = {}
    if fstarts is not None:  # the pre-pass's fragments of this partition, in its order
        pairs, _, which = fragment_pairs(oid, chunks)
        if len(pairs) != len(fstarts[i]):
            raise changed
        extra[O.FSTART_COLUMN] = fstarts[i][which]
    return frame[cols].assign(**{
        P.KEY_COLUMN: labels[keys], O.OID_COLUMN: oid,
        O.VIDX_COLUMN: _rows(offsets[i], len(frame), inverse), **extra})


def _rows(first: int, n: int, inverse) -> np.ndarray:
    """Global rows of a partition's records or vertices (skeletons: depth-first rows)."""
    rows = first + np.arange(n, dtype=np.int64)
    return rows if inverse is None else inverse[rows]


def _build(spec, frame, encode=True):
    return O.build_polyline_block(
        spec, P.positions_of(frame, spec.axes, spec.dtype),
        _attribute_arrays(frame, spec) if encode else {},
        frame[O.OID_COLUMN].to_numpy(np.int64), frame[O.VIDX_COLUMN].to_numpy(np.int64),
        runs=False, encode=encode)


def write_vertices(frame, spec: P.WriteSpec, writer: StoreWriter) -> pd.DataFrame:
    """Encode and put the cells of one shuffled partition (all at once: one level)."""
    if not len(frame):
        return O.fragment_meta(spec.ndim)
    res = _build(spec, frame)
    writer.put_many(res.blobs)
    return res.fragments


def locate_vertices(frame, spec: P.WriteSpec) -> pd.DataFrame:
    """``seq, local, fstart, c0..`` of every row (its cell, row there, and whether it
    starts a fragment); nothing encoded or written."""
    if len(frame):
        return _build(spec, frame, encode=False).local
    return pd.DataFrame({c: pd.Series(dtype="int64")
                         for c in ["seq", "local", "fstart"]
                         + [f"c{a}" for a in range(spec.ndim)]})


def _place(frame, width, ndim, extra, cell_starts=None, partition_info=None):
    """Endpoint cells and rows -> placed records and their source cell key.  Skeletons
    (``cell_starts``: each cell's first level row) drop the records the reader implies."""
    if cell_starts is not None and len(frame):
        keys, starts = cell_starts
        read = [starts[G.ranks(keys, np.stack([frame[f"c{a}_{i}"].to_numpy(np.int64)
                                               for a in range(ndim)], axis=1))[0]]
                + frame[f"local_{i}"].to_numpy(np.int64) for i in range(2)]
        gone = S.implied(read[0], read[1], frame["fstart_0"].to_numpy().astype(bool))
        frame = frame[~gone]
    m = len(frame)
    chunks = np.stack([np.stack([frame[f"c{a}_{i}"].to_numpy(np.int64) for a in range(ndim)],
                                axis=1) for i in range(width)], axis=1).reshape(m, width, ndim)
    vi = np.stack([frame[f"local_{i}"].to_numpy(np.int64) for i in range(width)], axis=1)
    src, off, placed, perm, intra = K.place_records(chunks, vi.reshape(m, width))
    out = {f"s{a}": src[:, a] for a in range(ndim)}
    out.update({f"o{j}_{a}": off[:, j, a] for j in range(width - 1) for a in range(ndim)})
    out.update({f"p{i}": placed[:, i] for i in range(width)})
    out.update(perm=perm, intra=intra.astype(np.int64), eseq=frame["eseq"].to_numpy(np.int64))
    res = pd.DataFrame(out)
    for c in extra:
        res[c] = frame[c].to_numpy()
    res["_zv_cell"] = (pd.util.hash_pandas_object(res[[f"s{a}" for a in range(ndim)]],
                                                  index=False).to_numpy() >> 1).astype(np.int64)
    return res


def write_link_cells(frame, spec, writer, width, extra) -> pd.DataFrame:
    d = spec.ndim
    if not len(frame):
        return _LINK_META.copy()
    src = np.stack([frame[f"s{a}"].to_numpy(np.int64) for a in range(d)], axis=1)
    off = np.stack([np.stack([frame[f"o{j}_{a}"].to_numpy(np.int64) for a in range(d)], axis=1)
                    for j in range(width - 1)], axis=1)
    placed = np.stack([frame[f"p{i}"].to_numpy(np.int64) for i in range(width)], axis=1)
    attrs = {c: frame[c].to_numpy() for c in extra}
    blobs, cells = K.link_cells(src, off, placed, frame["perm"].to_numpy(np.int64),
                                frame["intra"].to_numpy().astype(bool),
                                frame["eseq"].to_numpy(np.int64), attrs, spec.grid()[0],
                                spec.compressor)
    writer.put_many(blobs)
    return pd.DataFrame(cells, columns=["seg", "key", "n"]).astype({"n": "int64"})


def finalize(spec, writer, fragments, link_summary, object_ids, object_attributes, geometry,
             width, extra_dtypes, pyramid=False):
    """Manifests, object arrays and documents, the root document last.  ``pyramid``:
    ``fragments`` is the list of :func:`OG.write_pyramid_partition` results."""
    d = spec.ndim
    coarse_cells, coarse_blobs = [], {}
    if pyramid:
        fragments, coarse_cells, coarse_blobs = OG.coarse_parts(spec, fragments, object_ids,
                                                                object_attributes)
    n_records = int(link_summary["n"].sum())
    t = O.sort_fragments(fragments, d, by_cell=True)
    blobs = object_arrays(spec, object_ids, O.manifest_blobs(t, d, object_ids),
                          object_attributes)
    blobs.update(coarse_blobs)
    coords = np.stack([t[f"c{a}"] for a in range(d)], axis=1)
    cells_c, cells_n = G.unique_rows(coords, t["n"])
    cells = [(0, "vertices", E.cell_key(c), int(n)) for c, n in zip(cells_c, cells_n)]
    links = list(zip(link_summary["seg"], link_summary["key"], link_summary["n"]))
    docs = graph_documents(spec, cells + coarse_cells, links, width, extra_dtypes, n_records,
                           len(object_ids))
    docs.update({k: v for k, v in blobs.items() if isinstance(v, dict)})
    writer.put_many({k: v for k, v in blobs.items() if not isinstance(v, dict)})
    writer.put_many({k: dumps(v) for k, v in docs.items()})
    writer.put_many({ROOT_DOC: dumps(object_root_document(spec, geometry))})
    out = {"url": writer.url, "vertex_count": [int(t["n"].sum())], "objects": len(object_ids),
           "chunks": [len(cells)]}
    return OG.add_coarse_counts(out, spec.levels, coarse_cells)


def skeleton_order(ddf, rdf, column: str, store: str):
    """Depth-first new row of every vertex (``inverse``), after the one-root-per-object
    check.  The tree's indices (not positions) meet in this one step."""
    import dask

    oids, edges = dask.compute(ddf[column], rdf[["e0", "e1"]], **compute_options())
    oids = oids.to_numpy(np.int64)
    child, parent = edges["e0"].to_numpy(np.int64), edges["e1"].to_numpy(np.int64)
    S.check_one_root_per_object(child, oids, store)
    return S.depth_first_order(child, parent, len(oids))


def _cell_starts(stats) -> tuple:
    """``(chunk keys, first level row of each)``: cells in numeric coordinate order."""
    chunks, rows = stats["chunks"], np.asarray(stats["chunk_rows"], np.int64)
    numeric = np.lexsort([chunks[:, a] for a in range(chunks.shape[1] - 1, -1, -1)])
    starts = np.empty(len(rows), np.int64)
    starts[numeric] = np.cumsum(rows[numeric]) - rows[numeric]
    return G.sorted_keys(chunks), starts


def write_graph(ddf, spec, writer, stats, column, object_attributes, geometry, rdf, width,
                extra, record_counts, inverse=None):
    """The delayed graph/mesh/skeleton write (``inverse``: a skeleton's depth-first rows)."""
    import dask

    chunks = stats["chunks"] if len(stats["chunks"]) else np.zeros((0, spec.ndim), np.int64)
    # whole blocks to a task: every coarse bin nests in one (a block is a chunk at 1 level)
    blocks = G.sorted_keys(np.floor_divide(chunks, np.asarray(spec.block_chunks, np.int64)))
    pyramid = spec.levels > 1
    nparts = max(1, min(ddf.npartitions, len(blocks)))
    labels = _balanced_labels(max(1, len(blocks)), nparts, P.KEY_COLUMN)
    offsets = np.concatenate(([0], np.cumsum(stats["counts"])[:-1])).astype(np.int64)
    cols = list(dict.fromkeys(list(spec.axes) + [c for a in spec.attributes for c in a.columns]
                              + [column]))
    src = ddf[cols]
    meta = src._meta[[c for c in cols if c != column]].assign(**{
        P.KEY_COLUMN: np.zeros(0, labels.dtype), O.OID_COLUMN: np.zeros(0, np.int64),
        O.VIDX_COLUMN: np.zeros(0, np.int64),
        **({O.FSTART_COLUMN: np.zeros(0, np.int64)} if pyramid else {})})
    keyed = src.map_partitions(_add_keys, spec, labels, blocks, offsets, column, inverse,
                               stats["fragment_starts"] if pyramid else None, meta=meta)
    shuffled = keyed.shuffle(on=P.KEY_COLUMN, npartitions=nparts,
                             shuffle_method=_shuffle_method())
    token = dask.base.tokenize(spec, writer.loc.token())
    if pyramid:
        fn = dask.delayed(OG.write_pyramid_partition, pure=False)
        fragments = [fn(p, spec, writer, False, dask_key_name=f"zv-write-graph-{token}-{i}")
                     for i, p in enumerate(shuffled.to_delayed())]
    else:
        fragments = shuffled.map_partitions(write_vertices, spec, writer,
                                            meta=O.fragment_meta(spec.ndim),
                                            enforce_metadata=False)
    located = shuffled.map_partitions(locate_vertices, spec, enforce_metadata=False,
                                      meta=locate_vertices(shuffled._meta.iloc[:0], spec))
    eoff = np.concatenate(([0], np.cumsum(record_counts)[:-1])).astype(np.int64)
    recs = rdf.map_partitions(_number, eoff, inverse,
                              meta=rdf._meta.assign(eseq=np.zeros(0, np.int64)))
    for i in range(width):
        loc = located.rename(columns={"seq": f"e{i}", "local": f"local_{i}",
                                      "fstart": f"fstart_{i}", **{
            f"c{a}": f"c{a}_{i}" for a in range(spec.ndim)}})
        recs = recs.merge(loc, on=f"e{i}", how="left", shuffle_method=_shuffle_method())
    starts = _cell_starts(stats) if inverse is not None else None
    placed = recs.map_partitions(_place, width, spec.ndim, extra, starts,
                                 meta=_place(recs._meta, width, spec.ndim, extra))
    by_cell = placed.shuffle(on="_zv_cell", npartitions=max(1, rdf.npartitions),
                             shuffle_method=_shuffle_method())
    link_summary = by_cell.map_partitions(write_link_cells, spec, writer, width, extra,
                                          meta=_LINK_META, enforce_metadata=False)
    extra_dtypes = {c: str(rdf[c].dtype) for c in extra}
    return dask.delayed(finalize, pure=False)(
        spec, writer, fragments, link_summary, stats["object_ids"], object_attributes, geometry,
        width, extra_dtypes, pyramid, dask_key_name=f"zv-finalize-graph-{token}")


def _number(frame, offsets, inverse, partition_info=None):
    """Input position of each record; a skeleton's endpoints in depth-first rows."""
    i = (partition_info or {}).get("number", 0)
    out = frame.assign(eseq=offsets[i] + np.arange(len(frame), dtype=np.int64))
    if inverse is not None and len(out):
        out["e0"], out["e1"] = inverse[out["e0"].to_numpy()], inverse[out["e1"].to_numpy()]
    return out
