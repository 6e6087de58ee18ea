"""Ingest: read foreign files (LAS/LAZ, PLY, ...) into pandas pieces.

One module per format family.  Each offers a header reader (the file's metadata and
the empty frame of its columns, read at build time without touching the points) and a
picklable per-partition reader that a dask task calls with ``(path, start, stop)``.
Nothing here builds a dask collection: :mod:`zv_dask.collections.ingest` does;
:mod:`zv_dask.ingest.source` holds what object readers return (``ObjectSource``).
"""
