"""Write the example stores shipped in ``zv_dask/data`` with the reference writers.

    python scripts/make_example_store.py [OUTDIR] [--only points,mesh,...]

Run once by the maintainers (needs ``zarr-vectors``); the results are committed so the
package works without the reference package installed.  Every store is deterministic
(fixed seeds) and small:

- ``example.zarrvectors`` (points): 5,000 points, 3 levels (``write_points`` +
  ``build_pyramid``); attributes on level 0 only;
- ``example_streamlines.zarrvectors``: 40 streamlines, 2 levels (``write_polylines`` +
  ``build_pyramid``), vertex attribute ``fa``, object attributes ``mean_fa`` and ``length``;
- ``example_graph.zarrvectors``: 3 k-nearest-neighbour clusters (objects), 1 level
  (``write_graph``), link attribute ``length``;
- ``example_skeleton.zarrvectors``: 2 trees (objects), 1 level (``write_graph(kind=
  "skeleton")``), vertex attribute ``radius``;
- ``example_mesh.zarrvectors``: 2 UV spheres (objects), 1 level (``write_mesh``).

Graphs, skeletons and meshes have one level: the reference's ``build_pyramid`` turns
coarse levels into metavertex clouds without links or faces, which shows nothing new.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
from zarr_vectors import building as B
from zarr_vectors.multiresolution.coarsen import build_pyramid

BOUNDS = ([0.0] * 3, [2000.0] * 3)
DATA = Path(__file__).resolve().parents[1] / "zv_dask" / "data"
NAMES = {"points": "example.zarrvectors",
         "streamlines": "example_streamlines.zarrvectors",
         "graph": "example_graph.zarrvectors",
         "skeleton": "example_skeleton.zarrvectors",
         "mesh": "example_mesh.zarrvectors"}


def points(path: Path) -> None:
    rng = np.random.default_rng(2026)
    pos = rng.uniform(0.0, 2000.0, (5_500, 3)).astype(np.float32)
    pos = pos[~np.all(pos >= 1500.0, axis=1)][:5_000]   # one empty octant
    attrs = {
        "intensity": (pos[:, 0] / 2000.0 + rng.normal(0, 0.05, len(pos))).astype(np.float32),
        "label": rng.integers(0, 10, len(pos)).astype(np.int32),
        "region": rng.choice(np.array(["cortex", "white_matter", "ventricle"]), len(pos)),
    }
    B.write_points(str(path), pos, chunk_shape=(500.0,) * 3, bin_shape=(125.0,) * 3,
                   bounds=BOUNDS, vertex_attributes=attrs)
    build_pyramid(str(path), factors=[(2.0, 1.0), (2.0, 1.0)])


def streamlines(path: Path) -> None:
    rng = np.random.default_rng(2027)
    lines = []
    for _ in range(40):
        n = int(rng.integers(20, 60))
        p, d = rng.uniform(300, 1700, 3), rng.normal(0, 1, 3)
        out = np.empty((n, 3))
        for i in range(n):   # a smooth random walk with steps of 20
            d = d / np.linalg.norm(d) + rng.normal(0, 0.2, 3)
            p = np.clip(p + 20.0 * d / np.linalg.norm(d), 0.0, 1999.0)
            out[i] = p
        lines.append(out.astype(np.float32))
    fa = [rng.random(len(l)).astype(np.float32) for l in lines]
    B.write_polylines(str(path), lines, chunk_shape=(500.0,) * 3, bin_shape=(125.0,) * 3,
                      bounds=BOUNDS, vertex_attributes={"fa": fa},
                      object_attributes={"mean_fa": np.array([f.mean() for f in fa], np.float32),
                                         "length": np.array([len(l) for l in lines], np.int32)})
    build_pyramid(str(path), factors=[(2.0, 1.0)], sparsity_seed=0)


def graph(path: Path) -> None:
    rng = np.random.default_rng(2028)
    per, centers = 200, [(500, 500, 500), (1400, 700, 900), (900, 1500, 1300)]
    pos = np.concatenate([np.clip(rng.normal(c, 200, (per, 3)), 0, 1999)
                          for c in centers]).astype(np.float32)
    edges = set()
    for c in range(3):   # each vertex to its 3 nearest neighbours in its cluster
        p = pos[c * per:(c + 1) * per].astype(np.float64)
        d = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
        for i, row in enumerate(np.argsort(d, axis=1)[:, 1:4]):
            edges |= {(c * per + min(i, int(j)), c * per + max(i, int(j))) for j in row}
    edges = np.asarray(sorted(edges), np.int64)
    length = np.linalg.norm(pos[edges[:, 0]] - pos[edges[:, 1]], axis=1).astype(np.float32)
    B.write_graph(str(path), pos, edges, chunk_shape=(500.0,) * 3, bounds=BOUNDS,
                  object_ids=np.repeat(np.arange(3), per),
                  vertex_attributes={"degree": np.bincount(edges.ravel(), minlength=len(pos)).astype(np.int32)},
                  link_attributes={"length": length},
                  object_attributes={"cluster_size": np.full(3, per, np.int64)})


def skeleton(path: Path) -> None:
    rng = np.random.default_rng(2029)
    n, parts, pos_all = 300, [], []
    for t, root in enumerate([(600, 600, 600), (1300, 1300, 1300)]):
        parent = np.full(n, -1, np.int64)
        pos = np.zeros((n, 3))
        pos[0] = root
        for i in range(1, n):
            parent[i] = rng.integers(max(0, i - 6), i)
            pos[i] = np.clip(pos[parent[i]] + rng.normal(0, 45, 3), 0, 1999)
        parts.append(np.stack([np.arange(1, n), parent[1:]], 1) + t * n)   # (child, parent)
        pos_all.append(pos)
    pos = np.concatenate(pos_all).astype(np.float32)
    B.write_graph(str(path), pos, np.concatenate(parts), chunk_shape=(500.0,) * 3,
                  bounds=BOUNDS, kind="skeleton", object_ids=np.repeat([0, 1], n),
                  vertex_attributes={"radius": rng.uniform(0.5, 3, len(pos)).astype(np.float32)})


def _uv_sphere(center, radius, nu, nv):
    verts = [[center[0] + radius * math.sin(th) * math.cos(ph),
              center[1] + radius * math.sin(th) * math.sin(ph),
              center[2] + radius * math.cos(th)]
             for th in (math.pi * (a + 0.5) / nv for a in range(nv))
             for ph in (2 * math.pi * b / nu for b in range(nu))]
    faces = []
    for a in range(nv - 1):
        for b in range(nu):
            i, j = a * nu + b, a * nu + (b + 1) % nu
            k, m = (a + 1) * nu + b, (a + 1) * nu + (b + 1) % nu
            faces += [(i, j, k), (j, m, k)]
    return np.asarray(verts, np.float32), np.asarray(faces, np.int64)


def mesh(path: Path) -> None:
    rng = np.random.default_rng(2030)
    v1, f1 = _uv_sphere((800, 800, 800), 450, 32, 20)
    v2, f2 = _uv_sphere((1350, 1250, 1100), 300, 24, 14)
    verts, faces = np.concatenate([v1, v2]), np.concatenate([f1, f2 + len(v1)])
    B.write_mesh(str(path), verts, faces, chunk_shape=(500.0,) * 3, bounds=BOUNDS,
                 object_ids=np.r_[np.zeros(len(v1), np.int64), np.ones(len(v2), np.int64)],
                 vertex_attributes={"curv": rng.random(len(verts)).astype(np.float32)},
                 object_attributes={"area": np.array([4 * math.pi * 450 ** 2,
                                                      4 * math.pi * 300 ** 2], np.float32)})


BUILDERS = {"points": points, "streamlines": streamlines, "graph": graph,
            "skeleton": skeleton, "mesh": mesh}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", nargs="?", default=str(DATA))
    ap.add_argument("--only", default=",".join(BUILDERS), help="comma-separated kinds")
    args = ap.parse_args(argv)
    for kind in args.only.split(","):
        path = Path(args.outdir) / NAMES[kind]
        if path.exists():
            shutil.rmtree(path)
        BUILDERS[kind](path)
        print(kind, path)


if __name__ == "__main__":
    main()
