"""Planning: which level, which chunks, which columns.  Pure arithmetic, no IO, no dask.

bbox semantics (one place, stated once): a bbox is ``(lo, hi)`` with one value per
spatial axis and is **closed**: a vertex is selected when ``lo <= p <= hi`` on every
axis, comparing the stored values widened to float64 (rows are clipped exactly).

Cells follow the reference writer's arithmetic, not exact arithmetic: a value goes to
cell ``floor(p / s)`` computed in float64 (so 1.7 is in cell 17 with chunk 0.1, although
1.7 < 17 * 0.1 in exact terms), or, for level-0 points written without object ids, to
``floor(floor(p / b) / round(s / b))`` through the bins ``b`` (:class:`CellRule`).  Both
rules are monotone in ``p``, so a closed bbox plans the non-empty cells from the cell
of ``lo`` to the cell of ``hi`` on every axis (the lowest and highest over the rules).
A chunk's box (:func:`cell_boxes`, reported by ``partitions()``) is the closed range
from the smallest to the largest double the rules put in it; a chunk is planned exactly
when its box meets the bbox.  So ``[500, 1000]^3`` with chunk 500 plans chunks 1..2 per
axis (8 chunks): the upper face at 1000 belongs to chunk 2.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from zv_dask.errors import ArrayNotFoundError, LevelNotFoundError, QueryError
from zv_dask.format.metadata import AttributeInfo, LevelMeta, Presence, StoreMeta


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


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True, eq=False)
class CellRule:
    """How the writers of one level put a value in a cell, per spatial axis.

    ``chunk`` is the level's chunk size ``s``: cell ``floor(p / s)`` (float64
    division).  ``bins``/``per_chunk`` are the binned point writer's bin size ``b``
    and bins per chunk ``n``: cell ``floor(floor(p / b) / n)``; ``None`` on levels
    that writer does not produce.
    """

    chunk: np.ndarray
    bins: np.ndarray | None = None
    per_chunk: np.ndarray | None = None


def cell_rule(lm: LevelMeta) -> CellRule:
    """The :class:`CellRule` of a level.

    Level 0 written without object ids by the reference point writer assigns cells
    through its bins (``n = round(s / b)``); everything else (object ids, lines,
    graphs, meshes, pyramid levels) divides by the chunk size.  Both rules are kept
    when they can differ, because the metadata does not say which writer ran.

    Examples
    --------
    >>> # chunk 0.7, bin 0.1 at level 0 -> CellRule(chunk=[0.7], bins=[0.1], per_chunk=[7])
    """
    cs = np.asarray(lm.chunk_shape, np.float64)
    if lm.level != 0:
        return CellRule(cs)
    b = np.asarray(lm.bin_shape, np.float64)
    if b.shape != cs.shape or not np.all(np.isfinite(b) & (b > 0)) or np.array_equal(b, cs):
        return CellRule(cs)
    n = np.round(cs / b)  # the writer's int(round(s / b)): half to even, like numpy
    if (n < 1).any():
        return CellRule(cs)
    return CellRule(cs, b, n.astype(np.int64))


_BIG = float(2**62)  # cell numbers are clamped here: +-inf and absurd values stay int64


def _floor_cells(x, s) -> np.ndarray:
    """``floor(x / s)`` in float64, exactly as the writer computes it, as clamped int64."""
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.floor(np.asarray(x, np.float64) / s)
    return np.clip(q, -_BIG, _BIG).astype(np.int64)


def writer_cells(rule: CellRule, values) -> list[np.ndarray]:
    """The cell of each value ``(..., D)`` under each of the level's writer rules.

    Examples
    --------
    >>> r = CellRule(np.array([0.1]))
    >>> writer_cells(r, np.array([[1.7]]))[0].tolist()   # 1.7 / 0.1 == 17.0 in float64
    [[17]]
    """
    out = [_floor_cells(values, rule.chunk)]
    if rule.bins is not None:
        out.append(np.floor_divide(_floor_cells(values, rule.bins), rule.per_chunk))
    return out


def bbox_cell_range(rule: CellRule, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Per spatial axis the inclusive range ``(c0, c1)`` of cells that can hold a value
    of the closed box ``[lo, hi]`` (int64, clamped to +-2**62 for infinite sides).

    Every rule is monotone in the value, so the cells of ``lo <= p <= hi`` lie between
    the cells of ``lo`` and of ``hi``; no cell of the box is enumerated.

    Examples
    --------
    >>> c0, c1 = bbox_cell_range(CellRule(np.array([0.1])), [0.0], [1.7])
    >>> int(c0[0]), int(c1[0])
    (0, 17)
    """
    c_lo = writer_cells(rule, lo)
    c_hi = writer_cells(rule, hi)
    return np.minimum.reduce(c_lo), np.maximum.reduce(c_hi)


def cell_boxes(rule: CellRule, cells) -> tuple[np.ndarray, np.ndarray]:
    """Closed float64 box of each cell: per axis the smallest and the largest double
    that any of the level's writer rules puts in that cell.

    ``cells`` is ``(K, D)`` absolute spatial cell coordinates; returns two ``(K, D)``
    float64 arrays.  Every stored row of a cell lies inside its box, and a cell is
    planned for a bbox exactly when its box meets the bbox.

    Examples
    --------
    >>> lo, hi = cell_boxes(CellRule(np.array([0.1])), np.array([[17]]))
    >>> float(lo[0, 0]), float(hi[0, 0])    # 1.7 is in cell 17, 1.8 in cell 18
    (1.7, 1.7999999999999998)
    """
    k = np.asarray(cells, np.int64)
    lo = _first_value(k, rule.chunk)
    hi = np.nextafter(_first_value(k + 1, rule.chunk), -np.inf)
    if rule.bins is not None:
        n = rule.per_chunk
        lo = np.minimum(lo, _first_value(k * n, rule.bins))
        hi = np.maximum(hi, np.nextafter(_first_value((k + 1) * n, rule.bins), -np.inf))
    return lo, hi


_STEPS = 8  # k*s lands within a few ulps of the answer; more means extreme s or k


def _first_value(k: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Smallest double ``x`` with ``floor(x / s) >= k`` (float64 division), elementwise."""
    kf = k.astype(np.float64)
    s = np.broadcast_to(np.asarray(s, np.float64), kf.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        x = kf * s
        for _ in range(_STEPS):  # down while the double below still reaches k
            prev = np.nextafter(x, -np.inf)
            m = prev / s >= kf
            if not m.any():
                break
            x = np.where(m, prev, x)
        for _ in range(_STEPS):  # up while x does not reach k
            m = x / s < kf
            if not m.any():
                break
            x = np.where(m, np.nextafter(x, np.inf), x)
        bad = ~((x / s >= kf) & (np.nextafter(x, -np.inf) / s < kf))
    if bad.any():
        x = x.copy()
        for i in zip(*np.nonzero(bad)):
            x[i] = _first_value_bisect(float(kf[i]), float(s[i]))
    return x


def _first_value_bisect(k: float, s: float) -> float:
    """:func:`_first_value` for one element, by bisection over the ordered doubles."""
    def key(x: float) -> int:
        b = struct.unpack("<q", struct.pack("<d", x))[0]
        return b if b >= 0 else -(b & 0x7FFFFFFFFFFFFFFF)

    def val(key: int) -> float:
        b = key if key >= 0 else (-key) | (1 << 63)
        return struct.unpack("<d", struct.pack("<Q", b))[0]

    lo, hi = key(-math.inf), key(math.inf)  # the predicate is false at -inf, true at +inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if val(mid) / s >= k:
            hi = mid
        else:
            lo = mid
    return val(hi)


def cells_in_bbox(lm: LevelMeta, cells: np.ndarray, bbox) -> np.ndarray:
    """Mask of the cells (absolute coords, full rank) whose :func:`cell_boxes` box meets
    the closed ``bbox`` (pure; a leading attribute axis is never restricted)."""
    if bbox is None or not len(cells):
        return np.ones(len(cells), bool)
    c0, c1 = bbox_cell_range(cell_rule(lm), *bbox)
    sp = np.asarray(cells, np.int64)[:, lm.rank - len(lm.chunk_shape):]
    return ((sp >= c0) & (sp <= c1)).all(1)


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
    c0, c1 = bbox_cell_range(cell_rule(lm), *bbox)
    for d in range(len(lm.chunk_shape)):
        a = lead + d
        i0 = max(int(c0[d]) - origin[a], 0)
        i1 = min(int(c1[d]) - origin[a], shape[a] - 1)
        if i0 > i1:
            return None
        ranges.append((i0, i1))
    return ranges


def plan_cells(lm: LevelMeta, bbox=None) -> np.ndarray:
    """Linear indices (sorted, row-major) of the non-empty cells that touch ``bbox``.

    Cost is O(min(R log K, K)) for K non-empty cells and R rows of the bbox's index
    box (its cells with the last axis collapsed), whatever the grid's declared shape:
    the first axis's range is one run of the sorted presence list; a box of few rows
    finds its runs in it by binary search, any other box filters the run.
    """
    pres: Presence = lm.presence
    if bbox is None:
        return pres.linear
    ranges = bbox_index_ranges(lm, bbox)
    if ranges is None or len(pres) == 0:
        return np.zeros(0, np.int64)
    shape = pres.shape
    stride = math.prod(shape[1:])
    a = int(np.searchsorted(pres.linear, ranges[0][0] * stride, "left"))
    b = int(np.searchsorted(pres.linear, (ranges[0][1] + 1) * stride, "left"))
    run = pres.linear[a:b]
    if len(run) == 0:
        return run
    if math.prod(i1 - i0 + 1 for i0, i1 in ranges[:-1]) > len(run):
        return run[cells_in_bbox(lm, pres.coords(run), bbox)]
    lead_axes = [np.arange(i0, i1 + 1, dtype=np.int64) for i0, i1 in ranges[:-1]]
    if lead_axes:
        grids = np.meshgrid(*lead_axes, indexing="ij")
        prefix = np.ravel_multi_index([g.ravel() for g in grids], shape[:-1])
    else:
        prefix = np.zeros(1, np.int64)
    k0, k1 = ranges[-1]
    starts = np.searchsorted(run, prefix * shape[-1] + k0, "left")
    n = np.searchsorted(run, prefix * shape[-1] + k1 + 1, "left") - starts
    ends = np.cumsum(n)
    if not len(ends) or ends[-1] == 0:
        return np.zeros(0, np.int64)
    take = np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(starts - (ends - n), n)
    return run[take]


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
