"""The ZV format, pure: zarr.json documents -> metadata values, chunk bytes <-> numpy (vertices, fragment indexes, manifests, links).  No IO, no zarr, no dask."""
