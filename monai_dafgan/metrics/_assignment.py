"""Optimal one-to-one assignment on a sparse bipartite graph, solved one connected component at a time.

The instance and detection metrics pair two sets (ground-truth and predicted nuclei) through the few pairs that can
matter: instances that overlap, or centroids within a radius. Those candidate pairs form a sparse bipartite graph
whose connected components hold a handful of nodes each, so the optimal assignment of the whole graph is the union
of the optimal assignments of its components. Components with a single edge are matched without a solver; the
others go to ``scipy.optimize.linear_sum_assignment`` on their small dense sub-matrix.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["match_sparse"]

Objective = Literal["max_weight", "min_cost_max_cardinality"]


def match_sparse(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, num_rows: int, num_cols: int, objective: Objective
) -> np.ndarray:
    """Optimal one-to-one matching restricted to the given candidate edges.

    Args:
        rows: (E,) int, row node of each candidate edge, in ``0..num_rows - 1``; ``(rows, cols)`` pairs are unique.
        cols: (E,) int, column node of each candidate edge, in ``0..num_cols - 1``.
        weights: (E,) float, weight (``"max_weight"``, must be > 0) or cost (``"min_cost_max_cardinality"``, >= 0).
        num_rows: number of row nodes.
        num_cols: number of column nodes.
        objective: ``"max_weight"`` maximises the total weight of the matched edges, absent edges being worth 0:
            the matching ``linear_sum_assignment(-W)`` finds on the dense matrix ``W`` (HoVer-Net's AJI+ and
            PQ below 0.5 IoU). ``"min_cost_max_cardinality"`` matches as many edges as possible and, among those
            matchings, minimises the total cost.

    Returns:
        (M,) int64 indices into the edge arrays of the matched edges, sorted.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if objective not in ("max_weight", "min_cost_max_cardinality"):
        raise ValueError(f"unknown matching objective {objective!r}.")
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    maximize = objective == "max_weight"

    adjacency = coo_matrix((np.ones(rows.size), (rows, cols + num_rows)), shape=(num_rows + num_cols,) * 2)
    _, node_component = connected_components(adjacency, directed=False)
    edge_component = node_component[rows]
    edges_in_component = np.bincount(edge_component)
    lone = edges_in_component[edge_component] == 1

    matched = [np.flatnonzero(lone)]
    shared = np.flatnonzero(~lone)
    shared = shared[np.argsort(edge_component[shared], kind="stable")]
    boundaries = np.flatnonzero(np.diff(edge_component[shared])) + 1
    for group in np.split(shared, boundaries) if shared.size else []:
        row_ids, local_rows = np.unique(rows[group], return_inverse=True)
        col_ids, local_cols = np.unique(cols[group], return_inverse=True)
        # A non-edge must never beat an edge: worth 0 when maximising, and dearer than all the edges of the
        # component together when minimising, so that every extra matched edge lowers the total.
        fill = 0.0 if maximize else weights[group].sum() + 1.0
        dense = np.full((row_ids.size, col_ids.size), fill)
        dense[local_rows, local_cols] = weights[group]
        edge_at = np.full(dense.shape, -1, dtype=np.int64)
        edge_at[local_rows, local_cols] = group
        picked_rows, picked_cols = linear_sum_assignment(dense, maximize=maximize)
        picked = edge_at[picked_rows, picked_cols]
        matched.append(picked[picked >= 0])
    return np.sort(np.concatenate(matched))
