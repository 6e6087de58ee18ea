"""The only builder of dask collections: dataframes, arrays and object frames from a plan and a reader."""
