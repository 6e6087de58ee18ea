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
