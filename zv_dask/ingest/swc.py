"""SWC skeletons: the whitespace table of nodes -> vertices, child -> parent edges, trees.

An SWC line is ``id type x y z radius parent`` (``#`` starts a comment, ``parent``
negative for a root).  The table is parsed in one vectorised read (pandas' C parser);
only a file that does not parse is read again line by line, to name its first bad line.
Each tree (a root and the nodes that reach it) is one object; rows keep the file's
order, edges are ``(child row, parent row)`` within the file.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from zv_dask.errors import InputFileError
from zv_dask.ingest.files import read_bytes

FIELDS = ("node_id", "type", "x", "y", "z", "radius", "parent")
#: the vertex columns of a parsed file, with their dtypes
VERTEX_COLUMNS = (("x", "float64"), ("y", "float64"), ("z", "float64"),
                  ("radius", "float64"), ("type", "int32"), ("node_id", "int64"))


def _bad_line(data: bytes, path: str) -> InputFileError:
    """The error naming the first line of ``data`` that is not an SWC node."""
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        why = None
        if len(fields) != 7:
            why = f"{len(fields)} fields, an SWC node has 7 (id type x y z radius parent)"
        else:
            try:
                values = [float(v) for v in fields]
            except ValueError:
                why = "a field is not a number"
            else:
                if not all(np.isfinite(values)):
                    why = "a field is not finite"
                elif any(values[i] != int(values[i]) for i in (0, 1, 6)):
                    why = "id, type and parent must be integers"
        if why:
            return InputFileError(f"{path} line {number}: {why}: {raw.strip()[:120]!r}; "
                                  "fix or remove the line")
    return InputFileError(f"{path} does not parse as SWC; check the file")


def _line_numbers(data: bytes) -> np.ndarray:
    """The 1-based line number of every node line (not blank, not a comment)."""
    out = [i for i, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1)
           if raw.split("#", 1)[0].strip()]
    return np.asarray(out, np.int64)


def parse_swc(data: bytes, path: str):
    """``(nodes, parent_row, root_of)`` of one SWC file: the node table (a pandas frame
    with :data:`VERTEX_COLUMNS`, file order), each row's parent row (-1 for roots) and
    the row of each row's root.  Raises :class:`~zv_dask.errors.InputFileError` naming
    the file and line of a malformed node, a repeated id, a parent that is not in the
    file, or a cycle.

    Examples
    --------
    >>> nodes, parent, root = parse_swc(b"# two trees\\n1 1 0 0 0 1 -1\\n2 3 1 0 0 .5 1\\n"
    ...                                 b"7 1 5 5 5 1 -1\\n", "f.swc")
    >>> nodes.node_id.tolist(), parent.tolist(), root.tolist()
    ([1, 2, 7], [-1, 0, -1], [0, 0, 2])
    """
    try:
        table = pd.read_csv(io.BytesIO(data), sep=r"\s+", comment="#", header=None,
                            names=FIELDS, dtype="float64", engine="c")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        if isinstance(exc, pd.errors.EmptyDataError):
            raise InputFileError(f"{path} holds no SWC nodes; check the file") from None
        raise _bad_line(data, path) from None
    values = table.to_numpy()
    if not len(values):
        raise InputFileError(f"{path} holds no SWC nodes; check the file")
    whole = values[:, [0, 1, 6]]
    if not np.isfinite(values).all() or (whole != np.round(whole)).any():
        raise _bad_line(data, path)
    ids, parents = values[:, 0].astype(np.int64), values[:, 6].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    repeated = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(repeated):
        row = int(order[repeated[0] + 1])
        line = _line_numbers(data)[row]
        raise InputFileError(f"{path} line {line}: node id {ids[row]} is used twice; "
                             "give every node its own id")
    is_root = parents < 0
    where = np.searchsorted(sorted_ids, parents)
    found = is_root | ((where < len(ids)) & (sorted_ids[np.minimum(where, len(ids) - 1)]
                                             == parents))
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        line = _line_numbers(data)[row]
        raise InputFileError(f"{path} line {line}: node {ids[row]} has parent {parents[row]}, "
                             "which is not a node of the file; fix the parent id")
    parent_row = np.where(is_root, -1, order[np.minimum(where, len(ids) - 1)])
    root_of = _roots(parent_row)
    if (root_of < 0).any():
        row = int(np.flatnonzero(root_of < 0)[0])
        line = _line_numbers(data)[row]
        raise InputFileError(f"{path} line {line}: node {ids[row]} lies on a cycle of parent "
                             "links (its tree has no root); fix the parent ids")
    nodes = pd.DataFrame({"x": values[:, 2], "y": values[:, 3], "z": values[:, 4],
                          "radius": values[:, 5], "type": values[:, 1].astype(np.int32),
                          "node_id": ids})
    return nodes, parent_row, root_of


def _roots(parent_row: np.ndarray) -> np.ndarray:
    """The root row of every row by pointer doubling (log-depth numpy steps); -1 for a
    row on a cycle or below one."""
    n = len(parent_row)
    up = np.where(parent_row < 0, np.arange(n), parent_row)
    for _ in range(max(int(n).bit_length(), 1) + 1):
        nxt = up[up]
        if np.array_equal(nxt, up):
            break
        up = nxt
    return np.where(parent_row[up] < 0, up, -1)


def trees(parent_row: np.ndarray, root_of: np.ndarray) -> tuple:
    """``(root rows in file order, tree index of every row)``: trees are numbered by
    the line of their root."""
    roots = np.flatnonzero(parent_row < 0)
    return roots, np.searchsorted(roots, root_of)


class SwcReader:
    """Reads one file in a task: ``reader((path, file_index, row_offset, object_offset))``
    gives its vertices (``what="vertices"``, with ``object_id``) or its edges
    (``what="edges"``: ``source``, ``target`` global rows, child -> parent)."""

    def __init__(self, what: str, storage_options=None):
        self.what = what
        self.storage_options = storage_options

    def __dask_tokenize__(self):
        return ("SwcReader", self.what, sorted((self.storage_options or {}).items()))

    def __call__(self, part):
        path, _, row_offset, object_offset = part
        nodes, parent_row, root_of = parse_swc(read_bytes(path, self.storage_options), path)
        if self.what == "edges":
            child = np.flatnonzero(parent_row >= 0)
            return pd.DataFrame({"source": child + row_offset,
                                 "target": parent_row[child] + row_offset})
        nodes["object_id"] = trees(parent_row, root_of)[1].astype(np.int64) + object_offset
        return nodes


def summary(path: str, storage_options=None) -> dict:
    """What the builder needs of one file before its tasks: node count and, per tree,
    the root's node id and node count (also checks the whole file)."""
    nodes, parent_row, root_of = parse_swc(read_bytes(path, storage_options), path)
    roots, tree = trees(parent_row, root_of)
    return {"path": path, "vertex_count": len(nodes),
            "root_ids": nodes.node_id.to_numpy()[roots].tolist(),
            "tree_sizes": np.bincount(tree, minlength=len(roots)).tolist()}
