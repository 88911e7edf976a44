"""Q losses for the von Mises and Bernoulli codes: ``-log Q(c|x)`` per sample, in float32.

Both follow ``infogan_plugin.QLoss``: ``num_outputs(code)`` says how many columns of Q's
output the code needs, ``nll(q_out, code_value)`` returns ``(B,)`` summed over the code's
dimensions, ``predict`` gives Q's point estimate in the code's input layout and ``stats``
returns detached scalars for the metrics (no host sync).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange

from infogan_plugin import LatentCode, QLoss
from ganrun_vonmises.codes import Bernoulli, VonMises

__all__ = ["MIN_LOG_KAPPA", "MAX_LOG_KAPPA", "BernoulliBCE", "VonMisesNLL", "bernoulli_nll", "von_mises_nll"]

# Clamp for Q's learned log-concentration, for the same reason the Gaussian Q clamps its
# log-std: kappa >= e^-5 is practically uniform, kappa <= e^6 ~ 403 is an angular spread of
# about 0.05 rad, finer than any useful resolution of an angle code.
MIN_LOG_KAPPA = -5.0
MAX_LOG_KAPPA = 6.0

_LOG_2PI = math.log(2.0 * math.pi)


def von_mises_nll(
    direction: torch.Tensor,
    log_kappa: torch.Tensor,
    code_value: torch.Tensor,
    *,
    min_log_kappa: float = MIN_LOG_KAPPA,
    max_log_kappa: float = MAX_LOG_KAPPA,
) -> torch.Tensor:
    """NLL of angles under von Mises(mu, kappa), summed over d -> ``(B,)``.

    ``direction`` ``(B, d, 2)`` is an unnormalised vector pointing at the mean direction mu,
    ``log_kappa`` ``(B, d)`` is clamped to ``[min_log_kappa, max_log_kappa]``, and
    ``code_value`` ``(B, 2d)`` holds ``(cos theta, sin theta)`` per dimension. Uses
    ``-kappa cos(theta - mu) + ln(2 pi I0(kappa))`` with ``ln I0(k) = ln i0e(k) + k``, i.e.
    ``kappa (1 - cos(theta - mu)) + ln i0e(kappa) + ln 2pi``, which stays finite for any kappa.
    """
    unit = F.normalize(direction.float(), dim=-1, eps=1e-6)  # (B, d, 2): (cos mu, sin mu)
    point = rearrange(code_value.float(), "b (d two) -> b d two", two=2)  # (cos theta, sin theta)
    cos_diff = (unit * point).sum(dim=-1)  # cos(theta - mu), (B, d)
    kappa = log_kappa.float().clamp(min_log_kappa, max_log_kappa).exp()
    per_dim = kappa * (1.0 - cos_diff) + torch.log(torch.special.i0e(kappa)) + _LOG_2PI
    return per_dim.sum(dim=1)


def bernoulli_nll(logits: torch.Tensor, code_value: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of raw logits ``(B, d)`` against 0/1 codes ``(B, d)``, summed -> ``(B,)``."""
    return F.binary_cross_entropy_with_logits(logits.float(), code_value.float(), reduction="none").sum(dim=1)


class VonMisesNLL(QLoss):
    """Von Mises Q per angle dimension: outputs ``[x (d) | y (d) | log_kappa (d)]``.

    ``(x, y)`` is normalised into the mean direction ``(cos mu, sin mu)``, so Q never has to
    produce an angle that wraps around.
    """

    name: ClassVar[str] = "vonmises_nll"

    def __init__(self, *, min_log_kappa: float = MIN_LOG_KAPPA, max_log_kappa: float = MAX_LOG_KAPPA) -> None:
        if not min_log_kappa < max_log_kappa:
            raise ValueError(
                f"VonMisesNLL: need min_log_kappa < max_log_kappa, got {min_log_kappa!r} and {max_log_kappa!r}"
            )
        self.min_log_kappa = float(min_log_kappa)
        self.max_log_kappa = float(max_log_kappa)

    def num_outputs(self, code: LatentCode) -> int:
        if not isinstance(code, VonMises):
            raise self.mismatch(code)
        return 3 * code.dim

    def _split(self, q_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, log_kappa = rearrange(q_out, "b (three d) -> three b d", three=3)
        return torch.stack([x, y], dim=-1), log_kappa  # (B, d, 2), (B, d)

    def nll(self, q_out: torch.Tensor, code_value: torch.Tensor) -> torch.Tensor:
        direction, log_kappa = self._split(q_out)
        return von_mises_nll(
            direction, log_kappa, code_value, min_log_kappa=self.min_log_kappa, max_log_kappa=self.max_log_kappa
        )

    def stats(self, q_out: torch.Tensor) -> dict[str, torch.Tensor]:
        _, log_kappa = self._split(q_out.detach())
        return {"q_kappa": log_kappa.float().clamp(self.min_log_kappa, self.max_log_kappa).exp().mean()}

    def predict(self, q_out: torch.Tensor) -> torch.Tensor:
        direction, _ = self._split(q_out)
        unit = F.normalize(direction.float(), dim=-1, eps=1e-6)
        return rearrange(unit, "b d two -> b (d two)")  # (cos mu, sin mu) per dimension

    def __repr__(self) -> str:
        return f"VonMisesNLL(min_log_kappa={self.min_log_kappa}, max_log_kappa={self.max_log_kappa})"


class BernoulliBCE(QLoss):
    """Logistic Q per 0/1 dimension: one logit each."""

    name: ClassVar[str] = "bernoulli_bce"

    def num_outputs(self, code: LatentCode) -> int:
        if not isinstance(code, Bernoulli):
            raise self.mismatch(code)
        return code.input_width

    def nll(self, q_out: torch.Tensor, code_value: torch.Tensor) -> torch.Tensor:
        return bernoulli_nll(q_out, code_value)

    def predict(self, q_out: torch.Tensor) -> torch.Tensor:
        return (q_out > 0).to(torch.float32)  # the more likely value per dimension

    def reachable_max(self) -> float | None:
        # a probability mass: a sure Q has log Q = 0, so L_I can reach H(c) and eval shows a share of it
        return None if self.code is None else self.code.entropy()
