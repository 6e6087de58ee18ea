"""Arrays whose chunk keys use the "." separator (``c.0.1.2``) read like "/" ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import zv_dask


def _to_dot_separator(src: str, dst: Path) -> int:
    """Copy a store, switching every array to ``separator: "."`` and renaming its chunk
    objects ``c/i/j/k`` -> ``c.i.j.k`` as zarr's default key encoding names them."""
    shutil.copytree(src, dst)
    renamed = 0
    for doc_path in dst.rglob("zarr.json"):
        doc = json.loads(doc_path.read_text())
        if doc.get("node_type") != "array":
            continue
        doc["chunk_key_encoding"] = {"name": "default", "configuration": {"separator": "."}}
        doc_path.write_text(json.dumps(doc))
        cdir = doc_path.parent / "c"
        if not cdir.is_dir():
            continue
        for f in sorted(p for p in cdir.rglob("*") if p.is_file()):
            rel = f.relative_to(cdir).as_posix().replace("/", ".")
            f.rename(doc_path.parent / f"c.{rel}")
            renamed += 1
        shutil.rmtree(cdir)
    return renamed


def test_dot_separator_store_reads_like_the_slash_store(store_path, tmp_path):
    src = store_path("points_pyramid")
    dst = tmp_path / "dots.zarrvectors"
    assert _to_dot_separator(src, dst) > 0
    assert (dst / "0" / "vertices").is_dir() and not (dst / "0" / "vertices" / "c").exists()
    slash, dot = zv_dask.open_zv(src), zv_dask.open_zv(str(dst))
    assert dot.metadata.levels[0].vertices.chunk_separator == "."
    for level in slash.levels:
        want, got = slash.read(level=level), dot.read(level=level)
        assert got["vertex_count"] == want["vertex_count"] > 0
        np.testing.assert_array_equal(got["positions"], want["positions"])
        assert sorted(got["attributes"]) == sorted(want["attributes"])
        for name, col in want["attributes"].items():
            np.testing.assert_array_equal(got["attributes"][name], col)
    box = ([0, 0, 0], [900, 900, 900])
    np.testing.assert_array_equal(dot.read(level=0, bbox=box)["positions"],
                                  slash.read(level=0, bbox=box)["positions"])
