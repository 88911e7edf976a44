"""A test plugin with a parameterised count code: ``poisson`` (rate=) and its Q loss ``poisson_nll``.

The count ``k ~ Poisson(rate)`` enters G's input standardised, ``(k - rate) / sqrt(rate)``, so
its Q loss must know the code's ``rate`` to turn the column back into ``k``: it reads it from
the code bound to it (``self.code``), the contract this plugin exists to test. Its support is
infinite and its Q output is one column (a log-rate), the two cases where the defaults that
``discrete`` picks used to go wrong. Uses public names only, like a third-party package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from infogan_plugin import DEFAULT_TRAVERSAL_STEPS, LatentCode, QLoss
from registry import hookimpl

MAX_LOG_RATE = 6.0  # Q's rate is at most e^6 ~ 400 counts: far beyond any rate worth a code


@dataclass(frozen=True, kw_only=True)
class Poisson(LatentCode):
    """``dim`` independent counts ``k ~ Poisson(rate)``, fed to G as ``(k - rate) / sqrt(rate)``."""

    type_name: ClassVar[str] = "poisson"
    default_q_loss: ClassVar[str] = "poisson_nll"
    default_lambda: ClassVar[float] = 0.1  # steep NLL in G's input: 1 drowns the GAN loss (docs/plugins.md)
    discrete: ClassVar[bool] = True

    rate: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"Poisson: rate must be finite and > 0, got {self.rate!r}")

    def encode(self, counts: torch.Tensor) -> torch.Tensor:
        return (counts.float() - self.rate) / math.sqrt(self.rate)

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        rates = torch.full((n, self.dim), self.rate, device=device)
        return self.encode(torch.poisson(rates, generator=generator))  # (n, dim)

    def entropy(self) -> float:
        top = int(self.rate + 20 * math.sqrt(self.rate) + 20)  # the tail beyond holds < 1e-20
        logp = [k * math.log(self.rate) - self.rate - math.lgamma(k + 1) for k in range(top)]
        return self.dim * -sum(math.exp(lp) * lp for lp in logp)

    def traversal_values(self, *, steps: int = DEFAULT_TRAVERSAL_STEPS) -> torch.Tensor:
        # infinite support: show the counts within two standard deviations above zero
        top = math.ceil(self.rate + 2 * math.sqrt(self.rate))
        return self.encode(torch.arange(top + 1)).unsqueeze(1)  # (V, 1)

    def value_range(self) -> tuple[float, float]:
        return 0.0, math.inf

    def values_text(self) -> str:
        return "a whole number >= 0"

    def input_for(self, value) -> torch.Tensor:
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * self.dim)]
        if len(values) != self.dim or any(not (v >= 0 and v == int(v)) for v in values):
            raise ValueError(f"value {value} is not allowed: expected {self.values_text()}")
        return self.encode(torch.tensor(values))

    def value_of(self, columns: torch.Tensor) -> torch.Tensor:
        return (columns.float() * math.sqrt(self.rate) + self.rate).round().clamp(min=0)  # (B, dim)


class PoissonNLL(QLoss):
    """Poisson Q per count: one output each, the log of Q's rate."""

    name: ClassVar[str] = "poisson_nll"

    def num_outputs(self, code: LatentCode) -> int:
        if not isinstance(code, Poisson):
            raise self.mismatch(code)
        return code.dim

    def nll(self, q_out: torch.Tensor, code_value: torch.Tensor) -> torch.Tensor:
        counts = self.code.value_of(code_value)  # (B, d): the bound code decodes
        log_rate = q_out.float().clamp(max=MAX_LOG_RATE)
        return (log_rate.exp() - counts * log_rate + torch.lgamma(counts + 1)).sum(dim=1)

    def predict(self, q_out: torch.Tensor) -> torch.Tensor:
        mode = q_out.float().clamp(max=MAX_LOG_RATE).exp().floor()  # a Poisson's mode
        return self.code.encode(mode)  # G's input layout


@hookimpl
def ganrun_register_latent_codes(register):
    register("poisson", Poisson)


@hookimpl
def ganrun_register_q_losses(register):
    register("poisson_nll", PoissonNLL)
