"""Dask collections and reductions against the reference, side by side in one run.

    python benchmarks/bench_dask.py [--points 5000000] [--repeat 5] [--data benchmarks/_data]

Uses the same 5,000,000-point store as bench_read.py (chunk 250 in 2000^3: 512 chunks,
one float32 attribute ``intensity``) and prints:

1. ``to_dask_dataframe().compute()`` (threaded scheduler) vs reference ``read_points``;
   also with ``chunks_per_partition`` = 8 and 64 (grouping neighbouring chunks);
2. ``describe(columns=["intensity"])`` vs reference ``read_points`` + numpy mean/std/...;
3. graph construction for a one-chunk bbox on synthetic metadata with 10^3..10^6
   non-empty chunks (planning on metadata alone; no store);
4. peak RSS of ``describe`` and of an eager ``read()`` in fresh processes, against the
   store's size on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))
from bench_read import build  # noqa: E402


def _median_pair(fa, fb, repeat):
    a, b = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        fa()
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        fb()
        b.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def synthetic_store(n_chunks: int):
    """A ZVStore whose metadata lists ``n_chunks`` non-empty chunks (no data anywhere)."""
    from zv_dask.format import metadata as M
    from zv_dask.io.location import StoreLocation
    from zv_dask.store import ZVStore

    side = int(np.ceil(n_chunks ** (1 / 3)))
    lin = np.arange(n_chunks)
    coords = np.stack(np.unravel_index(lin, (side,) * 3), 1)
    keys = [".".join(map(str, c)) for c in coords.tolist()]
    root_doc = {"zarr_format": 3, "node_type": "group", "attributes": {
        "zarr_vectors": {"zv_version": "0.9.2", "format_capabilities": [],
                         "chunk_shape": [10.0] * 3, "bounds": [[0] * 3, [side * 10.0] * 3],
                         "geometry_types": ["point_cloud"]},
        "multiscales": [{"axes": [{"name": a} for a in "xyz"], "datasets": [
            {"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1, 1, 1]},
                {"type": "translation", "translation": [5, 5, 5]}]}]}]}}
    vdoc = {"zarr_format": 3, "node_type": "array", "shape": [side] * 3,
            "data_type": "variable_length_bytes",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1, 1]}},
            "codecs": [{"name": "vlen-bytes", "configuration": {}}], "fill_value": "",
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "attributes": {"zv_array": "vertices", "dtype": "float32", "encoding": "raw",
                           "nonempty_chunks": keys}}
    t = time.perf_counter()
    root = M.parse_root(root_doc, "synthetic")
    arr = M.parse_array(vdoc, "vertices", "synthetic", 0)
    pres = M.parse_presence(vdoc, arr, "synthetic", 0)
    lm = M.build_level(store="synthetic", level=0, root=root,
                       level_attrs={"level": 0, "vertex_count": n_chunks}, arrays={"vertices": arr},
                       presence=pres, object_index_attrs=None)
    meta = M.build_store("synthetic", root, {0: lm})
    parse_s = time.perf_counter() - t
    return ZVStore(StoreLocation("memory://synthetic"), meta), parse_s


def rss_child(path: str, what: str) -> dict:
    code = f"""
import time, json, warnings
warnings.filterwarnings("ignore")
import numpy as np, zv_dask, dask
from zv_dask import stats
def hwm():  # peak RSS in KiB of this process image (VmHWM resets at exec; ru_maxrss does not)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
base = hwm()
s = zv_dask.open_zv({path!r})
t = time.perf_counter()
if {what!r} == "describe":
    with dask.config.set(scheduler="threads"):
        out = stats.describe(s, columns=["intensity"]).compute()
else:
    out = s.read(level=0)
dt = time.perf_counter() - t
peak = hwm()
print(json.dumps({{"base_mb": base / 1024, "peak_mb": peak / 1024, "seconds": dt}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    ap.add_argument("--max-chunks", type=int, default=1_000_000)
    args = ap.parse_args(argv)

    import dask
    import zv_dask
    from zarr_vectors.types.points import read_points
    from zv_dask import stats

    path = Path(args.data) / f"bench_points_{args.points}_b50.zarrvectors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path, args.points)
    store = zv_dask.open_zv(path)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"dask {dask.__version__}, zarr {__import__('zarr').__version__}")
    print(f"store: {args.points:,} points, {len(store.chunks(0))} chunks; median of {args.repeat} "
          "interleaved runs; threaded scheduler")

    def ref_read():
        return read_points(str(path), attribute_names=["intensity"])

    def ref_describe():
        v = read_points(str(path), attribute_names=["intensity"])["vertex_attributes"]["intensity"]
        v = v.astype(np.float64)
        return len(v), v.mean(), v.std(ddof=1), v.min(), v.max(), v.sum()

    with dask.config.set(scheduler="threads"):
        df = zv_dask.open_zv(path).to_dask_dataframe().compute()
        assert len(df) == args.points
        rows = []
        for k in (1, 2, 4, 8, 16, 64):
            a, b = _median_pair(
                lambda: zv_dask.open_zv(path, cache_size=0).to_dask_dataframe(
                    chunks_per_partition=k).compute(), ref_read, args.repeat)
            rows.append((f"to_dask_dataframe().compute() cpp={k}", a, b))
        t = zv_dask.open_zv(path).describe(columns=["intensity"]).compute()
        want = ref_describe()
        assert np.isclose(t.loc["mean", "intensity"], want[1])
        assert np.isclose(t.loc["std", "intensity"], want[2])
        for k in (1, 8):
            a, b = _median_pair(
                lambda: stats.describe(zv_dask.open_zv(path, cache_size=0).to_dask_dataframe(
                    attributes=["intensity"], chunks_per_partition=k),
                    columns=["intensity"]).compute(),
                ref_describe, args.repeat)
            rows.append((f"describe(ddf(cpp={k}), ['intensity'])", a, b))
        a, b = _median_pair(
            lambda: stats.describe(zv_dask.open_zv(path, cache_size=0),
                                   columns=["intensity"]).compute(), ref_describe, args.repeat)
        rows.append(("describe(store, ['intensity']) auto", a, b))
    print(f"{'case':<42} {'zv_dask s':>10} {'reference s':>12} {'ratio':>7}")
    for label, a, b in rows:
        print(f"{label:<42} {a:>10.3f} {b:>12.3f} {a / b:>7.2f}")

    print("\nLocalCluster (2 worker processes x 1 thread): describe(['intensity']) by grouping")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      silence_logs=50) as cluster, Client(cluster):
        for k in (1, 4, 16, 64, "auto"):
            def run():
                s = zv_dask.open_zv(path, cache_size=0)
                src = s if k == "auto" else s.to_dask_dataframe(attributes=["intensity"],
                                                                chunks_per_partition=k)
                return stats.describe(src, columns=["intensity"]).compute()
            run()
            ts = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                run()
                ts.append(time.perf_counter() - t)
            print(f"  chunks_per_partition={k!s:<5} {statistics.median(ts):.3f} s")

    print("\ngraph construction, one-chunk bbox, synthetic metadata (no IO):")
    print(f"{'chunks':>10} {'parse s':>9} {'build ms':>9} {'partitions':>11}")
    n = 1000
    while n <= args.max_chunks:
        s, parse_s = synthetic_store(n)
        box = ([10.5] * 3, [19.5] * 3)  # inside chunk (1, 1, 1)
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            ddf = s.to_dask_dataframe(bbox=box)
            times.append(time.perf_counter() - t)
        print(f"{n:>10,} {parse_s:>9.3f} {statistics.median(times) * 1e3:>9.2f} {ddf.npartitions:>11}")
        n *= 10

    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and "/0/" in str(f))
    print(f"\npeak memory (fresh process, VmHWM), level 0 on disk = {size / 2**20:.0f} MiB:")
    for what in ("describe", "read"):
        r = rss_child(str(path), what)
        print(f"  {what:<9} peak {r['peak_mb']:7.0f} MiB  (after import {r['base_mb']:.0f} MiB, "
              f"+{r['peak_mb'] - r['base_mb']:.0f} MiB) in {r['seconds']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
