"""What ``to_zv`` will write, decided before anything is written.  Pure: no IO, no dask.

Column roles (axes, attributes, multi-column and categorical attributes; see
:mod:`zv_dask.write.columns`, whose names are re-exported here), the grid
arithmetic the reference writer uses (float64 ``floor(p / bin)``, chunk = bin // bins
per chunk, inclusive bounds), the pyramid's bin shapes and the block size that lets
one task build every level of the chunks under it, and the checks on positions
(NaN/inf, outside bounds) with their typed errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from zv_dask.errors import InvalidPointsError, WriteInputError
from zv_dask.write.columns import (  # noqa: F401  (column roles live there)
    RESERVED_COLUMNS,
    AttrSpec,
    attribute_specs,
    plan_columns,
)
from zv_dask.write.grid import check_bins_per_chunk

KEY_COLUMN = "_zv_block"
GROUP_COLUMN = "_zv_group"      # shuffle key of a sharded write: whole blocks and shards
SEQ_COLUMN = "_zv_seq"
# rows of partition i get sequence numbers i * 2**40 + row: input order survives the shuffle
SEQ_STRIDE = 1 << 40


@dataclass(frozen=True)
class WriteSpec:
    """Everything a write task needs; small and picklable."""

    store_name: str
    axes: tuple                     # axis column names, in order
    chunk_shape: tuple
    bin_shape: tuple | None         # as given (None: one bin per chunk)
    bounds: tuple                   # ((lo...), (hi...)) float
    levels: int = 1
    dtype: str = "float32"
    attributes: tuple = ()
    compressor: str | None = None   # applied by the block builder: None or "zstd"
    axis_names: tuple = field(default=())
    shard_shape: tuple | None = None  # level-0 cells per shard and axis
    level0_codecs: str = ""         # JSON codecs document of level-0 grid arrays (zarr's)
    recode_compressors: str = ""    # JSON compressors when level-0 cells go through zarr
                                    # (see write.codecs); "" when the builder frames them
    store_attributes: str = ""      # JSON object merged into the root attributes
    levels_codecs: str = ""         # JSON codecs document of links and coarse levels when
                                    # shard_levels=True (sharded); "" plain

    @property
    def recode(self) -> bool:
        return self.recode_compressors != ""

    @property
    def ndim(self) -> int:
        return len(self.axes)

    @property
    def base_bin(self) -> tuple:
        return tuple(self.bin_shape if self.bin_shape is not None else self.chunk_shape)

    @property
    def bins_per_chunk(self) -> tuple:
        return tuple(int(round(c / b)) for c, b in zip(self.chunk_shape, self.base_bin))

    def level_bin(self, level: int) -> tuple:
        return tuple(float(b) * 2 ** level for b in self.base_bin)

    @property
    def block_chunks(self) -> tuple:
        """Chunks per axis of one task's block: every coarse bin and chunk nests in it."""
        top = 2 ** (self.levels - 1)
        return tuple(top // math.gcd(int(b), top) for b in self.bins_per_chunk)

    def grid(self) -> tuple:
        """``(origin, shape)`` of every level's chunk grid (inclusive bounds)."""
        return grid_layout(self.bounds, self.chunk_shape)

    def block_grid(self) -> tuple:
        origin, shape = self.grid()
        m = np.asarray(self.block_chunks, np.int64)
        lo = np.floor_divide(np.asarray(origin, np.int64), m)
        hi = np.floor_divide(np.asarray(origin, np.int64) + np.asarray(shape) - 1, m)
        return tuple(int(x) for x in lo), tuple(int(x) for x in hi - lo + 1)


def grid_layout(bounds, chunk_shape) -> tuple:
    """Origin ``floor(lo / c)`` and shape ``floor(hi / c) - origin + 1`` (bounds inclusive)."""
    lo = np.asarray(bounds[0], np.float64)
    hi = np.asarray(bounds[1], np.float64)
    cs = np.asarray(chunk_shape, np.float64)
    origin = tuple(int(np.floor(a / c)) for a, c in zip(lo, cs))
    shape = tuple(max(1, int(np.floor(b / c)) - o + 1) for b, c, o in zip(hi, cs, origin))
    return origin, shape


# ----------------------------------------------------------------------------- options


def check_shapes(chunk_shape, bin_shape, ndim: int, levels, store: str) -> tuple:
    """Validate chunk/bin shapes and levels; return them as float tuples (bin may be None)."""
    def vec(name, v):
        if np.ndim(v) == 0:
            v = [v] * ndim
        try:
            out = tuple(float(x) for x in v)
        except (TypeError, ValueError):
            raise WriteInputError(f"{name} must be numbers, got {v!r}", store=store) from None
        if len(out) != ndim:
            raise WriteInputError(f"{name} has {len(out)} values but there are {ndim} axes",
                                  store=store)
        if not all(math.isfinite(x) and x > 0 for x in out):
            raise WriteInputError(f"{name} values must be finite and > 0, got {out}", store=store)
        return out

    if chunk_shape is None:
        raise WriteInputError("chunk_shape is required (world units per chunk edge), or "
                              "like=STORE to copy the layout of a store", store=store)
    cs = vec("chunk_shape", chunk_shape)
    bs = None if bin_shape is None else vec("bin_shape", bin_shape)
    if bs is not None:
        for c, b in zip(cs, bs):
            r = c / b
            if b > c or abs(r - round(r)) > 1e-9 * max(1.0, r):
                raise WriteInputError(
                    f"bin_shape {bs} must divide chunk_shape {cs} a whole number of times "
                    "per axis", store=store)
    if bs is not None:
        check_bins_per_chunk(cs, bs, store)
    if not isinstance(levels, (int, np.integer)) or isinstance(levels, bool) or levels < 1:
        raise WriteInputError(f"levels must be an integer >= 1, got {levels!r}", store=store)
    if levels > 16:
        raise WriteInputError(f"levels={levels} is more than 16; each level halves the "
                              "resolution, so that many are never useful", store=store)
    return cs, bs


def check_bounds(bounds, ndim: int, store: str):
    if bounds is None:
        return None
    try:
        lo, hi = bounds
        lo = tuple(float(x) for x in lo)
        hi = tuple(float(x) for x in hi)
    except (TypeError, ValueError):
        raise WriteInputError(f"bounds must be ([min...], [max...]), got {bounds!r}",
                              store=store) from None
    if len(lo) != ndim or len(hi) != ndim:
        raise WriteInputError(f"bounds must have {ndim} values per corner", store=store)
    if not all(math.isfinite(v) for v in lo + hi) or any(a > b for a, b in zip(lo, hi)):
        raise WriteInputError(f"bounds must be finite with min <= max, got {bounds!r}",
                              store=store)
    return lo, hi


# ----------------------------------------------------------------------------- columns


def category_value(v):
    """A category as JSON wants it (numpy scalars unwrapped, bytes decoded)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    return v


# ----------------------------------------------------------------------------- rows


def positions_of(frame, spec_axes, dtype: str) -> np.ndarray:
    """``(N, D)`` positions cast to the stored dtype (the reference casts before binning)."""
    if not spec_axes:
        return np.zeros((0, 0), dtype)
    out = np.empty((len(frame), len(spec_axes)), dtype)
    for j, a in enumerate(spec_axes):  # column by column: no (N, D) float64 copy
        s = frame[a]
        # numpy floats cast straight (float32 -> float64 -> float32 is exact); others
        # through float64 first, as the reference does, so integers round the same way
        plain = isinstance(s.dtype, np.dtype) and s.dtype.kind == "f"
        out[:, j] = s.to_numpy() if plain else s.to_numpy(dtype=np.float64)
    return out


def block_keys(pos: np.ndarray, spec: WriteSpec) -> np.ndarray:
    """Linear block key per row (the shuffle key): block of the row's level-0 chunk."""
    chunks = level0_chunks(pos, spec)[0]
    lo, shape = spec.block_grid()
    blk = np.floor_divide(chunks, np.asarray(spec.block_chunks, np.int64)) - np.asarray(lo)
    if len(blk) == 0:
        return np.zeros(0, np.int64)
    return np.ravel_multi_index(tuple(blk.T), shape).astype(np.int64)


def level0_chunks(pos: np.ndarray, spec: WriteSpec) -> tuple:
    """Chunk coords and fragment (local bin) index per row, exactly as ``write_points``:
    ``bin = floor(p / bin_shape)`` in float64, ``chunk = bin // bins_per_chunk``."""
    b = pos.astype(np.float64)  # in place from here: one float64 temporary
    b /= np.asarray(spec.base_bin, np.float64)
    np.floor(b, out=b)
    bins = b.astype(np.int64)
    del b
    bpc = np.asarray(spec.bins_per_chunk, np.int64)
    if (bpc == 1).all():  # one bin per chunk: the bins are the chunks
        return bins, np.zeros(len(bins), np.int64)
    chunks = np.floor_divide(bins, bpc)
    local = bins - chunks * bpc
    strides = np.cumprod(np.concatenate(([1], bpc[::-1][:-1])))[::-1]
    return chunks, local @ strides if len(bins) else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------- checks


_CATEGORY_TYPES = (str, int, float, np.integer, np.floating, np.bool_)


def partition_stats(frame, axes, dtype: str, bounds, cat_columns: dict,
                    store: str | None = None, pos: np.ndarray | None = None) -> dict:
    """Small per-partition facts for the checks: counts, examples, extent, categories.
    A categorical column holding values that are not strings or numbers (lists, dicts,
    bytes, ...) raises :class:`WriteInputError` here, before anything is written.
    ``pos``: the frame's :func:`positions_of`, when the caller has them already."""
    if pos is None:
        pos = positions_of(frame, axes, dtype)
    finite = np.isfinite(pos).all(axis=1) if len(pos) else np.ones(0, bool)
    st = {"n": len(pos), "bad": int((~finite).sum()), "bad_example": None,
          "lo": None, "hi": None, "out": 0, "out_example": None, "cats": {}}
    if st["bad"]:
        st["bad_example"] = pos[~finite][0].astype(np.float64).tolist()
    good = pos[finite] if st["bad"] else pos
    if len(good):
        st["lo"] = good.min(axis=0).astype(np.float64).tolist()
        st["hi"] = good.max(axis=0).astype(np.float64).tolist()
        if bounds is not None:
            # compared in the stored dtype, as the reference's out_of_bounds="raise"
            lo = np.asarray(bounds[0], np.float64).astype(good.dtype)
            hi = np.asarray(bounds[1], np.float64).astype(good.dtype)
            out = ~((good >= lo) & (good <= hi)).all(axis=1)
            st["out"] = int(out.sum())
            if st["out"]:
                st["out_example"] = good[out][0].astype(np.float64).tolist()
    for name, col in cat_columns.items():
        s = frame[col]
        missing = bool(s.isna().any())
        try:
            vals = s.dropna().unique()
        except TypeError:  # unhashable values (lists, dicts, arrays): find the first
            kept = s.dropna()
            vals = kept[~kept.map(lambda v: isinstance(v, _CATEGORY_TYPES))].iloc[:1]
        for v in np.asarray(vals, dtype=object):
            if not isinstance(v, _CATEGORY_TYPES):
                how = 'str.decode("utf-8")' if isinstance(v, bytes) else "astype(str)"
                raise WriteInputError(
                    f"column {col!r} holds a {type(v).__name__} value ({v!r:.60}); a ZV "
                    "attribute holds numbers or categories of strings or numbers: convert "
                    f"the column (for example df[{col!r}].{how}) or leave it out "
                    "(attributes=[...])", store=store)
        st["cats"][name] = ({category_value(v) for v in np.asarray(vals, dtype=object)}, missing)
    return st


def merge_stats(parts: list) -> dict:
    out = {"n": 0, "bad": 0, "bad_example": None, "lo": None, "hi": None, "out": 0,
           "out_example": None, "cats": {}}
    for p in parts:
        out["n"] += p["n"]
        for k in ("bad", "out"):
            out[k] += p[k]
            if out[k + "_example"] is None:
                out[k + "_example"] = p[k + "_example"]
        if p["lo"] is not None:
            out["lo"] = p["lo"] if out["lo"] is None else np.minimum(out["lo"], p["lo"]).tolist()
            out["hi"] = p["hi"] if out["hi"] is None else np.maximum(out["hi"], p["hi"]).tolist()
        for name, (vals, missing) in p["cats"].items():
            v0, m0 = out["cats"].get(name, (set(), False))
            out["cats"][name] = (v0 | vals, m0 or missing)
    return out


def resolve_bounds(stats: dict, bounds, axes, store: str) -> tuple:
    """Raise on bad positions; return the bounds to record (data extent by default)."""
    if stats["bad"]:
        ex = dict(zip(axes, stats["bad_example"]))
        raise InvalidPointsError(
            f"{stats['bad']} of {stats['n']} rows have NaN or infinite positions (e.g. {ex}); "
            "drop or fix them first (df.dropna(subset=axes))", store=store,
            count=stats["bad"], example=ex)
    if stats["out"]:
        ex = dict(zip(axes, stats["out_example"]))
        raise InvalidPointsError(
            f"{stats['out']} of {stats['n']} points are outside bounds {bounds} (e.g. {ex}); "
            "widen bounds=, filter the rows, or leave bounds=None to use the data extent",
            store=store, count=stats["out"], example=ex)
    if bounds is not None:
        return bounds
    if stats["lo"] is None:
        raise WriteInputError("the DataFrame has no rows, so there is no extent to use as "
                              "bounds; pass bounds=([min...], [max...])", store=store)
    return tuple(stats["lo"]), tuple(stats["hi"])


def sorted_categories(vals: set) -> list:
    try:
        return sorted(vals)
    except TypeError:  # mixed types: the reference sorts them as strings
        return sorted(vals, key=str)
