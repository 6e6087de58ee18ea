"""Objects in a box (pure): which cells to read, and from their decoded columns which
objects have a vertex in the closed box.

A region query reads, for each non-empty cell the box touches, the vertices, the
fragment index and (when the level has it) the owner column
``fragment_attributes/object_id``; :func:`fragments_in_box` says which fragments hold
a row inside the box, :func:`owners_from_column` / :func:`owners_from_table` which
objects own them.  Nothing here does IO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zv_dask.format.metadata import LevelMeta
from zv_dask.format.owners import OWNER_NONE, OWNER_SHARED
from zv_dask.plan.select import plan_cells


@dataclass(frozen=True, eq=False)
class RegionPlan:
    """The cells of one level a box query reads: ``coords`` (K, rank), row-major."""

    level: int
    box: tuple
    coords: np.ndarray


def plan_region(lm: LevelMeta, box) -> RegionPlan:
    """The non-empty cells of ``lm`` that the closed box ``(lo, hi)`` (validated,
    float64) touches; O(cells touched), see :func:`~zv_dask.plan.select.plan_cells`.

    Examples
    --------
    >>> import zv_dask, numpy as np
    >>> s = zv_dask.open_zv(zv_dask.example_store("streamlines"))
    >>> p = plan_region(s.metadata.levels[0], (np.zeros(3), np.full(3, 400.0)))
    >>> p.coords.tolist()
    [[0, 0, 0]]
    """
    return RegionPlan(lm.level, box, lm.presence.coords(plan_cells(lm, box)))


def fragments_in_box(positions: np.ndarray, rows: np.ndarray, frags: np.ndarray, box
                     ) -> np.ndarray:
    """Sorted unique fragments of one cell holding at least one row ``lo <= p <= hi``.

    ``rows``/``frags`` pair each row with each fragment containing it (the fragment
    index's :meth:`~zv_dask.format.fragment_index.FragmentIndex.row_fragment_pairs`).

    Examples
    --------
    >>> p = np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]])
    >>> box = (np.array([4.0, 4.0]), np.array([9.0, 9.0]))
    >>> fragments_in_box(p, np.array([0, 1, 2]), np.array([0, 0, 1]), box).tolist()
    [0, 1]
    """
    lo, hi = box
    inside = np.all((positions >= lo) & (positions <= hi), axis=1)
    if not inside.any() or not len(rows):
        return np.zeros(0, np.int64)
    return np.unique(frags[inside[rows]])


def ranged_fragments_in_box(positions: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                            box) -> np.ndarray:
    """:func:`fragments_in_box` of a cell whose fragments are all ranges (fragment ``f``
    is rows ``starts[f]`` to ``starts[f] + counts[f] - 1``): a prefix count of the rows
    in the box, no row/fragment pairs.

    Examples
    --------
    >>> p = np.array([[0.0], [5.0], [9.0]])
    >>> box = (np.array([4.0]), np.array([6.0]))
    >>> ranged_fragments_in_box(p, np.array([0, 1, 2]), np.array([1, 2, 1]), box).tolist()
    [1]
    """
    lo, hi = box
    inside = np.all((positions >= lo) & (positions <= hi), axis=1)
    seen = np.concatenate([[0], np.cumsum(inside)])
    return np.flatnonzero(seen[starts + counts] > seen[starts]).astype(np.int64)


def owners_from_column(column: np.ndarray, fragments: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(owner ids, fragments marked shared) of ``fragments`` from a cell's owner column
    (:func:`~zv_dask.format.owners.decode_owner_column`); the shared ones need the
    manifests.

    Examples
    --------
    >>> ids, shared = owners_from_column(np.array([4, -1, -2, 4, 9]), np.array([0, 1, 2, 4]))
    >>> ids.tolist(), shared.tolist()
    ([4, 9], [2])
    """
    own = column[fragments]
    return np.unique(own[own > OWNER_NONE]), fragments[own == OWNER_SHARED]


def owners_from_table(table_frags: np.ndarray, table_ids: np.ndarray, fragments: np.ndarray
                      ) -> np.ndarray:
    """Sorted unique ids of the objects whose manifests list one of ``fragments``, from a
    cell's slice of the owner table (:meth:`~zv_dask.format.manifests.OwnerTable.for_cell`).

    Examples
    --------
    >>> owners_from_table(np.array([0, 0, 1, 2]), np.array([3, 5, 5, 8]), np.array([0, 2])).tolist()
    [3, 5, 8]
    """
    return np.unique(table_ids[np.isin(table_frags, fragments)])
