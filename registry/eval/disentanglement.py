"""Disentanglement metrics against known generative factors, as defined in disentanglement_lib.

disentanglement_lib (Locatello et al., 2019, *Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations*) fixed one implementation and one
set of sizes for the metrics of the literature. This module follows its code for four of
them, in numpy/torch only:

- :func:`mig` -- Mutual Information Gap (Chen et al., 2018, *Isolating Sources of
  Disentanglement in Variational Autoencoders*);
- :func:`factor_vae_score` -- the FactorVAE metric (Kim & Mnih, 2018, *Disentangling by
  Factorising*);
- :func:`dci` -- DCI disentanglement, with completeness and informativeness (Eastwood &
  Williams, 2018, *A Framework for the Quantitative Evaluation of Disentangled
  Representations*);
- :func:`sap_score` -- Separated Attribute Predictability (Kumar et al., 2018,
  *Variational Inference of Disentangled Latent Concepts from Unlabeled Observations*).

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

- DCI's importance model: the library fits scikit-learn's ``GradientBoostingClassifier``
  (100 depth-3 trees per class). scikit-learn is not a dependency here: when it is
  importable it is used exactly like that; otherwise an ensemble of boosted decision
  stumps written in numpy/torch is fitted instead (same multinomial deviance, learning
  rate 0.1, 100 rounds, Newton leaf values and impurity-decrease importances, but depth-1
  trees on at most 64 quantile thresholds per code). The model used is reported in the
  details as ``importance_model``.
- SAP's classifier: the library fits ``sklearn.svm.LinearSVC(C=0.01,
  class_weight="balanced")`` on each single latent dimension; the same objective (L2
  regularised squared hinge, one-vs-rest, regularised intercept, liblinear's class
  weighting) is minimised here by Newton's method.
- FactorVAE: the library's vote for the least-varying *active* dimension is stored at that
  position among the active dimensions, which names the wrong dimension once any
  dimension is pruned; here it is mapped back to the dimension's own index. Pruning keeps
  dimensions whose global standard deviation is at least ``prune_threshold`` (0.05 in the
  library's study configuration; note: a threshold on the standard deviation, not on the
  variance), and never keeps a constant one (which would divide by zero).
- MIG with a single latent dimension (undefined there) uses 0 for the second-largest
  mutual information.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = [
    "METRICS",
    "MetricResult",
    "dci",
    "dci_from_importance",
    "evaluate_all",
    "factor_vae_score",
    "mig",
    "sap_score",
    "sklearn_available",
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


def sklearn_available() -> bool:
    """Whether scikit-learn's GradientBoostingClassifier can be imported (DCI then uses it)."""
    try:
        from sklearn.ensemble import GradientBoostingClassifier  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _one_thread():
    """Run torch on one intra-op thread: the classifiers here work on small tensors, where
    fanning out costs more than it saves (and far more on a machine shared with other jobs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        chunk = factors[start:start + batch_size]
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
    """Per column: ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])`` (values 1..num_bins)."""
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def _mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information in nats between two discrete label arrays (plug-in estimate)."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    na, nb = ai.max() + 1, bi.max() + 1
    joint = np.bincount(ai * nb + bi, minlength=na * nb).reshape(na, nb).astype(np.float64)
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(max(0.0, (joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum()))


def _entropy(a: np.ndarray) -> float:
    return _mutual_info(a, a)


def _normalised_entropy(weights: np.ndarray, base: int) -> np.ndarray:
    """``scipy.stats.entropy(weights, base=base)`` along axis 0 (columns normalised to sum 1)."""
    p = weights / weights.sum(axis=0, keepdims=True)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=0) / math.log(base)


def _top_two_gap(matrix: np.ndarray) -> np.ndarray:
    """Per column: largest minus second-largest entry (second = 0 for a single row)."""
    ordered = np.sort(matrix, axis=0)[::-1]
    second = ordered[1] if ordered.shape[0] > 1 else np.zeros(ordered.shape[1])
    return ordered[0] - second


# --------------------------------------------------------------------------------------
# MIG
# --------------------------------------------------------------------------------------


def mig(encode: Encode, factor_sizes: Sequence[int], sample_factors: SampleFactors, render: Render, *,
        seed: int = 0, num_train: int = 10_000, num_bins: int = 20, batch_size: int = 1000) -> MetricResult:
    """Mutual Information Gap (Chen et al., 2018), as disentanglement_lib computes it.

    ``num_train`` codes are discretised per dimension into ``num_bins`` equal-width bins
    of their own range; with ``I`` the matrix of mutual information between discretised
    codes and factors, MIG is the mean over factors of
    ``(largest I[:, k] - second largest I[:, k]) / H(factor k)``. Factors with more values
    than bins cannot be fully captured by one discretised code, so even a perfect code
    scores below 1 on them (about log(20)/log(32) = 0.86 on a uniform 32-valued factor).
    """
    t0 = time.perf_counter()
    sizes = _check_sizes(factor_sizes)
    num_train = _positive("num_train", num_train, 2)
    num_bins = _positive("num_bins", num_bins, 2)
    gen = torch.Generator().manual_seed(seed)
    batch_size = _positive("batch_size", batch_size)
    codes, ys = _codes_and_factors(encode, sample_factors, render, num_train, gen, sizes, batch_size)
    disc = _histogram_discretize(codes, num_bins)
    d, f = codes.shape[1], len(sizes)
    mi = np.array([[_mutual_info(disc[:, i], ys[:, k]) for k in range(f)] for i in range(d)])
    h = np.array([_entropy(ys[:, k]) for k in range(f)])
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


def factor_vae_score(encode: Encode, factor_sizes: Sequence[int], sample_factors: SampleFactors, render: Render, *,
                     seed: int = 0, batch_size: int = 64, num_train: int = 10_000, num_eval: int = 5_000,
                     num_variance_estimate: int = 10_000, prune_threshold: float = 0.05,
                     encode_batch_size: int = 1024) -> MetricResult:
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
        "num_train": num_train, "num_eval": num_eval, "batch_size": batch_size,
        "num_variance_estimate": num_variance_estimate, "prune_threshold": prune_threshold,
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
    details.update(train_accuracy=train_accuracy, eval_accuracy=eval_accuracy,
                   votes=train_votes.tolist(), classifier=classifier.tolist())
    return MetricResult("factor_vae", eval_accuracy, details, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------
# DCI
# --------------------------------------------------------------------------------------


def _boosted_stumps(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, rounds: int = 100,
                    learning_rate: float = 0.1, max_bins: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multinomial gradient boosting with depth-1 regression trees, the fallback for
    scikit-learn's ``GradientBoostingClassifier``.

    Each round fits, for every class, one stump to the deviance's negative gradient
    ``onehot(y) - softmax(F)`` (the split that most reduces the squared error, among at most
    ``max_bins`` - 1 quantile thresholds per feature), with Newton leaf values
    ``(K-1)/K * sum(r) / sum(p (1-p))``, as scikit-learn does. A feature's importance is
    the total squared-error reduction of the splits on it, normalised to sum 1 (scikit-
    learn's impurity-based ``feature_importances_``). Returns (importance (d,),
    train predictions, test predictions).
    """
    n, d = x_train.shape
    classes, y = np.unique(y_train, return_inverse=True)
    k = classes.size
    if k < 2:
        return np.zeros(d), np.full(n, classes[0]), np.full(x_test.shape[0], classes[0])

    thresholds: list[np.ndarray] = []
    bins = np.empty((n, d), dtype=np.int64)
    for j in range(d):
        column = x_train[:, j]
        distinct = np.unique(column)
        if distinct.size <= max_bins:
            cuts = (distinct[:-1] + distinct[1:]) / 2
        else:
            cuts = np.unique(np.quantile(column, np.linspace(0, 1, max_bins + 1)[1:-1]))
            cuts = cuts[cuts < distinct[-1]]  # a cut at the maximum splits nothing off
        thresholds.append(cuts)
        bins[:, j] = np.searchsorted(cuts, column, side="left")  # x <= cuts[b] <=> bin <= b
    width = max(c.size for c in thresholds) + 1
    padded = np.full((d, width), np.inf)
    for j, cuts in enumerate(thresholds):
        padded[j, :cuts.size] = cuts

    bins_t = torch.from_numpy(bins)
    counts = torch.stack([torch.bincount(bins_t[:, j], minlength=width) for j in range(d)]).double()  # (d, width)
    n_left = counts.cumsum(dim=1)[..., None]  # (d, width, 1)
    split_ok = torch.from_numpy(np.isfinite(padded))[..., None] & (n_left > 0) & (n_left < n)

    xt, xs = torch.from_numpy(x_train), torch.from_numpy(x_test)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y), k).double()
    prior = onehot.mean(dim=0).log()
    f_train = prior.expand(n, k).clone()
    f_test = prior.expand(x_test.shape[0], k).clone()
    importance = torch.zeros(d, dtype=torch.float64)
    cut_table = torch.from_numpy(padded)
    scale = (k - 1) / k
    for _ in range(rounds):
        p = torch.softmax(f_train, dim=1)
        r = onehot - p
        hist = torch.stack([torch.zeros(width, k, dtype=torch.float64).index_add_(0, bins_t[:, j], r)
                            for j in range(d)])  # (d, width, k): residual sums per bin
        g_left = hist.cumsum(dim=1)  # (d, width, k)
        g_total = r.sum(dim=0)
        gain = g_left.square() / n_left + (g_total - g_left).square() / (n - n_left) - g_total.square() / n
        gain = torch.where(split_ok, gain, torch.full_like(gain, -math.inf)).reshape(d * width, k)
        best_gain, best = gain.max(dim=0)  # per class
        fitted = torch.isfinite(best_gain)
        if not bool(fitted.any()):
            break
        feature, cut = best // width, best % width
        importance.index_add_(0, feature[fitted], best_gain[fitted].clamp_min(0))
        threshold = cut_table[feature, cut]
        left = xt[:, feature] <= threshold  # (n, k)
        hess = p * (1 - p)
        values = []
        for side in (left, ~left):
            num = (r * side).sum(dim=0)
            den = (hess * side).sum(dim=0)
            values.append(torch.where(den > 1e-150, scale * num / den.clamp_min(1e-150), torch.zeros_like(num)))
        v_left = torch.where(fitted, values[0], torch.zeros_like(values[0]))
        v_right = torch.where(fitted, values[1], torch.zeros_like(values[1]))
        f_train += learning_rate * torch.where(left, v_left, v_right)
        f_test += learning_rate * torch.where(xs[:, feature] <= threshold, v_left, v_right)
    total = importance.sum()
    importance = importance / total if total > 0 else importance
    return (importance.numpy(), classes[f_train.argmax(dim=1).numpy()], classes[f_test.argmax(dim=1).numpy()])


def _sklearn_gbt(x_train, y_train, x_test):
    from sklearn.ensemble import GradientBoostingClassifier

    if np.unique(y_train).size < 2:
        value = y_train[0]
        return np.zeros(x_train.shape[1]), np.full(x_train.shape[0], value), np.full(x_test.shape[0], value)
    model = GradientBoostingClassifier()
    model.fit(x_train, y_train)
    return np.abs(model.feature_importances_), model.predict(x_train), model.predict(x_test)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Disentanglement, completeness and per-code disentanglement of an importance matrix
    ``R`` (codes x factors), as disentanglement_lib defines them:

    - code ``i``'s disentanglement is ``1 - H_F(R[i] / sum R[i])`` (entropy in base F, the
      number of factors); the total weighs each code by its share of ``sum R``;
    - factor ``k``'s completeness is ``1 - H_d(R[:, k] / sum R[:, k])`` (base d, the number
      of codes; 1 when there is a single code), weighted by the factor's share.

    ``1e-11`` is added to every entry before normalising, and an all-zero matrix gets
    uniform weights, as in the library.
    """
    importance = np.asarray(importance, dtype=np.float64)
    d, f = importance.shape
    per_code = 1.0 - _normalised_entropy(importance.T + 1e-11, f)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    code_share = weights.sum(axis=1) / weights.sum()
    per_factor = 1.0 - _normalised_entropy(importance + 1e-11, d) if d > 1 else np.ones(f)
    factor_share = weights.sum(axis=0) / weights.sum()
    return float(np.sum(per_code * code_share)), float(np.sum(per_factor * factor_share)), per_code


def dci(encode: Encode, factor_sizes: Sequence[int], sample_factors: SampleFactors, render: Render, *,
        seed: int = 0, num_train: int = 10_000, num_test: int = 5_000, batch_size: int = 1000,
        importance_model: str = "auto") -> MetricResult:
    """DCI disentanglement (Eastwood & Williams, 2018), as disentanglement_lib computes it.

    One classifier per factor predicts it from all code dimensions (``num_train`` samples);
    its feature importances form column ``k`` of the importance matrix ``R`` (codes x
    factors). Disentanglement, the score, is ``sum_i rho_i (1 - H_F(R[i] / sum R[i]))``
    with ``H_F`` the entropy in base F (the number of factors) and ``rho_i`` code ``i``'s
    share of the total importance. Completeness (the same along factors, base d) and
    informativeness (classifier accuracy on the train and ``num_test`` test samples) are in
    the details.

    ``importance_model``: ``"sklearn"`` (``GradientBoostingClassifier()``, the library's
    choice), ``"boosted_stumps"`` (the numpy/torch fallback, see :func:`_boosted_stumps`),
    or ``"auto"``: scikit-learn when importable, else the fallback.
    """
    t0 = time.perf_counter()
    sizes = _check_sizes(factor_sizes)
    if importance_model == "auto":
        importance_model = "sklearn" if sklearn_available() else "boosted_stumps"
    fitters = {"sklearn": _sklearn_gbt, "boosted_stumps": _boosted_stumps}
    if importance_model not in fitters:
        raise ValueError(f"importance_model must be 'auto', 'sklearn' or 'boosted_stumps', got {importance_model!r}")
    num_train = _positive("num_train", num_train)
    num_test = _positive("num_test", num_test)
    batch_size = _positive("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = _codes_and_factors(encode, sample_factors, render, num_train, gen, sizes, batch_size)
    x_test, y_test = _codes_and_factors(encode, sample_factors, render, num_test, gen, sizes, batch_size)
    d, f = x_train.shape[1], len(sizes)
    importance = np.zeros((d, f))
    train_acc, test_acc = [], []
    with _one_thread():
        for k in range(f):
            imp, pred_train, pred_test = fitters[importance_model](x_train, y_train[:, k], x_test)
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
        "importance_model": importance_model,
        "num_train": num_train,
        "num_test": num_test,
    }
    return MetricResult("dci", disentanglement, details, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------
# SAP
# --------------------------------------------------------------------------------------


def _squared_hinge_svm(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, *,
                       iterations: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched 1-D linear SVMs: for each problem, minimise over (w, b)
    ``0.5 (w^2 + b^2) + sum_j c_j max(0, 1 - t_j (w x_j + b))^2`` -- liblinear's L2-regularised
    squared-hinge objective with the intercept as a regularised feature of value 1.

    ``x``, ``t`` (+-1) and ``c`` (per-sample cost) broadcast to ``(P, N)``. Generalised
    Newton steps with a backtracking line search; the objective is strictly convex.
    """
    x, t, c = torch.broadcast_tensors(x, t, c)
    p = x.shape[0]
    w = torch.zeros(p, dtype=torch.float64)
    b = torch.zeros(p, dtype=torch.float64)

    def objective(w_, b_):
        viol = (1 - t * (w_[:, None] * x + b_[:, None])).clamp_min(0)
        return 0.5 * (w_.square() + b_.square()) + (c * viol.square()).sum(dim=1)

    value = objective(w, b)
    for _ in range(iterations):
        viol = (1 - t * (w[:, None] * x + b[:, None])).clamp_min(0)
        act = c * (viol > 0)
        gw = w - 2 * (c * viol * t * x).sum(dim=1)
        gb = b - 2 * (c * viol * t).sum(dim=1)
        hww = 1 + 2 * (act * x * x).sum(dim=1)
        hwb = 2 * (act * x).sum(dim=1)
        hbb = 1 + 2 * act.sum(dim=1)
        det = hww * hbb - hwb * hwb
        sw = -(hbb * gw - hwb * gb) / det
        sb = -(hww * gb - hwb * gw) / det
        slope = gw * sw + gb * sb
        step = torch.ones(p, dtype=torch.float64)
        new = objective(w + sw, b + sb)
        for _ in range(40):  # halve the step where the Armijo condition fails
            bad = new > value + 1e-4 * step * slope
            if not bool(bad.any()):
                break
            step = torch.where(bad, step / 2, step)
            new = torch.where(bad, objective(w + step * sw, b + step * sb), new)
        w, b = w + step * sw, b + step * sb
        converged = bool(((value - new).abs() <= 1e-12 * (1 + value.abs())).all())
        value = new
        if converged or float((gw.abs() + gb.abs()).max()) < 1e-10:
            break
    return w, b


def _linear_svc_accuracy(mu: np.ndarray, y: np.ndarray, mu_test: np.ndarray, y_test: np.ndarray, *,
                         c: float = 0.01) -> np.ndarray:
    """Test accuracy of ``LinearSVC(C=c, class_weight="balanced")`` fitted on each code
    dimension alone: ``mu`` (N, d) and ``y`` (N,) -> (d,) accuracies.

    Binary factors get one classifier with both classes weighted; more classes get one
    per class (one-vs-rest), the positive samples costing ``c * weight[class]`` and the
    rest ``c``, as liblinear weights them; the prediction is the largest decision value.
    """
    classes, yi = np.unique(y, return_inverse=True)
    k = classes.size
    if k < 2:
        return np.full(mu.shape[1], float(np.mean(y_test == classes[0])))
    class_weight = y.size / (k * np.bincount(yi, minlength=k))  # "balanced"
    x = torch.from_numpy(mu.T.copy())  # (d, N)
    xs = torch.from_numpy(mu_test.T.copy())
    yi_t = torch.from_numpy(yi)
    d = x.shape[0]
    if k == 2:
        t = (yi_t * 2 - 1).double()[None, :]
        cost = torch.from_numpy(c * class_weight[yi])[None, :]
        w, b = _squared_hinge_svm(x, t, cost)
        pred = (w[:, None] * xs + b[:, None] > 0).long().numpy()
    else:
        positive = torch.nn.functional.one_hot(yi_t, k).T.bool()  # (k, N)
        t = positive.double() * 2 - 1
        cost = torch.where(positive, torch.from_numpy(c * class_weight)[:, None], torch.tensor(c, dtype=torch.float64))
        w, b = _squared_hinge_svm(x[:, None, :].expand(d, k, -1).reshape(d * k, -1),
                                  t.repeat(d, 1), cost.repeat(d, 1))
        w, b = w.view(d, k), b.view(d, k)
        decision = w[:, :, None] * xs[:, None, :] + b[:, :, None]  # (d, k, N_test)
        pred = decision.argmax(dim=1).numpy()
    return (classes[pred] == y_test[None, :]).mean(axis=1)


def sap_score(encode: Encode, factor_sizes: Sequence[int], sample_factors: SampleFactors, render: Render, *,
              seed: int = 0, num_train: int = 10_000, num_test: int = 5_000, batch_size: int = 1000,
              continuous_factors: bool = False) -> MetricResult:
    """SAP score (Kumar et al., 2018), as disentanglement_lib computes it.

    The score matrix ``S`` (codes x factors) says how well each code dimension alone
    predicts each factor; SAP is the mean over factors of the gap between the largest and
    second-largest entry of its column. With ``continuous_factors=False`` (the library's
    setting for dSprites) ``S[i, k]`` is the test accuracy (``num_test`` samples) of a
    linear SVM (``LinearSVC(C=0.01, class_weight="balanced")``'s objective, see
    :func:`_linear_svc_accuracy`) fitted on code ``i`` to predict factor ``k``; a linear
    classifier on one dimension separates few classes, so even a perfect code scores far
    below 1 on factors with many values. With ``continuous_factors=True`` it is the squared
    correlation on the training samples.
    """
    t0 = time.perf_counter()
    sizes = _check_sizes(factor_sizes)
    num_train = _positive("num_train", num_train, 2)
    num_test = _positive("num_test", num_test)
    batch_size = _positive("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)
    mus, ys = _codes_and_factors(encode, sample_factors, render, num_train, gen, sizes, batch_size)
    mus_test, ys_test = _codes_and_factors(encode, sample_factors, render, num_test, gen, sizes, batch_size)
    d, f = mus.shape[1], len(sizes)
    scores = np.zeros((d, f))
    with _one_thread():
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


def evaluate_all(encode: Encode, factor_sizes: Sequence[int], sample_factors: SampleFactors, render: Render, *,
                 seed: int = 0, num_samples: int = 10_000, batch_size: int = 1000,
                 metrics: Sequence[str] = METRICS,
                 on_metric: Callable[[str], None] | None = None) -> dict[str, MetricResult]:
    """Run the chosen metrics with disentanglement_lib's sizes scaled by ``num_samples / 10,000``.

    ``num_samples`` is the training size of MIG, DCI and SAP and the number of variance
    samples and training votes of FactorVAE; test sets and FactorVAE's evaluation votes
    get half of it (at least 1), FactorVAE votes keep batches of 64. Every metric starts
    from its own generator seeded with ``seed``. ``on_metric(name)``, when given, is called
    as each metric starts (a progress hook: the FactorVAE score takes minutes at full size).
    """
    num_samples = _positive("num_samples", num_samples, 2)
    half = max(1, num_samples // 2)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(METRICS)}")
    runners: dict[str, Callable[[], MetricResult]] = {
        "mig": lambda: mig(encode, factor_sizes, sample_factors, render, seed=seed,
                           num_train=num_samples, batch_size=batch_size),
        "factor_vae": lambda: factor_vae_score(encode, factor_sizes, sample_factors, render, seed=seed,
                                               num_train=num_samples, num_eval=half,
                                               num_variance_estimate=num_samples,
                                               encode_batch_size=max(64, batch_size)),
        "dci": lambda: dci(encode, factor_sizes, sample_factors, render, seed=seed,
                           num_train=num_samples, num_test=half, batch_size=batch_size),
        "sap": lambda: sap_score(encode, factor_sizes, sample_factors, render, seed=seed,
                                 num_train=num_samples, num_test=half, batch_size=batch_size),
    }
    results: dict[str, MetricResult] = {}
    for name in METRICS:
        if name in metrics:
            if on_metric is not None:
                on_metric(name)
            results[name] = runners[name]()
    return results
