"""Planning a bbox costs O(non-empty chunks), whatever the grid's declared shape.

A small reference-written store is copied with its grid arrays claiming huge shapes
(20001 x 20001 x 11 and 2e6^3 cells).  Bbox reads of the copies run in a child process
whose address space is capped a little above its baseline, so planning that enumerated
the box's cells fails with MemoryError there instead of exhausting the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr_vectors.building as B

import zv_dask

LIMIT = 1536 * 2**20  # address space the child may add after its warm-up

BOXES = {
    "data": ([0, 0, 0], [20, 20, 10]),
    "inner": ([3.5, 2.0, 1.0], [15.0, 17.5, 9.0]),
    "declared-grid": ([0, 0, 0], [20000, 20000, 10]),
    "open": ([-np.inf] * 3, [np.inf] * 3),
    "empty-far": ([1e5, 1e5, 0], [1.9e6, 1.9e6, 1e6]),
}

CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import zv_dask

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmSize")

    path, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    boxes = {k: (np.array(lo, float), np.array(hi, float))
             for k, (lo, hi) in json.loads(sys.argv[4]).items()}
    store = zv_dask.open_zv(path)
    store.read()  # warm-up: imports, pools and caches exist before the cap
    store.to_dask_dataframe().compute(scheduler="sync")
    cap = vm_bytes() + limit
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    res = {}
    for name, box in boxes.items():
        r = store.read(bbox=box)
        res[name + "/read_x"] = r["positions"]
        res[name + "/read_v"] = r["attributes"]["v"]
        df = store.to_dask_dataframe(bbox=box).compute(scheduler="sync")
        res[name + "/ddf_x"] = df[["x", "y", "z"]].to_numpy()
        items = list(store.iter_chunks(bbox=box))
        res[name + "/iter_x"] = (np.concatenate([d["positions"] for _, d in items])
                                 if items else np.zeros((0, 3), np.float32))
        res[name + "/chunks"] = np.array(store.chunks(0, box), np.int64).reshape(-1, 3)
        res[name + "/parts"] = np.array(list(store.partitions(bbox=box)["chunk"]),
                                        np.int64).reshape(-1, 3)
    np.savez(out, **res)
""")

pytestmark = pytest.mark.filterwarnings("ignore:This chunk_shape allocates")


@pytest.fixture(scope="module")
def sparse_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    rng = np.random.default_rng(7)
    pos = rng.uniform([0, 0, 0], [20, 20, 10], (60, 3))
    path = root / "base"
    B.write_points(str(path), pos, chunk_shape=(1.0, 1.0, 1.0), bounds=([0, 0, 0], [20, 20, 10]),
                   vertex_attributes={"v": np.arange(60, dtype=np.float32)})
    return path


def _claim_shape(src: Path, dst: Path, shape) -> None:
    """Copy the store with every level-0 grid array claiming ``shape`` (same origin, so
    each cell keeps its path)."""
    shutil.copytree(src, dst)
    for doc_path in (dst / "0").rglob("zarr.json"):
        doc = json.loads(doc_path.read_text())
        if doc.get("node_type") == "array" and len(doc.get("shape", ())) == 3:
            doc["shape"] = list(shape)
            doc_path.write_text(json.dumps(doc))


@pytest.mark.parametrize("shape", [(20001, 20001, 11), (2_000_000,) * 3])
def test_bbox_planning_is_independent_of_the_declared_grid(sparse_store, tmp_path, shape):
    path = tmp_path / "claimed"
    _claim_shape(sparse_store, path, shape)
    store = zv_dask.open_zv(str(path))
    assert store.metadata.levels[0].presence.shape == shape
    full = store.read()  # no bbox: the presence list only
    all_chunks = np.array(store.chunks(0), np.int64)
    out = tmp_path / "res.npz"
    env = {**os.environ, "MALLOC_ARENA_MAX": "2",
           "PYTHONPATH": os.pathsep.join([str(Path(zv_dask.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    boxes = {k: [list(map(float, lo)), list(map(float, hi))] for k, (lo, hi) in BOXES.items()}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out), str(LIMIT),
                           json.dumps(boxes)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = np.load(out)
    p = full["positions"].astype(np.float64)
    for name, (lo, hi) in BOXES.items():
        m = np.all((p >= lo) & (p <= hi), axis=1)
        np.testing.assert_array_equal(res[name + "/read_x"], full["positions"][m])
        np.testing.assert_array_equal(res[name + "/read_v"], full["attributes"]["v"][m])
        np.testing.assert_array_equal(res[name + "/ddf_x"], full["positions"][m])
        np.testing.assert_array_equal(res[name + "/iter_x"], full["positions"][m])
        cells = np.floor(p[m]).astype(np.int64)  # chunk 1.0: the writer's floor(p / 1.0)
        planned = {tuple(c) for c in res[name + "/chunks"].tolist()}
        assert {tuple(c) for c in cells.tolist()} <= planned
        assert planned <= {tuple(c) for c in all_chunks.tolist()}
        np.testing.assert_array_equal(res[name + "/parts"], res[name + "/chunks"])
    assert len(res["empty-far/chunks"]) == 0 and len(res["open/chunks"]) == len(all_chunks)
