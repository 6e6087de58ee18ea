"""xarray views of a store: :func:`read_zv` (the ``zarr_vectors`` backend engine is in
:mod:`zv_dask.xarray.backend`).

xarray is an optional dependency (``pip install xarray``, or ``pip install -e ".[xarray]"``
in a clone); it is imported inside the functions only (:func:`import_xarray`), so
``import zv_dask`` does not import it.
"""

from __future__ import annotations

import os

import numpy as np

from zv_dask.errors import MissingDependencyError
from zv_dask.format.levels import attribute_columns

VERTEX = "vertex"
AXIS = "axis"
OBJECT = "object"


def _store(path_or_url, storage_options=None):
    from zv_dask.store import ZVStore, open_zv

    if isinstance(path_or_url, ZVStore):
        return path_or_url
    return open_zv(path_or_url, storage_options=storage_options)


def import_xarray(what: str):
    """The ``xarray`` module, or :class:`~zv_dask.errors.MissingDependencyError` saying
    how to install it (``what`` names the call that needs it)."""
    try:
        import xarray
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs xarray, which is not installed: pip install xarray (or "
            "pip install -e \".[xarray]\" in a clone of zv_dask)") from None
    return xarray


def _store_attrs(store, level=None) -> dict:
    """Store metadata as netCDF-friendly attributes (strings, numbers, lists)."""
    lo, hi = store.bounding_box
    attrs = {
        "zv_version": store.zv_version,
        "geometry_type": store.geometry_type,
        "source": store.url,
        "axes": list(store.axes),
        "levels": list(store.levels),
        "chunk_shape": list(store.chunk_shape),
        "bounds_min": lo.tolist(),
        "bounds_max": hi.tolist(),
        "format_capabilities": list(store.metadata.capabilities),
    }
    if level is not None:
        attrs.update({
            "level": int(level),
            "level_chunk_shape": list(store.chunk_shape_at(level)),
            "bin_shape": list(store.bin_shape_at(level)),
            "bin_ratio": list(store.bin_ratio_at(level)),
        })
        if store.vertex_count(level) is not None:  # not recorded by every writer
            attrs["level_vertex_count"] = int(store.vertex_count(level))
        n = store.object_count_at(level)
        if n is not None:
            attrs["object_count"] = int(n)
    return attrs


def read_zv(path_or_url, level=None, bbox=None, target_resolution=None, attributes=None,
            storage_options=None, objects: bool = False):
    """A store level as a lazy, dask-backed ``xarray.Dataset``.

    Dimensions ``vertex`` and ``axis``: ``positions (vertex, axis)`` in the stored
    dtype, one variable per vertex attribute (named as its dataframe column, see
    :meth:`ZVStore.column_names`: ``x`` becomes ``attr_x``, its stored name in the
    variable's ``attrs["stored_name"]``), ``(vertex,)`` or ``(vertex, channel)``
    (categoricals decoded to their values, object dtype), and ``object_id`` (and, on
    ``shared_fragments`` levels, ``owner_count``) as coordinates along ``vertex``
    when the level has an object index.  ``vertex`` carries a lazy ``RangeIndex``
    (the row numbers of :meth:`ZVStore.read` at that level, or of the bbox-clipped
    read), so ``.sel``/``.isel`` along it fetch only the chunks they need.  Store
    and level metadata are in ``attrs``.  Multi-column attributes share the
    ``channel`` dimension when they all have the same width; otherwise each gets
    its own ``<name>_channel``.

    There is one dask block per spatial chunk, with exact lengths.  Building the
    dataset reads no chunk data when the vertex chunks are uncompressed and no bbox
    is given (lengths come from the blob sizes: a ``stat``/HEAD per chunk).  With a
    ``bbox``, the chunks that straddle the bbox faces are read once and counted
    (chunks entirely inside use their sizes).  Sharded or zstd/blosc-compressed
    vertex chunks of a whole level are counted from their headers (shard indexes and
    the first bytes of each compressed chunk, no vertex data decoded; once per
    handle); with a bbox, or with other codecs, they are read and counted (one
    vertex blob per chunk; cached for the next read).

    Parameters
    ----------
    path_or_url : str, os.PathLike or ZVStore
        The store (local path or fsspec URL) or an open store.
    level, bbox, target_resolution, attributes
        As for :meth:`ZVStore.read`.
    storage_options : dict, optional
        fsspec options (credentials...).
    objects : bool
        Return the object attributes instead: a dataset along the ``object``
        dimension with the ``object_id`` coordinate (indexed: ``.sel(object_id=...)``
        selects by id) and one variable per object attribute (``(object,)`` or
        ``(object, <name>_column)``).  Integer attributes become float64 with NaN
        where the store holds the "absent" sentinel (``attrs["absent_sentinel"]``);
        floats keep NaN.  Reads the ``object_ids`` array while building.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import zv_dask
    >>> ds = zv_dask.read_zv(zv_dask.example_store(), level=0)
    >>> ds.positions.dims, ds.sizes["vertex"] == ds.attrs["level_vertex_count"]
    (('vertex', 'axis'), True)
    >>> ds.intensity.isel(vertex=slice(0, 10)).shape
    (10,)
    """
    store = _store(path_or_url, storage_options)
    if objects:
        if bbox is not None or target_resolution is not None:
            from zv_dask.errors import QueryError

            raise QueryError("objects=True takes a level only (no bbox/target_resolution)",
                             store=store.url)
        return _objects_dataset(store, 0 if level is None else level, attributes)
    import pandas as pd

    from zv_dask.collections import build as _build

    xr = import_xarray("read_zv")

    plan = store._plan(level, bbox, target_resolution, attributes)
    lm = store.metadata.levels[plan.level]
    reader = store._reader(plan.level)
    lengths = store._cell_lengths(plan)
    # each cell's rows now: every block checks them (a store rewritten since raises)
    rows = [(int(r),) for r in store._cell_rows(lm, plan.cells)] if len(plan.cells) else None
    n = int(sum(lengths))
    D = store.spatial_dims
    pos = _build.to_array(reader, plan, "positions", None, lengths, D, lm.vertices.dtype,
                          rows=rows)
    widths = store._widths(plan.level, plan.attributes)
    multi = {w for a in plan.attributes if (w := widths[a.name]) > 1}
    every = {a.name: a for a in lm.attributes.values()}  # names never follow a selection
    names = attribute_columns(store.axes, [(n, widths.get(n, a.width)) for n, a in every.items()])
    store._warn_renamed(plan.level, plan.attributes, widths)
    data_vars = {"positions": ((VERTEX, AXIS), pos)}
    for a in plan.attributes:
        w = widths[a.name]
        # an attribute named like an axis or a coordinate: its renamed column's name
        var = names[a.name][0] if w == 1 else names[a.name][0][:-len("_0")]
        dtype = np.dtype(np.int64) if a.is_categorical else a.dtype
        arr = _build.to_array(reader, plan, a.name, a, lengths, w, dtype, rows=rows)
        var_attrs = {}
        if a.is_categorical:
            arr = _build.decoded_categories(arr, a.categories, a.fill_code)
            var_attrs["categories"] = list(a.categories)
        dims = (VERTEX,) if w == 1 else (VERTEX, "channel" if len(multi) == 1
                                         else f"{var}_channel")
        if var != a.name:
            var_attrs["stored_name"] = a.name
        data_vars[var] = (dims, arr, var_attrs)
    coords = {VERTEX: pd.RangeIndex(n, name=VERTEX), AXIS: list(store.axes)}
    if plan.object_ids:
        one = np.dtype(np.int64)
        coords["object_id"] = (VERTEX, _build.to_array(reader, plan, "object_ids", None,
                                                       lengths, 1, one, rows=rows))
        if lm.shared_fragments:
            coords["owner_count"] = (VERTEX, _build.to_array(reader, plan, "owner_count", None,
                                                             lengths, 1, one, rows=rows))
    attrs = _store_attrs(store, plan.level)
    if plan.bbox is not None:
        attrs["bbox_min"] = plan.bbox[0].tolist()
        attrs["bbox_max"] = plan.bbox[1].tolist()
    return xr.Dataset(data_vars, coords=xr.Coordinates(coords), attrs=attrs)


def _objects_dataset(store, level, attributes):
    xr = import_xarray("read_zv(objects=True)")

    from zv_dask.collections import build as _build
    from zv_dask.read import objects as _objects

    lm = store._object_level(level)
    arrays = _objects.object_attribute_arrays(lm, attributes, store.url)
    reader = store._reader(lm.level)
    ids = store._object_ids_all(lm.level)
    ranges = _objects.row_ranges(len(ids), 65536)
    data_vars = {}
    for name, arr in arrays:
        sentinel = _objects.absent_sentinel(arr)
        dtype = np.dtype(np.float64) if sentinel is not None else _objects._numpy_dtype(arr)
        v = _build.object_rows_array(reader, arr, ranges, dtype, mask=True)
        dims = (OBJECT,) + tuple(f"{name}_column" for _ in arr.shape[1:2])
        var_attrs = {} if sentinel is None else {"absent_sentinel": int(sentinel)}
        data_vars[name] = (dims, v, var_attrs)
    ds = xr.Dataset(data_vars, coords={"object_id": (OBJECT, ids)},
                    attrs=_store_attrs(store, lm.level))
    return ds.set_xindex("object_id")


def _path(filename_or_obj):
    from zv_dask.store import ZVStore

    if isinstance(filename_or_obj, ZVStore):
        return filename_or_obj
    if isinstance(filename_or_obj, (str, os.PathLike)):
        return os.fspath(filename_or_obj)
    raise TypeError(f"zarr_vectors engine needs a path or URL, got {type(filename_or_obj)}")
