"""Fixture stores written by the reference ``zarr-vectors`` writer, and the answers
its own readers give.  Small on purpose: the whole set builds in a few seconds."""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", module="zarr_vectors")

BOUNDS3 = ([0.0, 0.0, 0.0], [2000.0, 2000.0, 2000.0])


def _points3(rng, n, lo=0.0, hi=2000.0):
    pts = rng.uniform(lo, hi, (int(n * 1.2), 3)).astype(np.float32)
    keep = ~np.all(pts >= lo + 0.75 * (hi - lo), axis=1)  # one empty octant
    return pts[keep][:n]


def _streamlines(rng, n_lines, lo=20, hi=80, step=12.0):
    lines = []
    for _ in range(n_lines):
        n = int(rng.integers(lo, hi))
        p = rng.uniform(200, 1800, 3)
        d = rng.normal(0, 1, 3)
        d /= np.linalg.norm(d)
        out = np.empty((n, 3))
        for i in range(n):
            d = d + rng.normal(0, 0.25, 3)
            d /= np.linalg.norm(d)
            p = np.clip(p + step * d, 0.0, 1999.0)
            out[i] = p
        lines.append(out.astype(np.float32))
    return lines


def build_points_pyramid(path: Path, rng):
    """3-D points, float/float64/int/categorical attributes, 4 levels."""
    from zarr_vectors import building as B
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    pos = _points3(rng, 6000)
    n = len(pos)
    B.write_points(str(path), pos, chunk_shape=(500.0,) * 3, bin_shape=(100.0,) * 3,
                   bounds=BOUNDS3, vertex_attributes={
                       "intensity": (pos[:, 0] / 2000 + rng.normal(0, 0.05, n)).astype(np.float32),
                       "fa": rng.random(n),
                       "label": rng.integers(0, 10, n).astype(np.int32),
                       "region": rng.choice(np.array(["cortex", "white_matter", "ventricle"]), n),
                       "rgb": rng.integers(0, 256, (n, 3)).astype(np.uint8),
                   })
    build_pyramid(str(path), factors=[(2.0, 1.0)] * 3)


def build_points_float64_zstd(path: Path, rng):
    """float64 positions, zstd-compressed, unsharded (the numcodecs path)."""
    from zarr_vectors import building as B

    pos = rng.uniform(-500.0, 1500.0, (3000, 3))
    B.write_points(str(path), pos, chunk_shape=(400.0,) * 3, bin_shape=(200.0,) * 3,
                   bounds=([-500.0] * 3, [1500.0] * 3), dtype="float64", compressor="zstd",
                   vertex_attributes={"w": rng.random(len(pos)).astype(np.float32)})


def build_points_sharded(path: Path, rng):
    """Sharded + zstd level 0, plain pyramid level 1; categorical + rgb attributes."""
    from zarr_vectors import building as B
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    pos = _points3(rng, 4000)
    n = len(pos)
    B.write_points(str(path), pos, chunk_shape=(400.0,) * 3, bin_shape=(200.0,) * 3,
                   bounds=BOUNDS3, shard_shape=3, compressor="zstd", vertex_attributes={
                       "intensity": rng.random(n).astype(np.float32),
                       "region": rng.choice(np.array(["cortex", "white_matter"]), n),
                       "rgb": rng.integers(0, 256, (n, 3)).astype(np.uint8),
                   })
    build_pyramid(str(path), factors=[(2.0, 1.0)])


def build_points_2d(path: Path, rng):
    """2-D, negative coordinates (chunk_grid_origin), objects, 3 levels."""
    from zarr_vectors import building as B
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    n = 3000
    centers = rng.uniform(-800, 800, (8, 2))
    oid = rng.integers(0, 8, n)
    pos = np.clip(centers[oid] + rng.normal(0, 150, (n, 2)), -1000, 999).astype(np.float32)
    B.write_points(str(path), pos, chunk_shape=(500.0, 500.0), bin_shape=(100.0, 100.0),
                   bounds=([-1000.0, -1000.0], [1000.0, 1000.0]), object_ids=oid * 10 + 5,
                   vertex_attributes={"v": rng.random(n).astype(np.float32)},
                   object_attributes={"cx": centers[:, 0].astype(np.float32)})
    build_pyramid(str(path), factors=[(2.0, 1.0), (2.0, 1.0)])


def build_streamlines(path: Path, rng):
    """Streamlines crossing chunks; 3-column tangent with a misrecorded row_shape."""
    from zarr_vectors import building as B
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    lines = _streamlines(rng, 40)
    fa = [rng.random(len(x)).astype(np.float32) for x in lines]
    tang = [np.gradient(x.astype(np.float64), axis=0).astype(np.float32) for x in lines]
    B.write_polylines(str(path), lines, chunk_shape=(200.0,) * 3, bin_shape=(50.0,) * 3,
                      bounds=BOUNDS3, vertex_attributes={"fa": fa, "tangent": tang},
                      object_attributes={"mean_fa": np.array([f.mean() for f in fa], np.float32)})
    build_pyramid(str(path), factors=[(2.0, 1.0), (2.0, 2.0)], sparsity_seed=0)


def build_points_by_gene(path: Path, rng):
    """chunk_by_attribute='gene': a leading non-spatial chunk axis."""
    from zarr_vectors import building as B

    n = 800
    pos = rng.uniform(0, 2000, (n, 3)).astype(np.float32)
    gene = rng.choice(np.array(["Gad1", "Pvalb", "Sst"]), n)
    B.write_points(str(path), pos, chunk_shape=(500.0,) * 3, bounds=BOUNDS3,
                   vertex_attributes={"gene": gene, "count": rng.integers(0, 9, n).astype(np.int16)},
                   chunk_by_attribute="gene")


def build_edge_cases(path: Path, rng):
    """Explicit fragments and manifest modes 1 and 2 (building API)."""
    from zarr_vectors import building as B

    lines = _streamlines(rng, 6, lo=30, hi=60, step=25.0)
    B.write_polylines(str(path), lines, chunk_shape=(500.0,) * 3, bounds=BOUNDS3,
                      vertex_attributes={"fa": [rng.random(len(x)).astype(np.float32) for x in lines]})
    root = B.open_store(str(path), mode="r+")
    g = B.get_resolution_level(root, 0)
    mans = B.read_object_manifests(g)
    counts = {}
    for m in mans.values():
        for cc, _f in m:
            counts[tuple(cc)] = counts.get(tuple(cc), 0) + 1
    cc = max(counts, key=counts.get)
    fi = B.read_vertex_fragment_index(g, cc)
    s, c = fi.range(0)
    new = B.write_chunk_fragments(g, cc, [np.arange(s, s + c)[::-1].copy()],
                                  target="vertex", mode="append")
    nfr = fi.num_fragments
    blobs = [B.encode_object_manifest_blocks([(tuple(x), int(f)) for x, f in mans[o]], 3)
             for o in sorted(mans)]
    blobs.append(B.encode_object_manifest_blocks([(cc, np.array([new[0]]))], 3))
    blobs.append(B.encode_object_manifest_blocks([(cc, np.array([nfr - 1, 0]))], 3))
    full = {**{int(k): v for k, v in mans.items()}, 6: [(cc, new[0])], 7: [(cc, nfr - 1), (cc, 0)]}
    B.write_object_index(g, full, sid_ndim=3)
    B.write_object_manifests(g, blobs)


def build_draco_mesh(path: Path, rng):
    from zarr_vectors import building as B

    nu, nv = 16, 10
    verts, faces = [], []
    for a in range(nv):
        th = math.pi * (a + 0.5) / nv
        for b in range(nu):
            ph = 2 * math.pi * b / nu
            verts.append([1000 + 600 * math.sin(th) * math.cos(ph),
                          1000 + 600 * math.sin(th) * math.sin(ph), 1000 + 600 * math.cos(th)])
    for a in range(nv - 1):
        for b in range(nu):
            i, j = a * nu + b, a * nu + (b + 1) % nu
            k, m = (a + 1) * nu + b, (a + 1) * nu + (b + 1) % nu
            faces += [(i, j, k), (j, m, k)]
    B.write_mesh(str(path), np.asarray(verts, np.float32), np.asarray(faces, np.int64),
                 chunk_shape=(500.0,) * 3, bounds=BOUNDS3, encoding="draco")


BUILDERS = {
    "points_pyramid": build_points_pyramid,
    "points_f64_zstd": build_points_float64_zstd,
    "points_sharded": build_points_sharded,
    "points_2d": build_points_2d,
    "streamlines": build_streamlines,
    "points_by_gene": build_points_by_gene,
    "edge_cases": build_edge_cases,
    "draco_mesh": build_draco_mesh,
}
POINT_STORES = ["points_pyramid", "points_f64_zstd", "points_sharded", "points_2d", "points_by_gene"]
READABLE_STORES = POINT_STORES + ["streamlines", "edge_cases"]


def build(name: str, root: Path) -> Path:
    path = root / f"{name}.zarrvectors"
    if not path.exists():
        seed = sorted(BUILDERS).index(name)
        BUILDERS[name](path, np.random.default_rng([2026, seed]))
    return path


# --------------------------------------------------------------------------- answers


@lru_cache(maxsize=None)
def reference_level(path: str, level: int) -> dict:
    """Everything zarr-vectors' own decoders say about one level, in storage order.

    Keys: ``chunk_keys`` (K, rank), ``chunk_counts`` (K,), ``positions`` (N, D),
    ``attributes`` {name: values; categoricals decoded to str}, and, with an object
    index, ``owner`` (smallest object id per row, -1 none) and ``nowners``.
    """
    from zarr_vectors import building as B
    from zarr_vectors.core.arrays import attribute_buffer
    from zarr_vectors.encoding.categorical import decode_categorical

    root = B.open_store(path)
    rmeta = B.read_root_metadata(root)
    g = B.get_resolution_level(root, level)
    nd = rmeta.sid_ndim
    keys = [tuple(int(x) for x in c) for c in B.list_chunk_keys(g)]
    names = sorted(g["vertex_attributes"].children()) if "vertex_attributes" in g else []
    pos, counts, cols, frag_rows = [], [], {n: [] for n in names}, {}
    for cc in keys:
        key = ".".join(map(str, cc))
        fi = B.read_vertex_fragment_index(g, cc)
        buf = np.asarray(B.read_chunk_vertex_buffer(g, cc, ndim=nd)).reshape(-1, nd)
        pos.append(buf)
        counts.append(len(buf))
        frag_rows[cc] = [np.arange(*_range_end(fi.range(f))) if fi.is_range(f) else fi.indices(f)
                         for f in range(fi.num_fragments)]
        for n in names:
            dt = np.dtype(g.read_array_meta(f"vertex_attributes/{n}")["dtype"])
            a = attribute_buffer(g.read_bytes(f"vertex_attributes/{n}", key), fi, dt)
            cols[n].append(a if a.shape[1] > 1 else a.reshape(-1))
    out = {"chunk_keys": np.asarray(keys, np.int64).reshape(len(keys), -1),
           "chunk_counts": np.asarray(counts, np.int64),
           "positions": np.concatenate(pos) if pos else np.zeros((0, nd), np.float32),
           "attributes": {}}
    for n in names:
        meta = g.read_array_meta(f"vertex_attributes/{n}")
        col = np.concatenate(cols[n])
        if meta.get("encoding") == "dictionary":
            col = np.asarray(decode_categorical(col, meta["categories"],
                                                fill_value=meta.get("_FillValue")), dtype=str)
        out["attributes"][n] = col
    if "object_index" in g:
        starts = np.r_[0, np.cumsum(counts)]
        cell_of = {cc: i for i, cc in enumerate(keys)}
        n_rows = len(out["positions"])
        owner = np.full(n_rows, np.iinfo(np.int64).max, np.int64)
        nown = np.zeros(n_rows, np.int64)
        for oid, entries in B.read_object_manifests(g).items():
            seen = set()
            for cc, f in entries:
                cc = tuple(cc)
                rows = starts[cell_of[cc]] + frag_rows[cc][f]
                for r in rows.tolist():
                    if r not in seen:
                        seen.add(r)
                        nown[r] += 1
                        owner[r] = min(owner[r], oid)
        owner[owner == np.iinfo(np.int64).max] = -1
        out["owner"], out["nowners"] = owner, nown
    return out


def _range_end(sc):
    s, c = sc
    return s, s + c


# --------------------------------------------------------------------------- graphs, meshes


def build_graph(path: Path, rng):
    """3 kNN clusters (objects 2, 7, 12), chunk 500; int + 2-column vertex attributes,
    link attribute ``length``, int/float object attributes with absent values; a pyramid."""
    from zarr_vectors import building as B
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    pos, oid = [], []
    for k in range(3):
        c = rng.uniform(400, 1600, 3)
        pos.append(c + rng.normal(0, 250, (120, 3)))
        oid += [k * 5 + 2] * 120
    pos = np.clip(np.concatenate(pos), 0, 1999).astype(np.float32)
    oid = np.asarray(oid)
    edges = set()
    for k in np.unique(oid):
        idx = np.flatnonzero(oid == k)
        p = pos[idx]
        nn = np.argsort(((p[:, None] - p[None]) ** 2).sum(-1), 1)[:, 1:4]
        for i in range(len(idx)):
            for j in nn[i]:
                a, b = int(idx[i]), int(idx[j])
                edges.add((a, b) if rng.random() < 0.5 else (b, a))
    edges = np.asarray(sorted(edges), np.int64)
    length = np.linalg.norm(pos[edges[:, 0]] - pos[edges[:, 1]], axis=1).astype(np.float32)
    B.write_graph(str(path), pos, edges, chunk_shape=(500.0,) * 3, bounds=BOUNDS3,
                  vertex_attributes={
                      "degree": np.bincount(edges.ravel(), minlength=len(pos)).astype(np.int32),
                      "w": rng.random((len(pos), 2)).astype(np.float32)},
                  link_attributes={"length": length}, object_ids=oid,
                  object_attributes={"size": np.array([120, -2**31, 120], np.int32),
                                     "score": np.array([0.5, np.nan, 2.0], np.float32)})
    build_pyramid(str(path), factors=[(4.0, 1.0)])


def build_skeleton(path: Path, rng):
    """2 random trees (objects 0, 1), chunk 200; implicit parents + explicit links."""
    from zarr_vectors import building as B

    pos, edges, oid, base = [], [], [], 0
    for t in range(2):
        n = 150
        p, par = [rng.uniform(600, 1400, 3)], [-1]
        for i in range(1, n):
            j = int(rng.integers(max(0, i - 5), i)) if rng.random() < 0.3 else i - 1
            par.append(j)
            p.append(p[j] + rng.normal(0, 60, 3))
        pos.append(np.clip(np.asarray(p), 0, 1999))
        oid += [t] * n
        edges += [(base + i, base + par[i]) for i in range(1, n)]
        base += n
    pos = np.concatenate(pos).astype(np.float32)
    B.write_graph(str(path), pos, np.asarray(edges, np.int64), chunk_shape=(200.0,) * 3,
                  bounds=BOUNDS3, kind="skeleton", object_ids=np.asarray(oid),
                  vertex_attributes={"radius": rng.random(len(pos)).astype(np.float32)})


def build_mesh(path: Path, rng):
    """2 UV spheres (objects 0, 1) crossing chunks, chunk 500; 3-column vertex attribute."""
    from zarr_vectors import building as B

    verts, faces, oid = [], [], []
    for s, (cx, r) in enumerate([(700.0, 400.0), (1300.0, 350.0)]):
        nu, nv, b = 14, 9, len(verts)
        for a in range(nv):
            th = math.pi * (a + 0.5) / nv
            for c in range(nu):
                ph = 2 * math.pi * c / nu
                verts.append([cx + r * math.sin(th) * math.cos(ph),
                              1000 + r * math.sin(th) * math.sin(ph), 1000 + r * math.cos(th)])
                oid.append(s)
        for a in range(nv - 1):
            for c in range(nu):
                i, j = b + a * nu + c, b + a * nu + (c + 1) % nu
                k, m = b + (a + 1) * nu + c, b + (a + 1) * nu + (c + 1) % nu
                faces += [(i, j, k), (j, m, k)]
    verts = np.asarray(verts, np.float32)
    B.write_mesh(str(path), verts, np.asarray(faces, np.int64), chunk_shape=(500.0,) * 3,
                 bounds=BOUNDS3, object_ids=np.asarray(oid),
                 vertex_attributes={"curv": rng.random(len(verts)).astype(np.float32),
                                    "nrm": rng.random((len(verts), 3)).astype(np.float32)},
                 object_attributes={"area": np.array([1.5, 2.5])})


# names sort after the existing ones, so build()'s per-name seeds of the other stores stay put
BUILDERS.update({"web_graph": build_graph, "tree_skeleton": build_skeleton, "tri_mesh": build_mesh})
