"""The ``zarr_vectors`` xarray backend engine (loaded by xarray through the
``xarray.backends`` entry point; imports xarray)."""

from __future__ import annotations

from xarray.backends import BackendEntrypoint

from zv_dask.xarray.datasets import _path, _store, _store_attrs, read_zv


class ZarrVectorsBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(url, engine="zarr_vectors", level=..., bbox=...)`` and
    ``xr.open_datatree(url, engine="zarr_vectors")`` (one child per level, named
    ``"0"``, ``"1"``...; the root holds the store metadata).

    Examples
    --------
    >>> import xarray as xr, zv_dask
    >>> ds = xr.open_dataset(zv_dask.example_store(), engine="zarr_vectors", level=2)
    >>> ds.positions.dims
    ('vertex', 'axis')
    """

    description = "Zarr Vectors (ZV 0.9.x) point clouds, streamlines, graphs and meshes (zv_dask)"
    url = "https://pypi.org/project/zv-dask/"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "level", "bbox",
                               "target_resolution", "attributes", "storage_options", "objects")

    def open_dataset(self, filename_or_obj, *, drop_variables=None, level=None, bbox=None,
                     target_resolution=None, attributes=None, storage_options=None,
                     objects=False):
        ds = read_zv(_path(filename_or_obj), level=level, bbox=bbox,
                     target_resolution=target_resolution, attributes=attributes,
                     storage_options=storage_options, objects=objects)
        if drop_variables:
            ds = ds.drop_vars(drop_variables, errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj) -> bool:
        try:
            p = _path(filename_or_obj)
        except TypeError:
            return False
        return isinstance(p, str) and p.rstrip("/").endswith(".zarrvectors")

    def open_groups_as_dict(self, filename_or_obj, *, drop_variables=None, bbox=None,
                            attributes=None, storage_options=None, **kwargs):
        import xarray as xr

        store = _store(_path(filename_or_obj), storage_options)
        groups = {"/": xr.Dataset(attrs=_store_attrs(store))}
        for lv in store.levels:
            known = store.attributes_at(lv)
            names = None if attributes is None else [a for a in attributes if a in known]
            ds = read_zv(store, level=lv, bbox=bbox, attributes=names)
            if drop_variables:
                ds = ds.drop_vars(drop_variables, errors="ignore")
            groups[f"/{lv}"] = ds
        return groups

    def open_datatree(self, filename_or_obj, *, drop_variables=None, bbox=None,
                      attributes=None, storage_options=None, **kwargs):
        import xarray as xr

        return xr.DataTree.from_dict(self.open_groups_as_dict(
            filename_or_obj, drop_variables=drop_variables, bbox=bbox, attributes=attributes,
            storage_options=storage_options))
