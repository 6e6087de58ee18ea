"""Writing and reading on a ``distributed.LocalCluster``: a big store in bounded worker
memory, and how write, full read and ``describe`` scale with the number of workers.

    python benchmarks/bench_cluster.py [--points 20000000] [--memory-limit 1GB]
                                       [--workers 1 2 4 8 16] [--sweep-points 4000000]
                                       [--chunk 125] [--levels 3] [--data benchmarks/_data]

The input is generated per partition (``bench_write._part``: uniform float32 points in
2000^3 with ``intensity`` float32 and ``label`` int32, part ``i`` from its own seeded
generator) through ``dd.from_map``, 500,000 rows a partition, so the client never holds
it; ``to_zv(..., chunk_shape=--chunk, levels=--levels)`` shuffles with p2p.

1. **Big store** (skipped with ``--points 0``): ``--points`` points written by a cluster
   of 2 worker processes x 1 thread, each with ``--memory-limit`` (dask's nanny kills a
   worker above 95% of it, spills from 60%).  Prints wall time, every worker's peak RSS
   (``ru_maxrss`` of the worker process, read after the job), whether a worker was
   restarted, and checks the store: its point count and ``sum(x)`` equal the input's.
2. **Sweep** (skipped with ``--workers`` and nothing after it): for each worker count
   ``n`` a fresh cluster of ``n`` processes x 1 thread writes ``--sweep-points`` points,
   then computes ``ddf.sum()`` over the full level 0 (``chunks_per_partition="auto"``,
   every column read) and ``stats.describe`` of the store.  Prints seconds and parallel
   efficiency ``t(first n) * first n / (t(n) * n)``: 1.0 is perfect scaling; beyond the
   machine's cores it can only fall.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_write import _part  # noqa: E402  (the same seeded input as bench_write)

warnings.filterwarnings("ignore")
ROWS_PER_PARTITION = 500_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _input(n: int):
    import dask.dataframe as dd

    parts = max(1, -(-n // ROWS_PER_PARTITION))
    return dd.from_map(_part, range(parts), n=n, parts=parts, meta=_part(0, 0, 1),
                       enforce_metadata=False)


def _expected(n: int) -> tuple[int, float]:
    """Rows and float64 sum of x of the input, generated part by part here."""
    parts = max(1, -(-n // ROWS_PER_PARTITION))
    total = 0.0
    for i in range(parts):
        total += float(_part(i, n, parts)["x"].to_numpy(np.float64).sum())
    return n, total


def _cluster(n_workers: int, memory_limit):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           memory_limit=memory_limit, dashboard_address=None,
                           silence_logs=50)
    return cluster, Client(cluster)


def _pids(client) -> dict:
    return client.run(os.getpid)


def big_store(args) -> None:
    import zv_dask

    out = Path(args.data) / f"cluster_{args.points}.zarrvectors"
    if out.exists():
        shutil.rmtree(out)
    cluster, client = _cluster(2, args.memory_limit)
    try:
        before = _pids(client)
        ddf = _input(args.points)
        t = time.perf_counter()
        zv_dask.to_zv(ddf, out, chunk_shape=args.chunk, levels=args.levels)
        wall = time.perf_counter() - t
        peaks = client.run(_peak_rss_mb)
        after = _pids(client)
    finally:
        client.close()
        cluster.close()
    restarted = sorted(set(before.values()) ^ set(after.values()))
    store = zv_dask.open_zv(out)
    rows, xsum = _expected(args.points)
    got = store.to_dask_dataframe(chunks_per_partition="auto", attributes=[])
    got_sum = float(got.x.astype("float64").sum().compute(scheduler="threads"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"\n1. {args.points:,} points -> {out.name}: chunk {args.chunk}, {args.levels} "
          f"levels, {ddf.npartitions} input partitions, 2 workers x 1 thread, "
          f"memory_limit={args.memory_limit}")
    print(f"   wall {wall:.1f} s; {size / 2**20:,.0f} MiB on disk; "
          f"{len(store.chunks(0)):,} level-0 chunks")
    for addr, mb in sorted(peaks.items()):
        print(f"   worker {addr}: peak RSS {mb:,.0f} MB")
    print(f"   workers restarted: {len(restarted) // 2}")
    ok_rows = store.vertex_count(0) == rows
    ok_sum = abs(got_sum - xsum) <= 1e-9 * abs(xsum) + 1e-3
    print(f"   check: {store.vertex_count(0):,} points (input {rows:,}) "
          f"{'ok' if ok_rows else 'WRONG'}; sum(x) {got_sum:.6e} (input {xsum:.6e}) "
          f"{'ok' if ok_sum else 'WRONG'}")
    shutil.rmtree(out)
    if not (ok_rows and ok_sum):
        raise SystemExit("the cluster-built store does not hold the input")


def sweep(args) -> None:
    import zv_dask
    from zv_dask import stats

    out = Path(args.data) / f"sweep_{args.sweep_points}.zarrvectors"
    rows = []
    for n in args.workers:
        if out.exists():
            shutil.rmtree(out)
        cluster, client = _cluster(n, args.sweep_memory_limit)
        try:
            client.submit(int, 0).result()  # workers up before timing
            ddf = _input(args.sweep_points)
            t0 = time.perf_counter()
            zv_dask.to_zv(ddf, out, chunk_shape=args.chunk, levels=args.levels)
            t1 = time.perf_counter()
            full = zv_dask.open_zv(out).to_dask_dataframe(chunks_per_partition="auto")
            full.sum().compute()
            t2 = time.perf_counter()
            stats.describe(zv_dask.open_zv(out)).compute()
            t3 = time.perf_counter()
        finally:
            client.close()
            cluster.close()
        rows.append((n, t1 - t0, t2 - t1, t3 - t2))
        print(f"   {n} workers done", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    base_n, *base = rows[0]
    print(f"\n2. sweep: {args.sweep_points:,} points, chunk {args.chunk}, {args.levels} levels; "
          f"workers x 1 thread, memory_limit={args.sweep_memory_limit}; "
          f"efficiency = t({base_n})*{base_n} / (t(n)*n)")
    print(f"{'workers':>8} {'write s':>8} {'eff':>5} {'read s':>8} {'eff':>5} "
          f"{'describe s':>10} {'eff':>5}")
    for n, *ts in rows:
        eff = [b * base_n / (t * n) for b, t in zip(base, ts)]
        print(f"{n:>8} {ts[0]:>8.2f} {eff[0]:>5.2f} {ts[1]:>8.2f} {eff[1]:>5.2f} "
              f"{ts[2]:>10.2f} {eff[2]:>5.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=20_000_000)
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    ap.add_argument("--sweep-points", type=int, default=4_000_000)
    ap.add_argument("--sweep-memory-limit", default="1GB")
    ap.add_argument("--chunk", type=float, default=125)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    args = ap.parse_args(argv)
    Path(args.data).mkdir(parents=True, exist_ok=True)
    import dask
    import distributed

    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, dask {dask.__version__}, "
          f"distributed {distributed.__version__}, load {os.getloadavg()[0]:.1f}")
    if args.points:
        big_store(args)
    if args.workers:
        sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
