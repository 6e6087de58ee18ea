"""Region queries on objects: streamlines, skeletons, meshes through a box, whole.

    python benchmarks/bench_object_regions.py [--lines 40000] [--trees 4000]
        [--spheres 5000] [--kinds streamlines,skeleton,mesh] [--repeat 5] [--data DIR]

Writes (once, cached under --data, default a temp dir ``zv_dask_bench``) with the
reference writer a streamline store of N random-walk streamlines of 40..80 vertices
(about 60 on average) in a 800^3 box, chunk 100, per-vertex ``fa``; a copy of it
indexed with ``zarr_vectors.building.build_fragment_owner_index`` (the reserved
``fragment_attributes/object_id`` column); and a TRK file of the same streamlines
(nibabel).  Then times, interleaved, a fresh open each run, the same question --
every streamline with at least one vertex in the closed 100^3 box, whole:

* zv_dask ``read_objects(bbox=)`` on the plain store (vectorised manifest inversion);
* zv_dask ``read_objects(bbox=)`` on the indexed store (owner column);
* the reference ``read_polylines(bbox=)`` (whole chunks: it over-includes);
* nibabel: load the whole TRK, then a numpy filter of every streamline.

Checks that both zv_dask answers equal the TRK scan (ids; vertices to 1e-3, the TRK
round trip moves some by a float32 ulp) and prints
the medians and the ratios.  nibabel is a benchmark-only dependency
(``pip install nibabel``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

SIDE = 800.0
CHUNK = 100.0
BOX = (np.array([350.0] * 3), np.array([450.0] * 3))


def streamlines(n_lines: int, seed: int = 0) -> list:
    """Random walks of 40..80 vertices, step 2, inside [0, SIDE)^3 (vectorised)."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(40, 81, n_lines)
    total = int(lens.sum())
    d = rng.normal(0, 1, (total, 3)) * 0.3 + np.repeat(rng.normal(0, 1, (n_lines, 3)), lens, 0)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    start = np.repeat(rng.uniform(60, SIDE - 60, (n_lines, 3)), lens, 0)
    steps = 2.0 * d
    csum = np.cumsum(steps, 0)
    first = np.concatenate([[0], np.cumsum(lens)[:-1]])
    base = np.repeat(csum[first] - steps[first], lens, 0)
    pts = np.clip(start + csum - base, 0.0, SIDE - 1e-3).astype(np.float32)
    return np.split(pts, np.cumsum(lens)[:-1])


def trees(n_trees, n_nodes=150, seed=1):
    rng = np.random.default_rng(seed)
    pos = np.empty((n_trees, n_nodes, 3)); par = np.empty((n_trees, n_nodes), np.int64)
    pos[:, 0] = rng.uniform(60, SIDE - 60, (n_trees, 3)); par[:, 0] = -1
    for j in range(1, n_nodes):
        branch = rng.random(n_trees) < 0.1
        p = np.where(branch, (rng.random(n_trees) * j).astype(np.int64), j - 1)
        par[:, j] = p
        pos[:, j] = pos[np.arange(n_trees), p] + rng.normal(0, 1.5, (n_trees, 3))
    pos = np.clip(pos, 0, SIDE - 1e-3).astype(np.float32).reshape(-1, 3)
    base = (np.arange(n_trees) * n_nodes)[:, None]
    child = (base + np.arange(1, n_nodes)).ravel(); parent = (base + par[:, 1:]).ravel()
    return pos, np.stack([child, parent], 1), np.repeat(np.arange(n_trees), n_nodes)

def spheres(n, nu=10, nv=6, seed=2):
    rng = np.random.default_rng(seed)
    th = np.pi * (np.arange(nv) + 0.5) / nv; ph = 2 * np.pi * np.arange(nu) / nu
    unit = np.stack([np.sin(th)[:, None] * np.cos(ph), np.sin(th)[:, None] * np.sin(ph),
                     np.cos(th)[:, None] * np.ones(nu)], -1).reshape(-1, 3)
    c = rng.uniform(40, SIDE - 40, (n, 3)); r = rng.uniform(5, 25, (n, 1, 1))
    verts = (c[:, None] + r * unit).astype(np.float32).reshape(-1, 3)
    a, cc = np.meshgrid(np.arange(nv - 1), np.arange(nu), indexing="ij")
    i = a * nu + cc; j = a * nu + (cc + 1) % nu; k = (a + 1) * nu + cc; m = (a + 1) * nu + (cc + 1) % nu
    f1 = np.stack([i, j, k], -1).reshape(-1, 3); f2 = np.stack([j, m, k], -1).reshape(-1, 3)
    one = np.concatenate([f1, f2])
    faces = (one[None] + (np.arange(n) * nu * nv)[:, None, None]).reshape(-1, 3)
    return verts, faces, np.repeat(np.arange(n), nu * nv)

def build_other(data: Path, kind: str, n: int) -> tuple:
    """(plain store, indexed store, (positions, object ids)) of a skeleton or mesh."""
    from zarr_vectors import building as B

    plain = data / f"regions_{kind}_{n}.zarrvectors"
    indexed = data / f"regions_{kind}_{n}_indexed.zarrvectors"
    common = dict(chunk_shape=(CHUNK,) * 3, bounds=([0.0] * 3, [SIDE] * 3))
    if kind == "skeleton":
        pos, edges, oid = trees(n)
    else:
        pos, faces, oid = spheres(n)
    if not (plain.exists() and indexed.exists()):
        for p in (plain, indexed):
            shutil.rmtree(p, ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        if kind == "skeleton":
            B.write_graph(str(plain), pos, edges, kind="skeleton", object_ids=oid, **common)
        else:
            B.write_mesh(str(plain), pos, faces, object_ids=oid, **common)
        shutil.copytree(plain, indexed)
        B.build_fragment_owner_index(str(indexed))
        print(f"wrote {plain.name}, {indexed.name} in {time.perf_counter() - t:.1f}s")
    return plain, indexed, (pos, oid)


def build(data: Path, n_lines: int) -> tuple:
    """(plain store, indexed store, trk path), written once."""
    plain = data / f"regions_{n_lines}.zarrvectors"
    indexed = data / f"regions_{n_lines}_indexed.zarrvectors"
    trk = data / f"regions_{n_lines}.trk"
    if plain.exists() and indexed.exists() and trk.exists():
        return plain, indexed, trk
    from zarr_vectors import building as B

    for p in (plain, indexed):
        shutil.rmtree(p, ignore_errors=True)
    data.mkdir(parents=True, exist_ok=True)
    lines = streamlines(n_lines)
    fa = [np.linspace(0, 1, len(s), dtype=np.float32) for s in lines]
    t = time.perf_counter()
    B.write_polylines(str(plain), lines, chunk_shape=(CHUNK,) * 3,
                      bounds=([0.0] * 3, [SIDE] * 3), vertex_attributes={"fa": fa})
    shutil.copytree(plain, indexed)
    B.build_fragment_owner_index(str(indexed))
    write_trk(trk, lines)
    print(f"wrote {plain.name}, {indexed.name}, {trk.name} in {time.perf_counter() - t:.1f}s")
    return plain, indexed, trk


def write_trk(path: Path, lines: list) -> None:
    import nibabel as nib
    from nibabel.streamlines import Tractogram

    # world (RASmm) coordinates = voxel mm: identity affine, 1 mm voxels
    tg = Tractogram(lines, affine_to_rasmm=np.eye(4))
    hdr = {"dimensions": np.array([int(SIDE)] * 3, np.int16),
           "voxel_sizes": np.array([1.0, 1.0, 1.0], np.float32),
           "voxel_to_rasmm": np.eye(4, dtype=np.float32), "voxel_order": "RAS"}
    nib.streamlines.save(tg, str(path), header=hdr)


def ours(path):
    import zv_dask

    store = zv_dask.open_zv(path, cache_size=0)
    r = store.read_objects(bbox=BOX, attributes=[])
    store.close()
    return r


def reference(path, kind="streamlines"):
    from zarr_vectors.types.graphs import read_graph
    from zarr_vectors.types.meshes import read_mesh
    from zarr_vectors.types.polylines import read_polylines

    read = {"streamlines": read_polylines, "skeleton": read_graph, "mesh": read_mesh}[kind]
    return read(str(path), bbox=(BOX[0].tolist(), BOX[1].tolist()))


def trk_scan(path):
    import nibabel as nib

    sl = nib.streamlines.load(str(path)).streamlines
    pts = sl.get_data()
    inside = np.all((pts >= BOX[0]) & (pts <= BOX[1]), axis=1)
    owner = np.repeat(np.arange(len(sl)), sl._lengths)
    ids = np.unique(owner[inside])
    return ids, [sl[int(i)] for i in ids]


def run_interleaved(runs: dict, repeat: int) -> tuple:
    times: dict = {k: [] for k in runs}
    got = {}
    for _ in range(repeat):
        for name, fn in runs.items():
            t = time.perf_counter()
            got[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, got


def table(med: dict, bases: list) -> None:
    print(f"{'':<44} {'seconds':>8}" + "".join(f" {'/ ' + b[:22]:>24}" for b in bases))
    for k, v in med.items():
        print(f"{k:<44} {v:>8.4f}" + "".join(f" {v / med[b]:>24.3f}" for b in bases))


def streamline_section(data: Path, n_lines: int, repeat: int) -> None:
    plain, indexed, trk = build(data, n_lines)
    import zv_dask

    store = zv_dask.open_zv(plain)
    print(f"\nstreamlines: {n_lines:,} lines, {store.vertex_count(0):,} vertices, "
          f"{len(store.chunks(0))} chunks of {CHUNK:g}^3")
    runs = {"zv_dask read_objects(bbox=)": lambda: ours(plain),
            "zv_dask read_objects(bbox=), owner column": lambda: ours(indexed),
            "reference read_polylines(bbox=)": lambda: reference(plain),
            "nibabel TRK load + numpy filter": lambda: trk_scan(trk)}
    med, got = run_interleaved(runs, repeat)
    want_ids, want_lines = got["nibabel TRK load + numpy filter"]
    for name in list(runs)[:2]:
        r = got[name]
        assert np.array_equal(r["object_ids"], want_ids), f"{name}: different objects"
        for k, line in enumerate(want_lines):
            # nibabel's affine round trip moves a few coordinates by one float32 ulp
            assert np.allclose(r["positions"][r["offsets"][k]:r["offsets"][k + 1]], line,
                               rtol=0, atol=1e-3)
    ref = got["reference read_polylines(bbox=)"]
    n_rows = int(got[list(runs)[0]]["offsets"][-1])
    print(f"answer: {len(want_ids)} streamlines ({n_rows:,} vertices); the reference returns "
          f"{len(ref['object_ids'])} (whole chunks)")
    table(med, ["reference read_polylines(bbox=)", "nibabel TRK load + numpy filter"])


def other_section(data: Path, kind: str, n: int, repeat: int) -> None:
    plain, indexed, (pos, oid) = build_other(data, kind, n)
    import zv_dask

    store = zv_dask.open_zv(plain)
    print(f"\n{kind}: {n:,} objects, {store.vertex_count(0):,} vertices, "
          f"{len(store.chunks(0))} chunks of {CHUNK:g}^3")
    ref_name = f"reference {'read_graph' if kind == 'skeleton' else 'read_mesh'}(bbox=)"
    runs = {"zv_dask read_objects(bbox=)": lambda: ours(plain),
            "zv_dask read_objects(bbox=), owner column": lambda: ours(indexed),
            ref_name: lambda: reference(plain, kind)}
    med, got = run_interleaved(runs, repeat)
    inside = np.all((pos >= BOX[0]) & (pos <= BOX[1]), axis=1)
    want = np.unique(oid[inside])
    sizes = np.bincount(oid)
    for name in list(runs)[:2]:
        r = got[name]
        assert np.array_equal(r["object_ids"], want), f"{name}: different objects"
        assert np.array_equal(np.diff(r["offsets"]), sizes[want]), f"{name}: vertex counts"
    ref = got[ref_name]
    n_ref = len(ref["positions"] if "positions" in ref else ref["vertices"])
    print(f"answer: {len(want)} objects ({int(sizes[want].sum()):,} vertices); the reference "
          f"returns {n_ref:,} vertices (its box filter, not whole objects)")
    table(med, [ref_name])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=40000)
    ap.add_argument("--trees", type=int, default=4000)
    ap.add_argument("--spheres", type=int, default=5000)
    ap.add_argument("--kinds", default="streamlines,skeleton,mesh")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "zv_dask_bench"))
    args = ap.parse_args(argv)
    import zarr_vectors

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, zarr-vectors {zarr_vectors.__version__}; box "
          f"{BOX[0].tolist()}..{BOX[1].tolist()}; median of {args.repeat} interleaved runs, "
          "fresh open each")
    kinds = args.kinds.split(",")
    if "streamlines" in kinds:
        streamline_section(Path(args.data), args.lines, args.repeat)
    if "skeleton" in kinds:
        other_section(Path(args.data), "skeleton", args.trees, args.repeat)
    if "mesh" in kinds:
        other_section(Path(args.data), "mesh", args.spheres, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
