"""Queries on to_dask_dataframe: filters pushed into the reader, partitions pruned at
optimize time, lengths without data; always equal to pandas filtering of store.read."""

from __future__ import annotations

import operator
import pickle
import shutil
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from zvfixtures import READABLE_STORES

import zv_dask
from zv_dask.collections import build as _graph
from zv_dask.collections.expr import ZVFrame

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
       "==": operator.eq, "!=": operator.ne}
CASES = [(n, 0) for n in READABLE_STORES] + [("points_2d", 1), ("streamlines", 1)]
_CACHE: dict = {}


def eager_frame(store, level, bbox=None) -> pd.DataFrame:
    """The columns of to_dask_dataframe, built from store.read (categoricals as values)."""
    r = store.read(level=level, bbox=bbox)
    cols = {ax: r["positions"][:, i] for i, ax in enumerate(store.axes)}
    for name, v in r["attributes"].items():
        if v.ndim == 2:
            cols.update({f"{name}_{j}": v[:, j] for j in range(v.shape[1])})
        else:
            cols[name] = v
    if "object_ids" in r:
        cols["object_id"] = r["object_ids"]
    if "owner_count" in r:
        cols["owner_count"] = r["owner_count"]
    return pd.DataFrame(cols)


def norm(df: pd.DataFrame) -> pd.DataFrame:
    """Row order aside (it is the reader's chunk order), categoricals as plain values."""
    df = df.copy()
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c].dtype):
            df[c] = df[c].astype(object).astype(str)
    df.columns = pd.Index([str(c) for c in df.columns], dtype=object)
    return df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)


def assert_same(got: pd.DataFrame, want: pd.DataFrame):
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(norm(got), norm(want[list(got.columns)]), check_dtype=False)


def info(store_path, name, level):
    key = (name, level)
    if key not in _CACHE:
        store = zv_dask.open_zv(store_path(name))
        full = eager_frame(store, level)
        labels, coords = [], []
        for i, (c, d) in enumerate(store.iter_chunks(level)):
            labels.append(np.full(len(d["positions"]), i))
            coords.append(c)
        lab = np.concatenate(labels) if labels else np.zeros(0, int)
        ddf = store.to_dask_dataframe(level=level)
        assert list(ddf.columns) == list(full.columns)
        _CACHE[key] = (store, full, np.asarray(coords), lab)
    return _CACHE[key]


def faces(store, level, axis):
    s = store.chunk_shape_at(level)[axis]
    cells = np.asarray(store.chunks(level))
    lead = cells.shape[1] - store.spatial_dims
    idx = cells[:, lead + axis]
    return sorted({float(k * s) for k in range(int(idx.min()) - 1, int(idx.max()) + 3)})


@st.composite
def predicates(draw, store, level, full):
    """A random tree of comparisons (& and |) over the frame's columns."""
    cats = [c for c in full.columns if not pd.api.types.is_numeric_dtype(full[c].dtype)]
    nums = [c for c in full.columns if c not in cats]

    def leaf():
        col = draw(st.sampled_from(nums + cats))
        if col in cats:
            vals = sorted({str(v) for v in full[col].dropna()}) or ["none"]
            return ("cmp", col, draw(st.sampled_from(["==", "!="])),
                    draw(st.sampled_from(vals)), draw(st.booleans()))
        v = full[col].to_numpy()
        pool = v[:: max(1, len(v) // 50)].tolist() if len(v) else [0]
        if col in store.axes:
            pool += faces(store, level, store.axes.index(col))
        lo, hi = (float(np.floor(v.min())), float(np.ceil(v.max()))) if len(v) else (0.0, 1.0)
        value = draw(st.one_of(st.sampled_from(pool), st.floats(lo - 1, hi + 1, width=32)))
        if full[col].dtype.kind in "iu" and draw(st.booleans()):
            value = int(np.floor(value))
        if draw(st.booleans()):
            other = draw(st.sampled_from(pool))
            a, b = sorted([value, other])
            return ("between", col, a, b,
                    draw(st.sampled_from(["both", "neither", "left", "right"])))
        return ("cmp", col, draw(st.sampled_from(sorted(OPS))), value, draw(st.booleans()))

    def tree(depth):
        if depth == 0 or draw(st.booleans()):
            return leaf()
        return (draw(st.sampled_from(["and", "or"])), tree(depth - 1), tree(depth - 1))

    return tree(2)


def apply(tree, f):
    kind = tree[0]
    if kind == "cmp":
        _, col, op, v, flipped = tree
        return OPS[op](v, f[col]) if flipped else OPS[op](f[col], v)
    if kind == "between":
        _, col, a, b, inclusive = tree
        return f[col].between(a, b, inclusive=inclusive)
    a, b = apply(tree[1], f), apply(tree[2], f)
    return a & b if kind == "and" else a | b


def kept_cells(collection) -> set:
    opt = collection.expr.optimize(fuse=False)
    frames = [e for e in opt.walk() if isinstance(e, ZVFrame)]
    assert frames, "the optimized query lost its zv_dask expression"
    out = set()
    for f in frames:
        for spec in f._specs:
            out.update(tuple(c) for c in (spec[0] if f.source.scan.selection else spec))
    return out


def _query_settings(n):
    return settings(max_examples=n, deadline=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no long shrinking
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# the sharded store reads each inner chunk through zarr (seconds a query): fewer examples
@pytest.mark.parametrize("name,level", [c for c in CASES if c[0] != "points_sharded"])
@_query_settings(12)
@given(data=st.data())
def test_filtered_queries_equal_pandas_filtering(store_path, name, level, data):
    _filtered_query_equals_pandas(store_path, name, level, data)


@_query_settings(4)
@given(data=st.data())
def test_filtered_queries_on_a_sharded_store_equal_pandas_filtering(store_path, data):
    _filtered_query_equals_pandas(store_path, "points_sharded", 0, data)


def _filtered_query_equals_pandas(store_path, name, level, data):
    store, full, coords, labels = info(store_path, name, level)
    tree = data.draw(predicates(store, level, full))
    cpp = data.draw(st.sampled_from([1, 3]))
    ddf = store.to_dask_dataframe(level=level, chunks_per_partition=cpp)
    q = ddf[apply(tree, ddf)]
    want = full[apply(tree, full)]
    assert_same(q.compute(), want)
    assert len(q) == len(want)
    # pruning is sound: every chunk holding a matching row is still planned
    matched = {tuple(coords[i]) for i in np.unique(labels[apply(tree, full).to_numpy()])}
    assert matched <= kept_cells(q)


@pytest.mark.parametrize("name", ["points_pyramid", "points_2d", "points_f64_zstd"])
@settings(max_examples=10, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no minutes-long shrinking
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_axis_conjunctions_plan_exactly_the_bbox_chunks(store_path, name, data):
    """A closed axis box written as a filter plans the chunks a bbox read plans; the same
    filter over a bbox frame keeps the rows of both."""
    store, full, coords, labels = info(store_path, name, 0)
    lo, hi = [], []
    for d in range(store.spatial_dims):
        f = faces(store, 0, d)
        a, b = sorted([data.draw(st.sampled_from(f)),
                       data.draw(st.floats(f[0], f[-1], width=32))])
        lo.append(a)
        hi.append(b)
    ddf = store.to_dask_dataframe(level=0)
    pred = None
    for d, ax in enumerate(store.axes):
        t = (ddf[ax] >= lo[d]) & (hi[d] >= ddf[ax])
        pred = t if pred is None else pred & t
    q = ddf[pred]
    assert kept_cells(q) == set(store.chunks(0, bbox=(lo, hi)))
    assert_same(q.compute(), eager_frame(store, 0, (lo, hi)))
    inner = store.to_dask_dataframe(level=0, bbox=(lo, hi))
    x = store.axes[0]
    cut = (lo[0] + hi[0]) / 2
    sub = inner[inner[x] < cut]
    want = eager_frame(store, 0, (lo, hi))
    assert_same(sub.compute(), want[want[x] < cut])
    assert len(sub) == int((want[x] < cut).sum())
    assert len(inner) == len(want)


def test_strict_and_closed_faces_on_negative_origins(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))  # chunk 500, cells from -2
    ddf = store.to_dask_dataframe(level=0)
    full = eager_frame(store, 0)
    for q, want in ((ddf[ddf.x < -500], full[full.x < -500]),
                    (ddf[-500 > ddf.x], full[full.x < -500]),
                    (ddf[ddf.y > 0.0], full[full.y > 0])):
        assert kept_cells(q)
        assert_same(q.compute(), want)
    assert {c[0] for c in kept_cells(ddf[ddf.x < -500])} <= {-2}
    assert {c[0] for c in kept_cells(ddf[ddf.x <= -500])} <= {-2, -1}
    assert {c[1] for c in kept_cells(ddf[ddf.y > 0.0])} <= {0, 1}
    # closed at a face: the cell below the face may round a row onto it, so it stays
    assert {c[1] for c in kept_cells(ddf[ddf.y >= 0.0])} == \
        {c[1] for c in store.chunks(0, bbox=([-2000, 0.0], [2000, 2000]))}


def test_unpushable_predicates_still_filter_through_dask(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    ddf = store.to_dask_dataframe(level=0)
    full = eager_frame(store, 0)
    cases = [
        (ddf[ddf.x > ddf.y], full[full.x > full.y]),
        (ddf[~(ddf.x > 500)], full[~(full.x > 500)]),
        (ddf[ddf.label.isin([1, 2])], full[full.label.isin([1, 2])]),
        (ddf[(ddf.x > 1200) & (ddf.fa > ddf.intensity)],
         full[(full.x > 1200) & (full.fa > full.intensity)]),
        (ddf[(ddf.x > 1200) | (ddf.fa > ddf.intensity)],
         full[(full.x > 1200) | (full.fa > full.intensity)]),
    ]
    for q, want in cases:
        assert_same(q.compute(), want)
    # a partly pushable conjunction still prunes by its axis part
    assert len(kept_cells(cases[3][0])) < ddf.npartitions


def test_optimizing_a_filter_on_a_metadata_only_copy_reads_nothing(store_path, tmp_path,
                                                                   counting):
    src = Path(store_path("points_2d"))
    dst = tmp_path / "meta-only.zarrvectors"
    for f in src.rglob("zarr.json"):
        (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst / f.relative_to(src))
    assert not [p for p in dst.rglob("*") if p.is_file() and p.name != "zarr.json"]
    store = zv_dask.open_zv("zvcount://" + str(dst))
    counting.clear()
    ddf = store.to_dask_dataframe(level=0)
    q = ddf[(ddf.x >= -500) & (ddf.x < 0) & (ddf.y < 250)]
    n = q.optimize().npartitions
    total = len(store.chunks(0))
    assert 0 < n < total
    assert len(ddf) == store.vertex_count(0)  # from metadata
    assert ddf.shape[0].compute() == store.vertex_count(0)
    nothing = ddf[ddf.x > 5000]
    assert nothing.optimize().npartitions == 1
    assert len(nothing.compute()) == 0  # pruned to no chunk: still reads nothing
    assert counting == []


def test_projection_through_a_filter_fetches_vertices_and_one_attribute(store_path, counting):
    path = store_path("points_pyramid")
    store = zv_dask.open_zv("zvcount://" + path, cache_size=0)
    ddf = store.to_dask_dataframe(level=0)
    full = eager_frame(store, 0)
    counting.clear()
    got = ddf[ddf.x > 1500].intensity.sum().compute()
    gets = [p.split(".zarrvectors/")[1] for op, p in counting if op == "get"]
    fetched = {p.split("/c/")[0] for p in gets if "/c/" in p}
    assert fetched == {"0/vertices", "0/vertex_attributes/intensity"}
    # a handle that never listed the level re-reads the documents of what it decodes,
    # once per compute (a store rewritten since raises instead of decoding garbage)
    docs = sorted(p for p in gets if "/c/" not in p)
    assert docs == ["0/vertex_attributes/intensity/zarr.json", "0/vertices/zarr.json"]
    assert np.isclose(got, full.intensity[full.x > 1500].sum(), rtol=1e-5)
    vert = {p for op, p in counting if "/vertices/c/" in p}
    assert len(vert) == len(kept_cells(ddf[ddf.x > 1500])) < len(store.chunks(0))


@pytest.mark.parametrize("cpp", [1, "auto"])
def test_chunks_inside_the_box_skip_the_row_test_and_unrequested_axes(store_path, counting,
                                                                     cpp):
    # points_2d: chunk 500, cells -2..1 on each axis (negative origin). x > 0 and x >= 0
    # both have their face in x cell 0 ([0, 500)), y < 600 in y cell 1: only chunks on
    # a face need their vertices to test rows, the others hold only matching rows
    path = store_path("points_2d")
    store = zv_dask.open_zv("zvcount://" + path, cache_size=0)
    origin = store.metadata.levels[0].vertices.origin
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition=cpp)
    full = eager_frame(store, 0)

    def fetched(array):
        return {tuple(int(k) + o for k, o in zip(p.split("/c/")[1].split("/"), origin))
                for op, p in counting if op == "get" and f"/{array}/c/" in p}

    for q, want, on_face in (
            (ddf.x > 0.0, full.x > 0.0, lambda c: c[0] == 0),
            (ddf.x >= 0.0, full.x >= 0.0, lambda c: c[0] == 0),
            ((ddf.x >= 0.0) & (ddf.y < 600.0), (full.x >= 0.0) & (full.y < 600.0),
             lambda c: c[0] == 0 or c[1] == 1)):
        counting.clear()
        got = ddf[q].v.compute()
        assert sorted(got.tolist()) == sorted(full.v[want].tolist())
        kept = kept_cells(ddf[q])
        assert fetched("vertex_attributes/v") == kept  # every planned chunk gives v...
        face = {c for c in kept if on_face(c)}  # ...vertices only the chunks on a face
        assert fetched("vertices") == face and 0 < len(face) < len(kept)
    # asking for x as well fetches the vertices of every planned chunk
    counting.clear()
    got = ddf[ddf.x > 0.0][["x", "v"]].compute()
    assert len(got) == int((full.x > 0).sum()) and (got.x > 0).all()
    assert fetched("vertices") == kept_cells(ddf[ddf.x > 0.0])


def test_attribute_filters_skip_the_other_columns_of_chunks_without_a_match(store_path,
                                                                          counting):
    path = store_path("points_pyramid")
    store = zv_dask.open_zv("zvcount://" + path, cache_size=0)
    ddf = store.to_dask_dataframe(level=0)
    full = eager_frame(store, 0)
    cut = float(np.quantile(full.intensity, 0.97))
    counting.clear()
    got = ddf[ddf.intensity > cut][["fa", "label"]].compute()
    want = full[full.intensity > cut][["fa", "label"]]
    assert_same(got, want)
    per = {}
    for op, p in counting:
        if "/c/" in p:
            arr, cell = p.split(".zarrvectors/")[1].split("/c/")
            per.setdefault(arr, set()).add(cell)
    assert "0/vertices" not in per  # no axis column needed
    n_int = len(per["0/vertex_attributes/intensity"])
    assert n_int == len(store.chunks(0))
    assert per["0/vertex_attributes/fa"] == per["0/vertex_attributes/label"]
    assert 0 < len(per["0/vertex_attributes/fa"]) < n_int


def test_len_from_metadata_and_blob_sizes(store_path, counting):
    path = store_path("points_pyramid")
    store = zv_dask.open_zv("zvcount://" + path, cache_size=0)
    ddf = store.to_dask_dataframe(level=0)
    counting.clear()
    assert len(ddf) == store.vertex_count(0)
    assert ddf.shape[0].compute() == store.vertex_count(0)
    assert len(ddf[["x", "fa"]]) == store.vertex_count(0)
    assert counting == []
    full = eager_frame(store, 0)
    q = ddf[(ddf.x >= 300) & (ddf.y < 1700)]
    counting.clear()
    assert len(q) == int(((full.x >= 300) & (full.y < 1700)).sum())
    read = {p for op, p in counting if op == "get" and "/c/" in p}
    planned = kept_cells(q)
    assert read and len(read) < len(planned)  # inside chunks counted from sizes
    # ... which come from one listing of the vertices array, never a stat per chunk
    assert [p for op, p in counting if op == "list"] == [f"{path}/0/vertices"]
    assert not [p for op, p in counting if op == "stat" and "/c/" in p]
    assert all("/vertices/c/" in p for p in read)
    box = ([250, 250, 250], [1750, 1750, 1750])
    want = len(eager_frame(store, 0, box))
    counting.clear()
    assert len(store.to_dask_dataframe(level=0, bbox=box)) == want
    # boundary chunks are read; inside ones are only sized, from one listing of the
    # vertices array (no stat per chunk)
    assert 0 < len({p for op, p in counting if op == "get" and "/c/" in p}) \
        < len(store.chunks(0, bbox=box))
    assert not [p for op, p in counting if op in ("stat", "list") and "/c/" in p]
    counting.clear()
    assert len(ddf[ddf.label == 3]) == int((full.label == 3).sum())
    fetched = {p.split(".zarrvectors/")[1].split("/c/")[0] for op, p in counting if op == "get"}
    # chunks of the one array tested, and its document once (the handle never listed
    # the level, so a rewrite since would be seen there)
    assert fetched == {"0/vertex_attributes/label", "0/vertex_attributes/label/zarr.json"}


def test_sharded_store_len_reads_boundary_chunks_only_where_sizes_cannot_count(store_path):
    store = zv_dask.open_zv(store_path("points_sharded"))  # compressed: no size counts
    ddf = store.to_dask_dataframe(level=0)
    full = eager_frame(store, 0)
    assert len(ddf[ddf.z > 900]) == int((full.z > 900).sum())
    assert len(ddf) == store.vertex_count(0) == len(full)


def test_names_are_deterministic_and_queries_pickle(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))

    def query():
        ddf = store.to_dask_dataframe(level=1, chunks_per_partition=2)
        return ddf[(ddf.x > -300) & (ddf.object_id != 5)][["x", "object_id"]]

    a, b = query(), query()
    assert a._name == b._name
    assert a.optimize()._name == b.optimize()._name
    assert a.optimize().__dask_keys__() == b.optimize().__dask_keys__()
    c = pickle.loads(cloudpickle.dumps(a))  # dask's serializer
    assert c._name == a._name
    d = pickle.loads(pickle.dumps(a.optimize()))  # plain pickle too
    assert d._name == a.optimize()._name
    want = a.compute(scheduler="sync")
    assert_same(c.compute(scheduler="threads"), want)
    assert_same(d.compute(scheduler="sync"), want)
    e = pickle.loads(pickle.dumps(store.to_dask_dataframe(level=1)))
    assert_same(e.compute(scheduler="sync"), store.to_dask_dataframe(level=1).compute(scheduler="sync"))
    assert_same(a.compute(scheduler="processes", num_workers=2), want)


def test_query_on_a_local_cluster(store_path):
    from distributed import Client, LocalCluster

    store = zv_dask.open_zv(store_path("points_2d"))
    ddf = store.to_dask_dataframe(level=0, chunks_per_partition=2)
    full = eager_frame(store, 0)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      dashboard_address=":0", silence_logs=40) as cluster, Client(cluster):
        got = ddf[(ddf.y <= 0) & (ddf.object_id == 25)].compute()
        n = len(ddf[ddf.x.between(-400, 400)])
    assert_same(got, full[(full.y <= 0) & (full.object_id == 25)])
    assert n == int(full.x.between(-400, 400).sum())


def test_object_selection_frames_take_filters_too(store_path):
    store = zv_dask.open_zv(store_path("points_2d"))
    ddf = store.to_dask_dataframe(level=0, object_ids=[25, 45])
    sel = ddf.compute()
    q = ddf[ddf.x > 0]
    assert_same(q.compute(), sel[sel.x > 0])
    assert len(q) == int((sel.x > 0).sum())
    assert len(ddf) == len(sel)


def test_without_the_expression_api_frames_still_filter(store_path, monkeypatch):
    monkeypatch.setattr(_graph, "EXPRESSIONS", False)
    store = zv_dask.open_zv(store_path("points_pyramid"))
    ddf = store.to_dask_dataframe(level=0)
    assert not any(isinstance(e, ZVFrame) for e in ddf.expr.walk())
    full = eager_frame(store, 0)
    assert_same(ddf[ddf.x > 1500].compute(), full[full.x > 1500])
    assert len(ddf) == len(full)


def test_dask_config_string_conversion_does_not_change_columns(store_path):
    store = zv_dask.open_zv(store_path("points_pyramid"))
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = store.to_dask_dataframe(level=0)
        got = ddf[ddf.region == "cortex"].compute()
    assert isinstance(got.region.dtype, pd.CategoricalDtype)
    full = eager_frame(store, 0)
    assert_same(got, full[full.region == "cortex"])
