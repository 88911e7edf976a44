"""Evaluation metrics: unsupervised cluster accuracy of a categorical code (paper: ~5% error on MNIST).

The categorical code's classes are arbitrary labels, so accuracy is measured under
the best one-to-one matching of classes to digits, found with the Hungarian
algorithm (implemented here to avoid a scipy dependency).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["hungarian", "cluster_accuracy", "confusion_counts"]


def _assign(cost: np.ndarray) -> np.ndarray:
    """Min-cost assignment of every row of an ``(n, m)`` matrix, ``n <= m``.

    Shortest-augmenting-path Hungarian method with dual potentials (Kuhn-Munkres,
    Jonker-Volgenant style): each row is added by one Dijkstra-like search over
    columns, O(n^2 m) in total; the inner loop over columns is vectorised.
    Returns ``col_of_row`` ``(n,)``.
    """
    n, m = cost.shape
    u = np.zeros(n + 1)  # row potentials (1-based; index 0 is a sentinel)
    v = np.zeros(m + 1)  # column potentials; column 0 is the virtual start column
    row_of_col = np.zeros(m + 1, dtype=np.int64)  # 0 = unassigned
    way = np.zeros(m + 1, dtype=np.int64)  # predecessor column on the shortest path
    for i in range(1, n + 1):
        row_of_col[0] = i
        j0 = 0
        min_slack = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = row_of_col[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]  # reduced costs from row i0, (m,)
            better = free & (reduced < min_slack[1:])
            min_slack[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, min_slack[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            # shift potentials so the tight edges stay tight and j1 becomes tight
            u[row_of_col[used]] += delta
            v[used] -= delta
            min_slack[1:][free] -= delta
            j0 = j1
            if row_of_col[j0] == 0:
                break
        while j0:  # flip the augmenting path back to the start column
            j1 = way[j0]
            row_of_col[j0] = row_of_col[j1]
            j0 = j1
    col_of_row = np.empty(n, dtype=np.int64)
    assigned = np.nonzero(row_of_col[1:])[0]
    col_of_row[row_of_col[1:][assigned] - 1] = assigned
    return col_of_row


def hungarian(cost: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment for a square or rectangular cost matrix.

    Matches ``min(n, m)`` pairs; returns ``(row_ind, col_ind)`` sorted by row, like
    ``scipy.optimize.linear_sum_assignment``.
    """
    matrix = cost.detach().cpu().double().numpy() if isinstance(cost, torch.Tensor) else np.asarray(cost, float)
    if matrix.ndim != 2:
        raise ValueError(f"hungarian: cost must be 2-D, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("hungarian: cost contains NaN or infinite entries")
    n, m = matrix.shape
    if n == 0 or m == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    if n <= m:
        return np.arange(n), _assign(matrix)
    # more rows than columns: assign every column to a row instead
    row_of_col = _assign(matrix.T)
    order = np.argsort(row_of_col)
    return row_of_col[order], order


def cluster_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[int, int]]:
    """Accuracy of cluster ids ``pred (N,)`` against ``labels (N,)`` under the best 1-to-1 mapping.

    Returns ``(accuracy in [0, 1], {cluster id: label})``. With more clusters than
    labels the unmatched clusters map to nothing and their samples count as errors
    (and vice versa), so splitting a class across clusters is penalised.
    """
    if pred.shape != labels.shape or pred.dim() != 1:
        raise ValueError(f"cluster_accuracy: need equal 1-D shapes, got {tuple(pred.shape)} and {tuple(labels.shape)}")
    if pred.numel() == 0:
        raise ValueError("cluster_accuracy: empty input")
    pred, labels = pred.detach().cpu().long(), labels.detach().cpu().long()
    clusters, pred_idx = torch.unique(pred, return_inverse=True)
    classes, label_idx = torch.unique(labels, return_inverse=True)
    counts = torch.bincount(pred_idx * len(classes) + label_idx, minlength=len(clusters) * len(classes))
    contingency = counts.reshape(len(clusters), len(classes)).numpy()  # (clusters, classes)
    rows, cols = hungarian(-contingency)  # maximise matched counts
    correct = int(contingency[rows, cols].sum())
    mapping = {int(clusters[r]): int(classes[c]) for r, c in zip(rows, cols)}
    return correct / pred.numel(), mapping


def confusion_counts(pred: torch.Tensor, labels: torch.Tensor, num_values: int, classes: list[int]) -> list[list[int]]:
    """``counts[v][j]``: how many samples with label ``classes[j]`` Q assigns to code value ``v``
    (``num_values`` rows, every value of the code, used or not). Shows which classes a code
    merges or splits, e.g. two code values that each hold half of the 4s and half of the 9s."""
    if pred.shape != labels.shape or pred.dim() != 1:
        raise ValueError(f"confusion_counts: need equal 1-D shapes, got {tuple(pred.shape)} and {tuple(labels.shape)}")
    index = {c: j for j, c in enumerate(classes)}
    label_idx = torch.tensor([index[int(c)] for c in labels.tolist()], dtype=torch.long)
    pred = pred.detach().cpu().long()
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_values):
        raise ValueError(f"confusion_counts: code values must lie in [0, {num_values}), got {pred.min()}..{pred.max()}")
    flat = torch.bincount(pred * len(classes) + label_idx, minlength=num_values * len(classes))
    return flat.reshape(num_values, len(classes)).tolist()

