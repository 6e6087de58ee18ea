"""Planning, pure: which level, which chunks and which columns a query needs, predicates as boxes, and chunks grouped into partitions.  No IO, no dask."""
