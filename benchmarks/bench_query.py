"""Queries on a dask DataFrame of a store, side by side in one run.

    python benchmarks/bench_query.py [--points 5000000] [--repeat 5] [--data benchmarks/_data]

Uses the same 5,000,000-point store as bench_read.py (chunk 250 in 2000^3: 8x8x8 = 512
chunks, one float32 attribute ``intensity``), threaded scheduler, medians of
interleaved runs (after one warm-up run of each side; the side that goes first
alternates), and prints a table of ratios:

(a) ``ddf[ddf.x > 1500].intensity.mean()``: only the chunks with x in [1500, 2000)
    (1/4 of them) can hold a match, against the same-shaped filter every chunk can
    hold (``ddf.x > -1``); target <= 0.4x on the default frame (one partition per
    chunk).  Pruning happens only where the dataframe pushes axis filters into its
    plan; without that both read every chunk.  Also shown with
    ``chunks_per_partition="auto"`` (no target: with 9 partitions in all and 5 left
    after pruning, the fixed cost of a query (opening, listing, planning, about 20 ms)
    is a large part of the pruned one).  A chunk that lies inside an exact box
    needs no row test and so no vertices: ``x > -1`` then reads only ``intensity``
    (every chunk is inside), ``x > 1500`` vertices only in the chunks at x = 1500.  So
    the same pair is also run with bounds float32 cannot represent (``x > 1500.1`` vs
    ``x > -0.9``): every planned chunk then tests its rows, and the ratio is pruning
    alone.
(b) ``to_dask_dataframe(chunks_per_partition="auto").compute()`` against
    ``dd.read_parquet`` of the same points (x, y, z, intensity) in 8 Parquet files;
    target <= 1.0x.  One partition per chunk is shown for reference.
(c) ``len(ddf)`` of a freshly built dataframe (median of ``10 * repeat`` runs): time
    and how many chunk blobs it reads (counted by a local filesystem that records
    opens), against ``len`` of ``dd.read_parquet`` and ``store.vertex_count(0)``.
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
from fsspec.implementations.local import LocalFileSystem

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))
from bench_read import build  # noqa: E402


class _CountingFS(LocalFileSystem):
    """Local files that count the chunk blobs opened (protocol ``zvbench``)."""

    protocol = "zvbench"
    cachable = False
    chunk_reads = 0

    def _open(self, path, mode="rb", **kw):
        if "/c/" in str(path):
            _CountingFS.chunk_reads += 1
        return super()._open(path, mode=mode, **kw)


def _median_pair(fa, fb, repeat):
    """Median seconds of ``fa`` and ``fb``, run alternately after one untimed warm-up
    each; which side goes first alternates too (what runs first pays for memory the
    other freed)."""
    fa(), fb()
    a, b = [], []
    for i in range(repeat):
        for f, out in ((fa, a), (fb, b))[:: 1 if i % 2 == 0 else -1]:
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def _parquet(path: Path, store, n_files: int) -> Path:
    """The level-0 points (x, y, z, intensity) in ``n_files`` Parquet files."""
    out = path.parent / f"{path.stem}_parquet{n_files}"
    if out.exists():
        return out
    import pandas as pd

    out.mkdir(parents=True)
    df = store.to_dask_dataframe(level=0, attributes=["intensity"]).compute()
    for i, part in enumerate(np.array_split(np.arange(len(df)), n_files)):
        pd.DataFrame(df.iloc[part]).reset_index(drop=True).to_parquet(
            out / f"part.{i:02d}.parquet", index=False)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    args = ap.parse_args(argv)

    import dask
    import dask.dataframe as dd
    import fsspec

    import zv_dask

    fsspec.register_implementation("zvbench", _CountingFS, clobber=True)
    path = Path(args.data) / f"bench_points_{args.points}_b50.zarrvectors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path, args.points)
    store = zv_dask.open_zv(path)
    pq = _parquet(path, store, 8)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}, dask {dask.__version__}")
    print(f"store: {args.points:,} points, {len(store.chunks(0))} chunks; median of {args.repeat} "
          "interleaved runs (first side alternating); threaded scheduler")

    def fresh(**kw):
        return zv_dask.open_zv(path, cache_size=0).to_dask_dataframe(level=0, **kw)

    def query(a, **kw):
        ddf = fresh(**kw)
        return ddf[ddf.x > a].intensity.mean().compute()

    rows = []
    with dask.config.set(scheduler="threads"):
        # the answers first: the same as pandas on the eager read
        df = store.read(level=0, attributes=["intensity"])
        x, inten = df["positions"][:, 0], df["attributes"]["intensity"]
        for kw in ({}, {"chunks_per_partition": "auto"}):
            assert np.isclose(query(1500.0, **kw), inten[x > 1500].mean())
            assert np.isclose(query(-1.0, **kw), inten.mean())
            # bounds float32 cannot hold: no chunk lies exactly inside, all test rows
            assert np.isclose(query(1500.1, **kw), inten[x > np.float32(1500.1)].mean())
            assert np.isclose(query(-0.9, **kw), inten.mean())
        # the target is on the documented default frame; "auto" rows are for reference
        for label, kw, target in (("one partition per chunk", {}, 0.4),
                                  ('chunks_per_partition="auto"',
                                   {"chunks_per_partition": "auto"}, None)):
            a, b = _median_pair(lambda: query(1500.0, **kw), lambda: query(-1.0, **kw),
                                args.repeat)
            rows.append((f"(a) x > 1500 (1/4 chunks) vs x > -1 (all), {label}", a, b, target))
            a, b = _median_pair(lambda: query(1500.1, **kw), lambda: query(-0.9, **kw),
                                args.repeat)
            rows.append((f"    x > 1500.1 vs x > -0.9 (every chunk tests rows), {label}",
                         a, b, target))

        auto = fresh(chunks_per_partition="auto")
        print(f"auto partitions: {auto.npartitions} (of {len(store.chunks(0))} chunks); "
              f"parquet: 8 files, {dd.read_parquet(pq).npartitions} partitions")
        assert len(auto.compute()) == args.points
        a, b = _median_pair(lambda: fresh(chunks_per_partition="auto").compute(),
                            lambda: dd.read_parquet(pq).compute(), args.repeat)
        rows.append(('(b) auto .compute() vs dd.read_parquet (8 files)', a, b, 1.0))
        a, b = _median_pair(lambda: fresh().compute(),
                            lambda: dd.read_parquet(pq).compute(), args.repeat)
        rows.append(("    one per chunk .compute() vs dd.read_parquet", a, b, None))

        # len of a freshly built dataframe each time (its first optimize included),
        # median of many: one call is a few ms, so single timings are mostly noise
        counted = zv_dask.open_zv("zvbench://" + str(path))
        len_runs, pq_runs, reads = [], [], 0
        for _ in range(max(args.repeat, 1) * 10):
            ddf = counted.to_dask_dataframe(level=0)
            _CountingFS.chunk_reads = 0
            t = time.perf_counter()
            n = len(ddf)
            len_runs.append(time.perf_counter() - t)
            reads += _CountingFS.chunk_reads
            assert n == args.points
            pdf = dd.read_parquet(pq)
            t = time.perf_counter()
            len(pdf)
            pq_runs.append(time.perf_counter() - t)
        len_s, pq_len_s = statistics.median(len_runs), statistics.median(pq_runs)
        t = time.perf_counter()
        store.vertex_count(0)
        meta_s = time.perf_counter() - t

    print(f"\n{'case':<78} {'zv_dask s':>10} {'other s':>9} {'ratio':>6} {'target':>7}")
    for label, a, b, target in rows:
        tgt = "" if target is None else f"<= {target}"
        print(f"{label:<78} {a:>10.3f} {b:>9.3f} {a / b:>6.2f} {tgt:>7}")
    print(f"\n(c) len(ddf) of a fresh dataframe: {len_s * 1e3:.1f} ms (median of "
          f"{len(len_runs)}), {reads} chunk blobs read in all (target <= 5 ms, 0 reads); "
          f"len(dd.read_parquet(...)): {pq_len_s * 1e3:.1f} ms; store.vertex_count(0) from "
          f"metadata: {meta_s * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
