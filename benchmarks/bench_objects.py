"""Objects: select 10% of streamlines by ``mean_fa``, then read their vertices.

    python benchmarks/bench_objects.py [--lines 5000] [--repeat 5] [--data benchmarks/_data]

Writes (once, cached under --data) a streamline store with the reference writer:
N streamlines of 20..180 points (random walks, step 12) in a 2000^3 box, chunk 200,
per-vertex ``fa`` (float32) and 3-column ``tangent``, per-object ``mean_fa``.  Then
times, interleaved, the same query both ways:

* zv_dask: ``objs = store.objects()``; ids of the top 10% ``mean_fa``
  (``objs.index[objs.mean_fa >= q90]``); ``store.read_objects(ids, attributes=["fa"])``
  (a fresh store each run: no cache);
* reference: ``mean_fa`` read with zarr (zarr-vectors has no object-attribute
  reader), the same ids, ``zarr_vectors.types.polylines.read_polylines(path,
  object_ids=ids)``;

checks that the vertices agree object by object, and prints the medians, the
ratio zv_dask / reference and the bytes each run read from disk (``rchar`` of
``/proc/self/io``: every byte returned by read(2), metadata included).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def build(path: Path, n_lines: int) -> None:
    from zarr_vectors import building as B

    rng = np.random.default_rng(0)
    lines, fa, tang = [], [], []
    for _ in range(n_lines):
        n = int(rng.integers(20, 180))
        steps = rng.normal(0, 0.25, (n, 3))
        d = rng.normal(0, 1, 3)
        p = rng.uniform(200, 1800, 3)
        out = np.empty((n, 3))
        for i in range(n):
            d = d + steps[i]
            d /= np.linalg.norm(d)
            p = np.clip(p + 12.0 * d, 0.0, 1999.0)
            out[i] = p
        lines.append(out.astype(np.float32))
        fa.append(rng.random(n).astype(np.float32))
        tang.append(np.gradient(out, axis=0).astype(np.float32))
    B.write_polylines(str(path), lines, chunk_shape=(200.0,) * 3, bin_shape=(50.0,) * 3,
                      bounds=([0.0] * 3, [2000.0] * 3),
                      vertex_attributes={"fa": fa, "tangent": tang},
                      object_attributes={"mean_fa": np.array([f.mean() for f in fa], np.float32)})


def rchar() -> int | None:
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def ours(path):
    import zv_dask

    store = zv_dask.open_zv(path, cache_size=0)
    objs = store.objects()
    q = objs.mean_fa.quantile(0.9).compute()
    ids = objs.index[objs.mean_fa >= q].compute().to_numpy()
    return ids, store.read_objects(ids, attributes=["fa"])


def reference(path):
    import zarr
    from zarr_vectors.types.polylines import read_polylines

    mean_fa = zarr.open_array(f"{path}/0/object_attributes/mean_fa", mode="r")[:]
    object_ids = zarr.open_array(f"{path}/0/object_index/object_ids", mode="r")[:]
    q = np.quantile(mean_fa, 0.9)
    ids = object_ids[mean_fa >= q]
    return ids, read_polylines(str(path), object_ids=ids.tolist())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    args = ap.parse_args(argv)

    path = Path(args.data) / f"bench_streamlines_{args.lines}.zarrvectors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        build(path, args.lines)
        print(f"wrote {path} in {time.perf_counter() - t:.1f}s")
    import zarr_vectors
    import zv_dask

    store = zv_dask.open_zv(path)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"zarr-vectors {zarr_vectors.__version__}")
    print(f"store: {args.lines:,} streamlines, {store.vertex_count(0):,} vertices, "
          f"{len(store.chunks(0))} chunks; median of {args.repeat} interleaved runs")
    t_ours, t_ref, b_ours, b_ref = [], [], [], []
    for _ in range(args.repeat):
        r0 = rchar()
        t = time.perf_counter()
        ids, r = ours(path)
        t_ours.append(time.perf_counter() - t)
        r1 = rchar()
        t = time.perf_counter()
        ref_ids, ref = reference(path)
        t_ref.append(time.perf_counter() - t)
        r2 = rchar()
        if r0 is not None:
            b_ours.append(r1 - r0)
            b_ref.append(r2 - r1)
    assert sorted(ids.tolist()) == sorted(ref_ids.tolist()), "different selections"
    want = {int(o): np.concatenate(p) for o, p in zip(ref["object_ids"], ref["polylines"])}
    for k, oid in enumerate(r["object_ids"].tolist()):
        got = r["positions"][r["offsets"][k]:r["offsets"][k + 1]]
        assert np.array_equal(got, want[oid]), f"object {oid} differs"
    n_obj, n_vert = len(ids), int(r["offsets"][-1])
    a, b = statistics.median(t_ours), statistics.median(t_ref)
    print(f"selected {n_obj} objects ({n_vert:,} vertices) by mean_fa >= 90th percentile")
    print(f"{'':<10} {'seconds':>9} {'MB read':>9}")
    mb = (lambda v: f"{statistics.median(v) / 1e6:>9.2f}") if b_ours else (lambda v: f"{'n/a':>9}")
    print(f"{'zv_dask':<10} {a:>9.3f} {mb(b_ours)}")
    print(f"{'reference':<10} {b:>9.3f} {mb(b_ref)}")
    print(f"ratio zv_dask / reference: time {a / b:.2f}"
          + (f", bytes {statistics.median(b_ours) / statistics.median(b_ref):.2f}" if b_ours else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
