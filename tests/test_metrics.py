"""Hungarian assignment (scipy's linear_sum_assignment) against brute force, and cluster accuracy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from infogan_plugin.evaluate import confusion_lines
from registry.eval.assignment import cluster_accuracy, confusion_counts, hungarian


def brute_force_min_cost(cost: np.ndarray) -> float:
    """Best total over every injective assignment of the smaller side."""
    if cost.shape[0] > cost.shape[1]:
        cost = cost.T
    n, m = cost.shape
    return min(cost[np.arange(n), list(cols)].sum() for cols in itertools.permutations(range(m), n))


def check_assignment(cost: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    n_pairs = min(cost.shape)
    assert len(rows) == len(cols) == n_pairs
    assert len(set(rows.tolist())) == n_pairs and len(set(cols.tolist())) == n_pairs
    assert (np.diff(rows) > 0).all(), "rows come back sorted"
    assert cost[rows, cols].sum() == pytest.approx(brute_force_min_cost(cost), abs=1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_hungarian_matches_brute_force_square(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # alternate continuous costs and small integers (many ties)
    cost = rng.normal(size=(6, 6)) if seed % 2 else rng.integers(0, 4, size=(6, 6)).astype(float)
    check_assignment(cost, *hungarian(cost))


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (1, 5), (5, 1), (3, 3)])
def test_hungarian_rectangular(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    cost = rng.uniform(-5, 5, size=shape)
    check_assignment(cost, *hungarian(cost))


def test_hungarian_accepts_tensors_and_known_case() -> None:
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    rows, cols = hungarian(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]  # total 5
    empty_rows, empty_cols = hungarian(np.zeros((0, 3)))
    assert len(empty_rows) == len(empty_cols) == 0
    with pytest.raises(ValueError, match="2-D"):
        hungarian(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        hungarian(np.array([[np.nan, 1.0], [1.0, 0.0]]))


def test_hungarian_larger_is_optimal_against_perturbation() -> None:
    # 40x40 is beyond brute force: check that a planted assignment with a clear margin is found
    rng = np.random.default_rng(0)
    n = 40
    perm = rng.permutation(n)
    cost = rng.uniform(1.0, 2.0, size=(n, n))
    cost[np.arange(n), perm] = 0.0
    rows, cols = hungarian(cost)
    assert cols.tolist() == perm.tolist()


@pytest.mark.parametrize("seed", range(25))
def test_cluster_accuracy_is_the_best_matching_over_all_permutations(seed: int) -> None:
    """Generated cases: 1-5 clusters against 1-5 labels, from pure noise to nearly a permutation.
    The accuracy equals the best number of samples matched by any one-to-one map of clusters
    to labels, found by trying every such map."""
    rng = np.random.default_rng(seed)
    n_clusters, n_labels = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    n = int(rng.integers(1, 60))
    labels = rng.integers(0, n_labels, n)
    agree = rng.random(n) < rng.random()  # the share of samples that follow a hidden map
    hidden = rng.integers(0, n_clusters, n_labels)
    pred = np.where(agree, hidden[labels], rng.integers(0, n_clusters, n))
    accuracy, mapping = cluster_accuracy(torch.from_numpy(pred), torch.from_numpy(labels))

    clusters, classes = np.unique(pred), np.unique(labels)
    counts = np.array([[np.sum((pred == c) & (labels == l)) for l in classes] for c in clusters])
    if len(clusters) <= len(classes):
        best = max(
            sum(counts[i, j] for i, j in enumerate(cols))
            for cols in itertools.permutations(range(len(classes)), len(clusters))
        )
    else:
        best = max(
            sum(counts[i, j] for j, i in enumerate(rows))
            for rows in itertools.permutations(range(len(clusters)), len(classes))
        )
    assert accuracy == pytest.approx(best / n, abs=1e-12)
    # the mapping is one-to-one and achieves that count
    assert len(set(mapping.values())) == len(mapping) == min(len(clusters), len(classes))
    assert sum(np.sum((pred == c) & (labels == l)) for c, l in mapping.items()) == best


def test_cluster_accuracy_permuted_labels() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(10, (500,), generator=g)
    perm = torch.randperm(10, generator=g)
    pred = perm[labels] + 100  # arbitrary cluster ids
    accuracy, mapping = cluster_accuracy(pred, labels)
    assert accuracy == 1.0
    assert mapping == {int(perm[label]) + 100: label for label in range(10)}


def test_cluster_accuracy_with_errors_and_unequal_counts() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    pred = torch.tensor([5, 5, 5, 7, 7, 7, 7, 9])  # cluster 5 -> 0, 7 -> 1, 9 unmatched
    accuracy, mapping = cluster_accuracy(pred, labels)
    assert accuracy == pytest.approx(6 / 8)
    assert mapping == {5: 0, 7: 1}
    # fewer clusters than labels: one label is left without a cluster
    accuracy, mapping = cluster_accuracy(torch.zeros(6, dtype=torch.long), torch.tensor([0, 0, 0, 1, 2, 2]))
    assert accuracy == pytest.approx(3 / 6) and mapping == {0: 0}
    with pytest.raises(ValueError, match="shapes"):
        cluster_accuracy(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        cluster_accuracy(torch.zeros(0), torch.zeros(0))


def test_confusion_counts_show_a_merged_pair() -> None:
    # labels 4 and 9, code values 1 and 2 each take half of both: the failure mode to diagnose
    labels = torch.tensor([0, 0, 4, 4, 9, 9, 4, 9])
    pred = torch.tensor([0, 0, 1, 2, 1, 2, 1, 2])
    counts = confusion_counts(pred, labels, 4, [0, 4, 9])
    assert counts == [[2, 0, 0], [0, 2, 1], [0, 1, 2], [0, 0, 0]]  # value 3 unused, still listed
    assert sum(map(sum, counts)) == len(labels)
    accuracy, mapping = cluster_accuracy(pred, labels)
    lines = confusion_lines(
        {"labels": [0, 4, 9], "confusion": counts, "mapping": {str(k): v for k, v in mapping.items()}}
    )
    assert lines[0].split("|")[1].split() == ["0", "4", "9"]
    assert lines[1].split() == ["0", "0", "|", "2", "0", "0"]
    assert lines[4].split()[:2] == ["3", "-"]  # unmatched value
    with pytest.raises(ValueError, match="code values must lie in"):
        confusion_counts(torch.tensor([5]), torch.tensor([0]), 4, [0])
