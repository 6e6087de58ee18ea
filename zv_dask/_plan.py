"""Planning: which level, which chunks, which columns.  Pure arithmetic, no IO, no dask.

bbox semantics (one place, stated once): a bbox is ``(lo, hi)`` with one value per
spatial axis and is **closed**: a vertex is selected when ``lo <= p <= hi`` on every
axis.  A chunk is planned when its half-open box ``[c*s, (c+1)*s)`` meets the closed
bbox, i.e. ``floor(lo/s) <= c <= floor(hi/s)``, which is exactly the set of chunks
that can hold a selected vertex (cell membership is ``floor(p/s)``).  So
``[500, 1000]^3`` with chunk 500 plans chunks 1..2 per axis (8 chunks): the upper
face at 1000 belongs to chunk 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._metadata import AttributeInfo, LevelMeta, Presence, StoreMeta
from .errors import ArrayNotFoundError, LevelNotFoundError, QueryError


def select_level(meta: StoreMeta, target_resolution: float) -> int:
    """Coarsest level N with ``max(bin_shape[N]) <= target_resolution`` (0 if none).

    Examples
    --------
    >>> # bins 50, 100, 200, 400 and target 250 -> level 2
    """
    try:
        t = float(target_resolution)
    except (TypeError, ValueError):
        raise QueryError(f"target_resolution must be a number, got {target_resolution!r}",
                         store=meta.name) from None
    if not math.isfinite(t) or t <= 0:
        raise QueryError(f"target_resolution must be a positive finite number, got {t}",
                         store=meta.name)
    best = None
    for lv, lm in meta.levels.items():
        if float(np.max(lm.bin_shape)) <= t and (best is None or lv > best):
            best = lv
    return min(meta.levels) if best is None else best


def resolve_level(meta: StoreMeta, level=None, target_resolution=None) -> int:
    """The level a query reads: ``level`` alone wins, ``target_resolution`` selects, default 0."""
    if level is not None and target_resolution is not None:
        raise QueryError(
            f"give either level={level} or target_resolution={target_resolution}, not both",
            store=meta.name,
        )
    if target_resolution is not None:
        return select_level(meta, target_resolution)
    if level is None:
        return min(meta.levels)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise QueryError(f"level must be an integer, got {level!r}", store=meta.name)
    if int(level) not in meta.levels:
        raise LevelNotFoundError(
            f"no such level; the store has levels {list(meta.levels)}",
            store=meta.name, level=int(level),
        )
    return int(level)


def normalize_bbox(bbox, ndim: int, store: str | None = None):
    """Validate ``(lo, hi)`` and return two float64 arrays (or ``None``)."""
    if bbox is None:
        return None
    try:
        lo, hi = bbox
        lo = np.asarray(lo, np.float64).reshape(-1)
        hi = np.asarray(hi, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise QueryError(
            f"bbox must be a pair (lo, hi) of {ndim} numbers each, got {bbox!r}", store=store
        ) from None
    if lo.shape != (ndim,) or hi.shape != (ndim,):
        raise QueryError(
            f"bbox must have {ndim} values in lo and in hi (one per axis), got "
            f"{lo.size} and {hi.size}", store=store,
        )
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise QueryError("bbox contains NaN; use -inf/inf for an open side", store=store)
    if (lo > hi).any():
        ax = int(np.flatnonzero(lo > hi)[0])
        raise QueryError(
            f"bbox has lo > hi on axis {ax} ({lo[ax]} > {hi[ax]}); swap the corners",
            store=store,
        )
    return lo, hi


def bbox_index_ranges(lm: LevelMeta, bbox) -> list[tuple[int, int]] | None:
    """Per grid axis the inclusive index range (into the zarr array) a bbox can touch.

    Returns ``None`` when the bbox misses the grid.  A leading attribute axis
    (chunk_by_attribute) is never restricted.
    """
    shape = lm.presence.shape
    origin = lm.presence.origin
    lead = lm.rank - len(lm.chunk_shape)
    ranges = [(0, shape[a] - 1) for a in range(lead)]
    if bbox is None:
        return ranges + [(0, shape[a] - 1) for a in range(lead, lm.rank)]
    lo, hi = bbox
    for d in range(len(lm.chunk_shape)):
        a = lead + d
        n = shape[a]
        s = float(lm.chunk_shape[d])
        i0 = max(_floor_div(float(lo[d]), s) - origin[a], 0)
        i1 = min(_floor_div(float(hi[d]), s) - origin[a], n - 1)
        if i0 > i1:
            return None
        ranges.append((i0, i1))
    return ranges


def _floor_div(x: float, s: float) -> int:
    """Exact ``floor(x / s)`` (the quotient's rounding corrected), finite for +-inf."""
    if not math.isfinite(x):
        return -(2**62) if x < 0 else 2**62
    c = math.floor(x / s)
    if c * s > x:
        c -= 1
    elif (c + 1) * s <= x:
        c += 1
    return c


def plan_cells(lm: LevelMeta, bbox=None) -> np.ndarray:
    """Linear indices (sorted, row-major) of the non-empty cells that touch ``bbox``.

    Cost is O(rows of the bbox's index box * log K + selected), not O(K): the index
    box is cut into runs along the last axis, each found by binary search.
    """
    pres: Presence = lm.presence
    if bbox is None:
        return pres.linear
    ranges = bbox_index_ranges(lm, bbox)
    if ranges is None or len(pres) == 0:
        return np.zeros(0, np.int64)
    shape = pres.shape
    lead_axes = [np.arange(a, b + 1, dtype=np.int64) for a, b in ranges[:-1]]
    k0, k1 = ranges[-1]
    if lead_axes:
        grids = np.meshgrid(*lead_axes, indexing="ij")
        prefix = np.ravel_multi_index([g.ravel() for g in grids], shape[:-1])
    else:
        prefix = np.zeros(1, np.int64)
    starts = prefix * shape[-1] + k0
    stops = prefix * shape[-1] + k1 + 1
    a = np.searchsorted(pres.linear, starts, "left")
    b = np.searchsorted(pres.linear, stops, "left")
    n = b - a
    if n.sum() == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(n)
    take = np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(a - (ends - n), n)
    return pres.linear[take]


def resolve_attributes(lm: LevelMeta, attributes, store: str | None = None) -> list[AttributeInfo]:
    """``None`` -> every attribute, ``[]`` -> none, names -> those (unknown name: error)."""
    if attributes is None:
        return list(lm.attributes.values())
    if isinstance(attributes, str):
        attributes = [attributes]
    out = []
    for name in attributes:
        if name not in lm.attributes:
            raise ArrayNotFoundError(
                f"no attribute {name!r} at this level; available: {sorted(lm.attributes)}",
                store=store, level=lm.level, array=f"vertex_attributes/{name}",
            )
        out.append(lm.attributes[name])
    return out


@dataclass(frozen=True)
class ReadPlan:
    """What a read fetches: one level, the planned cells (row-major) and the columns."""

    level: int
    cells: np.ndarray  # (K, rank) absolute coords
    bbox: tuple | None
    attributes: tuple  # AttributeInfo
    positions: bool
    object_ids: bool


def plan_read(meta: StoreMeta, level=None, bbox=None, target_resolution=None,
              attributes=None, positions=True, object_ids=None) -> ReadPlan:
    """Build the plan of a read (pure)."""
    lv = resolve_level(meta, level, target_resolution)
    lm = meta.levels[lv]
    box = normalize_bbox(bbox, meta.spatial_dims, meta.name)
    attrs = tuple(resolve_attributes(lm, attributes, meta.name))
    lin = plan_cells(lm, box)
    want_ids = lm.object_index is not None if object_ids is None else bool(object_ids)
    return ReadPlan(lv, lm.presence.coords(lin), box, attrs, positions, want_ids)
