"""Spatial statistics as dask reductions: exact data bounds and voxel densities."""

from __future__ import annotations

import numpy as np

from zv_dask.errors import QueryError
from zv_dask.stats.moments import _finish_bounds, _one_block_bounds, _voxel_count, voxel_edges
from zv_dask.stats.source import _grid_box, _is_dataframe, _positions, _store


def bounds(source, level=None, bbox=None, target_resolution=None):
    """Exact data bounds, lazily: a dask array ``(2, D)`` of ``[min; max]`` per axis.

    Chunks the bbox leaves empty are fine; when no row is selected the result is
    ``(2, D)`` of NaN (the lazy and the computed shape are both ``(2, D)``).

    Examples
    --------
    >>> import zv_dask
    >>> from zv_dask import stats
    >>> b = stats.bounds(zv_dask.example_store(), level=2).compute()
    >>> b.shape
    (2, 3)
    """
    if _is_dataframe(source):
        if level is not None or bbox is not None or target_resolution is not None:
            raise QueryError("level/bbox/target_resolution apply to stores, not dataframes")
        axes = [c for c in source.columns if c in ("x", "y", "z")] or list(source.columns[:3])
        pos = source[axes].to_dask_array()
    else:
        pos = _positions(_store(source), level, bbox, target_resolution)
    return block_bounds(pos)


def block_bounds(pos):
    """``(2, D)`` ``[min; max]`` of a dask array ``(N, D)`` whose blocks may be empty.

    dask's own ``min(axis=0)`` fails when a block of unknown length turns out empty
    (it concatenates a ``(1, 0)`` placeholder with ``(1, D)`` results); here every
    block gives ``(2, D)`` with ``inf``/``-inf`` identities, and no row at all gives
    NaN.  Float dtypes are kept, integers become float64 (to hold NaN).

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> a = da.from_array(np.array([[1.0, 5.0], [3.0, 2.0]]), chunks=1)
    >>> block_bounds(a).compute().tolist()
    [[1.0, 2.0], [3.0, 5.0]]
    """
    import dask.array as da

    if pos.ndim != 2:
        raise QueryError(f"bounds need an (N, D) array, got {pos.ndim} dimensions")
    if pos.numblocks[1] != 1:
        pos = pos.rechunk({1: -1})
    D = pos.shape[1]
    dtype = pos.dtype if pos.dtype.kind == "f" else np.dtype(np.float64)
    parts = pos.map_blocks(_one_block_bounds, dtype, dtype=dtype,
                           chunks=((2,) * pos.numblocks[0], (D,)))
    lo = parts[0::2].min(axis=0)
    hi = parts[1::2].max(axis=0)
    return da.map_blocks(_finish_bounds, lo, hi, dtype=dtype, new_axis=0,
                         chunks=((2,), (D,)))


def density(source, resolution, level=None, bbox=None, target_resolution=None):
    """Vertex counts on a regular voxel grid, as a lazy dask array (an
    ``xarray.DataArray`` with voxel-centre coordinates when xarray is installed).

    The grid starts at the bbox's lower corner (the store's bounding box without
    one, and on the open sides of a bbox with ``-inf``/``inf``) with voxels of edge
    ``resolution`` (a number or one per axis), enough of them to cover the upper
    corner.  A vertex on the upper corner is counted in the last voxel, as
    :func:`numpy.histogramdd` counts its last bin's upper edge.

    Examples
    --------
    >>> import zv_dask
    >>> from zv_dask import stats
    >>> d = stats.density(zv_dask.example_store(), 500.0, level=0)
    >>> tuple(d.shape), int(d.sum().compute())
    ((4, 4, 4), 5000)
    """
    import dask.array as da

    store = _store(source)
    D = store.spatial_dims
    res = np.broadcast_to(np.asarray(resolution, np.float64), (D,))
    if not np.all(np.isfinite(res)) or (res <= 0).any():
        raise QueryError(f"resolution must be positive, got {resolution!r}", store=store.url)
    lo, hi = _grid_box(store, bbox)
    nbins = [_voxel_count(float(l), float(h), float(r)) for l, h, r in zip(lo, hi, res)]
    if np.prod(nbins, dtype=np.float64) > 2e9:
        raise QueryError(f"a grid of {nbins} voxels is too large; use a coarser resolution",
                         store=store.url)
    edges = [voxel_edges(float(l), float(h), float(r), n)
             for l, h, r, n in zip(lo, hi, res, nbins)]
    pos = _positions(store, level, bbox, target_resolution)
    counts, _ = da.histogramdd(pos, bins=edges)
    counts = counts.astype(np.int64)
    try:
        import xarray as xr
    except ImportError:
        return counts
    coords = {ax: (e[:-1] + e[1:]) / 2 for ax, e in zip(store.axes, edges)}
    return xr.DataArray(counts, dims=store.axes, coords=coords, name="density",
                        attrs={"resolution": res.tolist(), "store": store.url})
