"""The local write path: rows parked in spill files between keying and building (no
in-memory shuffle), pandas input split into views, and the sparse-grid helpers it
uses; stores compared file by file with the reference writer's."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd

import zv_dask
from zv_dask.collections.build import pandas_partitions
from zv_dask.io.spill import SpillDir
from zv_dask.write import grid as G

from writehelpers import assert_same_store, reference, sample


def test_a_local_write_through_spill_files_is_the_reference_store_and_leaves_none(tmp_path):
    rng = np.random.default_rng(21)
    pos, attrs, df = sample(6000, rng)
    (tmp_path / "ref").mkdir()
    ours = tmp_path / "ours.zarrvectors"  # same store name as the reference's
    ref = reference(tmp_path / "ref" / ours.name, pos, attrs, levels=3,
                    chunk_shape=(200.0,) * 3)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # 7 input partitions of views, several blocks per output task
    with dask.config.set({"temporary-directory": str(scratch)}):
        zv_dask.to_zv(pandas_partitions(df, 900), ours, chunk_shape=200, levels=3)
    assert_same_store(ref, ours)
    assert list(scratch.iterdir()) == []  # the spill folder is removed after the root


def test_a_pandas_frame_is_split_into_views_not_copies():
    df = pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0) * 2})
    ddf = pandas_partitions(df, 4)
    parts = [p.compute() for p in ddf.to_delayed()]
    assert [len(p) for p in parts] == [4, 4, 2]
    assert all(np.shares_memory(p["x"].to_numpy(), df["x"].to_numpy()) for p in parts)
    assert pandas_partitions(df.iloc[:0], 4).npartitions == 1


def test_spill_files_round_trip_and_are_removed(tmp_path):
    spill = SpillDir(str(tmp_path))
    a, b = np.arange(5, dtype=np.int32), np.ones((5, 3), np.float32)
    spill.put(2, 0, [a, b[::2]])
    got = spill.take(2, 0, 2)
    assert got[0].tolist() == a.tolist() and got[1].tolist() == b[::2].tolist()
    assert list(tmp_path.iterdir()) == [tmp_path / spill.path.split("/")[-1]]
    assert list((tmp_path / spill.path.split("/")[-1]).iterdir()) == []  # taken: deleted
    spill.remove()
    assert list(tmp_path.iterdir()) == []


def test_the_int64_ranker_and_chunk_counts_agree_with_the_row_scalars():
    rng = np.random.default_rng(3)
    coords = rng.integers(-6, 9, (4000, 3))
    keys = G.sorted_keys(coords)
    ranker = G.Ranker(keys)
    for q in (coords, np.concatenate([coords, [[40, 0, 0]]]), coords[:0]):
        want, found = G.ranks(keys, q)
        got, got_found = ranker.ranks(q)
        assert got_found == found
        if found:
            assert got.tolist() == want.tolist()
    wide = np.array([[0, 0], [2**61, 3]])  # span beyond int64: the row scalars answer
    assert G.Ranker(G.sorted_keys(wide)).ranks(wide)[1]
    pos = rng.uniform(-50, 120, (3000, 3)).astype(np.float32)
    u, n = G.chunk_counts(pos, (10.0,) * 3, (2,) * 3)
    chunks = np.floor_divide(np.floor(pos.astype(np.float64) / 10).astype(np.int64), 2)
    want_u, want_n = G.unique_rows(chunks)
    assert dict(zip(map(tuple, u.tolist()), n.tolist())) == \
        dict(zip(map(tuple, want_u.tolist()), want_n.tolist()))


def test_a_failed_local_write_removes_its_spill_files(tmp_path):
    from dask.callbacks import Callback

    class StopAtFirstBlock(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if "write_partition" in str(key[0] if isinstance(key, tuple) else key):
                raise KeyboardInterrupt("cancelled by the test")

    rng = np.random.default_rng(5)
    df = sample(3000, rng, categorical=False)[2]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with dask.config.set({"temporary-directory": str(scratch), "scheduler": "sync"}), \
            StopAtFirstBlock():
        try:
            zv_dask.to_zv(pandas_partitions(df, 500), tmp_path / "s.zarrvectors",
                          chunk_shape=200, levels=2)
        except KeyboardInterrupt:
            pass
        else:  # pragma: no cover - the callback always stops it
            raise AssertionError("the write was not cancelled")
    assert list(scratch.iterdir()) == []
