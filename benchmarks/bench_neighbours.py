"""Neighbour searches on a store against one whole-level cKDTree, side by side in one run.

    python benchmarks/bench_neighbours.py [--points 2000000] [--repeat 5] [--data benchmarks/_data]

The store is bench_read.py's (uniform float32 points in 2000^3, chunk 250: 512 chunks,
bin 50), built once under ``--data``.  Each side opens the store afresh (cold chunk
cache, its listing and planning included); medians of interleaved runs after one
warm-up each, the side that goes first alternating:

(a) ``store.nearest(q)`` of 20,000 queries uniform in one octant ([0, 1000)^3) against
    ``read(level=0, attributes=[])`` + ``cKDTree(positions).query(q)``; target <= 0.3x.
(b) ``store.pairs(radius)`` over the whole level against the same read +
    ``cKDTree.query_pairs(radius, output_type="ndarray")``; target <= 1.5x.

Wall and CPU seconds (this process, all threads) are both shown.

``--planning 10000 100000`` times the pure halo planning alone on synthetic presence
lists of that many non-empty chunks (40 % of a cube of chunks, 20,000 queries over it):
the cell index against scanning every chunk, per step (no store).

``--workers 1 2`` adds a scaling line: the same ``nearest`` with the queries as a dask
DataFrame of 8 partitions and ``pairs(radius, lazy=True)`` on a ``distributed.LocalCluster``
of that many single-threaded worker processes (wall seconds, median of ``--repeat``).
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
sys.path.insert(0, str(Path(__file__).parent))
from bench_read import build  # noqa: E402


def _median_pair(fa, fb, repeat):
    """Medians of (wall, CPU) seconds of ``fa`` and ``fb``: CPU time of this process
    (all its threads) is the steadier figure on a machine shared with other work."""
    fa(), fb()
    a, b = [], []
    for i in range(repeat):
        for f, out in ((fa, a), (fb, b))[:: 1 if i % 2 == 0 else -1]:
            t, c = time.perf_counter(), time.process_time()
            f()
            out.append((time.perf_counter() - t, time.process_time() - c))
    return [tuple(statistics.median(x[j] for x in side) for j in (0, 1)) for side in (a, b)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--radius", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    ap.add_argument("--workers", type=int, nargs="*", default=[])
    ap.add_argument("--planning", type=int, nargs="*", default=[])
    args = ap.parse_args(argv)
    if args.planning:
        for n in args.planning:
            _planning(n, args.queries)
        return 0

    import scipy
    from scipy.spatial import cKDTree

    import zv_dask

    path = Path(args.data) / f"bench_points_{args.points}_b50.zarrvectors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        build(path, args.points)
        print(f"wrote {path} in {time.perf_counter() - t:.1f}s")
    q = np.random.default_rng(1).uniform(0, 1000, (args.queries, 3))

    def whole_level():
        s = zv_dask.open_zv(path)
        return cKDTree(s.read(level=0, attributes=[])["positions"].astype(np.float64))

    def ours_nearest():
        return zv_dask.open_zv(path).nearest(q)

    def tree_nearest():
        return whole_level().query(q)

    def ours_pairs():
        return zv_dask.open_zv(path).pairs(args.radius)

    def tree_pairs():
        return whole_level().query_pairs(args.radius, output_type="ndarray")

    nn, (d, _) = ours_nearest(), tree_nearest()
    assert np.array_equal(nn.distance.to_numpy(), d), "nearest differs from cKDTree"
    n_pairs = len(ours_pairs())
    assert n_pairs == len(tree_pairs()), "pairs differ from cKDTree"

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, numpy {np.__version__}, scipy {scipy.__version__}")
    store = zv_dask.open_zv(path)
    print(f"store: {args.points:,} points, {len(store.chunks(0))} chunks at level 0; "
          f"median of {args.repeat} interleaved runs")
    rows = [(f"nearest, {args.queries:,} queries in one octant",
             *_median_pair(ours_nearest, tree_nearest, args.repeat), 0.3),
            (f"pairs(radius={args.radius:g}), {n_pairs:,} pairs",
             *_median_pair(ours_pairs, tree_pairs, args.repeat), 1.5)]
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'case':44s} {'zv_dask':>9s} {'cKDTree':>9s} {'ratio':>7s} "
          f"{'cpu zv':>8s} {'cpu ref':>8s} {'ratio':>6s} {'target':>7s}")
    for name, (a, ca), (b, cb), target in rows:
        print(f"{name:44s} {a:8.3f}s {b:8.3f}s {a / b:6.2f}x {ca:7.3f}s {cb:7.3f}s "
              f"{ca / cb:5.2f}x {target:6.1f}x")
    for n in args.workers:
        _scaling(path, q, args.radius, n, args.repeat)
    return 0


def _scaling(path, q, radius, n_workers, repeat):
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    import zv_dask

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster):
        def nearest():
            s = zv_dask.open_zv(path)
            qdf = dd.from_pandas(pd.DataFrame(q, columns=list(s.axes)), npartitions=8)
            return s.nearest(qdf).compute()

        def pairs():
            return zv_dask.open_zv(path).pairs(radius, lazy=True).compute()

        for name, f in (("nearest (8 query partitions)", nearest), ("pairs(lazy=True)", pairs)):
            f()
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                f()
                times.append(time.perf_counter() - t)
            print(f"LocalCluster {n_workers} worker(s): {name:30s} "
                  f"{statistics.median(times):7.3f}s")


def _planning(n_cells, n_queries, sample=500):
    """Pure planning on a synthetic presence list: index look-ups against scans."""
    from zv_dask.plan import halos
    from zv_dask.plan.select import CellRule, cell_boxes

    rng = np.random.default_rng(0)
    side = int(round((n_cells / 0.4) ** (1 / 3)))
    cube = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    coords = cube[np.sort(rng.choice(len(cube), min(n_cells, len(cube)), replace=False))]
    rule = CellRule(np.full(3, 10.0))
    lo, hi = cell_boxes(rule, coords)
    lengths = rng.integers(1, 50, len(coords))
    grid = halos.NeighbourGrid(coords, lo, hi, np.concatenate([[0], np.cumsum(lengths)[:-1]]),
                               lengths, rule)
    q = rng.uniform(0, side * 10.0, (n_queries, 3))

    def timed(f):
        t = time.perf_counter()
        out = f()
        return time.perf_counter() - t, out

    t_home, home = timed(lambda: halos.home_cells(grid, q))
    gap = np.maximum(np.maximum(lo[home] - q, q - hi[home]), 0).max(1)
    rest = q[gap > 0]   # queries in empty chunks: their nearest chunk by scan, extrapolated
    few = rest[:64 * 20]
    t_scan_home, _ = timed(lambda: [halos.box_distances(few[i:i + 64], lo, hi).argmin(1)
                                    for i in range(0, len(few), 64)])
    t_scan_home *= len(rest) / max(len(few), 1)
    groups = halos.group_queries(home)[:sample]
    reach = 10.0
    t_need, _ = timed(lambda: [halos.cells_needed(grid, q[r], np.full(len(r), reach))
                               for _, r in groups])
    t_scan_need, _ = timed(lambda: [np.flatnonzero(halos.boxes_within(
        q[r], lo, hi, np.full(len(r), reach)).any(0)) for _, r in groups])
    t_pairs, _ = timed(lambda: halos.pair_tasks(grid, 5.0))
    t_scan_pairs, _ = timed(lambda: halos._pair_tasks_scan(grid, 5.0, np.ones(len(grid), bool)))
    per = 1e3 / len(groups)
    print(f"planning, {len(grid):,} non-empty chunks, {n_queries:,} queries "
          f"(load {os.getloadavg()[0]:.1f}):")
    print(f"  home chunks of all queries   index {t_home:7.3f}s   scan {t_scan_home:7.3f}s "
          "(extrapolated)")
    print(f"  halo of one group (reach 1)  index {t_need * per:7.3f}ms  scan "
          f"{t_scan_need * per:7.3f}ms")
    print(f"  pair_tasks(5.0)              index {t_pairs:7.3f}s   scan {t_scan_pairs:7.3f}s")


if __name__ == "__main__":
    raise SystemExit(main())
