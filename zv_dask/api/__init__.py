"""The methods of :class:`zv_dask.ZVStore`, one mixin per job: eager reads, raw zarr access, dask collections, objects and links."""
