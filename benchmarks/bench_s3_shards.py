"""Sharded full read from an S3-compatible server against obstore's concurrent-GET floor:

    python benchmarks/bench_s3_shards.py [--points 2000000] [--repeat 5] [--data benchmarks/_data]

Starts ``moto_server`` on 127.0.0.1 and uploads the store of bench_shards.py (reference
writer, chunk 250, ``shard_shape=4`` + zstd: 8 shard objects per array), then times,
interleaved (medians):

* floor: every shard object of ``vertices`` and ``intensity`` fetched with obstore and
  every inner chunk zstd-decoded (the index parsed with numpy, nothing checked or
  concatenated); the fetch both ways, ``get_async`` of all objects at once in one event
  loop and ``get`` one after another, the faster being the floor (moto_server serves
  concurrent GETs slower than one at a time);
* the same floor with s3fs ``cat`` as the fetch (the client zv_dask reads through);
* ``read(level=0, attributes=["intensity"])`` through s3fs, on a handle opened (and its
  level listed) before the clock starts, so the shard indexes are read in the timing;
* the ``"auto"`` dataframe of the same, threaded scheduler;

and counts each one's requests in an extra pass through a logging proxy (GETs per shard
object, HEADs).  Target: <= 2 GET per shard object, <= 1.2x the floor.
"""

from __future__ import annotations

import argparse
import asyncio
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
from bench_shards import SHARD, build, shard_files  # noqa: E402
from s3server import ACCESS_KEY, SECRET_KEY, FaultProxy, MotoServer  # noqa: E402

BUCKET, PREFIX = "bench", "shards.zarrvectors"


def _obstore(endpoint: str):
    from obstore.store import S3Store

    return S3Store(BUCKET, endpoint=endpoint, access_key_id=ACCESS_KEY,
                   secret_access_key=SECRET_KEY, region="us-east-1",
                   client_options={"allow_http": True})


def fetch_concurrent(endpoint: str, keys: list) -> list:
    """obstore ``get_async`` of every object at once, one event loop."""
    import obstore

    store = _obstore(endpoint)

    async def fetch_all():
        async def one(key):
            return await (await obstore.get_async(store, key)).bytes_async()
        return await asyncio.gather(*(one(k) for k in keys))
    return asyncio.run(fetch_all())


def fetch_sequential(endpoint: str, keys: list) -> list:
    """obstore ``get`` of one object after another (one connection)."""
    import obstore

    store = _obstore(endpoint)
    return [obstore.get(store, k).bytes() for k in keys]


def fetch_s3fs(endpoint: str, keys: list) -> list:
    """s3fs ``cat`` of every object at once (the client zv_dask reads through)."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=ACCESS_KEY, secret=SECRET_KEY,
                           skip_instance_cache=True)
    got = fs.cat([f"{BUCKET}/{k}" for k in keys])
    return [got[f"{BUCKET}/{k}"] for k in keys]


def decode(objects: list, n_inner: int) -> int:
    """Every inner chunk of the shard objects zstd-decoded (index parsed with numpy)."""
    import numcodecs

    zstd = numcodecs.Zstd()
    total = 0
    for raw in objects:
        raw = memoryview(raw)
        pairs = np.frombuffer(raw, "<u8", 2 * n_inner, len(raw) - 16 * n_inner - 4)
        for off, nb in pairs.reshape(-1, 2).tolist():
            if off != 2**64 - 1:
                total += len(zstd.decode(raw[off:off + nb]))
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", default=str(HERE / "_data"))
    args = ap.parse_args(argv)

    import s3fs

    import zv_dask

    path = Path(args.data) / f"bench_shards_{args.points}_s{SHARD}_zstd.zarrvectors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path, args.points)
    keys = [f"{PREFIX}/{f.relative_to(path).as_posix()}" for f in shard_files(path)]
    n_inner = SHARD ** 3
    server = MotoServer()
    proxy = FaultProxy(server.port)
    try:
        server.client().create_bucket(Bucket=BUCKET)
        t = time.perf_counter()
        server.upload(BUCKET, path, PREFIX)
        print(f"uploaded {path.name} in {time.perf_counter() - t:.1f}s")
        url = f"s3://{BUCKET}/{PREFIX}"

        def opened(endpoint):
            store = zv_dask.open_zv(url, storage_options={
                "endpoint_url": endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY,
                "skip_instance_cache": True}, cache_size=0)
            store.chunks(0)  # metadata and listing before the clock starts
            return store

        def read(store):
            return store.read(level=0, attributes=["intensity"])

        def auto(store):
            return store.to_dask_dataframe(level=0, attributes=["intensity"],
                                           chunks_per_partition="auto").compute(
                                               scheduler="threads")

        want = zv_dask.open_zv(path).read(level=0, attributes=["intensity"])
        got = read(opened(server.url))
        np.testing.assert_array_equal(got["positions"], want["positions"])
        assert len(auto(opened(server.url))) == want["vertex_count"]
        decoded = decode(fetch_concurrent(server.url, keys), n_inner)
        assert decoded >= want["positions"].nbytes + want["vertex_count"] * 4, decoded

        def floor(fetch):
            return lambda endpoint, store: decode(fetch(endpoint, keys), n_inner)

        cases = {
            "obstore all at once": floor(fetch_concurrent),
            "obstore one by one": floor(fetch_sequential),
            "s3fs cat + decode": floor(fetch_s3fs),
            "read(level=0)": lambda endpoint, store: read(store),
            '"auto" dataframe': lambda endpoint, store: auto(store),
        }
        ours = ("read(level=0)", '"auto" dataframe')
        times = collections.defaultdict(list)
        for _ in range(args.repeat):  # interleaved: load hits every case alike
            for name, fn in cases.items():
                store = opened(server.url) if name in ours else None
                t = time.perf_counter()
                fn(server.url, store)
                times[name].append(time.perf_counter() - t)
        counts = {}
        for name, fn in cases.items():
            store = opened(proxy.url) if name in ours else None
            proxy.reset()
            fn(proxy.url, store)
            shard_gets = collections.Counter(line.split(" ", 1)[1].split("?")[0]
                                             for line in proxy.requests("GET")
                                             if "/c/" in line)
            counts[name] = (len(proxy.requests()), max(shard_gets.values()),
                            len(proxy.requests("HEAD")))
        print(f"s3fs {s3fs.__version__}, obstore {__import__('obstore').__version__}; "
              f"{args.points:,} points, {len(keys)} shard objects (vertices + intensity, "
              f"{n_inner} inner chunks each); median of {args.repeat} interleaved runs")
        med = {k: statistics.median(v) for k, v in times.items()}
        base = min(med["obstore all at once"], med["obstore one by one"])
        print(f"floor: the faster obstore fetch + decode ({base:.3f} s)")
        print(f"{'case':<20} {'seconds':>8} {'/floor':>6}  requests  max GET/shard  HEAD")
        for name in cases:
            n, per_shard, heads = counts[name]
            print(f"{name:<20} {med[name]:>8.3f} {med[name] / base:>6.2f}  {n:>8}  "
                  f"{per_shard:>13}  {heads:>4}")
    finally:
        proxy.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
