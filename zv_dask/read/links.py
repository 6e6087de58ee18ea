"""Connectivity: ``links/0`` records -> graph edges, skeleton parent edges, mesh faces.

Layout (ZV 0.9.x): ``links/<delta>/`` is a group; each child is a grid array named
by the offsets from a record's source cell to its other endpoints (``0.+1.0``,
``0.0.0_+1.0.0``).  A record sits in the cell of endpoint 0; endpoint k is in cell
``source + offsets[k-1]`` (delta 0).  The intra-cell array (all offsets zero) holds
flat ``M x W`` int64 rows; every other array holds a ragged blob
(``int64 K``, ``int64 byte_offset[K]``, then the rows).  ``W = L (+1 with has_perm)``;
with ``has_perm`` column 0 is a Lehmer-coded permutation restoring the input
endpoint order (undirected records are stored sorted by ``(cell, row)``).  Endpoint
values are chunk-local rows; a global vertex id is the chunk's first row in the
level-wide numeric order (as :meth:`ZVStore.read` returns rows) plus that row.

Skeletons (``implicit_sequential_with_branches``): every row's parent is the row
before it, except the first row of each non-empty fragment; explicit
``(child, parent)`` records override that parent.  Each edge is emitted by the
cell of its child, which needs the link cells of the neighbours pointing into it.

Discovering the link arrays reads ``zarr.json`` documents and lists the ``links``
and ``link_attributes`` groups (metadata only); nothing here reads chunk data
except inside the task functions.
"""

from __future__ import annotations

import numpy as np

from zv_dask.errors import ChunkDecodeError
from zv_dask.format import metadata as M
from zv_dask.format.link_decode import decode_records, endpoints, lehmer_permutations  # noqa: F401
from zv_dask.format.link_meta import LinkArray, LinkFamily, load_family, parse_segment  # noqa: F401
from zv_dask.plan import select as _select

EDGE_COLUMNS = ("source", "target")


# --------------------------------------------------------------------------- global ids


class RowStarts:
    """Cell -> first level-wide row (numeric cell order), with the cell's row count."""

    def __init__(self, shape, origin, linear: np.ndarray, lengths):
        self.shape = tuple(shape)
        self.origin = np.asarray(origin, np.int64)
        self.linear = np.asarray(linear, np.int64)
        self.lengths = np.asarray(lengths, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("zv_dask.RowStarts", tokenize(self.linear, self.lengths))

    def global_rows(self, cells: np.ndarray, rows: np.ndarray):
        """(global ids, ok) for chunk-local ``rows`` in ``cells`` (N, rank)."""
        idx = cells - self.origin
        inside = ((idx >= 0) & (idx < np.asarray(self.shape))).all(-1)
        lin = np.full(len(rows), -1, np.int64)
        if inside.any():
            lin[inside] = np.ravel_multi_index(idx[inside].T, self.shape)
        k = np.searchsorted(self.linear, lin)
        k = np.minimum(k, max(len(self.linear) - 1, 0))
        found = inside & (len(self.linear) > 0)
        if len(self.linear):
            found &= self.linear[k] == lin
        ok = found & (rows >= 0) & (rows < np.where(found, self.lengths[k], 0))
        return np.where(ok, self.starts[k] + rows, -1), ok


def cells_in_bbox(cells: np.ndarray, lm: M.LevelMeta, bbox) -> np.ndarray:
    """Mask of the cells whose chunk box meets the closed bbox (pure; the planner's rule)."""
    return _select.cells_in_bbox(lm, cells, bbox)


# --------------------------------------------------------------------------- tasks


class LinkReader:
    """Picklable task function: link records of some cells -> endpoints in global ids.

    ``kind`` is ``"graph"`` (one partition per source cell, every record once),
    ``"skeleton"`` (one partition per vertex cell: the edges whose child is in it)
    or ``"mesh"`` (faces, per source cell).
    """

    def __init__(self, reader, family: LinkFamily, starts: RowStarts, kind: str, bbox,
                 attributes=(), widths=None):
        self.reader = reader
        self.family = family
        self.starts = starts
        self.kind = kind
        self.bbox = bbox
        self.attributes = tuple(attributes)
        self.widths = dict(widths or {})

    def __dask_tokenize__(self):
        return ("zv_dask.LinkReader", self.reader.location.token(), self.family.level,
                self.kind, None if self.bbox is None else [b.tolist() for b in self.bbox],
                self.attributes, self.starts.__dask_tokenize__())

    def _err(self, msg, array=None, chunk=None):
        return ChunkDecodeError(msg, store=self.reader.location.url, level=self.family.level,
                                array=array, chunk=chunk)

    def _records(self, pairs, with_attrs: bool):
        """[(LinkArray, source cell)] -> (rows (M, L), cells (M, L, rank), attrs)."""
        by_cell: dict = {}
        for link, c in pairs:
            by_cell.setdefault(c, []).append(link)
        rows, cells, attrs = [], [], {n: [] for n in self.attributes} if with_attrs else {}
        for c, links in by_cell.items():
            metas = [lk.arr for lk in links]
            if with_attrs:
                metas += [self.family.attributes[n][lk.segment] for n in self.attributes
                          for lk in links if lk.segment in self.family.attributes[n]]
            payloads = self.reader.fetch(metas, [c])
            for lk in links:
                try:
                    rec = decode_records(payloads[(lk.arr.path, c)], lk)
                    r, e = endpoints(rec, lk, c)
                except ValueError as exc:
                    raise self._err(f"{exc}; the link chunk is corrupt", lk.arr.path, c) from None
                rows.append(r)
                cells.append(e)
                for n in attrs:
                    am = self.family.attributes[n].get(lk.segment)
                    if am is None:
                        raise self._err(f"link attribute {n!r} has no array for segment "
                                        f"{lk.segment!r}", f"link_attributes/{n}/0", c)
                    v = np.frombuffer(payloads[(am.path, c)], am.dtype)
                    if len(rec) == 0 or len(v) % len(rec):
                        if len(rec) == 0 and len(v) == 0:
                            attrs[n].append(v)
                            continue
                        raise self._err(f"{len(v)} values for {len(rec)} link records",
                                        am.path, c)
                    w = len(v) // len(rec)
                    attrs[n].append(v if w == 1 else v.reshape(len(rec), w))
        L = self.family.link_width
        rank = self.starts.origin.shape[0]
        rows = np.concatenate(rows) if rows else np.zeros((0, L), np.int64)
        cells = np.concatenate(cells) if cells else np.zeros((0, L, rank), np.int64)
        attrs = {n: (np.concatenate(v) if v else np.zeros(0)) for n, v in attrs.items()}
        return rows, cells, attrs

    def _global(self, rows, cells):
        M_, L = rows.shape
        g, ok = self.starts.global_rows(cells.reshape(-1, cells.shape[-1]), rows.reshape(-1))
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            c = tuple(cells.reshape(-1, cells.shape[-1])[i].tolist())
            raise self._err(f"a link record references row {int(rows.reshape(-1)[i])} of chunk "
                            f"{c}, which is empty or shorter", "links/0", c)
        return g.reshape(M_, L)

    def _inside(self, g: np.ndarray, cells: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Records whose endpoints all lie in the bbox (reads their vertex chunks)."""
        if self.bbox is None or not len(g):
            return np.ones(len(g), bool)
        flat_cells = cells.reshape(-1, cells.shape[-1])
        uniq, inv = np.unique(flat_cells, axis=0, return_inverse=True)
        coords = [tuple(int(x) for x in u) for u in uniq.tolist()]
        loaded = self.reader.load(coords, [], True)
        lo, hi = self.bbox
        flat_rows = rows.reshape(-1)
        ok = np.zeros(len(flat_rows), bool)
        inv = inv.reshape(-1)
        for j, cols in enumerate(loaded):
            m = inv == j
            p = cols["positions"][flat_rows[m]]
            ok[m] = np.all((p >= lo) & (p <= hi), axis=1)
        return ok.reshape(g.shape).all(1)

    def __call__(self, coord, columns=None):
        coord = tuple(coord)
        if self.kind == "skeleton":
            return self._frame(*self._skeleton(coord), {}, columns)
        want_attrs = self.kind == "graph" and bool(self.attributes) and (
            columns is None or any(c not in EDGE_COLUMNS for c in columns))
        pairs = [(lk, coord) for lk in self.family.arrays if coord in lk.cells]
        rows, cells, attrs = self._records(pairs, want_attrs)
        g = self._global(rows, cells)
        keep = self._inside(g, cells, rows)
        if not keep.all():
            g = g[keep]
            attrs = {n: v[keep] for n, v in attrs.items()}
        if self.kind == "mesh":
            return g
        return self._frame(g[:, 0], g[:, 1], attrs, columns)

    def _skeleton(self, coord):
        fam = self.family
        # explicit records touching this cell: its own link cells and the neighbours'
        pairs = []
        for lk in fam.arrays:
            if coord in lk.cells:
                pairs.append((lk, coord))
            for o in np.unique(lk.offsets, axis=0).tolist():
                src = tuple(int(a - b) for a, b in zip(coord, o))
                if any(o) and src in lk.cells:
                    pairs.append((lk, src))
        pairs = list(dict.fromkeys(pairs))  # (LinkArray, cell) once each
        rows, cells, _ = self._records(pairs, False)
        g = self._global(rows, cells)
        child_here = (cells[:, 0] == np.asarray(coord)).all(-1) if len(cells) else \
            np.zeros(0, bool)
        exp_child, exp_parent = g[child_here, 0], g[child_here, 1]
        # implicit parents: row - 1 inside each fragment
        c_arr = np.asarray([coord], np.int64)
        start, ok = self.starts.global_rows(c_arr, np.zeros(1, np.int64))
        lin = np.ravel_multi_index((c_arr - self.starts.origin).T, self.starts.shape)
        k = int(np.searchsorted(self.starts.linear, lin[0]))
        n = int(self.starts.lengths[k]) if ok[0] else 0
        fi = self.reader.fragment_indexes([coord], [n])[0]  # rows must lie in the chunk
        counts = fi.counts()
        frow, _ = fi.row_fragment_pairs()
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]
        no_parent = np.zeros(n, bool)
        first_rows = frow[firsts]
        no_parent[first_rows[(first_rows >= 0) & (first_rows < n)]] = True
        local = np.flatnonzero(~no_parent)
        local = local[local > 0]
        base = int(start[0]) if ok[0] else 0
        imp_child, imp_parent = base + local, base + local - 1
        override = np.isin(imp_child, exp_child)
        child = np.concatenate([imp_child[~override], exp_child])
        parent = np.concatenate([imp_parent[~override], exp_parent])
        order = np.argsort(child, kind="stable")
        child, parent = child[order], parent[order]
        if self.bbox is not None and len(child):
            keep = self._skeleton_inside(child, parent)
            child, parent = child[keep], parent[keep]
        return child, parent

    def _skeleton_inside(self, child, parent):
        ids = np.stack([child, parent], 1)
        k = np.searchsorted(self.starts.starts, ids, side="right") - 1
        lin = self.starts.linear[k]
        cells = np.stack(np.unravel_index(lin.reshape(-1), self.starts.shape), 1) + self.starts.origin
        rows = ids - self.starts.starts[k]
        return self._inside(ids, cells.reshape(ids.shape + (-1,)), rows)

    def meta(self):
        import pandas as pd

        cols = {"source": np.zeros(0, np.int64), "target": np.zeros(0, np.int64)}
        for n in self.attributes:
            w = self.widths.get(n, 1)
            dt = next(iter(self.family.attributes[n].values())).dtype
            if w == 1:
                cols[n] = np.zeros(0, dt)
            else:
                for j in range(w):
                    cols[f"{n}_{j}"] = np.zeros(0, dt)
        return pd.DataFrame(cols)

    def _frame(self, source, target, attrs: dict, columns=None):
        import pandas as pd

        meta = self.meta()
        cols = {"source": np.asarray(source, np.int64), "target": np.asarray(target, np.int64)}
        for n in self.attributes:
            v = attrs.get(n)
            w = self.widths.get(n, 1)
            if v is None:
                if columns is not None and not any(c == n or c.startswith(n + "_")
                                                   for c in columns):
                    continue
                v = np.zeros((len(cols["source"]),) + (() if w == 1 else (w,)),
                             meta[n if w == 1 else f"{n}_0"].dtype)
            if v.ndim == 1:
                cols[n] = v
            else:
                for j in range(v.shape[1]):
                    cols[f"{n}_{j}"] = np.ascontiguousarray(v[:, j])
        df = pd.DataFrame(cols)
        return df if columns is None else df[[c for c in columns if c in df.columns]]
