"""xarray views of a store: :func:`zv_dask.read_zv` and the ``zarr_vectors`` backend engine."""
