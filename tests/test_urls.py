"""fsspec URLs other than S3: memory:// and file:// read like local paths."""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pytest

import zv_dask


def _to_memory(local: str, name: str) -> str:
    fs = fsspec.filesystem("memory")
    root = f"/{name}.zarrvectors"
    for f in Path(local).rglob("*"):
        if f.is_file():
            fs.pipe(f"{root}/{f.relative_to(local).as_posix()}", f.read_bytes())
    return f"memory://{root}"


@pytest.mark.parametrize("name", ["points_pyramid", "points_sharded", "points_2d"])
def test_memory_and_file_urls_equal_local(store_path, name):
    local = zv_dask.open_zv(store_path(name))
    for url in (_to_memory(store_path(name), f"mem-{name}"), "file://" + store_path(name)):
        remote = zv_dask.open_zv(url)
        assert remote.url == url
        for level in local.levels:
            a, b = remote.read(level=level), local.read(level=level)
            np.testing.assert_array_equal(a["positions"], b["positions"])
            for k in b["attributes"]:
                np.testing.assert_array_equal(a["attributes"][k], b["attributes"][k])
        ddf = remote.to_dask_dataframe(level=0)
        np.testing.assert_array_equal(ddf.compute()[list(local.axes)].to_numpy(),
                                      local.read()["positions"])
        arr = remote.to_dask_array(level=0)
        if local.metadata.levels[0].vertices.access == "plain":  # sizes give exact lengths
            assert arr.shape == local.read()["positions"].shape
        np.testing.assert_array_equal(arr.compute(), local.read()["positions"])


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(zv_dask.StoreNotFoundError, match="protocol|URL"):
        zv_dask.open_zv("nosuchproto://bucket/x.zarrvectors")
