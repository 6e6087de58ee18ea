"""Sharded reads against their read+decode floor, side by side in one run.

    python benchmarks/bench_shards.py [--points 2000000] [--repeat 7] [--data benchmarks/_data]

Writes (once, cached under --data) with the reference writer a store of N uniform
float32 points in a 2000^3 box, chunk 250 (512 chunks), ``shard_shape=4`` (64 chunks
per shard object: 8 objects per array) and ``compressor="zstd"``, one float32
attribute ``intensity``; then times, interleaved, warm page cache:

* floor: every shard object of ``vertices`` and ``intensity`` read once (one
  ``open().read()``) and every inner chunk zstd-decoded with numcodecs, the index
  parsed with numpy (no checksum, no framing checks, no concatenation);
* ``zv_dask.open_zv(path).read(level=0)`` (a fresh handle each time: no cache);
* ``to_dask_dataframe(chunks_per_partition="auto").compute()`` (threaded scheduler);
* a small bbox read (one chunk, 100^3) against the floor of the shard objects it
  touches (the same floor, restricted to them);
* the reference ``zarr_vectors.types.points.read_points``;
* the cost of exact block lengths: building ``to_dask_array("positions")`` on a fresh
  handle (the shard indexes and each inner chunk's zstd header read, nothing decoded).

Prints medians and ratios to the floor.  Targets: full read <= 2x the floor, "auto"
<= 2.5x, bbox <= 1.2x the floor of its shards.  Results must agree (positions equal to
the reference's; the bbox equals numpy filtering of the full read).
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

SHARD = 4
BOX = (np.array([1010.0, 1010.0, 1010.0]), np.array([1110.0, 1110.0, 1110.0]))


def build(path: Path, n: int) -> None:
    from zarr_vectors import building as B

    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 2000, (n, 3)).astype(np.float32)
    B.write_points(str(path), pos, chunk_shape=(250.0,) * 3, bin_shape=(50.0,) * 3,
                   bounds=([0.0] * 3, [2000.0] * 3), shard_shape=SHARD, compressor="zstd",
                   vertex_attributes={"intensity": rng.random(n).astype(np.float32)})


def shard_files(path: Path, arrays=("vertices", "vertex_attributes/intensity"), only=None):
    out = []
    for a in arrays:
        base = path / "0" / a / "c"
        for f in sorted(base.rglob("*")):
            if f.is_file() and (only is None or f.relative_to(base).parts in only):
                out.append(f)
    return out


def floor(files, n_inner: int) -> int:
    """Read each shard object once and zstd-decode every stored inner chunk."""
    import numcodecs

    zstd = numcodecs.Zstd()
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            raw = fh.read()
        pairs = np.frombuffer(raw, "<u8", 2 * n_inner, len(raw) - 16 * n_inner - 4)
        mv = memoryview(raw)
        for off, nb in pairs.reshape(-1, 2).tolist():
            if off != 2**64 - 1:
                total += len(zstd.decode(mv[off:off + nb]))
    return total


def timed(fn, repeat, out):
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--data", default=str(Path(__file__).parent / "_data"))
    args = ap.parse_args(argv)

    import dask
    import zv_dask
    from zarr_vectors.types.points import read_points

    path = Path(args.data) / f"bench_shards_{args.points}_s{SHARD}_zstd.zarrvectors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        build(path, args.points)
        print(f"wrote {path} in {time.perf_counter() - t:.1f}s")
    store = zv_dask.open_zv(path)
    n_inner = SHARD ** 3
    files = shard_files(path)
    cells = {tuple(c) for c in store.chunks(0)}
    box_cells = {c for c in cells if all(BOX[0][i] // 250 <= c[i] <= BOX[1][i] // 250
                                         for i in range(3))}
    box_shards = {tuple(str(x // SHARD) for x in c) for c in box_cells}
    box_files = shard_files(path, only=box_shards)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, zarr {__import__('zarr').__version__}, numpy "
          f"{np.__version__}, dask {dask.__version__}, zarr-vectors "
          f"{__import__('zarr_vectors').__version__}")
    print(f"store: {args.points:,} points, {len(cells)} chunks, shard_shape {SHARD} "
          f"({len(files)} shard objects for vertices + intensity), zstd; median of "
          f"{args.repeat} interleaved runs, warm cache")

    full = store.read(level=0)
    ref = read_points(str(path), attribute_names=["intensity"])
    assert np.array_equal(full["positions"], ref["positions"]), "positions differ"
    p = full["positions"]
    want = p[np.all((p >= BOX[0]) & (p <= BOX[1]), axis=1)]
    got = store.read(level=0, bbox=BOX)["positions"]
    assert np.array_equal(got, want), "bbox read differs from numpy filtering"
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition="auto")
    assert len(ddf.compute(scheduler="threads")) == len(p)

    cases = {
        "floor (read + zstd)": lambda: floor(files, n_inner),
        "read(level=0)": lambda: zv_dask.open_zv(path, cache_size=0).read(level=0),
        '"auto" dataframe': lambda: zv_dask.open_zv(path).to_dask_dataframe(
            level=0, chunks_per_partition="auto").compute(scheduler="threads"),
        "bbox floor": lambda: floor(box_files, n_inner),
        "bbox read": lambda: zv_dask.open_zv(path, cache_size=0).read(level=0, bbox=BOX),
        "reference read_points": lambda: read_points(str(path),
                                                     attribute_names=["intensity"]),
        "block lengths": lambda: zv_dask.open_zv(path).to_dask_array("positions", level=0),
    }
    lengths = zv_dask.open_zv(path).to_dask_array("positions", level=0).chunks[0]
    assert sum(lengths) == len(p) and all(n > 0 for n in lengths), "block lengths inexact"
    times = {k: [] for k in cases}
    for _ in range(args.repeat):  # interleaved: load on the machine hits every case alike
        for k, fn in cases.items():
            timed(fn, 1, times[k])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'case':<24} {'seconds':>9} {'ratio':>7}  target")
    base = med["floor (read + zstd)"]
    for k, target in [("floor (read + zstd)", ""), ("read(level=0)", "<= 2"),
                      ('"auto" dataframe', "<= 2.5"), ("reference read_points", "")]:
        print(f"{k:<24} {med[k]:>9.4f} {med[k] / base:>7.2f}  {target}")
    bb = med["bbox floor"]
    print(f"{'bbox floor':<24} {bb:>9.4f} {1:>7.2f}  ({len(box_files)} shard objects, "
          f"{len(box_cells)} chunk)")
    print(f"{'bbox read':<24} {med['bbox read']:>9.4f} {med['bbox read'] / bb:>7.2f}  <= 1.2")
    print(f"{'block lengths':<24} {med['block lengths']:>9.4f} "
          f"{med['block lengths'] / base:>7.2f}  (to_dask_array build: headers only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
