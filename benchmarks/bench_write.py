"""Writing a store: ``to_zv`` against ``write_points`` + ``build_pyramid``, side by side.

    python benchmarks/bench_write.py [--points 2000000] [--levels 3] [--partitions 8]
                                     [--repeat 2] [--data benchmarks/_data]
                                     [--chunk 250] [--shards S]

Each run is a fresh Python process (so peak RSS is that side's own), sides interleaved.
The input is N uniform float32 points in a 2000^3 box with two attributes
(``intensity`` float32, ``label`` int32), generated in P parts (part i from its own
seeded generator, ``_part``); both sides see the same points in the same order:

* ours: a P-partition dask DataFrame built with ``dd.from_map(_part, range(P))`` and
  written with ``zv_dask.to_zv(..., chunk_shape=250, levels=L)`` (threaded scheduler).
  The input is never held whole: each partition is generated when a task needs it (once
  for the input checks, once for the write), and that generation is inside the timed
  call;
* reference: the parts concatenated into the numpy arrays its API takes (positions
  ``(N, 3)`` and one array per attribute, all held for the whole run; generation not
  timed), through ``write_points(chunk_shape=250)`` then
  ``build_pyramid(factors=[(2, 1)] * (L - 1))``.

Peak RSS (``ru_maxrss``) is the whole process: imports, input and writing.  Prints
per-run wall time and peak RSS, medians, and the ratios ours/reference.  After the runs
both stores are compared: same files, same bytes.

``--shards S`` compares ours with ours instead: the same input written unsharded
(side ``ours``) and with ``shard_shape=S`` (side ``sharded``), both with
``chunk_shape=--chunk``; the ratio is sharded/unsharded, and after the runs both
stores must read back (``zv_dask``, every level) the same positions.  The sharding
case of the docs: ``--points 1000000 --levels 1 --chunk 62.5 --shards 8`` (32,768
chunks, 64 shards an array); ``--shard-levels`` shards links and coarse levels too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def _arrays(i: int, n: int, parts: int):
    """Part ``i`` of ``parts`` of the N input points: positions, intensity, label."""
    m = n // parts + (i < n % parts)
    rng = np.random.default_rng([0, i])
    pos = rng.uniform(0, 2000, (m, 3)).astype(np.float32)
    return pos, rng.random(m).astype(np.float32), rng.integers(0, 100, m).astype(np.int32)


def _part(i: int, n: int, parts: int):
    """Part ``i`` as a pandas DataFrame (one partition of ours)."""
    import pandas as pd

    pos, intensity, label = _arrays(i, n, parts)
    return pd.DataFrame({"x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2],
                         "intensity": intensity, "label": label})


def _inputs(n: int, parts: int):
    """The reference's input: all N points as numpy arrays (the parts in order)."""
    pos = np.empty((n, 3), np.float32)
    attrs = {"intensity": np.empty(n, np.float32), "label": np.empty(n, np.int32)}
    at = 0
    for i in range(parts):  # one part alive at a time, copied into place
        p, intensity, label = _arrays(i, n, parts)
        pos[at:at + len(p)], attrs["intensity"][at:at + len(p)] = p, intensity
        attrs["label"][at:at + len(p)] = label
        at += len(p)
    return pos, attrs


def run_side(side: str, n: int, levels: int, partitions: int, out: str, chunk: float = 250,
             shards: int | None = None, shard_levels: bool = False) -> dict:
    if os.path.exists(out):
        shutil.rmtree(out)
    if side in ("ours", "sharded"):
        import dask.dataframe as dd

        import zv_dask

        ddf = dd.from_map(_part, range(partitions), n=n, parts=partitions,
                          meta=_part(0, 0, 1), enforce_metadata=False)
        t = time.perf_counter()
        zv_dask.to_zv(ddf, out, chunk_shape=chunk, levels=levels,
                      shard_shape=shards if side == "sharded" else None,
                      shard_levels=shard_levels and side == "sharded")
    else:
        from zarr_vectors.multiresolution.coarsen import build_pyramid
        from zarr_vectors.types.points import write_points

        pos, attrs = _inputs(n, partitions)
        t = time.perf_counter()
        write_points(out, pos, chunk_shape=(250, 250, 250), vertex_attributes=attrs)
        if levels > 1:
            build_pyramid(out, factors=[(2, 1)] * (levels - 1))
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB on Linux
    return {"side": side, "wall": wall, "rss_mb": rss}


def _same_store(a: Path, b: Path) -> tuple[int, list]:
    def files(root):
        return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}
    fa, fb = files(a), files(b)
    diff = sorted(set(fa) ^ set(fb))
    for k in sorted(set(fa) & set(fb)):
        if k == "zarr.json":
            da, db = json.loads(fa[k].read_text()), json.loads(fb[k].read_text())
            da["attributes"]["ome"].pop("name"), db["attributes"]["ome"].pop("name")
            if da != db:
                diff.append(k)
        elif k.endswith("zarr.json"):
            if json.loads(fa[k].read_text()) != json.loads(fb[k].read_text()):
                diff.append(k)
        elif fa[k].read_bytes() != fb[k].read_bytes():
            diff.append(k)
    return len(fa), diff


def _same_points(a: Path, b: Path, levels: int) -> tuple[int, list]:
    """Files of the sharded store ``b``; levels whose positions differ from ``a``'s."""
    import zv_dask

    sa, sb = zv_dask.open_zv(str(a)), zv_dask.open_zv(str(b))
    diff = [lv for lv in range(levels) if not np.array_equal(
        sa.read(level=lv)["positions"], sb.read(level=lv)["positions"])]
    return sum(1 for p in b.rglob("*") if p.is_file()), diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    ap.add_argument("--chunk", type=float, default=250.0)
    ap.add_argument("--shards", type=int, help="compare unsharded with shard_shape=SHARDS")
    ap.add_argument("--shard-levels", action="store_true",
                    help="with --shards: shard links and coarse levels too")
    ap.add_argument("--side", choices=["ours", "reference", "sharded"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.side:  # child process: one run, one JSON line
        print(json.dumps(run_side(args.side, args.points, args.levels, args.partitions,
                                  args.out, args.chunk, args.shards, args.shard_levels)))
        return 0

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    sides = ("ours", "sharded") if args.shards else ("ours", "reference")
    outs = {s: str(data / f"write_{s}_{args.points}.zarrvectors") for s in sides}
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, load "
          f"{os.getloadavg()[0]:.1f}; {args.points} points, {args.levels} levels, "
          f"{args.partitions} partitions, chunk {args.chunk:g}"
          + (f", shard_shape {args.shards}" if args.shards else "")
          + (", shard_levels" if args.shard_levels else ""))
    runs = {s: [] for s in sides}
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    for i in range(args.repeat):
        for side in sides[::-1] if i % 2 else sides:
            cmd = [sys.executable, __file__, "--side", side, "--points", str(args.points),
                   "--levels", str(args.levels), "--partitions", str(args.partitions),
                   "--chunk", str(args.chunk), "--out", outs[side]]
            cmd += ["--shards", str(args.shards)] if args.shards else []
            cmd += ["--shard-levels"] if args.shard_levels else []
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                          env=env).stdout.strip().splitlines()[-1])
            runs[side].append(r)
            print(f"  run {i}  {side:9s}  wall {r['wall']:7.2f} s   peak RSS {r['rss_mb']:7.0f} MB")
    med = {s: (statistics.median(r["wall"] for r in rs), statistics.median(r["rss_mb"] for r in rs))
           for s, rs in runs.items()}
    for s, (w, m) in med.items():
        print(f"median {s:9s}  wall {w:7.2f} s   peak RSS {m:7.0f} MB")
    num = "sharded" if args.shards else "ours"
    den = "ours" if args.shards else "reference"
    print(f"ratio {num}/{den}: wall {med[num][0] / med[den][0]:.2f}x, "
          f"peak RSS {med[num][1] / med[den][1]:.2f}x")
    if args.shards:
        n, diff = _same_points(Path(outs["ours"]), Path(outs["sharded"]), args.levels)
        print(f"sharded store: {n} files; levels whose points differ from unsharded: {diff}")
        return 0 if not diff else 1
    n, diff = _same_store(Path(outs["reference"]), Path(outs["ours"]))
    print(f"stores compared: {n} files, {len(diff)} differ" + (f" (e.g. {diff[:3]})" if diff else ""))
    return 0 if not diff else 1


if __name__ == "__main__":
    sys.exit(main())
