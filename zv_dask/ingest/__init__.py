"""Ingest: read foreign files (LAS/LAZ, PLY, SWC, OBJ, STL) into pandas pieces.

One module per format family.  Each offers a header reader (the file's metadata and
the empty frame of its columns, read at build time without touching the points) and a
picklable per-partition reader that a dask task calls with ``(path, start, stop)``.
Object formats (:mod:`~zv_dask.ingest.swc`, :mod:`~zv_dask.ingest.meshes`) parse a whole
file in a task, vectorised.  Nothing here builds a dask collection:
:mod:`zv_dask.collections.ingest` and :mod:`zv_dask.collections.ingest_objects` do;
:mod:`zv_dask.ingest.source` holds what object readers return (``ObjectSource``).
"""
