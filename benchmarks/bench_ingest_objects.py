"""Object parsers beside the libraries users would call: SWC against ``navis.read_swc``,
OBJ and binary STL against ``trimesh.load``, side by side in one process.

    python benchmarks/bench_ingest_objects.py [--repeat 5] [--subdivisions 7]

Inputs: navis's five sample neurons (its wheel's ``data/swc``), navis's five sample
OBJ meshes, and an icosphere (``trimesh.creation.icosphere(subdivisions)``; 7 gives
163,842 vertices and 327,680 faces) written as OBJ (about 13 MB) and as binary STL.
Each repeat times every side once, interleaved; the best of the repeats is printed per
side with the ratio ours/theirs.  Ours is the per-file parse a task runs
(``zv_dask.ingest.swc.parse_swc``, ``zv_dask.ingest.meshes.parse_obj``/``parse_stl``,
the bytes already read); theirs reads from the path (navis: ``read_swc`` of the file;
trimesh: ``load(..., process=False, maintain_order=True)``, no vertex merging for OBJ,
trimesh's own merging for STL as ours merges corners).  Both give the same nodes and
faces (checked once before timing).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import tempfile
import time
import warnings

import numpy as np


def _sample(folder):
    dist = importlib.metadata.distribution("navis")
    return sorted(str(dist.locate_file(f)) for f in dist.files
                  if str(f).startswith(f"navis/data/{folder}/"))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--subdivisions", type=int, default=7)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import navis
    import trimesh

    from zv_dask.ingest import meshes as M
    from zv_dask.ingest import swc as S

    tmp = tempfile.mkdtemp()
    sphere = trimesh.creation.icosphere(subdivisions=args.subdivisions)
    big_obj = os.path.join(tmp, "sphere.obj")
    with open(big_obj, "w") as f:
        f.write(trimesh.exchange.obj.export_obj(sphere, include_normals=False))
    big_stl = os.path.join(tmp, "sphere.stl")
    sphere.export(big_stl)
    swcs, objs = _sample("swc"), _sample("obj")
    data = {p: open(p, "rb").read() for p in swcs + objs + [big_obj, big_stl]}

    # the same answers before timing
    for p in swcs:
        nodes, parent, _ = S.parse_swc(data[p], p)
        ref = navis.read_swc(p).nodes
        assert np.array_equal(ref.node_id, nodes.node_id)
    for p in objs + [big_obj]:
        ref = trimesh.load(p, process=False, maintain_order=True)
        assert np.array_equal(M.parse_obj(data[p], p).faces, ref.faces)
    part = M.parse_stl(data[big_stl], big_stl)
    assert len(part.vertices) == len(sphere.vertices) and len(part.faces) == len(sphere.faces)

    cases = {
        "SWC: navis's 5 neurons": (
            lambda: [S.parse_swc(data[p], p) for p in swcs],
            lambda: [navis.read_swc(p) for p in swcs]),
        "OBJ: navis's 5 meshes": (
            lambda: [M.parse_obj(data[p], p) for p in objs],
            lambda: [trimesh.load(p, process=False, maintain_order=True) for p in objs]),
        f"OBJ: icosphere ({os.path.getsize(big_obj) / 1e6:.1f} MB)": (
            lambda: M.parse_obj(data[big_obj], big_obj),
            lambda: trimesh.load(big_obj, process=False, maintain_order=True)),
        f"binary STL: icosphere ({os.path.getsize(big_stl) / 1e6:.1f} MB, merged)": (
            lambda: M.parse_stl(data[big_stl], big_stl),
            lambda: trimesh.load(big_stl)),
    }
    best = {k: [float("inf"), float("inf")] for k in cases}
    for _ in range(args.repeat):
        for name, sides in cases.items():
            for i, side in enumerate(sides):
                t = time.perf_counter()
                side()
                best[name][i] = min(best[name][i], time.perf_counter() - t)
    print(f"load average {os.getloadavg()[0]:.2f}; best of {args.repeat}")
    print(f"{'case':52s} {'ours':>9s} {'theirs':>9s} {'ratio':>6s}")
    for name, (ours, theirs) in best.items():
        print(f"{name:52s} {ours * 1e3:7.1f}ms {theirs * 1e3:7.1f}ms {ours / theirs:6.2f}")


if __name__ == "__main__":
    main()
