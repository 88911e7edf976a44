"""Disentanglement metrics against known generative factors, as defined in disentanglement_lib.

disentanglement_lib (Locatello et al., 2019, *Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations*) fixed one implementation and one
set of sizes for the metrics of the literature. This module follows its code for four of
them, with the same scikit-learn and scipy calls:

- :func:`mig` -- Mutual Information Gap (Chen et al., 2018, *Isolating Sources of
  Disentanglement in Variational Autoencoders*);
- :func:`factor_vae_score` -- the FactorVAE metric (Kim & Mnih, 2018, *Disentangling by
  Factorising*);
- :func:`dci` -- DCI disentanglement, with completeness and informativeness (Eastwood &
  Williams, 2018, *A Framework for the Quantitative Evaluation of Disentangled
  Representations*);
- :func:`sap_score` -- Separated Attribute Predictability (Kumar et al., 2018,
  *Variational Inference of Disentangled Latent Concepts from Unlabeled Observations*).

scikit-learn and scipy are the optional ``eval`` extra (``pip install 'ganrun[eval]'``):
they are imported inside the functions that use them, and a missing one raises
``MissingEvalDependency`` (an ``ImportError``) naming that command. The FactorVAE score
needs neither.

Why one module of some 600 lines: the four metrics share the sampling, encoding and
discretisation helpers and the size conventions of disentanglement_lib, and reading them side
by side against the reference is how they are audited; split, each file would import the
others' private helpers.

Every metric takes the same first four arguments:

- ``encode(observations)`` -> representation ``(N, d)`` (tensor or array);
- ``factor_sizes``: the number of values of each factor;
- ``sample_factors(n, generator)`` -> ``(n, F)`` integer factor indices drawn from the
  ``torch.Generator`` it is given (``registry.data.shapes.sample_factors``, or
  :func:`uniform_factor_sampler`);
- ``render(factor_indices)`` -> the observations ``encode`` reads (``registry.data.shapes.render``
  gives uint8 images; any callable works, e.g. the identity when ``encode`` reads factors).

and keyword arguments for the random seed and the sizes (defaults: disentanglement_lib's).
Each returns a :class:`MetricResult`: the score, a JSON-able ``details`` dict and the
seconds it took. :func:`evaluate_all` runs the four with sizes scaled from one number.

Where this module departs from disentanglement_lib (each also noted at the function):

- Randomness: ground truth is drawn from a ``torch.Generator`` seeded with ``seed`` rather
  than a numpy ``RandomState``, so the samples (not the definitions) differ from the
  library's. DCI's ``GradientBoostingClassifier`` keeps every default argument but gets
  ``random_state=seed``: with the default ``max_features=None`` and ``subsample=1.0`` that
  only decides ties between equally good splits, which the library leaves to the global
  RNG, so a run repeats exactly.
- FactorVAE: the library's vote for the least-varying *active* dimension is stored at that
  position among the active dimensions, which names the wrong dimension once any
  dimension is pruned; here it is mapped back to the dimension's own index. Pruning keeps
  dimensions whose global standard deviation is at least ``prune_threshold`` (0.05 in the
  library's study configuration; note: a threshold on the standard deviation, not on the
  variance), and never keeps a constant one (which would divide by zero).
- Degenerate inputs the library does not handle (it divides by zero or lets scikit-learn
  refuse): MIG with a single latent dimension uses 0 for the second-largest mutual
  information and leaves constant factors out of the mean; a factor with one value in
  the sample gets zero DCI importance and, in SAP, the accuracy of predicting that value;
  DCI completeness of a single code is 1; SAP's continuous score of a constant factor is 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from registry.eval.optional import MissingEvalDependency, check_eval_dependencies, require

__all__ = [
    "METRICS",
    "MetricResult",
    "MissingEvalDependency",
    "dci",
    "dci_from_importance",
    "evaluate_all",
    "factor_vae_score",
    "gbt_importance",
    "mig",
    "sap_score",
    "uniform_factor_sampler",
]

Encode = Callable[[Any], Any]
SampleFactors = Callable[[int, torch.Generator], torch.Tensor]
Render = Callable[[torch.Tensor], Any]

METRICS: tuple[str, ...] = ("mig", "factor_vae", "dci", "sap")


@dataclass(frozen=True)
class MetricResult:
    """One metric's value, what it was computed from, and how long it took."""

    name: str
    score: float
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __float__(self) -> float:
        return float(self.score)

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "seconds": self.seconds, **self.details}


def uniform_factor_sampler(factor_sizes: Sequence[int]) -> SampleFactors:
    """``sample_factors`` drawing each factor uniformly from ``range(size)``, one column at a time."""
    sizes = tuple(int(s) for s in factor_sizes)

    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.stack([torch.randint(s, (n,), generator=generator) for s in sizes], dim=1)

    return sample


# --------------------------------------------------------------------------------------
# Sampling ground truth and representations
# --------------------------------------------------------------------------------------


def _check_sizes(factor_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"factor_sizes needs at least two factors with positive sizes, got {sizes}")
    return sizes


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _to_numpy(rep: Any, rows: int) -> np.ndarray:
    if isinstance(rep, torch.Tensor):
        rep = rep.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(rep, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != rows or arr.shape[1] < 1:
        raise ValueError(f"encode must return a (N, d) representation for N = {rows} inputs, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("encode returned NaN or infinite values")
    return arr


def _encode(encode: Encode, render: Render, factors: torch.Tensor, batch_size: int) -> np.ndarray:
    """Representations ``(N, d)`` float64 of the given factor combinations, in batches."""
    parts = []
    for start in range(0, factors.shape[0], batch_size):
        chunk = factors[start : start + batch_size]
        parts.append(_to_numpy(encode(render(chunk)), chunk.shape[0]))
    return np.concatenate(parts, axis=0)


def _draw(sample_factors: SampleFactors, n: int, generator: torch.Generator, sizes: tuple[int, ...]) -> torch.Tensor:
    factors = torch.as_tensor(sample_factors(n, generator))
    if tuple(factors.shape) != (n, len(sizes)):
        raise ValueError(f"sample_factors must return shape ({n}, {len(sizes)}), got {tuple(factors.shape)}")
    return factors.long()


def _codes_and_factors(encode, sample_factors, render, n, generator, sizes, batch_size):
    """disentanglement_lib's ``generate_batch_factor_code``, as (N, d) codes and (N, F) factors."""
    factors = _draw(sample_factors, n, generator, sizes)
    return _encode(encode, render, factors, batch_size), factors.cpu().numpy()


# --------------------------------------------------------------------------------------
# Discrete information theory (natural logarithms, as sklearn.metrics.mutual_info_score)
# --------------------------------------------------------------------------------------


def _histogram_discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """disentanglement_lib's ``_histogram_discretize``: per column,
    ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])`` (values 1..num_bins)."""
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def _top_two_gap(matrix: np.ndarray) -> np.ndarray:
    """Per column: largest minus second-largest entry (second = 0 for a single row)."""
    ordered = np.sort(matrix, axis=0)[::-1]
    second = ordered[1] if ordered.shape[0] > 1 else np.zeros(ordered.shape[1])
    return ordered[0] - second


# --------------------------------------------------------------------------------------
# MIG
# --------------------------------------------------------------------------------------


def mig(
    encode: Encode,
    factor_sizes: Sequence[int],
    sample_factors: SampleFactors,
    render: Render,
    *,
    seed: int = 0,
    num_train: int = 10_000,
    num_bins: int = 20,
    batch_size: int = 1000,
) -> MetricResult:
    """Mutual Information Gap (Chen et al., 2018), as disentanglement_lib computes it.

    ``num_train`` codes are discretised per dimension into ``num_bins`` equal-width bins
    of their own range; with ``I`` the matrix of mutual information between discretised
    codes and factors, MIG is the mean over factors of
    ``(largest I[:, k] - second largest I[:, k]) / H(factor k)``. Factors with more values
    than bins cannot be fully captured by one discretised code, so even a perfect code
    scores below 1 on them (about log(20)/log(32) = 0.86 on a uniform 32-valued factor).

    Discretisation and estimates are the library's: ``_histogram_discretize`` with
    ``np.histogram``'s bin edges, and ``sklearn.metrics.mutual_info_score`` (plug-in, nats)
    for ``I[i, k]`` and for ``H(factor k) = I(factor k; factor k)``. Unlike the library, a
    factor that is constant in the sample (``H = 0``) is left out of the mean instead of
    dividing by zero, and a single code dimension has 0 as its second-largest ``I``.
    Needs scikit-learn (the ``eval`` extra).
    """
    t0 = time.perf_counter()
    mutual_info_score = require("sklearn.metrics", "MIG").mutual_info_score
    sizes = _check_sizes(factor_sizes)
    num_train = _positive("num_train", num_train, 2)
    num_bins = _positive("num_bins", num_bins, 2)
    gen = torch.Generator().manual_seed(seed)
    batch_size = _positive("batch_size", batch_size)
    codes, ys = _codes_and_factors(encode, sample_factors, render, num_train, gen, sizes, batch_size)
    disc = _histogram_discretize(codes, num_bins)
    # the library's discrete_mutual_info and discrete_entropy: I(factor; code), I(factor; factor)
    mi = np.array(
        [[mutual_info_score(ys[:, k], disc[:, i]) for k in range(len(sizes))] for i in range(disc.shape[1])],
        dtype=np.float64,
    )
    h = np.array([mutual_info_score(ys[:, k], ys[:, k]) for k in range(len(sizes))], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.where(h > 0, _top_two_gap(mi) / np.where(h > 0, h, 1.0), np.nan)
    score = float(np.nanmean(gaps)) if np.isfinite(gaps).any() else float("nan")
    details = {
        "per_factor": [float(g) for g in gaps],
        "mutual_information": mi.round(6).tolist(),
        "factor_entropy": h.round(6).tolist(),
        "num_train": num_train,
        "num_bins": num_bins,
    }
    return MetricResult("mig", score, details, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------
# FactorVAE score
# --------------------------------------------------------------------------------------


def factor_vae_score(
    encode: Encode,
    factor_sizes: Sequence[int],
    sample_factors: SampleFactors,
    render: Render,
    *,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    encode_batch_size: int = 1024,
) -> MetricResult:
    """The FactorVAE metric (Kim & Mnih, 2018), as disentanglement_lib computes it.

    Global variances of each code dimension come from ``num_variance_estimate`` samples;
    dimensions with a standard deviation below ``prune_threshold`` are left out. One vote
    draws a factor ``k`` and ``batch_size`` samples sharing factor ``k``'s value, and names
    the active dimension with the smallest variance over the batch relative to its global
    variance. A majority-vote classifier (each dimension -> the factor that voted for it
    most often in ``num_train`` votes) is scored by its accuracy on ``num_eval`` fresh
    votes: that accuracy is the score. ``train_accuracy`` is in the details.
    """
    t0 = time.perf_counter()
    sizes = _check_sizes(factor_sizes)
    batch_size = _positive("batch_size", batch_size, 2)
    num_train = _positive("num_train", num_train)
    num_eval = _positive("num_eval", num_eval)
    num_variance_estimate = _positive("num_variance_estimate", num_variance_estimate, 2)
    encode_batch_size = _positive("encode_batch_size", encode_batch_size)
    gen = torch.Generator().manual_seed(seed)

    codes, _ = _codes_and_factors(encode, sample_factors, render, num_variance_estimate, gen, sizes, encode_batch_size)
    global_var = codes.var(axis=0, ddof=1)
    active = np.flatnonzero((np.sqrt(global_var) >= prune_threshold) & (global_var > 0))
    details: dict[str, Any] = {
        "global_variance": global_var.round(6).tolist(),
        "active_dims": active.tolist(),
        "num_train": num_train,
        "num_eval": num_eval,
        "batch_size": batch_size,
        "num_variance_estimate": num_variance_estimate,
        "prune_threshold": prune_threshold,
    }
    if active.size == 0:
        details.update(train_accuracy=0.0, eval_accuracy=0.0)
        return MetricResult("factor_vae", 0.0, details, time.perf_counter() - t0)

    def votes(count: int) -> np.ndarray:
        table = np.zeros((len(sizes), codes.shape[1]), dtype=np.int64)
        per_call = max(1, encode_batch_size // batch_size)
        done = 0
        while done < count:
            group = min(per_call, count - done)
            fixed, batches = [], []
            for _ in range(group):  # one vote: the factor to fix, then its batch (library order)
                k = int(torch.randint(len(sizes), (1,), generator=gen))
                factors = _draw(sample_factors, batch_size, gen, sizes)
                factors[:, k] = factors[0, k]
                fixed.append(k)
                batches.append(factors)
            reps = _encode(encode, render, torch.cat(batches), group * batch_size)
            local_var = reps.reshape(group, batch_size, -1).var(axis=1, ddof=1)
            ratio = local_var[:, active] / global_var[active]
            np.add.at(table, (np.array(fixed), active[ratio.argmin(axis=1)]), 1)
            done += group
        return table

    train_votes = votes(num_train)
    classifier = train_votes.argmax(axis=0)  # per code dimension: the factor it votes for most
    columns = np.arange(train_votes.shape[1])
    train_accuracy = float(train_votes[classifier, columns].sum() / train_votes.sum())
    eval_votes = votes(num_eval)
    eval_accuracy = float(eval_votes[classifier, columns].sum() / eval_votes.sum())
    details.update(
        train_accuracy=train_accuracy,
        eval_accuracy=eval_accuracy,
        votes=train_votes.tolist(),
        classifier=classifier.tolist(),
    )
    return MetricResult("factor_vae", eval_accuracy, details, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------
# DCI
# --------------------------------------------------------------------------------------


def gbt_importance(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, random_state: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One column of disentanglement_lib's ``compute_importance_gbt``: fit
    ``GradientBoostingClassifier()`` (every default argument; ``random_state`` only fixes
    the order in which tied splits are tried) on all codes to predict one factor, and
    return ``(abs(feature_importances_) (d,), train predictions, test predictions)``.

    A factor with a single value in the sample (which scikit-learn refuses to fit) gets
    zero importance and that value as every prediction.
    """
    if np.unique(y_train).size < 2:
        value = y_train[0]
        return np.zeros(x_train.shape[1]), np.full(x_train.shape[0], value), np.full(x_test.shape[0], value)
    model = require("sklearn.ensemble", "DCI").GradientBoostingClassifier(random_state=random_state)
    model.fit(x_train, y_train)
    return np.abs(model.feature_importances_), model.predict(x_train), model.predict(x_test)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Disentanglement, completeness and per-code disentanglement of an importance matrix
    ``R`` (codes x factors), exactly as disentanglement_lib's ``disentanglement`` and
    ``completeness``:

    - code ``i``'s disentanglement is ``1 - scipy.stats.entropy(R[i] + 1e-11, base=F)``
      (F the number of factors); the total weighs each code by its share ``sum R[i] / sum R``;
    - factor ``k``'s completeness is ``1 - scipy.stats.entropy(R[:, k] + 1e-11, base=d)``
      (d the number of codes), weighted by the factor's share.

    An all-zero matrix gets uniform weights, as in the library. With a single code (where
    the library divides by log 1 = 0) completeness is 1. Needs scipy (the ``eval`` extra).
    """
    entropy = require("scipy.stats", "DCI").entropy
    importance = np.asarray(importance, dtype=np.float64)
    d, f = importance.shape
    per_code = 1.0 - entropy(importance.T + 1e-11, base=f)
    weights = importance if importance.sum() != 0.0 else np.ones_like(importance)
    code_share = weights.sum(axis=1) / weights.sum()
    per_factor = 1.0 - entropy(importance + 1e-11, base=d) if d > 1 else np.ones(f)
    factor_share = weights.sum(axis=0) / weights.sum()
    return float(np.sum(per_code * code_share)), float(np.sum(per_factor * factor_share)), np.asarray(per_code)


def dci(
    encode: Encode,
    factor_sizes: Sequence[int],
    sample_factors: SampleFactors,
    render: Render,
    *,
    seed: int = 0,
    num_train: int = 10_000,
    num_test: int = 5_000,
    batch_size: int = 1000,
) -> MetricResult:
    """DCI disentanglement (Eastwood & Williams, 2018), as disentanglement_lib computes it.

    For each factor ``k``, scikit-learn's ``GradientBoostingClassifier()`` (default
    arguments: 100 stages of depth-3 regression trees per class, learning rate 0.1) is
    fitted on all code dimensions of ``num_train`` samples; the absolute values of its
    ``feature_importances_`` form column ``k`` of the importance matrix ``R`` (codes x
    factors). Disentanglement, the score, is ``sum_i rho_i (1 - H_F(R[i]))`` with ``H_F``
    the entropy in base F (the number of factors) and ``rho_i`` code ``i``'s share of the
    total importance (see :func:`dci_from_importance`). Completeness (the same along
    factors, base d) and informativeness (mean classifier accuracy on the train and
    ``num_test`` test samples) are in the details.

    The classifier gets ``random_state=seed`` (which only breaks ties between equal splits).
    Fitting takes seconds to minutes: it grows one tree per class per stage, so a factor
    with 40 values costs 40 times a binary one (``benchmarks/README.md`` has timings).
    Needs scikit-learn and scipy (the ``eval`` extra).
    """
    t0 = time.perf_counter()
    require("sklearn.ensemble", "DCI")
    require("scipy.stats", "DCI")
    sizes = _check_sizes(factor_sizes)
    num_train = _positive("num_train", num_train)
    num_test = _positive("num_test", num_test)
    batch_size = _positive("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = _codes_and_factors(encode, sample_factors, render, num_train, gen, sizes, batch_size)
    x_test, y_test = _codes_and_factors(encode, sample_factors, render, num_test, gen, sizes, batch_size)
    d, f = x_train.shape[1], len(sizes)
    importance = np.zeros((d, f))
    train_acc, test_acc = [], []
    for k in range(f):
        imp, pred_train, pred_test = gbt_importance(x_train, y_train[:, k], x_test, random_state=seed)
        importance[:, k] = imp
        train_acc.append(float(np.mean(pred_train == y_train[:, k])))
        test_acc.append(float(np.mean(pred_test == y_test[:, k])))

    disentanglement, completeness, per_code = dci_from_importance(importance)
    details = {
        "completeness": completeness,
        "informativeness_train": float(np.mean(train_acc)),
        "informativeness_test": float(np.mean(test_acc)),
        "per_code": per_code.round(6).tolist(),
        "importance": importance.round(6).tolist(),
        "importance_model": "sklearn.ensemble.GradientBoostingClassifier",
        "num_train": num_train,
        "num_test": num_test,
    }
    return MetricResult("dci", disentanglement, details, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------
# SAP
# --------------------------------------------------------------------------------------


def _linear_svc_accuracy(mu: np.ndarray, y: np.ndarray, mu_test: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """The discrete branch of disentanglement_lib's ``_compute_score_matrix`` for one factor:
    for each code dimension ``i`` alone, ``sklearn.svm.LinearSVC(C=0.01,
    class_weight="balanced")`` fitted on ``mu[:, i:i+1]`` and ``y``, scored by its accuracy
    on ``mu_test[:, i:i+1]`` and ``y_test``. ``mu`` (N, d), ``y`` (N,) -> (d,) accuracies.

    A factor with a single value in the sample (which scikit-learn refuses to fit) scores
    the accuracy of predicting that value.
    """
    LinearSVC = require("sklearn.svm", "SAP").LinearSVC
    classes = np.unique(y)
    if classes.size < 2:
        return np.full(mu.shape[1], float(np.mean(y_test == classes[0])))
    accuracy = np.empty(mu.shape[1])
    for i in range(mu.shape[1]):
        classifier = LinearSVC(C=0.01, class_weight="balanced")
        classifier.fit(mu[:, i, None], y)
        accuracy[i] = np.mean(classifier.predict(mu_test[:, i, None]) == y_test)
    return accuracy


def sap_score(
    encode: Encode,
    factor_sizes: Sequence[int],
    sample_factors: SampleFactors,
    render: Render,
    *,
    seed: int = 0,
    num_train: int = 10_000,
    num_test: int = 5_000,
    batch_size: int = 1000,
    continuous_factors: bool = False,
) -> MetricResult:
    """SAP score (Kumar et al., 2018), as disentanglement_lib computes it.

    The score matrix ``S`` (codes x factors) says how well each code dimension alone
    predicts each factor; SAP is the mean over factors of the gap between the largest and
    second-largest entry of its column. With ``continuous_factors=False`` (the library's
    setting for dSprites) ``S[i, k]`` is the test accuracy (``num_test`` samples) of
    scikit-learn's ``LinearSVC(C=0.01, class_weight="balanced")`` fitted on code ``i``
    alone to predict factor ``k`` (one-vs-rest for more than two values); a linear
    classifier on one dimension separates few classes, so even a perfect code scores far
    below 1 on factors with many values. With ``continuous_factors=True`` it is the squared
    correlation on the training samples (0 for a constant code or factor). Needs
    scikit-learn (the ``eval`` extra) unless ``continuous_factors``.
    """
    t0 = time.perf_counter()
    if not continuous_factors:
        require("sklearn.svm", "SAP")
    sizes = _check_sizes(factor_sizes)
    num_train = _positive("num_train", num_train, 2)
    num_test = _positive("num_test", num_test)
    batch_size = _positive("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)
    mus, ys = _codes_and_factors(encode, sample_factors, render, num_train, gen, sizes, batch_size)
    mus_test, ys_test = _codes_and_factors(encode, sample_factors, render, num_test, gen, sizes, batch_size)
    d, f = mus.shape[1], len(sizes)
    scores = np.zeros((d, f))
    for k in range(f):
        if continuous_factors:
            y = ys[:, k].astype(np.float64)
            for i in range(d):
                cov = np.cov(mus[:, i], y, ddof=1)
                ok = cov[0, 0] > 1e-12 and cov[1, 1] > 0
                scores[i, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if ok else 0.0
        else:
            scores[:, k] = _linear_svc_accuracy(mus, ys[:, k], mus_test, ys_test[:, k])
    gaps = _top_two_gap(scores)
    details = {
        "per_factor": gaps.round(6).tolist(),
        "score_matrix": scores.round(6).tolist(),
        "continuous_factors": continuous_factors,
        "num_train": num_train,
        "num_test": num_test,
    }
    return MetricResult("sap", float(gaps.mean()), details, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------
# All four
# --------------------------------------------------------------------------------------


def evaluate_all(
    encode: Encode,
    factor_sizes: Sequence[int],
    sample_factors: SampleFactors,
    render: Render,
    *,
    seed: int = 0,
    num_samples: int = 10_000,
    batch_size: int = 1000,
    metrics: Sequence[str] = METRICS,
    on_metric: Callable[[str], None] | None = None,
) -> dict[str, MetricResult]:
    """Run the chosen metrics with disentanglement_lib's sizes scaled by ``num_samples / 10,000``.

    ``num_samples`` is the training size of MIG, DCI and SAP and the number of variance
    samples and training votes of FactorVAE; test sets and FactorVAE's evaluation votes
    get half of it (at least 1), FactorVAE votes keep batches of 64. Every metric starts
    from its own generator seeded with ``seed``. ``on_metric(name)``, when given, is called
    as each metric starts (a progress hook: the FactorVAE score takes minutes at full size).
    MIG, DCI and SAP need scikit-learn and scipy (the ``eval`` extra); when one of them is
    asked for and either is missing, ``MissingEvalDependency`` is raised before any metric
    runs.
    """
    num_samples = _positive("num_samples", num_samples, 2)
    half = max(1, num_samples // 2)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(METRICS)}")
    needing = [name for name in METRICS if name in metrics and name != "factor_vae"]
    if needing:
        check_eval_dependencies("the disentanglement metrics " + ", ".join(n.upper() for n in needing))
    runners: dict[str, Callable[[], MetricResult]] = {
        "mig": lambda: mig(
            encode, factor_sizes, sample_factors, render, seed=seed, num_train=num_samples, batch_size=batch_size
        ),
        "factor_vae": lambda: factor_vae_score(
            encode,
            factor_sizes,
            sample_factors,
            render,
            seed=seed,
            num_train=num_samples,
            num_eval=half,
            num_variance_estimate=num_samples,
            encode_batch_size=max(64, batch_size),
        ),
        "dci": lambda: dci(
            encode,
            factor_sizes,
            sample_factors,
            render,
            seed=seed,
            num_train=num_samples,
            num_test=half,
            batch_size=batch_size,
        ),
        "sap": lambda: sap_score(
            encode,
            factor_sizes,
            sample_factors,
            render,
            seed=seed,
            num_train=num_samples,
            num_test=half,
            batch_size=batch_size,
        ),
    }
    results: dict[str, MetricResult] = {}
    for name in METRICS:
        if name in metrics:
            if on_metric is not None:
                on_metric(name)
            results[name] = runners[name]()
    return results
