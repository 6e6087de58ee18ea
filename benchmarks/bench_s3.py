"""Full read of the 5,000,000-point store from an S3-compatible server, side by side:

    python benchmarks/bench_s3.py [--points 5000000] [--repeat 3] [--data benchmarks/_data]

Starts ``moto_server`` on 127.0.0.1, uploads the store written by bench_read.py, then
times (interleaved, medians) level 0 with its ``intensity`` attribute read by

* zv_dask: ``open_zv("s3://...").read(level=0, attributes=["intensity"])``
* the reference: ``read_points(FsspecStore(s3://...), attribute_names=["intensity"])``
* the floor: one concurrent s3fs ``cat`` of exactly the vertex and intensity blobs

and counts each one's requests in an extra pass through a counting proxy.
moto_server spends ~5 ms of server time per request, so the request count dominates.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_read import build  # noqa: E402
from s3server import ACCESS_KEY, SECRET_KEY, FaultProxy, MotoServer  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", default=str(HERE / "_data"))
    args = ap.parse_args(argv)

    import s3fs
    import zarr
    from zarr.storage import FsspecStore
    from zarr_vectors.types.points import read_points

    import zv_dask

    path = Path(args.data) / f"bench_points_{args.points}_b50.zarrvectors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path, args.points)
    server = MotoServer()
    proxy = FaultProxy(server.port)
    try:
        server.client().create_bucket(Bucket="bench")
        t = time.perf_counter()
        server.upload("bench", path, "points.zarrvectors")
        print(f"uploaded {path.name} in {time.perf_counter() - t:.1f}s")

        def opts(endpoint):
            return {"endpoint_url": endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY}

        url = "s3://bench/points.zarrvectors"
        local = zv_dask.open_zv(path)
        keys = [f"bench/points.zarrvectors/0/{a}/c/" + "/".join(map(str, c))
                for a in ("vertices", "vertex_attributes/intensity") for c in local.chunks(0)]

        def ours(endpoint):
            return zv_dask.open_zv(url, storage_options=opts(endpoint)).read(
                level=0, attributes=["intensity"])

        def reference(endpoint):
            store = FsspecStore.from_url(url, storage_options=opts(endpoint), read_only=True)
            return read_points(store, level=0, attribute_names=["intensity"])

        def floor(endpoint):
            fs = s3fs.S3FileSystem(skip_instance_cache=True, max_concurrency=1, **opts(endpoint))
            return fs.cat(keys)

        want = local.read(level=0, attributes=["intensity"])
        np.testing.assert_array_equal(ours(server.url)["positions"], want["positions"])
        np.testing.assert_array_equal(reference(server.url)["positions"], want["positions"])
        times = collections.defaultdict(list)
        for _ in range(args.repeat):
            for name, fn in (("zv_dask", ours), ("reference", reference), ("floor", floor)):
                t = time.perf_counter()
                fn(server.url)
                times[name].append(time.perf_counter() - t)
        counts = {}
        for name, fn in (("zv_dask", ours), ("reference", reference), ("floor", floor)):
            proxy.reset()
            fn(proxy.url)
            reqs = proxy.requests()
            counts[name] = collections.Counter(r.split()[0] + (" LIST" if "list-type" in r else "")
                                               for r in reqs)
        print(f"zarr {zarr.__version__}, s3fs {s3fs.__version__}; {args.points:,} points, "
              f"{len(local.chunks(0))} chunks; median of {args.repeat} interleaved runs")
        base = statistics.median(times["zv_dask"])
        print(f"{'reader':<10} {'seconds':>8} {'zv_dask/x':>10}  requests")
        for name in ("zv_dask", "reference", "floor"):
            m = statistics.median(times[name])
            print(f"{name:<10} {m:>8.2f} {base / m:>10.2f}  {dict(counts[name])}")
    finally:
        proxy.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
