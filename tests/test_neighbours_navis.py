"""On real data: the nearest skeleton node of each synapse of navis's sample neurons
(the SWC skeletons and synapse tables in its wheel: DA1 projection neurons of the
Janelia hemibrain, both in the data set's 8 nm voxels) equals one cKDTree's."""

from __future__ import annotations

import importlib.metadata
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

import zv_dask

warnings.filterwarnings("ignore", module="zarr_vectors")


def _sample_files():
    files = importlib.metadata.files("navis") or []
    by_kind = {}
    for f in files:
        parts = f.parts
        if len(parts) >= 3 and parts[-3] == "data" and parts[-2] in ("swc", "synapses"):
            by_kind.setdefault(parts[-2], {})[f.stem] = f.locate()
    return [(n, by_kind["swc"][n], by_kind["synapses"][n])
            for n in sorted(by_kind.get("swc", {})) if n in by_kind.get("synapses", {})]


SAMPLES = _sample_files()


def test_navis_ships_sample_neurons():
    assert len(SAMPLES) >= 5


def _swc_nodes(path) -> pd.DataFrame:
    table = np.loadtxt(path, comments="#", ndmin=2)
    return pd.DataFrame({"node_id": table[:, 0].astype(np.int64), "x": table[:, 2],
                         "y": table[:, 3], "z": table[:, 4]})


@pytest.mark.parametrize("name, swc, csv", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_nearest_skeleton_node_of_each_synapse(tmp_path, name, swc, csv):
    from zarr_vectors import building as B

    nodes = _swc_nodes(swc)
    synapses = pd.read_csv(csv)
    assert {"x", "y", "z", "node_id"} <= set(synapses.columns)
    xyz = nodes[["x", "y", "z"]].to_numpy()
    lo, hi = xyz.min(0) - 1000, xyz.max(0) + 1000
    path = tmp_path / f"{name}.zarrvectors"
    B.write_points(str(path), xyz, chunk_shape=(2000.0,) * 3,
                   bounds=(lo.tolist(), hi.tolist()),
                   vertex_attributes={"node_id": nodes.node_id.to_numpy()}, dtype="float64")
    store = zv_dask.open_zv(str(path))
    stored = store.read()
    pos = stored["positions"].astype(np.float64)
    # the store holds the skeleton's nodes, as float64
    assert np.array_equal(np.unique(pos, axis=0), np.unique(xyz, axis=0))
    assert len(store.chunks(0)) > 1

    queries = synapses[["x", "y", "z"]].to_numpy(np.float64)
    got = store.nearest(pd.DataFrame(queries, columns=list(store.axes)), columns=["node_id"])
    want_d, want_i = cKDTree(xyz).query(queries)
    assert got["query"].tolist() == list(range(len(queries)))
    np.testing.assert_array_equal(got.distance.to_numpy(), want_d)
    vid = got.vertex_id.to_numpy()
    assert np.array_equal(stored["attributes"]["node_id"][vid], got.node_id.to_numpy())
    # the same node as cKDTree's, or one exactly as near with the smallest vertex id
    np.testing.assert_array_equal(np.sqrt(((pos[vid] - queries) ** 2).sum(1)), want_d)
    theirs = nodes.node_id.to_numpy()[want_i]
    tree = cKDTree(pos)
    for q in np.flatnonzero(got.node_id.to_numpy() != theirs):
        tied = np.asarray(tree.query_ball_point(queries[q], want_d[q] * (1 + 1e-12)))
        tied = tied[np.sqrt(((pos[tied] - queries[q]) ** 2).sum(1)) == want_d[q]]
        assert len(tied) > 1 and vid[q] == tied.min()
