"""Choosing one seed of a sweep without labels: the pure computations behind ``ganrun select``.

Training the same configuration with different seeds gives models of different quality, and
labels are exactly what an unsupervised method may not use to tell them apart. Both methods
here pick the model the others agree with most, on the reasoning of Lin et al. (2020,
*InfoGAN-CR and ModelCentrality*, section 5): good models resemble one another, while each
failure fails in its own way.

- Categorical codes: each model partitions the same real images by ``argmax Q(c|x)``; two
  models agree as much as their partitions do, measured by scikit-learn's
  ``adjusted_mutual_info_score`` (AMI: 1 for the same partition under any relabelling, about
  0 for independent ones). See :func:`partition_agreement`.
- Continuous codes: InfoGAN-CR's ModelCentrality. Model ``j``'s generator serves as the
  ground truth for model ``i``'s encoder: codes ``c`` are drawn, rendered by ``G_j`` and read
  back by ``Q_i``, and the FactorVAE metric (``registry.eval.disentanglement``, computed as
  disentanglement_lib does) scores ``Q_i`` against ``c`` as the factors. See
  :func:`model_centrality`.

In both, a model's centrality is its mean score against the others (:func:`centrality`) and
the pick is the most central model (:func:`pick`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from registry.eval.optional import require

__all__ = [
    "centrality",
    "config_differences",
    "images_per_pair",
    "model_centrality",
    "ordinal",
    "partition_agreement",
    "pick",
    "rank_of",
]

Encode = Callable[[Any], Any]
# generate(factor indices (n, F) int64, generator) -> observations the encoders read; nuisance
# inputs (noise z, the codes that are not factors) are drawn from ``generator`` only
Generate = Callable[[torch.Tensor, torch.Generator], Any]


def partition_agreement(partitions: Sequence[Any]) -> np.ndarray:
    """AMI of every pair of partitions of the same items: ``(S, S)`` float64, symmetric, 1 on the
    diagonal.

    ``partitions`` holds ``S >= 2`` label arrays of equal length ``N`` (any integer labels: a
    partition's value names are arbitrary, and AMI does not depend on them). Entry ``[a, b]`` is
    ``sklearn.metrics.adjusted_mutual_info_score(partitions[a], partitions[b])`` with the
    library's defaults (arithmetic normalisation). Needs scikit-learn (the ``eval`` extra).
    """
    ami = require("sklearn.metrics", "the agreement of categorical partitions").adjusted_mutual_info_score
    arrays = [np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p).reshape(-1) for p in partitions]
    if len(arrays) < 2:
        raise ValueError(f"need at least 2 partitions to compare, got {len(arrays)}")
    lengths = {a.shape[0] for a in arrays}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"partitions must label the same non-empty set of items, got lengths {sorted(lengths)}")
    s = len(arrays)
    matrix = np.eye(s)
    for a in range(s):
        for b in range(a + 1, s):
            matrix[a, b] = matrix[b, a] = float(ami(arrays[a], arrays[b]))
    return matrix


def centrality(matrix: Any) -> np.ndarray:
    """Each model's mean agreement with the others: ``(S,)``, row ``i``'s mean over ``j != i``.

    ``matrix[i, j]`` scores model ``i`` against model ``j``; the diagonal is ignored (it may be
    NaN, as in :func:`model_centrality`). Raises ``ValueError`` for a matrix that is not square
    with ``S >= 2`` or has a non-finite entry off the diagonal.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"need a square matrix of at least 2 x 2, got shape {m.shape}")
    off = ~np.eye(m.shape[0], dtype=bool)
    if not np.isfinite(m[off]).all():
        raise ValueError("the matrix has NaN or infinite entries off the diagonal")
    return np.where(off, m, 0.0).sum(axis=1) / (m.shape[0] - 1)


def pick(scores: Any) -> int:
    """Index of the largest score; a tie goes to the first (the lowest seed, in seed order)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"need a non-empty vector of finite scores, got {values!r}")
    return int(np.argmax(values))


def model_centrality(
    encoders: Sequence[Encode],
    generators: Sequence[Generate],
    factor_sizes: Sequence[int],
    sample_factors: Callable[[int, torch.Generator], torch.Tensor],
    *,
    num_samples: int = 500,
    seed: int = 0,
    batch_size: int = 1000,
    progress: Callable[[int], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """InfoGAN-CR's ModelCentrality (Lin et al. 2020, section 5) with the FactorVAE metric.

    ``encoders[i]`` and ``generators[i]`` belong to model ``i``. For every ordered pair
    ``i != j``, model ``j``'s generator is the ground truth for model ``i``'s encoder:
    ``registry.eval.disentanglement.evaluate_all(..., metrics=["factor_vae"])`` draws factor
    indices with ``sample_factors``, renders them with ``generators[j]`` and scores
    ``encoders[i]``'s reading of them, at disentanglement_lib's sizes scaled by
    ``num_samples / 10,000`` (``num_samples`` variance points and training votes, half as many
    evaluation votes, 64 observations a vote). Every pair starts from ``seed``, and the nuisance
    generator handed to ``generators[j]`` is reseeded too, so all encoders read the same
    observations of one generator.

    Returns ``(matrix, centrality)``: ``matrix[i, j]`` is the FactorVAE score of encoder ``i`` on
    generator ``j`` (``(S, S)`` float64, NaN on the diagonal, which is not computed: a model's
    agreement with itself says nothing about the others), and ``centrality[i]`` the mean of
    row ``i`` (:func:`centrality`). ``progress(k)``, when given, is told of every ``k``
    observations rendered. The FactorVAE metric needs at least two factors.
    """
    from registry.eval.disentanglement import evaluate_all

    s = len(encoders)
    if s != len(generators):
        raise ValueError(f"need one generator per encoder, got {s} encoders and {len(generators)} generators")
    if s < 2:
        raise ValueError(f"need at least 2 models, got {s}")
    matrix = np.full((s, s), np.nan)
    for j, generate in enumerate(generators):
        for i, encode in enumerate(encoders):
            if i == j:
                continue
            nuisance = torch.Generator().manual_seed(seed + 1)

            def render(factors: torch.Tensor, generate: Generate = generate, nuisance=nuisance) -> Any:
                out = generate(factors, nuisance)
                if progress is not None:
                    progress(int(factors.shape[0]))
                return out

            result = evaluate_all(
                encode,
                factor_sizes,
                sample_factors,
                render,
                seed=seed,
                num_samples=num_samples,
                batch_size=batch_size,
                metrics=("factor_vae",),
            )["factor_vae"]
            matrix[i, j] = float(result.score)
    return matrix, centrality(matrix)


def images_per_pair(num_samples: int) -> int:
    """Observations :func:`model_centrality` renders for one pair (for a progress total):
    the variance points, then 64 per training and evaluation vote."""
    return num_samples + 64 * (num_samples + max(1, num_samples // 2))


def rank_of(values: Sequence[float], index: int) -> int:
    """1-based rank of ``values[index]`` from the top: 1 + how many values are strictly larger
    (ties share the better rank)."""
    chosen = values[index]
    return 1 + sum(1 for v in values if v > chosen)


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``22nd``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def config_differences(configs: Mapping[Any, Mapping[str, Any]], ignored: frozenset[str] | set[str]) -> list[str]:
    """What keeps runs from being seeds of one configuration: one line per setting that differs,
    ``KEY: VALUE (seeds 0, 2), VALUE (seed 1)``.

    ``configs`` maps a run's name (its seed) to its configuration (``config.json``'s
    ``config``: core keys, with the plugins' options under ``extra``, compared as one flat set
    of keys); keys in ``ignored`` may differ. A key missing from a run counts as a value of its
    own (shown as ``(absent)``).
    """
    flat = {}
    for name, config in configs.items():
        values = {k: v for k, v in config.items() if k != "extra"}
        values.update(config.get("extra") or {})
        flat[name] = values
    keys = sorted({k for values in flat.values() for k in values} - set(ignored))
    lines = []
    missing = object()
    for key in keys:
        groups: dict[str, list[Any]] = {}
        for name, values in flat.items():
            value = values.get(key, missing)
            shown = "(absent)" if value is missing else repr(value)
            groups.setdefault(shown, []).append(name)
        if len(groups) > 1:
            parts = [
                f"{shown} ({'seed' if len(names) == 1 else 'seeds'} {', '.join(str(n) for n in names)})"
                for shown, names in groups.items()
            ]
            lines.append(f"{key}: {', '.join(parts)}")
    return lines
