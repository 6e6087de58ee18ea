"""Writing a store: ``to_zv`` against ``write_points`` + ``build_pyramid``, side by side.

    python benchmarks/bench_write.py [--points 2000000] [--levels 3] [--partitions 8]
                                     [--repeat 2] [--data benchmarks/_data]
                                     [--geometry point|streamline|mesh]
                                     [--chunk 250] [--shards S] [--shard-levels]
                                     [--input from_map|pandas|from_pandas]

Each run is a fresh Python process (so peak RSS is that side's own), sides interleaved.
The input is N uniform float32 points in a 2000^3 box with two attributes
(``intensity`` float32, ``label`` int32), generated in P parts (part i from its own
seeded generator, ``_part``); both sides see the same points in the same order:

* ours: a P-partition dask DataFrame built with ``dd.from_map(_part, range(P))`` and
  written with ``zv_dask.to_zv(..., chunk_shape=250, levels=L)`` (threaded scheduler).
  The input is never held whole: each partition is generated when a task needs it (once
  for the input checks, once for the write), and that generation is inside the timed
  call;
* ``--input pandas``: ours gets the N points as one in-memory pandas DataFrame (built,
  untimed, before the call; held for the whole run as the reference holds its arrays)
  and ``to_zv`` splits it; ``--input from_pandas``: that frame as a P-partition
  ``dd.from_pandas(df, npartitions=P)``;
* reference: the parts concatenated into the numpy arrays its API takes (positions
  ``(N, 3)`` and one array per attribute, all held for the whole run; generation not
  timed), through ``write_points(chunk_shape=250)`` then
  ``build_pyramid(factors=[(2, 1)] * (L - 1))``.

``--geometry streamline``: ``--points`` lines (default 30,000) of 40-80 vertices (random
walks of step 4 from uniform starts in a 1000^3 box, float32 ``fa`` per vertex), chunk
100, one level (``--levels L``, streamlines and meshes: ``to_zv(geometry=..., levels=L)`` against
``write_polylines`` + ``build_pyramid(factors=[(2, 1)] * (L - 1))`` +
``build_fragment_owner_index``): ours ``to_zv(geometry="streamline")`` of a
``dd.from_map`` frame (``object_id`` column), the reference ``write_polylines`` of the
list of arrays.
``--geometry mesh``: a triangulated height field of ``--points`` vertices (default
250,000; two faces per grid square, one object), chunk 100: ours ``to_zv(geometry="mesh",
faces=...)`` with vertices and faces as ``dd.from_map`` frames, the reference
``write_mesh``.  Our object stores carry the owner column
``fragment_attributes/object_id`` that the reference adds with
``building.build_fragment_owner_index()``, which the comparison runs (untimed) first.

Peak RSS (``ru_maxrss``) is the whole process: imports, input and writing.  Prints
per-run wall time, CPU time (user + system, every thread, of the timed call: less
moved than the wall time by other jobs on shared cores) and peak RSS, medians, and the
ratios ours/reference.  After the runs
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


def _lines(i: int, n: int, parts: int):
    """Lines of part ``i``: a list of (K, 3) float32 arrays, and their float32 ``fa``."""
    m = n // parts + (i < n % parts)
    rng = np.random.default_rng([1, i])
    lines, fa = [], []
    for _ in range(m):
        k = int(rng.integers(40, 81))
        walk = rng.normal(0, 4, (k, 3))
        walk[0] = rng.uniform(50, 950, 3)
        lines.append(np.cumsum(walk, axis=0).astype(np.float32))
        fa.append(rng.random(k).astype(np.float32))
    return lines, fa


def _lines_part(i: int, n: int, parts: int):
    import pandas as pd

    lines, fa = _lines(i, n, parts)
    first = sum(n // parts + (j < n % parts) for j in range(i))
    pos = np.concatenate(lines) if lines else np.zeros((0, 3), np.float32)
    return pd.DataFrame({"x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2],
                         "object_id": np.repeat(np.arange(first, first + len(lines)),
                                                [len(p) for p in lines]).astype(np.int64),
                         "fa": np.concatenate(fa) if fa else np.zeros(0, np.float32)})


def _grid(n: int):
    side = max(1, int(np.sqrt(n)))
    return side, n // side  # columns, rows


def _mesh_part(i: int, n: int, parts: int):
    """Vertex rows of grid rows in part ``i`` (a height field of step 1)."""
    import pandas as pd

    cols, rows = _grid(n)
    r = np.arange(rows)[i * rows // parts:(i + 1) * rows // parts]
    x, y = np.meshgrid(np.arange(cols, dtype=np.float64), r.astype(np.float64))
    z = 50 + 30 * np.sin(x / 40) * np.cos(y / 40)
    return pd.DataFrame({"x": x.ravel().astype(np.float32), "y": y.ravel().astype(np.float32),
                         "z": z.ravel().astype(np.float32)})


def _faces_part(i: int, n: int, parts: int):
    """Two triangles per grid square whose top-left corner is in part ``i``'s rows."""
    import pandas as pd

    cols, rows = _grid(n)
    r = np.arange(rows - 1)[i * (rows - 1) // parts:(i + 1) * (rows - 1) // parts]
    c = np.arange(cols - 1)
    a = (r[:, None] * cols + c[None, :]).ravel()
    t = np.concatenate([np.stack([a, a + 1, a + cols], 1), np.stack([a + 1, a + cols + 1, a + cols], 1)])
    return pd.DataFrame(t, columns=["v0", "v1", "v2"])


def _cpu() -> float:
    """User + system CPU seconds of this process so far (every thread)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _reference_pyramid(out: str, levels: int) -> None:
    """``build_pyramid`` then the owner index of every level (which ours writes)."""
    from zarr_vectors.building import build_fragment_owner_index
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    build_pyramid(out, factors=[(2, 1)] * (levels - 1))
    build_fragment_owner_index(out)


def run_objects(side: str, geometry: str, n: int, partitions: int, out: str,
                levels: int = 1) -> dict:
    import pandas as pd

    if side in ("ours", "sharded"):
        import dask.dataframe as dd

        import zv_dask

        if geometry == "streamline":
            ddf = dd.from_map(_lines_part, range(partitions), n=n, parts=partitions,
                              meta=_lines_part(0, 0, 1), enforce_metadata=False)
            t, c = time.perf_counter(), _cpu()
            zv_dask.to_zv(ddf, out, chunk_shape=100, geometry="streamline", levels=levels)
        else:
            ddf = dd.from_map(_mesh_part, range(partitions), n=n, parts=partitions,
                              meta=_mesh_part(0, 4, 1).iloc[:0], enforce_metadata=False)
            faces = dd.from_map(_faces_part, range(partitions), n=n, parts=partitions,
                                meta=_faces_part(0, 4, 1).iloc[:0], enforce_metadata=False)
            t, c = time.perf_counter(), _cpu()
            zv_dask.to_zv(ddf, out, chunk_shape=100, geometry="mesh", faces=faces,
                          levels=levels)
    elif geometry == "streamline":
        from zarr_vectors.types.polylines import write_polylines

        lines, fa = [], []
        for i in range(partitions):
            li, fi = _lines(i, n, partitions)
            lines += li
            fa += fi
        t, c = time.perf_counter(), _cpu()
        write_polylines(out, lines, chunk_shape=(100, 100, 100), vertex_attributes={"fa": fa})
        if levels > 1:
            _reference_pyramid(out, levels)
    else:
        from zarr_vectors.types.meshes import write_mesh

        verts = pd.concat([_mesh_part(i, n, partitions) for i in range(partitions)])
        faces = pd.concat([_faces_part(i, n, partitions) for i in range(partitions)])
        verts, faces = verts.to_numpy(), faces.to_numpy()
        t, c = time.perf_counter(), _cpu()
        write_mesh(out, verts, faces, chunk_shape=(100, 100, 100))
        if levels > 1:
            _reference_pyramid(out, levels)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"side": side, "wall": wall, "cpu": _cpu() - c, "rss_mb": rss}


def run_side(side: str, n: int, levels: int, partitions: int, out: str,
             geometry: str = "point", chunk: float = 250, shards: int | None = None,
             shard_levels: bool = False, source: str = "from_map") -> dict:
    if os.path.exists(out):
        shutil.rmtree(out)
    if geometry != "point":
        return run_objects(side, geometry, n, partitions, out, levels)
    if side in ("ours", "sharded"):
        import dask.dataframe as dd

        import zv_dask

        if source == "from_map":
            ddf = dd.from_map(_part, range(partitions), n=n, parts=partitions,
                              meta=_part(0, 0, 1), enforce_metadata=False)
        else:
            import pandas as pd

            ddf = pd.concat([_part(i, n, partitions) for i in range(partitions)],
                            ignore_index=True)
            if source == "from_pandas":
                ddf = dd.from_pandas(ddf, npartitions=partitions, sort=False)
        t, c = time.perf_counter(), _cpu()
        zv_dask.to_zv(ddf, out, chunk_shape=chunk, levels=levels,
                      shard_shape=shards if side == "sharded" else None,
                      shard_levels=shard_levels and side == "sharded")
    else:
        from zarr_vectors.multiresolution.coarsen import build_pyramid
        from zarr_vectors.types.points import write_points

        pos, attrs = _inputs(n, partitions)
        t, c = time.perf_counter(), _cpu()
        write_points(out, pos, chunk_shape=(250, 250, 250), vertex_attributes=attrs)
        if levels > 1:
            build_pyramid(out, factors=[(2, 1)] * (levels - 1))
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB on Linux
    return {"side": side, "wall": wall, "cpu": _cpu() - c, "rss_mb": rss}


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
    ap.add_argument("--points", type=int, default=None,
                    help="points (2,000,000), lines (30,000) or mesh vertices (250,000)")
    ap.add_argument("--geometry", choices=["point", "streamline", "mesh"], default="point")
    ap.add_argument("--levels", type=int, default=None,
                    help="levels (default 3 for points, 1 for objects)")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    ap.add_argument("--chunk", type=float, default=250.0)
    ap.add_argument("--shards", type=int, help="compare unsharded with shard_shape=SHARDS")
    ap.add_argument("--shard-levels", action="store_true",
                    help="with --shards: shard links and coarse levels too")
    ap.add_argument("--input", choices=["from_map", "pandas", "from_pandas"], default="from_map",
                    help="points: ours reads a dd.from_map frame (default), one pandas "
                         "DataFrame, or dd.from_pandas of it")
    ap.add_argument("--side", choices=["ours", "reference", "sharded"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.points is None:
        args.points = {"point": 2_000_000, "streamline": 30_000, "mesh": 250_000}[args.geometry]
    if args.levels is None:
        args.levels = 3 if args.geometry == "point" else 1

    if args.side:  # child process: one run, one JSON line
        print(json.dumps(run_side(args.side, args.points, args.levels, args.partitions,
                                  args.out, args.geometry, args.chunk, args.shards,
                                  args.shard_levels, args.input)))
        return 0

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    sides = ("ours", "sharded") if args.shards else ("ours", "reference")
    outs = {s: str(data / f"write_{args.geometry}_{s}_{args.points}.zarrvectors") for s in sides}
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, load "
          f"{os.getloadavg()[0]:.1f}; {args.geometry}, {args.points} points/lines/vertices, "
          f"{args.levels} levels, {args.partitions} partitions, chunk {args.chunk:g}"
          + (f", shard_shape {args.shards}" if args.shards else "")
          + (", shard_levels" if args.shard_levels else "")
          + (f", input {args.input}" if args.geometry == "point" else ""))
    runs = {s: [] for s in sides}
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    for i in range(args.repeat):
        for side in sides[::-1] if i % 2 else sides:
            cmd = [sys.executable, __file__, "--side", side, "--points", str(args.points),
                   "--levels", str(args.levels), "--partitions", str(args.partitions),
                   "--chunk", str(args.chunk), "--out", outs[side], "--geometry", args.geometry]
            cmd += ["--shards", str(args.shards)] if args.shards else []
            cmd += ["--shard-levels"] if args.shard_levels else []
            cmd += ["--input", args.input]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                          env=env).stdout.strip().splitlines()[-1])
            runs[side].append(r)
            print(f"  run {i}  {side:9s}  wall {r['wall']:7.2f} s   cpu {r['cpu']:7.2f} s   "
                  f"peak RSS {r['rss_mb']:7.0f} MB")
    med = {s: (statistics.median(r["wall"] for r in rs), statistics.median(r["rss_mb"] for r in rs),
               statistics.median(r["cpu"] for r in rs)) for s, rs in runs.items()}
    for s, (w, m, c) in med.items():
        print(f"median {s:9s}  wall {w:7.2f} s   cpu {c:7.2f} s   peak RSS {m:7.0f} MB")
    num = "sharded" if args.shards else "ours"
    den = "ours" if args.shards else "reference"
    print(f"ratio {num}/{den}: wall {med[num][0] / med[den][0]:.2f}x, "
          f"peak RSS {med[num][1] / med[den][1]:.2f}x, cpu {med[num][2] / med[den][2]:.2f}x")
    if args.shards:
        n, diff = _same_points(Path(outs["ours"]), Path(outs["sharded"]), args.levels)
        print(f"sharded store: {n} files; levels whose points differ from unsharded: {diff}")
        return 0 if not diff else 1
    if args.geometry != "point":  # the owner column, which our object stores carry
        from zarr_vectors.building import build_fragment_owner_index

        build_fragment_owner_index(outs["reference"])
    n, diff = _same_store(Path(outs["reference"]), Path(outs["ours"]))
    print(f"stores compared: {n} files, {len(diff)} differ" + (f" (e.g. {diff[:3]})" if diff else ""))
    return 0 if not diff else 1


if __name__ == "__main__":
    sys.exit(main())
