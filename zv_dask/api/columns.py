"""Column names of a store's collections (mixed into ``ZVStore`` via ``DaskMethods``)."""

from __future__ import annotations

import warnings

from zv_dask.errors import ZVWarning
from zv_dask.format.levels import attribute_columns


class ColumnMethods:
    """How stored attributes are named in dataframes and datasets."""

    def column_names(self, level: int = 0) -> dict:
        """``{stored attribute name: its columns}`` in dataframes and xarray datasets of
        ``level``.

        An attribute's columns are its name (one column) or ``name_0 ... name_{C-1}``.
        An attribute whose column would be an axis (``x``, ...), ``object_id``,
        ``owner_count``, ``positions`` or another attribute's column is renamed
        ``attr_<name>`` (``attr_attr_<name>`` when that is taken too, and so on;
        attributes are taken in name order, axes and added columns never change
        name).  A level with such an attribute warns (:class:`ZVWarning`) once per
        store handle.  Filters on a renamed column are exact; axis filters prune
        chunks on the real axis only.  ``attributes=[...]`` selections everywhere,
        :meth:`read` and :meth:`iter_chunks` use the stored name (``read()`` keeps the
        positions and the attributes apart, so it renames nothing).

        Examples
        --------
        >>> import zv_dask
        >>> zv_dask.open_zv(zv_dask.example_store()).column_names(0)["intensity"]
        ['intensity']
        """
        lm = self._level(level)
        attrs = list(lm.attributes.values())
        widths = self._widths(lm.level, attrs)
        return attribute_columns(self.axes, [(a.name, widths[a.name]) for a in attrs])

    def _warn_renamed(self, level: int, attributes, widths) -> None:
        """One :class:`ZVWarning` per handle and level naming the renamed attributes."""
        every = {a.name: a for a in self._meta.levels[level].attributes.values()}
        every.update({a.name: a for a in attributes})
        names = attribute_columns(self.axes, [(a.name, widths.get(a.name, a.width))
                                              for a in every.values()])
        renamed = {a: c for a, c in names.items()
                   if c != ([a] if len(c) == 1 else [f"{a}_{j}" for j in range(len(c))])}
        if not renamed:
            return
        with self._lock:  # once per handle and level
            if ("renamed", level) in self._derived:
                return
            self._derived[("renamed", level)] = True
        said = ", ".join(f"{a!r} -> {c[0] if len(c) == 1 else c}" for a, c in renamed.items())
        warnings.warn(ZVWarning(
            f"store {self.url}, level {level}: attributes named like an axis or a column "
            f"zv_dask adds get columns of their own: {said}; filter on those columns, and "
            "select attributes by their stored name (ZVStore.column_names)"), stacklevel=3)

    def _stored_name(self, level, target_resolution, name: str) -> str:
        """``to_dask_array``'s ``name``: a stored attribute name, else a renamed column
        of one attribute (``attr_x`` for the attribute ``x``)."""
        if target_resolution is not None and level is None:
            return name
        lm = self._level(0 if level is None else level)
        if name in lm.attributes:
            return name
        for stored, cols in self.column_names(lm.level).items():
            if cols == [name] and stored != name:
                return stored
        return name
