"""``to_zv``: build a Zarr Vectors store (points with a pyramid, or polylines) from a DataFrame."""

from __future__ import annotations

from dataclasses import replace

from zv_dask.errors import InvalidPointsError, WriteInputError
from zv_dask.ingest.source import ObjectSource
from zv_dask.io.location import StoreLocation
from zv_dask.io.puts import StoreWriter
from zv_dask.write import columns as C
from zv_dask.write import grid as G
from zv_dask.write import like as L
from zv_dask.write import plan as P
from zv_dask.write.codecs import resolve as resolve_codecs
from zv_dask.write.documents import store_attributes_json, store_name
from zv_dask.write.estimate import check_max_overhead, check_overhead
from zv_dask.write.graph import (_shuffle_method, compute_options, missing_counts, prepass,
                                 to_dask_frame, write_graph)
from zv_dask.write import object_writer as OW
from zv_dask.write import edges_graph as EG
from zv_dask.write import objects_graph as OG
from zv_dask.write.objects import align_object_attributes
from zv_dask.write.sources import refuse_own_input

POINT_ROWS = 1 << 18


def to_zv(df, path_or_url, *, chunk_shape=None, bin_shape=None, bounds=None, levels=None,
          axes=None, attributes=None, compressor=None, shard_shape=None, storage_options=None,
          overwrite=False, compute=True, dtype=None, max_overhead=100, like=None, retries=4,
          store_attributes=None, geometry="point", object_attributes=None, edges=None,
          faces=None, shard_levels=None):
    """Write a point cloud held in a dask or pandas DataFrame as a ZV store.

    The store is the one the reference writer makes for the same points and options
    (``zarr_vectors.types.points.write_points`` followed, when ``levels > 1``, by
    ``build_pyramid(factors=[(2, 1)] * (levels - 1))``): the same chunk cells
    ``floor(p / bin) // bins_per_chunk`` (absolute, negative allowed), row order,
    fragment indexes, documents, metavertices and cross-level links.  One exception:
    with ``dtype="float64"`` and ``levels > 1`` coarse levels are float64 too, binned
    from float64 positions (the reference writes float32 coarse levels, whose
    metavertices round across chunk faces at UTM-sized coordinates, and its link pass
    drops the links of the vertices it then misplaces); level 0 is the reference's, and
    every fine vertex is linked to its metavertex.

    Rows reach their chunk through the p2p shuffle on a block key on ``distributed``,
    and through spill files in dask's ``temporary-directory`` on the local schedulers
    (each keyed input partition is parked and freed: memory follows the partition
    size, not the input; a pandas frame is split into views, not copied); one task encodes and writes every cell of every level of a block
    of ``2**(levels-1)`` chunks per axis (fewer when the bin is smaller than the chunk),
    so a worker holds one block at a time, never a whole level.  Time and memory follow the
    points and the non-empty chunks, not the grid: two points 10^12 cells apart are
    cheap.  Bin indices ``floor(p / bin)`` must fit in ``|i| < 2**62``; bounds or
    positions beyond it raise :class:`~zv_dask.errors.WriteInputError`.  Documents are written
    by a final task, the root ``zarr.json`` last: until it exists the location does not
    open (``open_zv`` raises :class:`~zv_dask.errors.IncompleteStoreError`).

    Parameters
    ----------
    df : dask.dataframe.DataFrame, pandas.DataFrame or ObjectSource
        One row per point, in any order; or what an object reader (``read_swc``,
        ``read_trk``, ...) returns, which fills ``geometry``, ``edges``, ``faces``,
        ``object_attributes`` and adds its header facts to ``store_attributes``.  Axis columns are ``axes``; every other column
        is a vertex attribute unless ``attributes`` lists which, stored under its own
        name (never dropped or renamed).  Columns ``name_0 ... name_{C-1}`` become one
        ``(N, C)`` attribute ``name``; categorical, string and object columns become
        dictionary-encoded attributes.  The rules (which columns merge, which names
        and dtypes are refused, what ``<NA>`` becomes) are those of
        :func:`zv_dask.write.columns.plan_columns`; a refused column raises
        :class:`~zv_dask.errors.WriteInputError` before anything is read or written.
        An ``object_id`` column is refused for points; with an object ``geometry`` it
        names each vertex's object (integers; not stored as an attribute).
    path_or_url : str or os.PathLike
        Local path or fsspec URL (``s3://...``).
    chunk_shape : float or sequence of float
        Chunk edge lengths in world units; required unless ``like`` is given.
    bin_shape : float or sequence, optional
        Level-0 bin edges; must divide ``chunk_shape``.  Default: one bin per chunk.
    bounds : ([min...], [max...]), optional
        Inclusive bounds fixing the chunk grid; points outside raise
        :class:`~zv_dask.errors.InvalidPointsError`.  Default: the data extent.
    levels : int, optional
        Number of resolution levels; level k has bins ``2**k`` times level 0's.
        Default 1 (or ``like``'s levels).
    axes : sequence of str, optional
        Position columns; default ``x, y`` and ``z`` when present.
    attributes : sequence of str, optional
        Attribute names to store (default: every non-axis column); a multi-column
        attribute is asked for by its stored name (``"rgb"``, not ``"rgb_0"``).
    compressor : None, "none", False, "zstd", "blosc" or list of dict
        Byte codecs of level-0 cells, as the reference's ``compressor``: ``"zstd"`` is
        zstd level 0, ``"blosc"`` blosc(zstd, bitshuffle, level 5), a list gives zarr
        codec documents (``[{"name": "gzip", "configuration": {"level": 5}}]``).
        Links and coarse levels stay uncompressed, as ``build_pyramid`` writes them.
    shard_shape : int or sequence of int, optional
        Level-0 cells per shard along each axis (zarr's ``sharding_indexed``, one
        object per shard); coarse levels are not sharded, as in the reference (see
        ``shard_levels``).  One task writes each shard: rows are shuffled to groups of
        whole shards and whole pyramid blocks.  Where the grid origin is not a multiple of
        ``gcd(block, shard)`` along an axis, shards and blocks do not meet and that
        axis is not split between tasks; a ``bounds`` whose lower corner lies on such a
        multiple of ``chunk_shape`` avoids this.
    storage_options : dict, optional
        fsspec options (credentials, ``endpoint_url``); never shown in messages.
    overwrite : bool
        False: refuse a non-empty target and touch nothing.  True: replace a ZV store,
        or the leftovers of an interrupted write, once the input has passed its checks
        (its root document goes first, so it never opens as a mix of old and new).  A
        file, or a folder holding anything else, is refused either way.
    compute : bool
        False: return a ``dask.delayed`` that writes the store and yields a summary
        dict.  The input checks (one pass over the axis and categorical columns, and
        one over nullable integer/bool/axis columns when there are any), the write
        lock and an ``overwrite=True`` removal still happen now; a delayed that is
        never computed, or fails, leaves the lock (see Notes).
    dtype : {"float32", "float64"}, optional
        Stored position type (the reference's ``dtype``); positions are cast before
        they are assigned to cells.  Default float32 (or ``like``'s).
    max_overhead : float or None
        Every non-empty level-0 chunk stores one 16-byte fragment per bin, empty bins
        included (the format), so a fine ``bin_shape`` can cost far more than the
        points.  After the checks pass over the input and before anything is written
        or removed, the store's size (all levels, uncompressed) is estimated from the
        non-empty chunks; above 256 MiB *and* ``max_overhead`` times the rows' bytes
        (positions and attributes as stored) the write is refused with
        :class:`~zv_dask.errors.WriteInputError` giving the estimate.  ``None``: never
        refuse.
    like : ZVStore, str or os.PathLike, optional
        Copy the layout of this store (a path or URL is opened with
        ``storage_options`` and ``retries``): ``axes``, ``chunk_shape``,
        ``bin_shape``, ``bounds``, ``levels``, ``dtype``, ``compressor`` and
        ``shard_shape`` default to its values (see :func:`zv_dask.write.like.layout_of`).
        A keyword given as well wins over the store's value (``compressor="none"``
        drops its compression, ``shard_shape=False`` its shards).  Rows read from a
        store and written back with ``like=`` that store give the same data blobs,
        byte for byte.  A store ``to_zv`` cannot rebuild (object geometries, coarse
        attributes, other codecs on coarse levels, ``.`` chunk keys) raises
        :class:`~zv_dask.errors.WriteInputError` saying why.
    retries : int
        Transient failures (timeouts, 5xx) of each object put, and of opening ``like``,
        are retried this many times.
    store_attributes : dict, optional
        JSON values added to the root ``zarr.json`` attributes beside the format's own
        (``zv-dask convert`` records a LAS file's scales, offsets and CRS this way);
        the keys ``zarr_vectors``, ``multiscales`` and ``ome`` are refused.
    geometry : {"point", "streamline", "polyline", "graph", "skeleton", "mesh"}
        ``"point"``: a point cloud.  ``"streamline"``/``"polyline"``: one row per vertex
        with an integer ``object_id`` column; the rows of one object, in the frame's
        order (across partitions; other objects' rows may come between), are its line.
        The store is the one ``write_polylines`` makes for the lines in id order (runs
        per chunk, manifests, ``links/0`` bridges, ``object_index/object_ids`` holding
        the ids as given) plus the owner column ``fragment_attributes/object_id`` that
        ``building.build_fragment_owner_index()`` adds; with ``levels > 1`` the
        pyramid ``build_pyramid(factors=[(2, 1)] * (levels - 1))`` adds (then the owner
        column of every level), built per block as for points.  For now with no
        ``shard_shape``; ``compressor`` None or ``"zstd"`` (as the reference's
        ``compressor="zstd"``: level-0 cells, ``links/0``, object ids and object
        attributes compressed, the owner column plain); ``bin_shape`` is recorded
        (``base_bin_shape``) and, as in the reference, does not split object fragments.  Float or ``<NA>`` ids and
        NaN positions raise :class:`~zv_dask.errors.WriteInputError` before writing.
        ``"graph"``/``"mesh"``: the store ``write_graph``/``write_mesh`` makes (one
        fragment per object per chunk, by object id then row; every record in
        ``links/0``, winding and direction restored by the stored permutation), owner
        column included; without an ``object_id`` column every vertex is object 0.
        With ``levels > 1`` the pyramid ``build_pyramid`` then the owner index add
        (coarse levels: each object's metavertices and manifest, no edges or faces).
        ``"skeleton"``: as ``write_graph(kind="skeleton")``: vertices reordered
        depth-first from the first root (their indices, not positions, are gathered
        in one step for that), only the edges the implicit parent rule does not give
        stored; an object with several roots is refused naming it.
    edges : DataFrame or (M, 2) int array, optional
        ``geometry="graph"``/``"skeleton"`` (child -> parent): columns ``source``,
        ``target`` holding global vertex row
        positions (0-based, in the vertices' frame order); every other column is a link
        attribute (numbers).  Rows outside the vertices, floats and ``<NA>`` are refused
        before writing.
    faces : DataFrame or (M, 3) int array, optional
        ``geometry="mesh"``: columns ``v0, v1, v2`` of vertex row positions, in winding
        order (kept).
    object_attributes : pandas.DataFrame, optional
        One row per object, indexed by ``object_id``, numeric columns; each column is an
        ``object_attributes/<name>`` array.  Objects without a row hold the "absent"
        sentinel (NaN, or the integer type's minimum / unsigned maximum); ids with no
        vertices, repeated ids and other dtypes are refused.
    shard_levels : bool
        True: links and coarse levels are sharded too, with ``shard_shape`` and no
        compression: the store the reference's
        ``zarr_vectors.sharding.shard_store(path, shard_shape=shard_shape)`` makes of
        the default one.  Needs ``shard_shape``.  Default False (or ``like``'s: True
        when its coarse levels are sharded).

    Returns
    -------
    ZVStore or dask.delayed.Delayed

    Raises
    ------
    WriteInputError
        Bad options or columns; or the target is, holds or lies inside a location the
        DataFrame reads (its own input: nothing is touched).
    StoreExistsError
        The target is not empty (``overwrite=False``), is a file or foreign files
        (``overwrite=True``), lies inside a ZV store, or another writer holds its lock.

    Notes
    -----
    Targets.  Before anything is written or removed: the frame's inputs found in its
    expression (zv_dask's own readers, ``dd.read_parquet`` paths, the files of
    ``fsspec`` readers such as ``dd.read_csv``; not data a user function opens itself)
    must not be, hold or lie inside the target; no parent of the target may be a ZV
    store (a root ``zarr.json`` with ``zarr_vectors`` attributes) or being written.

    One writer at a time.  The writer creates ``<target>/.zv-write.lock`` (its id,
    host, pid and start time) exclusively, before it clears or writes anything, and
    removes it after the root document: locally with ``O_EXCL``, on object stores
    with fsspec's ``mode="create"`` (S3: a conditional PUT ``If-None-Match: *``),
    elsewhere with check-then-put, which is not atomic.  A second writer gets
    :class:`~zv_dask.errors.StoreExistsError` naming the holder; the first one's
    store is complete and whole.  A failed ``compute=True`` write releases the lock;
    a lock left by an exited process of this host is taken over; any other must be
    deleted by hand once its writer is known to be gone (the error names the file).

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile, os, zv_dask
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame(rng.uniform(0, 100, (1000, 3)), columns=["x", "y", "z"])
    >>> df["intensity"] = rng.random(1000).astype("float32")
    >>> path = os.path.join(tempfile.mkdtemp(), "pts.zarrvectors")
    >>> store = zv_dask.to_zv(df, path, chunk_shape=50, levels=2)
    >>> store.levels, store.vertex_count(0)
    ([0, 1], 1000)
    >>> copy = zv_dask.to_zv(store.to_dask_dataframe(level=0), path + ".copy", like=store)
    >>> copy.levels, copy.chunk_shape == store.chunk_shape
    ([0, 1], True)
    >>> lines = pd.DataFrame({"x": [1., 60, 120, 5, 6], "y": [1., 2, 3, 90, 95],
    ...                       "object_id": [0, 0, 0, 1, 1]})
    >>> s = zv_dask.to_zv(lines, path + ".lines", chunk_shape=50, geometry="streamline",
    ...                   object_attributes=pd.DataFrame({"score": [0.5, 2.0]}))
    >>> r = s.read_objects()
    >>> r["offsets"].tolist(), r["positions"][:3, 0].tolist()
    ([0, 3, 5], [1.0, 60.0, 120.0])
    """
    loc = StoreLocation(path_or_url, storage_options, retries=retries)
    name = loc.url
    if isinstance(df, ObjectSource):
        df, geometry, edges, faces, object_attributes, store_attributes = _unpack_source(
            df, geometry, edges, faces, object_attributes, store_attributes, name)
    if geometry == "point":  # dd.from_pandas(df): df itself, split into views below
        df = _from_pandas_source(df)
    # pandas: partitions of POINT_ROWS rows (a thread holds one, not a million rows)
    ddf = to_dask_frame(df, POINT_ROWS if geometry == "point" else 1_000_000)
    if ddf is None:
        raise WriteInputError(f"df must be a dask or pandas DataFrame, got {type(df).__name__}",
                              store=name)
    layout, like_name = _like_layout(like, storage_options, retries, name)
    asked = {"axes": axes, "chunk_shape": chunk_shape, "bin_shape": bin_shape,
             "bounds": bounds, "levels": levels, "dtype": dtype, "compressor": compressor,
             "shard_shape": shard_shape, "shard_levels": shard_levels}
    o = L.merge_options(layout, asked)
    if o["shard_shape"] is False:
        o["shard_shape"] = None
    dtype, levels, bin_shape = o["dtype"], o["levels"], o["bin_shape"]
    shard_levels = o["shard_levels"]
    from_like = L.taken_from_like(layout, asked)
    objects = OW.check_geometry(geometry, o, attributes, name)
    if objects:
        ddf = OW.with_object_ids(ddf, geometry)
    try:
        if str(dtype) not in ("float32", "float64"):
            raise WriteInputError(f"dtype must be 'float32' or 'float64', got {dtype!r}",
                                  store=name)
        extra_attributes = store_attributes_json(store_attributes, name)
        ax, planned = P.plan_columns(
            [kv for kv in ddf.dtypes.items() if not objects or kv[0] != OW.OBJECT_ID],
            o["axes"], attributes, name)
        cs, bs = P.check_shapes(o["chunk_shape"], bin_shape, len(ax), levels, name)
        given = P.check_bounds(o["bounds"], len(ax), name)
        if given is not None:
            G.check_cell_range(given, cs, bs, ax, name)
        # codecs checked on a grid of one shard now, before any pass over the data
        codecs = resolve_codecs(o["compressor"], o["shard_shape"], len(ax), None, name,
                                shard_levels)
    except WriteInputError as exc:
        raise _with_like(exc, from_like, like_name, name) from None
    if layout is not None and not {"compressor", "shard_shape"} - set(from_like):
        L.check_codecs(layout, codecs["level0_codecs"], like_name, codecs["levels_codecs"])
    max_overhead = check_max_overhead(max_overhead, name)
    refuse_own_input(ddf, loc._spec, name)
    writer = StoreWriter(loc)
    writer.check_target(overwrite)  # cheap, before the pass over the data
    dtypes = dict(ddf.dtypes.items())
    C.refuse_missing(missing_counts(ddf, C.missing_columns(dtypes, ax, planned)), dtypes, ax, name)
    cat_cols = {n: m[0] for n, m, kind, _ in planned if kind == "cat"}
    cache = None
    if objects:
        stats = OW.prepass(ddf, ax, str(dtype), given, cat_cols, cs, OW.OBJECT_ID, name,
                           raw_extent=geometry in OW.POLYLINES,
                           fragments=geometry in OW.RECORD_WIDTH and int(levels or 1) > 1)
        object_attrs = align_object_attributes(object_attributes, stats["object_ids"], name)
        if geometry in OW.RECORD_WIDTH:
            recs = OW.records(geometry, edges, faces, stats["n"], name)
            order = (EG.skeleton_order(ddf, recs[0], OW.OBJECT_ID, name)
                     if geometry == "skeleton" else None)
    else:
        cache = _input_cache(ddf, ax, planned, compute)
        try:
            stats = prepass(ddf, ax, str(dtype), given, cat_cols, binning=G.binning(cs, bs),
                            store=name, cache=cache)
        except BaseException:
            if cache is not None:
                cache.remove()
            raise
    try:
        if cache is not None:  # the write reads the pre-pass's copy, not the files
            ddf = cache.frame(ddf)
        try:
            final_bounds = P.resolve_bounds(stats, given, ax, name)
        except WriteInputError as exc:
            raise _with_like(exc, from_like, like_name, name) from None
        G.check_cell_range(final_bounds, cs, bs, ax, name)
        cats = {n: (P.sorted_categories(v), miss) for n, (v, miss) in stats["cats"].items()}
        grid_shape = P.grid_layout(final_bounds, cs)[1]
        spec = P.WriteSpec(
            store_name=store_name(str(path_or_url)), axes=ax, chunk_shape=cs,
            bin_shape=None if bin_shape is None else bs, bounds=final_bounds, levels=int(levels),
            dtype=str(dtype), attributes=P.attribute_specs(planned, cats, name),
            axis_names=tuple(str(a) for a in ax),
            store_attributes=extra_attributes,
            **resolve_codecs(o["compressor"], o["shard_shape"], len(ax), grid_shape, name,
                             shard_levels))
        # before the lock and clear(): a refused layout leaves the target as it was
        # object cells hold one fragment per run, not per bin: their bins cost nothing
        check_overhead(replace(spec, bin_shape=None) if objects else spec, stats["chunk_rows"],
                       max_overhead, name, stats["chunks"])
        writer.lock()  # one writer at a time; checked again under the lock
        try:
            writer.check_target(overwrite)
            if overwrite:
                writer.clear()
            if objects and geometry in OW.RECORD_WIDTH:
                job = EG.write_graph(ddf, spec, writer, stats, OW.OBJECT_ID, object_attrs,
                                     geometry, recs[0], OW.RECORD_WIDTH[geometry], recs[1],
                                     recs[2], order)
            elif objects:
                job = OG.write_graph(ddf, spec, writer, stats, OW.OBJECT_ID, object_attrs,
                                     geometry)
            else:
                job = write_graph(ddf, spec, writer, stats["chunks"], stats["counts"])
        except BaseException:
            writer.unlock(failed=True)
            raise
        if not compute:
            return job
        try:
            job.compute(**compute_options())
        except BaseException:  # a failed or cancelled write lets the next one in
            writer.unlock(failed=True)
            if getattr(writer, "scratch", None) is not None:  # a local write's spill files
                writer.scratch.remove()
            raise
    finally:
        if cache is not None:
            cache.remove()
    from zv_dask.store import open_zv

    return open_zv(path_or_url, storage_options=storage_options, retries=retries)


def _input_cache(ddf, axes, planned, compute: bool):
    """An :class:`~zv_dask.write.reread.InputCache` of the written columns when the
    input is decoded from files and the write is local and run now, else None."""
    import dask

    from zv_dask.write.reread import InputCache, wants_cache

    cols = list(dict.fromkeys(list(axes) + [c for _, m, _, _ in planned for c in m]))
    if not compute or not wants_cache(ddf, cols, _shuffle_method() == "tasks"):
        return None
    return InputCache(cols, dask.config.get("temporary-directory", None))


def _from_pandas_source(df):
    """The pandas frame behind a bare ``dd.from_pandas`` (its partitions are copies),
    else ``df``."""
    try:
        from zv_dask.collections.expr import pandas_of
    except ImportError:  # pragma: no cover - dask without its expression modules
        return df
    frame = pandas_of(df)
    return df if frame is None else frame


def _unpack_source(source, geometry, edges, faces, object_attributes, store_attributes,
                   name) -> tuple:
    """The frames and keywords of an :class:`ObjectSource`; keywords given as well
    must agree (a different geometry or a second edges/faces/object_attributes is an
    error, never a silent choice)."""
    given = {"edges": edges, "faces": faces, "object_attributes": object_attributes}
    twice = sorted(k for k, v in given.items()
                   if v is not None and getattr(source, k) is not None)
    if twice:
        raise WriteInputError(f"{', '.join(twice)} given twice: the {source.geometry} source "
                              "already holds them; drop the keyword", store=name)
    if geometry not in ("point", source.geometry):
        raise WriteInputError(f"geometry={geometry!r} but the source holds "
                              f"{source.geometry!r} objects; drop geometry=", store=name)
    extra = dict(store_attributes or {})
    if source.source:
        extra.setdefault("zv_dask_source", source.source)
    pick = {k: getattr(source, k) if getattr(source, k) is not None else v
            for k, v in given.items()}
    return (source.vertices, source.geometry, pick["edges"], pick["faces"],
            pick["object_attributes"], extra or None)


def _like_layout(like, storage_options, retries, name) -> tuple:
    """``(layout_of(like), like's URL)``, or ``(None, None)`` without ``like``."""
    if like is None:
        return None, None
    from zv_dask.store import ZVStore, open_zv

    if isinstance(like, ZVStore):
        return L.layout_of(like.metadata, like.url), like.url
    try:
        with open_zv(like, storage_options=storage_options, retries=retries) as store:
            return L.layout_of(store.metadata, store.url), store.url
    except TypeError:
        raise WriteInputError(f"like must be a ZVStore, a path or a URL, got "
                              f"{type(like).__name__}", store=name) from None


def _with_like(exc: WriteInputError, from_like: list, like_name, name) -> WriteInputError:
    """``exc``, saying which of the options it names came from ``like=``."""
    named = [k for k in from_like if k in exc.message]
    if not named:
        return exc
    message = (f"{exc.message} ({', '.join(named)} taken from like={like_name}; give "
               f"{' and '.join(k + '=' for k in named)} to change {'it' if len(named) == 1 else 'them'})")
    if isinstance(exc, InvalidPointsError):
        return InvalidPointsError(message, store=name, count=exc.count, example=exc.example)
    return WriteInputError(message, store=name)
