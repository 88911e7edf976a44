"""Evaluation metrics: unsupervised cluster accuracy of a categorical code (paper: ~5% error on MNIST).

The categorical code's classes are arbitrary labels, so accuracy is measured under
the best one-to-one matching of classes to digits, found with the Hungarian
algorithm (``scipy.optimize.linear_sum_assignment``; scipy is part of the optional
``eval`` extra, ``pip install 'ganrun[eval]'``, and is imported only when a matching is
computed).
"""

from __future__ import annotations

import numpy as np
import torch

from registry.eval.optional import require

__all__ = ["hungarian", "cluster_accuracy", "confusion_counts"]


def hungarian(cost: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment for a square or rectangular cost matrix:
    ``scipy.optimize.linear_sum_assignment`` on a validated float64 copy.

    Matches ``min(n, m)`` pairs; returns ``(row_ind, col_ind)`` int64, sorted by row.
    Raises ``MissingEvalDependency`` (an ``ImportError``) without scipy.
    """
    linear_sum_assignment = require("scipy.optimize", "the Hungarian matching").linear_sum_assignment
    matrix = cost.detach().cpu().double().numpy() if isinstance(cost, torch.Tensor) else np.asarray(cost, float)
    if matrix.ndim != 2:
        raise ValueError(f"hungarian: cost must be 2-D, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("hungarian: cost contains NaN or infinite entries")
    rows, cols = linear_sum_assignment(matrix)
    return rows.astype(np.int64), cols.astype(np.int64)


def cluster_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[int, int]]:
    """Accuracy of cluster ids ``pred (N,)`` against ``labels (N,)`` under the best 1-to-1 mapping.

    Returns ``(accuracy in [0, 1], {cluster id: label})``. With more clusters than
    labels the unmatched clusters map to nothing and their samples count as errors
    (and vice versa), so splitting a class across clusters is penalised. The matching is
    :func:`hungarian` on the negated contingency table, so it needs scipy.
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
