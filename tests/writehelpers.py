"""Shared pieces of the writer tests: inputs, the reference store for the same input,
and comparisons of two stores file by file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def sample(n, rng, lo=-300.0, hi=900.0, ndim=3, categorical=True, multi=True):
    """Positions and attributes as the reference wants them, and the same as a DataFrame."""
    pos = rng.uniform(lo, hi, (n, ndim))
    attrs = {"intensity": rng.random(n).astype(np.float32),
             "label": rng.integers(-5, 5, n).astype(np.int32)}
    if multi:
        attrs["rgb"] = rng.integers(0, 255, (n, 3)).astype(np.uint8)
    if categorical:
        attrs["region"] = np.array(["north", "east", "south"])[rng.integers(0, 3, n)]
    return pos, attrs, frame(pos, attrs)


def frame(pos, attrs):
    axes = "xyz"[: pos.shape[1]]
    df = pd.DataFrame(pos, columns=list(axes))
    for name, a in attrs.items():
        if a.ndim == 2:
            for i in range(a.shape[1]):
                df[f"{name}_{i}"] = a[:, i]
        elif a.dtype.kind in "US":
            df[name] = pd.Categorical(a)
        else:
            df[name] = a
    return df


def reference(path, pos, attrs, levels=1, **kw):
    """The store ``write_points`` (+ ``build_pyramid``) makes for the same input."""
    from zarr_vectors.multiresolution.coarsen import build_pyramid
    from zarr_vectors.types.points import write_points

    write_points(str(path), pos, vertex_attributes=attrs or None, **kw)
    if levels > 1:
        build_pyramid(str(path), factors=[(2, 1)] * (levels - 1))
    return path


def files(root) -> dict:
    root = Path(root)
    out = {}
    for dp, _, fns in os.walk(root):
        for f in fns:
            p = Path(dp) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def assert_same_store(ref, ours, coarse_tolerance=True):
    """Same files; documents equal as JSON; level-0 and link blobs equal as bytes;
    coarse-level vertices equal to float tolerance (bytes are expected too)."""
    a, b = files(ref), files(ours)
    assert sorted(a) == sorted(b)
    for k in a:
        if k.endswith("zarr.json"):
            assert json.loads(a[k]) == json.loads(b[k]), k
        elif coarse_tolerance and not k.startswith("0/") and "/vertices/" in k:
            pa = np.frombuffer(a[k][8:], np.float32)
            pb = np.frombuffer(b[k][8:], np.float32)
            np.testing.assert_allclose(pa, pb, rtol=1e-6, atol=1e-4, err_msg=k)
        else:
            assert a[k] == b[k], k


def assert_valid(path):
    from zarr_vectors.validate import validate

    r = validate(str(path), level=5)
    assert r.errors == [], r.errors
    return r


def rows_sorted(pos, attrs=None):
    """Rows as a sortable table (positions then scalar attributes), sorted."""
    cols = [np.asarray(pos, np.float64)]
    for name in sorted(attrs or {}):
        a = np.asarray(attrs[name])
        if a.dtype.kind in "USO":
            a = np.unique(a, return_inverse=True)[1].reshape(-1, 1)
        cols.append(a.reshape(len(a), -1).astype(np.float64))
    t = np.concatenate(cols, axis=1) if cols else np.zeros((0, 0))
    return t[np.lexsort(t.T[::-1])] if len(t) else t


def forest(rng, sizes, ndim=3):
    """Trees (one per object) by random walks, vertices and edges shuffled."""
    pos, edges, oids, off = [], [], [], 0
    for o, n in enumerate(sizes):
        par = np.array([rng.integers(0, i) for i in range(1, n)])
        p = np.zeros((n, ndim))
        p[0] = rng.uniform(-50, 50, ndim)
        for i in range(1, n):
            p[i] = p[par[i - 1]] + rng.normal(0, 25, ndim)
        pos.append(p + 150)
        edges.append(np.stack([np.arange(1, n) + off, par + off], 1))
        oids += [o] * n
        off += n
    pos, edges, oids = np.concatenate(pos), np.concatenate(edges), np.array(oids)
    perm = rng.permutation(len(pos))
    edges = np.argsort(perm)[edges]
    return pos[perm], edges[rng.permutation(len(edges))], oids[perm]
