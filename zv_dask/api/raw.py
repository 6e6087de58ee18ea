"""Raw zarr access of a :class:`~zv_dask.store.ZVStore`: ``raw_array``, ``level_group``."""

from __future__ import annotations

from zv_dask.errors import ArrayNotFoundError, QueryError


class RawMethods:
    """Read-only zarr arrays and groups of a level (mixed into ``ZVStore``)."""

    # -- raw access -----------------------------------------------------------------------

    def raw_array(self, array_path: str, level: int = 0):
        """A read-only ``zarr.Array`` of the level (e.g. ``"vertices"``,
        ``"vertex_attributes/intensity"``, ``"object_attributes/mean_fa"``).

        Grid arrays hold one variable-length byte blob per chunk; slice them
        (``a[i:i+1, j:j+1, k:k+1]``), never index with scalars.

        Examples
        --------
        >>> import zv_dask
        >>> s = zv_dask.open_zv(zv_dask.example_store())
        >>> s.raw_array("vertices").ndim
        3
        """
        lm = self._level(level)
        path = _safe_array_path(array_path, self.url, lm.level)
        if path in lm.arrays:
            return self._loc.zarr_array(lm.arrays[path], lm.level)
        import zarr

        try:
            return zarr.open_array(store=self._loc.zarr_store(), path=f"{lm.level}/{path}",
                                   mode="r", zarr_format=3)
        except Exception:
            raise ArrayNotFoundError(
                f"no array {path!r} at this level; known arrays: {sorted(lm.arrays)}",
                store=self.url, level=lm.level, array=path,
            ) from None

    def level_group(self, level: int = 0):
        """The level as a read-only ``zarr.Group``."""
        import zarr

        lm = self._level(level)
        return zarr.open_group(store=self._loc.zarr_store(), path=str(lm.level), mode="r",
                               zarr_format=3, use_consolidated=False)


def _safe_array_path(array_path: str, store: str, level: int) -> str:
    p = str(array_path).strip()
    parts = p.split("/")
    if not p or p.startswith("/") or "\\" in p or any(x in ("", ".", "..") for x in parts) \
            or ":" in parts[0]:
        raise QueryError(
            f"array path {array_path!r} must be relative to the level, without '..', "
            "e.g. 'vertices' or 'vertex_attributes/intensity'",
            store=store, level=level, array=array_path,
        )
    return p
