"""Parsing a level's presence list (``nonempty_chunks``), side by side in one run.

    python benchmarks/bench_metadata.py [--keys 1000000] [--repeat 5]

Builds a synthetic vertices ``zarr.json`` whose ``nonempty_chunks`` lists ``--keys``
distinct 3-D keys (absolute coords with a negative origin, sorted as strings like the
writer; the document goes through ``json.loads`` as a store's reader gets it) and
prints the median time of:

1. ``parse_presence`` (strict validation + sorted linear indices), as zv_dask does it;
2. the key-parsing step alone (``parse_keys``);
3. the previous ``parse_presence``: one Python ``str`` -> ``int`` per field
   (``np.array(".".join(keys).split("."), dtype=np.int64)``), then ``np.unique`` of the
   linear indices (slow on numpy 2.x for a million values);
4. that previous key parsing alone.

Runs interleave, so machine load hits all of them alike; compare the ratio.

Then, on a store whose level lists the same number of chunks (metadata only, no
blobs: nothing here reads a chunk), the median time of planning a query:
``to_dask_dataframe`` (one partition per chunk and ``"auto"``), and building plus
optimizing ``ddf[(ddf.x > a) & (ddf.y > a) & (ddf.z > a)]`` (one octant of the
chunks can match) up to its pruned partition count; each run moves ``a`` within its
chunk, so that no run finds the previous one's pruning in dask's shared expressions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from zv_dask.format import metadata as M  # noqa: E402


def vertices_doc(n_keys: int, seed: int = 0) -> dict:
    side = int(np.ceil(n_keys ** (1 / 3))) + 1
    rng = np.random.default_rng(seed)
    lin = np.sort(rng.choice(side ** 3, n_keys, replace=False))
    coords = np.stack(np.unravel_index(lin, (side,) * 3), 1) - side // 3  # negative origin
    keys = sorted(".".join(map(str, c)) for c in coords.tolist())
    doc = {"zarr_format": 3, "node_type": "array", "shape": [side] * 3,
          "data_type": "variable_length_bytes",
          "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1, 1]}},
          "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
          "codecs": [{"name": "vlen-bytes", "configuration": {}}],
          "attributes": {"nonempty_chunks": keys, "zv_array": "vertices", "dtype": "float32",
                         "chunk_grid_origin": [-(side // 3)] * 3}}
    # as a store's reader gets it: from json.loads (key strings in list order in memory)
    return json.loads(json.dumps(doc))


def previous(keys, rank):
    return np.array(".".join(keys).split(".") if keys else [], dtype=np.int64).reshape(-1, rank)


def previous_presence(keys, arr):
    idx = previous(keys, arr.rank) - np.asarray(arr.origin, np.int64)
    if (idx < 0).any() or (idx >= np.asarray(arr.shape)).any():
        raise ValueError("outside")
    return np.unique(np.ravel_multi_index(idx.T, arr.shape))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    doc = vertices_doc(args.keys)
    arr = M.parse_array(doc, "vertices", "synthetic", 0)
    keys = doc["attributes"]["nonempty_chunks"]
    runs = {"parse_presence": lambda: M.parse_presence(doc, arr, "synthetic", 0),
            "parse_keys": lambda: M.parse_keys(keys, 3),
            "previous parse_presence": lambda: previous_presence(keys, arr),
            "previous key parsing": lambda: previous(keys, 3)}
    assert np.array_equal(runs["parse_keys"](), previous(keys, 3))
    assert np.array_equal(runs["parse_presence"]().linear, previous_presence(keys, arr))
    assert len(runs["parse_presence"]()) == args.keys
    times = {k: [] for k in runs}
    for _ in range(args.repeat):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.keys:,} keys ({sum(map(len, keys)) / 1e6:.1f} MB of key text), "
          f"median of {args.repeat}, load average {load:.1f} on {os.cpu_count()} cores")
    base = statistics.median(times["previous parse_presence"])
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"  {k:26s} {med:7.3f} s  (min {min(ts):.3f})  {med / base:5.2f}x previous "
              "parse_presence")
    planning(args)


def planning(args):
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_dask import synthetic_store

    store, _ = synthetic_store(args.keys)
    side = int(np.ceil(args.keys ** (1 / 3)))
    mid = side * 10.0 / 2  # synthetic chunks are 10 wide from 0

    def build(**kw):
        return store.to_dask_dataframe(level=0, **kw)

    runs = iter(range(1, 10**9))

    def octant(**kw):
        # a bound moved within the same chunk each run: dask shares expressions with
        # equal names, so repeating the same query would find its pruning already done
        a = mid + next(runs) * 1e-6
        ddf = build(**kw)
        q = ddf[(ddf.x > a) & (ddf.y > a) & (ddf.z > a)]
        return q.optimize().npartitions

    print(f"\nplanning on a level of {args.keys:,} chunks (metadata only), median of "
          f"{args.repeat}:")
    for label, kw in (("one partition per chunk", {}),
                      ('chunks_per_partition="auto"', {"chunks_per_partition": "auto"})):
        full = build(**kw).npartitions
        n = octant(**kw)
        for what, fn in (("to_dask_dataframe", lambda: build(**kw)),
                         ("  + octant filter, optimize", lambda: octant(**kw))):
            ts = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            print(f"  {label:28s} {what:30s} {statistics.median(ts):7.3f} s")
        print(f"  {label:28s} partitions: {full:,} -> {n:,} after the filter")


if __name__ == "__main__":
    main()
