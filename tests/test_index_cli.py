"""``zv-dask index STORE``: the owner column, written as the reference writes it.

Each store is written by the reference writers, copied twice, one copy indexed by
``zarr_vectors.building.build_fragment_owner_index`` and the other by ``zv-dask
index``: the two trees must be byte for byte the same, and the reference validator
must accept ours."""

from __future__ import annotations

import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

import zv_dask
from test_object_regions import boxes, brute_force, check
from writehelpers import assert_valid
from zv_dask.cli import main

warnings.filterwarnings("ignore", module="zarr_vectors")


def tree(path: Path) -> dict:
    """{relative path: bytes} of every file under ``path``."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("name", ["streamlines", "web_graph", "tree_skeleton", "tri_mesh",
                                  "edge_cases"])
def test_index_equals_the_reference_and_validates(store_path, tmp_path, name, capsys):
    from zarr_vectors import building as B

    ours, ref = tmp_path / "ours.zarrvectors", tmp_path / "ref.zarrvectors"
    shutil.copytree(store_path(name), ours)
    shutil.copytree(store_path(name), ref)
    B.build_fragment_owner_index(str(ref))
    assert main(["index", str(ours)]) == 0
    assert "fragment_attributes/object_id" in capsys.readouterr().out
    got, want = tree(ours), tree(ref)
    assert sorted(got) == sorted(want)
    for rel in want:
        assert got[rel] == want[rel], rel
    assert_valid(ours)
    s = zv_dask.open_zv(ours)
    for box in boxes(str(ours), 0)[:4]:
        check(s.read_objects(bbox=box, attributes=[]), brute_force(str(ours), 0, box))


def test_index_refuses_and_writes_nothing(store_path, tmp_path, capsys):
    path = tmp_path / "s.zarrvectors"
    shutil.copytree(store_path("tree_skeleton"), path)
    assert main(["index", str(path), "--level", "0"]) == 0
    before = tree(path)
    assert main(["index", str(path)]) == 1  # indexed already
    assert "owner column already" in capsys.readouterr().err
    assert tree(path) == before

    points = tmp_path / "p.zarrvectors"  # no object index at any level
    shutil.copytree(store_path("points_pyramid"), points)
    before = tree(points)
    assert main(["index", str(points)]) == 1
    assert "no level of this store has an object index" in capsys.readouterr().err
    assert tree(points) == before

    bad = tmp_path / "bad.zarrvectors"  # a manifest naming a fragment no chunk can have
    shutil.copytree(store_path("tree_skeleton"), bad)
    arr = zarr.open_array(str(bad / "0" / "object_index" / "manifests"), mode="r+")
    arr[0:1] = np.asarray([struct.pack("<I", 1) + struct.pack("<3q", 3, 3, 3) + b"\x00"
                           + struct.pack("<q", 10**12)], dtype=object)
    before = tree(bad)
    assert main(["index", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "object_index/manifests" in err and "cannot be indexed" in err
    assert tree(bad) == before


def test_index_needs_a_store_argument(capsys):
    with pytest.raises(SystemExit) as ei:  # never the example store inside the package
        main(["index"])
    assert ei.value.code == 2
