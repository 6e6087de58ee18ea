"""LAZ ingest: ``zv-dask convert`` against the peer's ``zvtools convert``, side by side.

    python benchmarks/bench_ingest.py [--points 3000000 12000000] [--repeat 1]
                                      [--data benchmarks/_data]

The input is a LAZ file written by laspy (point format 3: intensity, returns,
classification, user data, point source, gps_time, RGB) of N points in a 2 km x 2 km
tile at UTM-like offsets (500000, 4000000), scale 0.01; it is written in pieces of
1 M points so that making it stays small.  Each side converts the same file into a
store with ``chunk_shape`` 256 and one level, in its own fresh Python process (peak
RSS, ``ru_maxrss``, is that side's own: imports, reading and writing), sides
interleaved:

* ours: ``zv-dask convert FILE OUT --chunk-shape 256`` (threaded scheduler; positions
  float64 chosen by convert because float32 cannot hold the 0.01 scale at 500000);
* peer: ``zvtools convert FILE OUT --chunk-shape 256,256,256 --dtype float64``
  (zarr-vectors-tools 0.3.0; it reads the file whole with ``laspy.read``);
* read: our reading alone, ``read_las(FILE)`` reduced to its row count (every column
  of every point decoded, nothing written): what the reader costs and holds.

Prints per-run wall time and peak RSS, medians, and the ratios ours/peer; after the
runs both stores are checked to hold N points at level 0.

``--format trk [--streamlines 100000]``: the same side by side for a TRK file written
by nibabel (seeded random walks of 10-60 points in a 50 mm box, identity affine):
ours ``zv-dask convert FILE OUT --chunk-shape 20``, peer ``zvtools convert FILE OUT
--format trk --chunk-shape 20,20,20``; our store is checked to hold every point.
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
PIECE = 1_000_000


def make_laz(path: Path, n: int) -> None:
    """N points in pieces of 1 M (seeded per piece): laspy's chunked writer."""
    import laspy

    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [0.01] * 3, [500_000.0, 4_000_000.0, 0.0]
    with laspy.open(str(path), mode="w", header=header, do_compress=True) as writer:
        for i, at in enumerate(range(0, n, PIECE)):
            m = min(PIECE, n - at)
            rng = np.random.default_rng([1, i])
            rec = laspy.ScaleAwarePointRecord.zeros(m, header=header)
            rec.X, rec.Y = rng.integers(0, 200_000, m), rng.integers(0, 200_000, m)
            rec.Z = rng.integers(0, 10_000, m)
            rec.intensity = rng.integers(0, 65536, m)
            rec.classification = rng.integers(0, 32, m)
            rec.return_number = rng.integers(1, 4, m)
            rec.number_of_returns = rng.integers(1, 4, m)
            rec.gps_time = rng.uniform(0, 1e6, m)
            for c in ("red", "green", "blue"):
                rec[c] = rng.integers(0, 65536, m)
            writer.write_points(rec)


def make_trk(path: Path, n: int) -> None:
    """N seeded random-walk streamlines of 10-60 points, written by nibabel."""
    import nibabel as nib

    rng = np.random.default_rng(3)
    lens = rng.integers(10, 61, n)
    steps = rng.normal(0, 0.5, (int(lens.sum()), 3)).astype("f4")
    seq = nib.streamlines.ArraySequence()
    seq._data = steps.cumsum(axis=0) % 50
    seq._offsets, seq._lengths = np.r_[0, np.cumsum(lens)[:-1]], lens
    nib.streamlines.save(nib.streamlines.Tractogram(seq, affine_to_rasmm=np.eye(4)), str(path))


def run_side(side: str, laz: str, out: str) -> dict:
    if os.path.exists(out):
        shutil.rmtree(out)
    t0 = time.perf_counter()
    trk = laz.endswith(".trk")
    if side == "ours":
        from zv_dask.cli import main

        rc = main(["convert", laz, out, "--chunk-shape", "20" if trk else "256"])
    elif trk:
        from zarr_vectors_tools.cli import main

        rc = main(["convert", laz, out, "--format", "trk", "--chunk-shape", "20,20,20"])
    elif side == "read":
        import zv_dask

        n = int(zv_dask.read_las(laz).map_partitions(len).sum().compute())
        rc = 0 if n > 0 else 1
    else:
        from zarr_vectors_tools.cli import main

        rc = main(["convert", laz, out, "--chunk-shape", "256,256,256", "--dtype", "float64"])
    wall = time.perf_counter() - t0
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB on Linux
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"side": side, "rc": rc or 0, "wall_s": wall, "rss_mb": max(self_rss, child_rss)}


def vertex_count(path: str) -> int:
    import zv_dask

    return zv_dask.open_zv(path).vertex_count(0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, nargs="+", default=[3_000_000, 12_000_000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--format", choices=["laz", "trk"], default="laz")
    ap.add_argument("--streamlines", type=int, nargs="+", default=[100_000])
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    ap.add_argument("--side", choices=["ours", "peer", "read"], help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.side:
        print(json.dumps(run_side(a.side, a.file, a.out)))
        return 0
    data = Path(a.data)
    data.mkdir(parents=True, exist_ok=True)
    print(f"# {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    if a.format == "trk":
        return bench_trk(a, data, env)
    for n in a.points:
        laz = data / f"tile_{n}.laz"
        if not laz.exists():
            make_laz(laz, n)
        print(f"\n## {n:,} points, {laz.stat().st_size / 2**20:.0f} MiB LAZ")
        runs = {"ours": [], "peer": [], "read": []}
        for _ in range(a.repeat):
            for side in ("ours", "peer", "read"):
                out = str(data / f"{side}_{n}.zarrvectors")
                cmd = [sys.executable, __file__, "--side", side, "--file", str(laz),
                       "--out", out]
                r = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                rec = json.loads(r.stdout.strip().splitlines()[-1])
                assert rec["rc"] == 0, r.stderr[-2000:]
                runs[side].append(rec)
                print(f"{side:5s} wall {rec['wall_s']:7.1f} s   peak RSS {rec['rss_mb']:7.0f} MB")
        med = {s: (statistics.median(r["wall_s"] for r in v),
                   statistics.median(r["rss_mb"] for r in v)) for s, v in runs.items()}
        print(f"ratio ours/peer: wall {med['ours'][0] / med['peer'][0]:.2f}x, "
              f"peak RSS {med['ours'][1] / med['peer'][1]:.2f}x")
        counts = {s: vertex_count(str(data / f"{s}_{n}.zarrvectors")) for s in ("ours", "peer")}
        print(f"level-0 points: {counts}")
        assert counts["ours"] == counts["peer"] == n, counts
    return 0


def bench_trk(a, data: Path, env: dict) -> int:
    for n in a.streamlines:
        trk = data / f"tracts_{n}.trk"
        if not trk.exists():
            make_trk(trk, n)
        print(f"\n## {n:,} streamlines, {trk.stat().st_size / 2**20:.0f} MiB TRK")
        runs = {"ours": [], "peer": []}
        for _ in range(a.repeat):
            for side in runs:
                out = str(data / f"{side}_tracts_{n}.zarrvectors")
                cmd = [sys.executable, __file__, "--side", side, "--file", str(trk),
                       "--out", out]
                r = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                rec = json.loads(r.stdout.strip().splitlines()[-1])
                assert rec["rc"] == 0, r.stderr[-2000:]
                runs[side].append(rec)
                print(f"{side:5s} wall {rec['wall_s']:7.1f} s   peak RSS {rec['rss_mb']:7.0f} MB")
        med = {s: (statistics.median(r["wall_s"] for r in v),
                   statistics.median(r["rss_mb"] for r in v)) for s, v in runs.items()}
        print(f"ratio ours/peer: wall {med['ours'][0] / med['peer'][0]:.2f}x, "
              f"peak RSS {med['ours'][1] / med['peer'][1]:.2f}x")
        import nibabel as nib

        points = len(nib.streamlines.load(str(trk), lazy_load=False).streamlines.get_data())
        ours = vertex_count(str(data / f"ours_tracts_{n}.zarrvectors"))
        print(f"level-0 points: ours {ours}, file {points}")
        assert ours == points
    return 0


if __name__ == "__main__":
    sys.exit(main())
