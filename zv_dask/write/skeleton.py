"""Skeletons (``links_convention: implicit_sequential_with_branches``) as the reference's
``write_graph(kind="skeleton")`` writes them.  Pure: no IO, no dask.

The vertices are reordered depth-first from the first root (a vertex that is nobody's
child), children in edge order, then every vertex the walk did not reach in row order;
a record ``(child, parent)`` is stored only when the reader's implicit rule (parent =
previous row of the level, except at a fragment start) does not already give it.  Each
object must hold one tree: an object with several roots is refused naming it.
"""

from __future__ import annotations

import numpy as np

from zv_dask.errors import WriteInputError


def check_one_root_per_object(child: np.ndarray, object_ids: np.ndarray, store: str) -> None:
    has_parent = np.zeros(len(object_ids), bool)
    has_parent[child] = True
    roots = np.flatnonzero(~has_parent)
    root_oids = np.sort(object_ids[roots])
    repeated = root_oids[1:][root_oids[1:] == root_oids[:-1]]
    if len(repeated):
        bad = int(repeated[0])
        n = int((object_ids[roots] == bad).sum())
        raise WriteInputError(
            f"geometry='skeleton' stores one rooted tree per object, but object {bad} has "
            f"{n} roots (vertices that are no edge's source); give each tree its own "
            "object_id, or write it with geometry='graph' (every edge stored)", store=store)


def depth_first_order(child: np.ndarray, parent: np.ndarray, n: int) -> np.ndarray:
    """``inverse``: the new row of each input row (``_reorder_tree``'s order)."""
    order_by_parent = np.argsort(parent, kind="stable")
    sorted_parent, sorted_child = parent[order_by_parent], child[order_by_parent]
    starts = np.searchsorted(sorted_parent, np.arange(n), side="left")
    stops = np.searchsorted(sorted_parent, np.arange(n), side="right")
    is_child = np.zeros(n, bool)
    is_child[child] = True
    roots = np.flatnonzero(~is_child)
    root = int(roots[0]) if len(roots) else 0
    visited = np.zeros(n, bool)
    order = []
    stack = [root]
    while stack:
        node = stack.pop()
        if visited[node]:
            continue
        visited[node] = True
        order.append(node)
        kids = sorted_child[starts[node]:stops[node]]
        stack.extend(int(k) for k in kids[::-1] if not visited[k])
    order = np.concatenate([np.asarray(order, np.int64), np.flatnonzero(~visited)])
    inverse = np.empty(n, np.int64)
    inverse[order] = np.arange(n)
    return inverse


def implied(read_child, read_parent, child_starts_fragment) -> np.ndarray:
    """Records the reader's implicit rule gives (not stored)."""
    return (read_child == read_parent + 1) & ~child_starts_fragment
