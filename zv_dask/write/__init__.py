"""``to_zv``: plan, encode and put a Zarr Vectors store from a dask DataFrame."""
