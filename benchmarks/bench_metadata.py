"""Scale of the metadata path, side by side in one run.

    python benchmarks/bench_metadata.py [--keys 1000000] [--repeat 5] [--section all]

Section "keys" (parsing a level's presence list, ``nonempty_chunks``): builds a
synthetic vertices ``zarr.json`` whose ``nonempty_chunks`` lists ``--keys`` distinct
3-D keys (absolute coords with a negative origin, sorted as strings like the writer)
and prints the median time of:

1. ``parse_presence`` (strict validation + sorted linear indices), as zv_dask does it;
2. the key-parsing step alone (``parse_keys``);
3. the previous ``parse_presence``: one Python ``str`` -> ``int`` per field
   (``np.array(".".join(keys).split("."), dtype=np.int64)``), then ``np.unique`` of the
   linear indices (slow on numpy 2.x for a million values);
4. that previous key parsing alone.

Section "query" (planning a query on a level of ``--keys`` non-empty chunks, about a
cube of them): writes a metadata-only store (only ``zarr.json`` documents, no chunk
blob) to a temporary directory and prints the median time of ``open_zv``,
``to_dask_dataframe(level=0)``, ``optimize()`` of a filter that only the chunks of one
octant can satisfy (``x > mid & y > mid & z > mid``: pruning to 1/8 of the chunks with
no IO), and ``npartitions`` of the unfiltered frame; then, once, how long building the
optimized query's task graph takes (dask's own cost, one task per kept chunk).

Runs interleave, so machine load hits all of them alike; compare the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from zv_dask import _metadata as M  # noqa: E402


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


def bench_keys(n_keys: int, repeat: int):
    doc = vertices_doc(n_keys)
    arr = M.parse_array(doc, "vertices", "synthetic", 0)
    keys = doc["attributes"]["nonempty_chunks"]
    runs = {"parse_presence": lambda: M.parse_presence(doc, arr, "synthetic", 0),
            "parse_keys": lambda: M.parse_keys(keys, 3),
            "previous parse_presence": lambda: previous_presence(keys, arr),
            "previous key parsing": lambda: previous(keys, 3)}
    assert np.array_equal(runs["parse_keys"](), previous(keys, 3))
    assert np.array_equal(runs["parse_presence"]().linear, previous_presence(keys, arr))
    assert len(runs["parse_presence"]()) == n_keys
    times = {k: [] for k in runs}
    for _ in range(repeat):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    print(f"[keys] {n_keys:,} keys ({sum(map(len, keys)) / 1e6:.1f} MB of key text), "
          f"median of {repeat}, load average {_load()}")
    base = statistics.median(times["previous parse_presence"])
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"  {k:26s} {med:7.3f} s  (min {min(ts):.3f})  {med / base:5.2f}x previous "
              "parse_presence")


def metadata_only_store(path: Path, side: int) -> int:
    """A one-level point store of ``side**3`` non-empty chunks of 10 units, zarr.json
    documents only (the example store's documents as templates).  Returns the chunk
    count."""
    import zv_dask

    src = Path(zv_dask.example_store())
    root = json.loads((src / "zarr.json").read_text())
    zv = root["attributes"]["zarr_vectors"]
    zv.update(format_capabilities=[], chunk_shape=[10.0] * 3, base_bin_shape=[10.0] * 3,
              bounds=[[0.0] * 3, [10.0 * side] * 3])
    root["attributes"]["multiscales"][0]["datasets"] = \
        root["attributes"]["multiscales"][0]["datasets"][:1]
    root["attributes"]["ome"]["nodes"] = root["attributes"]["ome"]["nodes"][:1]
    level = json.loads((src / "0" / "zarr.json").read_text())
    level["attributes"]["zarr_vectors_level"].update(vertex_count=side ** 3 * 10,
                                                     arrays_present=["vertices"])
    verts = json.loads((src / "0" / "vertices" / "zarr.json").read_text())
    verts["shape"] = [side] * 3
    verts["attributes"]["nonempty_chunks"] = sorted(
        f"{i}.{j}.{k}" for i in range(side) for j in range(side) for k in range(side))
    (path / "0" / "vertices").mkdir(parents=True)
    (path / "zarr.json").write_text(json.dumps(root))
    (path / "0" / "zarr.json").write_text(json.dumps(level))
    (path / "0" / "vertices" / "zarr.json").write_text(json.dumps(verts))
    return side ** 3


def bench_query(n_keys: int, repeat: int):
    import zv_dask

    warm = zv_dask.open_zv(zv_dask.example_store()).to_dask_dataframe(level=0)  # imports
    warm[warm.x > 1].optimize()
    side = max(round(n_keys ** (1 / 3)), 2)
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "meta-only-0.zarrvectors"
        n = metadata_only_store(first, side)
        mid = 5.0 * side
        times = {k: [] for k in ("open_zv", "to_dask_dataframe", "optimize, 1 octant",
                                 "npartitions, unfiltered")}
        for r in range(repeat):
            # a fresh copy each time: dask shares expressions with equal names, so the
            # same store and query would find the previous run's pruning done
            path = Path(tmp) / f"meta-only-{r + 1}.zarrvectors"
            shutil.copytree(first, path)
            t = time.perf_counter()
            store = zv_dask.open_zv(str(path))
            times["open_zv"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ddf = store.to_dask_dataframe(level=0)
            times["to_dask_dataframe"].append(time.perf_counter() - t)
            q = ddf[(ddf.x > mid) & (ddf.y > mid) & (ddf.z > mid)]
            t = time.perf_counter()
            opt = q.optimize()
            kept = opt.npartitions
            times["optimize, 1 octant"].append(time.perf_counter() - t)
            t = time.perf_counter()
            total = ddf.npartitions
            times["npartitions, unfiltered"].append(time.perf_counter() - t)
        assert total == n and kept == (side - side // 2) ** 3, (total, kept)
        t = time.perf_counter()
        tasks = len(opt.dask)
        graph = time.perf_counter() - t
    print(f"[query] metadata-only store, {n:,} non-empty chunks, filter keeps {kept:,} "
          f"partitions; median of {repeat}, load average {_load()}")
    for k, ts in times.items():
        print(f"  {k:26s} {statistics.median(ts):7.3f} s  (min {min(ts):.3f})")
    print(f"  {'task graph of the query':26s} {graph:7.3f} s  ({tasks:,} tasks, once)")


def _load() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{load:.1f} on {os.cpu_count()} cores"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--section", choices=("all", "keys", "query"), default="all")
    args = ap.parse_args(argv)
    if args.section in ("all", "keys"):
        bench_keys(args.keys, args.repeat)
    if args.section in ("all", "query"):
        bench_query(args.keys, args.repeat)


if __name__ == "__main__":
    main()
