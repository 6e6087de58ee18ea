"""Public access to one chunk's fragment index (the seed's ``read_fragment_index``)."""

from __future__ import annotations

from zv_dask.errors import ArrayNotFoundError, ChunkDecodeError
from zv_dask.format.decode import DecodeProblem, FragmentIndex


def read_fragment_index(level_group, array_name: str, chunk_coord) -> FragmentIndex:
    """Read and decode the fragment index of one chunk.

    Parameters
    ----------
    level_group : zarr.Group
        A level group, e.g. ``store.level_group(0)``.
    array_name : str
        ``"vertex_fragments"`` (or ``"link_fragments"``).
    chunk_coord : tuple of int
        Absolute chunk coordinate (``floor(p / chunk_shape)``; may be negative).

    Returns
    -------
    FragmentIndex
        ``num_fragments``, ``num_range_fragments``, ``range(i)`` -> (start, count),
        ``indices(i)`` -> chunk-local rows.  An empty chunk has no fragments.

    Examples
    --------
    >>> import zv_dask
    >>> s = zv_dask.open_zv(zv_dask.example_store())
    >>> fi = zv_dask.read_fragment_index(s.level_group(0), "vertex_fragments", s.chunks(0)[0])
    >>> fi.num_fragments == fi.num_range_fragments
    True
    """
    try:
        arr = level_group[array_name]
    except KeyError:
        raise ArrayNotFoundError(f"no array {array_name!r} in this level group",
                                 store=str(level_group.store), array=array_name) from None
    origin = arr.attrs.get("chunk_grid_origin") or [0] * arr.ndim
    coord = tuple(int(c) for c in chunk_coord)
    if len(coord) != arr.ndim:
        raise ChunkDecodeError(f"chunk coordinate has {len(coord)} values, the grid has {arr.ndim}",
                               array=array_name, chunk=coord)
    idx = [c - o for c, o in zip(coord, origin)]
    if any(i < 0 or i >= n for i, n in zip(idx, arr.shape)):
        return FragmentIndex.from_bytes(b"")
    # slice, never scalar-index: scalar reads of vlen cells strip trailing NUL bytes
    blob = arr[tuple(slice(i, i + 1) for i in idx)].flat[0]
    try:
        return FragmentIndex.from_bytes(b"" if blob is None else bytes(blob))
    except DecodeProblem as exc:
        raise ChunkDecodeError(f"{exc}; the fragment index is corrupt", array=array_name,
                               chunk=coord) from None
