"""A worker SIGKILLed right after a block-writing task wrote its cells (before its result
reached the scheduler) on a real LocalCluster: the task runs again elsewhere, writes the
same bytes, and the store equals an undisturbed write."""

from __future__ import annotations

import os
import signal

import dask.dataframe as dd
import numpy as np
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

import zv_dask
from writehelpers import assert_valid, files, sample


class KillAfterFirstWrite(WorkerPlugin):
    """SIGKILL this worker when a write task finishes, once per test (marker file)."""

    name = "kill-after-first-write"

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        name = key[0] if isinstance(key, tuple) else key
        if finish == "memory" and "write_partition" in str(name):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)


def test_worker_killed_mid_write_still_gives_the_same_store(tmp_path):
    _, _, df = sample(3000, np.random.default_rng(31), lo=0, hi=1999, multi=False)
    ddf = dd.from_pandas(df, npartitions=4)
    (tmp_path / "calm").mkdir()
    (tmp_path / "killed").mkdir()
    calm = tmp_path / "calm" / "pts.zarrvectors"
    killed = tmp_path / "killed" / "pts.zarrvectors"
    zv_dask.to_zv(ddf, calm, chunk_shape=500, levels=2)
    marker = str(tmp_path / "killed-once")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(KillAfterFirstWrite(marker))
        zv_dask.to_zv(ddf, killed, chunk_shape=500, levels=2)
    assert os.path.exists(marker)  # a worker really died mid-write
    assert files(killed) == files(calm)
    assert_valid(killed)
