"""A handle opened before its store was rewritten with another dtype (issue 18, rule 10):
the dataframe and array paths raise StoreReadError naming the level, array (and chunk),
never rows decoded with the old dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import zv_dask
from zv_dask.errors import StoreReadError

N = 4000


def _frame():
    df = pd.DataFrame(np.random.default_rng(0).uniform(0, 4, (N, 3)), columns=list("xyz"))
    df["a"] = np.arange(N, dtype=np.float64)
    return df


@pytest.fixture
def store(tmp_path):
    p = str(tmp_path / "s.zarrvectors")
    zv_dask.to_zv(_frame(), p, chunk_shape=1)
    return p


def _rewrite(p):
    zv_dask.to_zv(_frame(), p, chunk_shape=1, dtype="float64", overwrite=True)


def _says_changed(err, chunk=True):
    e = err.value
    assert "changed since it was opened" in str(e) and "open" in str(e)
    assert e.level == 0 and e.array == "vertices"
    assert (e.chunk is not None) == chunk


CASES = [dict(), dict(chunks_per_partition="auto", partition_rows=500),
         dict(chunks_per_partition=4)]


@pytest.mark.parametrize("kw", CASES, ids=["per-chunk", "auto", "grouped"])
def test_opened_before_the_rewrite_built_after(store, kw):
    s = zv_dask.open_zv(store)
    s.to_dask_array()  # lists the level (plain integer partitions list nothing themselves)
    _rewrite(store)
    with pytest.raises(StoreReadError) as err:
        s.to_dask_dataframe(**kw)[["x", "y", "z"]].compute()
    _says_changed(err)
    with pytest.raises(StoreReadError):
        s.to_dask_array().compute()
    assert len(zv_dask.open_zv(store).to_dask_dataframe(**kw).compute()) == N  # reopened


def test_a_listing_after_the_rewrite_no_longer_adds_up(store):
    s = zv_dask.open_zv(store)
    _rewrite(store)
    with pytest.raises(StoreReadError) as err:
        s.to_dask_dataframe(chunks_per_partition="auto")
    _says_changed(err, chunk=False)  # found before any chunk is read
    with pytest.raises(StoreReadError):
        s.to_dask_array()


@pytest.mark.parametrize("kw", CASES, ids=["per-chunk", "auto", "grouped"])
def test_built_before_the_rewrite_computed_after(store, kw):
    s = zv_dask.open_zv(store)
    arr = s.to_dask_array()  # lists the level
    ddf = s.to_dask_dataframe(**kw)
    assert len(ddf[["x"]].compute()) == N
    _rewrite(store)
    for q in (lambda: ddf.compute(), lambda: ddf[["x"]].compute(),
              lambda: ddf[ddf.x > 1].compute(), lambda: len(ddf[ddf.x > 1]),
              lambda: ddf[ddf.a > 100].compute(), lambda: arr.compute()):
        with pytest.raises(StoreReadError) as err:
            q()
        _says_changed(err)


def test_a_fresh_handle_reads_the_rewritten_store(store):
    _rewrite(store)
    s = zv_dask.open_zv(store)
    got = s.to_dask_dataframe().compute()
    assert len(got) == N and got.x.dtype == np.float64
    assert got.x.between(0, 4).all()


def _says_rewritten(err, array="vertices"):
    e = err.value
    assert "changed since it was opened" in str(e) and "open_zv" in str(e)
    assert e.level == 0 and e.array == array


QUERIES = {
    "all": lambda d: d.compute(),
    "positions": lambda d: d[["x", "y", "z"]].compute(),
    "filter": lambda d: d[d.x > 1].compute(),
    "filtered-len": lambda d: len(d[d.x > 1]),
}


@pytest.mark.parametrize("query", sorted(QUERIES))
def test_a_handle_that_never_listed_the_level_raises_before_decoding(store, query):
    # the default frame (one partition per chunk) of a fresh handle: no listing, so no
    # row counts to check; the frame re-reads its arrays' documents once per compute
    s = zv_dask.open_zv(store)
    ddf = s.to_dask_dataframe()
    assert len(QUERIES["positions"](ddf)) == N
    _rewrite(store)
    with pytest.raises(StoreReadError) as err:
        QUERIES[query](ddf)
    _says_rewritten(err)
    with pytest.raises(StoreReadError):  # built after the rewrite on the old handle
        QUERIES[query](s.to_dask_dataframe())
    # a query that decodes no position reads no vertex chunk: still right
    assert ddf.a.sum().compute() == N * (N - 1) / 2


def test_an_attribute_rewritten_with_another_dtype(tmp_path):
    p = str(tmp_path / "a.zarrvectors")
    df = _frame()
    zv_dask.to_zv(df, p, chunk_shape=1)
    s = zv_dask.open_zv(p)
    ddf = s.to_dask_dataframe()[["a"]]
    zv_dask.to_zv(df.astype({"a": np.float32}), p, chunk_shape=1, overwrite=True)
    with pytest.raises(StoreReadError) as err:
        ddf.compute()
    _says_rewritten(err, "vertex_attributes/a")
    assert "float32" in str(err.value) and "float64" in str(err.value)


def test_compressed_vertices_rewritten_raise_too(tmp_path):
    # blob sizes give no rows for compressed cells, even after a listing
    p = str(tmp_path / "z.zarrvectors")
    zv_dask.to_zv(_frame(), p, chunk_shape=1, compressor="zstd")
    s = zv_dask.open_zv(p)
    ddf = s.to_dask_dataframe(chunks_per_partition="auto", partition_rows=500)
    zv_dask.to_zv(_frame(), p, chunk_shape=1, compressor="zstd", dtype="float64",
                  overwrite=True)
    with pytest.raises(StoreReadError) as err:
        ddf[["x"]].compute()
    _says_rewritten(err)


def test_the_check_runs_once_per_compute_and_needs_no_rewrite(store):
    s = zv_dask.open_zv(store)
    ddf = s.to_dask_dataframe()
    graph = dict(ddf[["x"]].optimize().__dask_graph__())
    guards = [k for k in graph if str(k).startswith("('zv-unchanged")]
    assert len(guards) == 1 and ddf.npartitions > 1
    # every chunk task waits for it
    deps = [k for k, t in graph.items() if k not in guards and guards[0] in t.dependencies]
    assert len(deps) == ddf.npartitions
    got = ddf.compute()
    assert len(got) == N and np.allclose(np.sort(got.a), np.arange(N))
