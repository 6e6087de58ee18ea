"""Eager read: zv_dask ``read()`` against the reference ``read_points``, side by side.

    python benchmarks/bench_read.py [--points 5000000] [--repeat 5] [--data benchmarks/_data]

Writes (once, cached under --data) a store of N uniform float32 points in a 2000^3 box
with chunk 250 (512 chunks) and one float32 attribute, plus a 2-level pyramid; then
times, interleaved, for a full level, a 500^3 bbox and the coarsest level:

* ``zv_dask.open_zv(path).read(...)``  (a fresh store each time: no cache)
* ``zarr_vectors.types.points.read_points(path, ...)``

and prints medians and the ratio zv_dask / reference.  Results must agree
(positions equal; for the bbox, zv_dask equals numpy filtering of the full read).
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


def build(path: Path, n: int) -> None:
    from zarr_vectors import building as B
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 2000, (n, 3)).astype(np.float32)
    B.write_points(str(path), pos, chunk_shape=(250.0,) * 3, bin_shape=(50.0,) * 3,
                   bounds=([0.0] * 3, [2000.0] * 3),
                   vertex_attributes={"intensity": rng.random(n).astype(np.float32)})
    build_pyramid(str(path), factors=[(2.0, 1.0), (2.0, 1.0)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    args = ap.parse_args(argv)

    import zv_dask
    from zarr_vectors.types.points import read_points

    path = Path(args.data) / f"bench_points_{args.points}_b50.zarrvectors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        build(path, args.points)
        print(f"wrote {path} in {time.perf_counter() - t:.1f}s")
    store = zv_dask.open_zv(path)
    coarse = store.levels[-1]
    box = (np.array([750.0] * 3), np.array([1250.0] * 3))
    cases = {
        "full level 0": (dict(level=0), dict(level=0)),
        "bbox 500^3": (dict(level=0, bbox=box), dict(level=0, bbox=box)),
        f"coarse level {coarse}": (dict(level=coarse), dict(level=coarse)),
    }
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"zarr {__import__('zarr').__version__}, numpy {np.__version__}, "
          f"zarr-vectors {__import__('zarr_vectors').__version__}")
    print(f"store: {args.points:,} points, {len(store.chunks(0))} chunks at level 0, "
          f"levels {store.levels}; median of {args.repeat} interleaved runs")
    full = store.read(level=0)
    rows = []
    for label, (mine_kw, ref_kw) in cases.items():
        ours, theirs = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            r = zv_dask.open_zv(path, cache_size=0).read(**mine_kw)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = read_points(str(path), attribute_names=["intensity"] if mine_kw["level"] == 0 else None,
                              **ref_kw)
            theirs.append(time.perf_counter() - t)
        if "bbox" in mine_kw:
            p = full["positions"]
            m = np.all((p >= box[0]) & (p <= box[1]), axis=1)
            assert np.array_equal(r["positions"], p[m]), "bbox read differs from numpy filter"
        else:
            assert np.array_equal(r["positions"], ref["positions"]), "positions differ"
        a, b = statistics.median(ours), statistics.median(theirs)
        rows.append((label, r["vertex_count"], a, b))
    print(f"{'case':<18} {'rows':>10} {'zv_dask s':>10} {'reference s':>12} {'ratio':>7}")
    for label, n, a, b in rows:
        print(f"{label:<18} {n:>10,} {a:>10.3f} {b:>12.3f} {a / b:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
