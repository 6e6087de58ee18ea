"""A local write of a file reader's frame decodes each point range once: the pre-pass
parks the rows it read, the write reads them back, and the store is the one written
from the same rows in memory; the parked files are gone after success or failure."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
from dask.callbacks import Callback

import zv_dask
from test_ingest import write_las


class TaskNames(Callback):
    """The name of every task the local scheduler runs (dask's own instrumentation)."""

    def __init__(self):
        super().__init__()
        self.names = []

    def _pretask(self, key, dsk, state):
        self.names.append(key[0] if isinstance(key, tuple) else key)


def store_files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("levels", [1])
def test_each_range_is_read_once_and_the_store_is_the_in_memory_one(tmp_path, levels):
    src = tmp_path / "tile.las"
    write_las(src, 5_000, 3, offsets=(500_000.0, 4_000_000.0, 0.0), scales=(0.01,) * 3,
              span=100_000, seed=11)
    df = zv_dask.read_las(src, points_per_partition=1_000)
    assert df.npartitions == 5
    names = TaskNames()
    with names, dask.config.set(scheduler="threads"):
        zv_dask.to_zv(df, tmp_path / "a" / "s.zv", chunk_shape=128, levels=levels,
                      dtype="float64")
    # the reader's tasks are named read-... (fused with dask's string conversion)
    reads = [n for n in names.names if str(n).startswith("read-")]
    assert len(reads) == 5  # five ranges, each read once (twice without the parking)
    zv_dask.to_zv(df.compute(), tmp_path / "b" / "s.zv", chunk_shape=128, levels=levels,
                  dtype="float64")
    a, b = store_files(tmp_path / "a" / "s.zv"), store_files(tmp_path / "b" / "s.zv")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    got = zv_dask.open_zv(tmp_path / "a" / "s.zv").to_dask_dataframe(level=0).compute()
    want = df.compute()
    np.testing.assert_array_equal(np.sort(got.gps_time.to_numpy()),
                                  np.sort(want.gps_time.to_numpy()))


def test_parked_rows_are_removed_after_a_write_and_after_a_refused_one(tmp_path):
    src = tmp_path / "tile.las"
    write_las(src, 3_000, 1, seed=12)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    df = zv_dask.read_las(src, points_per_partition=1_000)
    with dask.config.set({"temporary-directory": str(scratch)}):
        zv_dask.to_zv(df, tmp_path / "ok.zv", chunk_shape=100)
        assert list(scratch.iterdir()) == []
        with pytest.raises(zv_dask.WriteInputError, match="outside"):
            zv_dask.to_zv(df, tmp_path / "refused.zv", chunk_shape=100,
                          bounds=([0, 0, 0], [1, 1, 1]))
        assert list(scratch.iterdir()) == []
    assert zv_dask.open_zv(tmp_path / "ok.zv").vertex_count(0) == 3_000
