"""Q losses: -log Q(c|x) for each code type, as pure tensor functions plus descriptors.

InfoGAN maximises L_I = H(c) + E[log Q(c|x)]; since H(c) is a constant the
trainable part is the negative log-likelihood returned here. Every function
returns the per-sample NLL summed over the code's dimensions, shape ``(B,)``,
computed in float32 even for bf16 inputs: the Gaussian terms square small
differences and divide by small variances, which bf16 resolves too coarsely.

The trainer owns reduction, weighting, backward and the optimiser step.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange

from infogan_plugin.codes import Categorical, LatentCode

__all__ = [
    "MIN_LOG_STD",
    "MAX_LOG_STD",
    "categorical_nll",
    "gaussian_nll",
    "gaussian_nll_fixed",
    "QLoss",
    "CategoricalCE",
    "GaussianNLL",
    "GaussianNLLFixed",
]

# Clamp for a learned log-std. Without a floor, Q can shrink its std towards 0 on
# easy samples and the NLL (and its gradient, ~1/std^2) diverges; std >= e^-5 ~ 0.0067
# is far below any useful resolution of codes living on a unit scale. The ceiling
# std <= e^2 ~ 7.4 stops Q from "giving up" with an enormous std early in training
# while still covering codes several units wide. Outside the range the gradient
# w.r.t. log_std is zero (hard clamp), so the raw output is free to drift back.
MIN_LOG_STD = -5.0
MAX_LOG_STD = 2.0

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def categorical_nll(logits: torch.Tensor, code_onehot: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of raw logits ``(B, k)`` against the one-hot code ``(B, k)`` -> ``(B,)``.

    F.cross_entropy applies log-softmax itself; a softmax before it would squash
    the gradient, so Q must output raw logits.
    """
    target = code_onehot.argmax(dim=1)  # (B,) class indices
    return F.cross_entropy(logits.float(), target, reduction="none")


def gaussian_nll(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    c: torch.Tensor,
    *,
    min_log_std: float = MIN_LOG_STD,
    max_log_std: float = MAX_LOG_STD,
) -> torch.Tensor:
    """Exact NLL of ``c`` under N(mean, exp(log_std)^2), all ``(B, d)``, summed over d -> ``(B,)``.

    ``log_std`` is clamped to ``[min_log_std, max_log_std]`` (see module constants).
    """
    mean, c = mean.float(), c.float()
    log_std = log_std.float().clamp(min_log_std, max_log_std)
    z = (c - mean) * torch.exp(-log_std)  # standardised error
    per_dim = 0.5 * z.square() + log_std + _HALF_LOG_2PI  # (B, d)
    return per_dim.sum(dim=1)


def gaussian_nll_fixed(mean: torch.Tensor, c: torch.Tensor, *, std: float = 1.0) -> torch.Tensor:
    """NLL of ``c`` under N(mean, std^2) with a constant std, ``(B, d)`` -> ``(B,)``.

    Equals ``sum_d (c - mean)^2 / (2 std^2) + d * (ln std + 0.5 ln 2pi)``; the
    constant keeps L_I = H - NLL a true bound rather than a shifted MSE.
    """
    if not std > 0:
        raise ValueError(f"gaussian_nll_fixed: std must be > 0, got std={std!r}")
    mean, c = mean.float(), c.float()
    per_dim = (c - mean).square() / (2.0 * std * std)  # (B, d)
    return per_dim.sum(dim=1) + mean.shape[1] * (math.log(std) + _HALF_LOG_2PI)


class QLoss(abc.ABC):
    """What a Q-loss registry entry is: how many Q outputs a code needs and how to score them.

    A plugin registers the class (or a factory function returning a new loss), never an
    instance: each code slot builds its own loss and binds its code to it (``bind``), so
    ``self.code`` is the slot's code inside ``nll``, ``predict`` and ``point_estimate``. A loss
    can therefore decode a code that is fed to G in a scaled form, using the code's parameters.

    Required: ``num_outputs`` and ``nll``. Defaults: ``stats`` (none), ``predict`` (``None``:
    no point estimate in G's input layout), ``point_estimate`` (from ``predict`` through the
    code's ``value_of``), ``probabilities`` (``None``).

    ``q_out`` is always this slot's chunk of Q's output, ``(B, num_outputs(code))``;
    ``code_value`` is the code as fed to G, ``(B, code.input_width)``.
    """

    name: ClassVar[str]  # registry name
    code: LatentCode | None = None  # the slot's code, set by ``bind`` when the slot is built

    def bind(self, code: LatentCode) -> QLoss:
        """Attach the slot's ``code`` (``CodeSlot`` calls this); returns ``self``. Raises
        ``ValueError`` if the loss cannot model the code, or is bound to another code already
        (one instance per slot: register the class, not an instance)."""
        if self.code is not None and self.code != code:
            raise ValueError(
                f"Q loss {type(self).__name__} is bound to {self.code!r} already; "
                f"each code slot needs its own loss instance"
            )
        self.num_outputs(code)
        self.code = code
        return self

    @abc.abstractmethod
    def num_outputs(self, code: LatentCode) -> int:
        """Q outputs this loss needs for ``code``; raises ValueError if it cannot model that code."""
        ...

    @abc.abstractmethod
    def nll(self, q_out: torch.Tensor, code_value: torch.Tensor) -> torch.Tensor:
        """Per-sample -log Q(c|x), ``(B,)`` float32."""
        ...

    def stats(self, q_out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detached scalar diagnostics for logging; no host sync."""
        return {}

    def predict(self, q_out: torch.Tensor) -> torch.Tensor | None:
        """Q's point estimate of the code in G's input layout, ``(B, input_width)`` (a one-hot
        row for a categorical code), or ``None`` (the default) when the loss has none."""
        return None

    def point_estimate(self, q_out: torch.Tensor) -> torch.Tensor:
        """Q's point estimate of the code's value per dimension, ``(B, dim)`` float32: what
        ``encode`` reports and what evaluation scores (a categorical's class index, a Gaussian's
        mean, a count). Default: ``code.value_of(predict(q_out))``, which needs ``predict`` and a
        bound code; a loss whose output is not in G's input layout overrides this instead."""
        if self.code is None:
            raise ValueError(f"Q loss {type(self).__name__} is not bound to a code; build it through CodeSlot")
        columns = self.predict(q_out)
        if columns is None:
            raise NotImplementedError(f"Q loss {type(self).__name__} has neither predict() nor point_estimate()")
        return self.code.value_of(columns)

    def probabilities(self, q_out: torch.Tensor) -> torch.Tensor | None:
        """Q's distribution over a discrete code's values, ``(B, V)`` float32 with rows summing
        to 1, in the order of the code's ``traversal_values()``; ``None`` (the default) when the
        loss models no such distribution. ``encode`` reports it next to the point estimate."""
        return None

    def reachable_max(self) -> float | None:
        """The largest value ``L_I = E[log Q(c|x)] + H(c)`` can take for the bound code with this
        loss, in nats: what a perfect Q reaches (a supremum), the figure ``L_I`` is read against.
        ``None`` (the default) when unknown or unbounded, e.g. for a density whose learned std can
        shrink. It is ``H(c)`` when a perfect Q has ``log Q = 0`` (a probability mass, as with
        ``CategoricalCE``); a loss with a fixed spread stays below it (``GaussianNLLFixed``)."""
        return None

    def describe(self) -> dict[str, Any]:
        """JSON-able record (registry name + options); the bound code is described with its slot."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if k != "code"}}

    def mismatch(self, code: LatentCode) -> ValueError:
        """The error ``num_outputs`` raises for a code this loss cannot model."""
        return ValueError(f"Q loss {self.name!r} cannot model a {code.type_name!r} code ({code!r})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CategoricalCE(QLoss):
    """Softmax-categorical Q over the k classes: one logit per class."""

    name: ClassVar[str] = "categorical_ce"

    def num_outputs(self, code: LatentCode) -> int:
        if not isinstance(code, Categorical):
            raise self.mismatch(code)
        return code.input_width

    def nll(self, q_out: torch.Tensor, code_value: torch.Tensor) -> torch.Tensor:
        return categorical_nll(q_out, code_value)

    def predict(self, q_out: torch.Tensor) -> torch.Tensor:
        return F.one_hot(q_out.argmax(dim=1), q_out.shape[1]).to(torch.float32)

    def point_estimate(self, q_out: torch.Tensor) -> torch.Tensor:
        return q_out.argmax(dim=1, keepdim=True).to(torch.float32)  # (B, 1): the class index

    def probabilities(self, q_out: torch.Tensor) -> torch.Tensor:
        return q_out.float().softmax(dim=1)  # (B, k), class order of the one-hot code

    def reachable_max(self) -> float | None:
        # a softmax puts probability -> 1 on the right class: log Q -> 0, so L_I -> H(c)
        return None if self.code is None else self.code.entropy()


class GaussianNLL(QLoss):
    """Factorised Gaussian Q with learned std; Q outputs ``[mean (d) | log_std (d)]``."""

    name: ClassVar[str] = "gaussian_nll"

    def __init__(self, *, min_log_std: float = MIN_LOG_STD, max_log_std: float = MAX_LOG_STD) -> None:
        if not min_log_std < max_log_std:
            raise ValueError(f"GaussianNLL: need min_log_std < max_log_std, got {min_log_std!r} and {max_log_std!r}")
        self.min_log_std = min_log_std
        self.max_log_std = max_log_std

    def num_outputs(self, code: LatentCode) -> int:
        if code.discrete:
            raise self.mismatch(code)
        return 2 * code.input_width

    def _split(self, q_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = rearrange(q_out, "b (two d) -> two b d", two=2)
        return mean, log_std

    def nll(self, q_out: torch.Tensor, code_value: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(q_out)
        return gaussian_nll(mean, log_std, code_value, min_log_std=self.min_log_std, max_log_std=self.max_log_std)

    def stats(self, q_out: torch.Tensor) -> dict[str, torch.Tensor]:
        _, log_std = self._split(q_out.detach())
        return {"q_std": log_std.float().clamp(self.min_log_std, self.max_log_std).exp().mean()}

    def predict(self, q_out: torch.Tensor) -> torch.Tensor:
        return self._split(q_out)[0].float()

    def point_estimate(self, q_out: torch.Tensor) -> torch.Tensor:
        return self._split(q_out)[0].float()  # (B, d): the mean

    # reachable_max stays None: a learned std can shrink to e^min_log_std, so log Q of a density
    # has no useful ceiling (the clamp's bound, H + d (5 - 0.92) nats, says nothing of information)

    def __repr__(self) -> str:
        return f"GaussianNLL(min_log_std={self.min_log_std}, max_log_std={self.max_log_std})"


class GaussianNLLFixed(QLoss):
    """Gaussian Q with a constant std (the reference MNIST setup); Q outputs only the mean."""

    name: ClassVar[str] = "gaussian_nll_fixed"

    def __init__(self, *, std: float = 1.0) -> None:
        if not std > 0:
            raise ValueError(f"GaussianNLLFixed: std must be > 0, got std={std!r}")
        self.std = float(std)

    def num_outputs(self, code: LatentCode) -> int:
        if code.discrete:
            raise self.mismatch(code)
        return code.input_width

    def nll(self, q_out: torch.Tensor, code_value: torch.Tensor) -> torch.Tensor:
        return gaussian_nll_fixed(q_out, code_value, std=self.std)

    def reachable_max(self) -> float | None:
        # a perfect mean leaves only the constant of the NLL: per column ln(std) + (1/2) ln(2 pi),
        # so L_I <= H(c) - d/2 ln(2 pi std^2): -0.226 nats for U(-1, 1) at std 1, below H = ln 2
        if self.code is None:
            return None
        return self.code.entropy() - self.code.input_width * (math.log(self.std) + _HALF_LOG_2PI)

    def stats(self, q_out: torch.Tensor) -> dict[str, torch.Tensor]:
        # constant, reported so logs look the same whichever Gaussian loss is used
        return {"q_std": torch.full((), self.std, dtype=torch.float32, device=q_out.device)}

    def predict(self, q_out: torch.Tensor) -> torch.Tensor:
        return q_out.float()

    def point_estimate(self, q_out: torch.Tensor) -> torch.Tensor:
        return q_out.float()  # (B, d): the mean

    def __repr__(self) -> str:
        return f"GaussianNLLFixed(std={self.std})"
