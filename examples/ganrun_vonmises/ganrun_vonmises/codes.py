"""Two latent-code types for InfoGAN: an angle on the circle and a binary switch.

``VonMises`` is an angle code on [-pi, pi). G never sees the raw angle (which jumps from
pi to -pi); each dimension enters G's input as the point ``(cos theta, sin theta)`` on the
unit circle, so a code takes two input columns per dimension. Its natural Q is a von Mises
distribution (``vonmises_nll``).

``Bernoulli`` is a 0/1 code with success probability ``p``, recovered by a logistic Q
(``bernoulli_bce``), as in the InfoGAN reference implementation.

Both follow the ``infogan_plugin.LatentCode`` contract: frozen keyword-only dataclasses,
``sample`` draws only from the ``torch.Generator`` it is given, ``entropy`` is H(c) in nats
summed over dimensions, ``traversal_values`` returns the values of ONE dimension,
``(V, input_width // dim)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from einops import rearrange

from infogan_plugin import DEFAULT_TRAVERSAL_STEPS, LatentCode

__all__ = ["Bernoulli", "VonMises", "angles_to_input", "input_to_angles", "sample_von_mises", "REJECTION_ROUNDS"]

#: Proposal rounds of the von Mises rejection sampler. Every round accepts a proposal with
#: probability >= 0.65 whatever kappa is, so after 24 rounds a value is still unaccepted with
#: probability < 0.35**24 ~ 1e-11; such a value keeps the last proposal. A fixed number of
#: rounds means a fixed number of draws from the generator and no host sync on a GPU.
REJECTION_ROUNDS = 24

_TWO_PI = 2.0 * math.pi


def _wrap(angles: torch.Tensor) -> torch.Tensor:
    """Angles mapped onto [-pi, pi)."""
    return torch.remainder(angles + math.pi, _TWO_PI) - math.pi


def angles_to_input(angles: torch.Tensor) -> torch.Tensor:
    """``(n, d)`` angles -> ``(n, 2d)`` G input ``[cos t_0, sin t_0, cos t_1, sin t_1, ...]``."""
    return rearrange(torch.stack([angles.cos(), angles.sin()], dim=-1), "n d two -> n (d two)")


def input_to_angles(values: torch.Tensor) -> torch.Tensor:
    """Inverse of ``angles_to_input``: ``(n, 2d)`` -> ``(n, d)`` angles in [-pi, pi]."""
    pairs = rearrange(values, "n (d two) -> two n d", two=2)
    return torch.atan2(pairs[1], pairs[0])


def sample_von_mises(
    shape: tuple[int, ...], *, mu: float, kappa: float, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """Angles from von Mises(mu, kappa) wrapped to [-pi, pi], float32, drawing only from ``generator``.

    kappa == 0 is the uniform angle. kappa > 0 uses Best & Fisher's (1979) wrapped-Cauchy
    rejection sampler, vectorised over ``REJECTION_ROUNDS`` rounds (``torch.distributions.
    VonMises`` implements the same algorithm but cannot take a generator).
    """
    if kappa == 0:
        unit = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
        return unit * _TWO_PI - math.pi
    # Proposal parameter in double precision on the host (kappa is a Python number).
    tau = 1.0 + math.sqrt(1.0 + 4.0 * kappa * kappa)
    rho = (tau - math.sqrt(2.0 * tau)) / (2.0 * kappa)
    r = (1.0 + rho * rho) / (2.0 * rho) if kappa >= 1e-5 else 1.0 / kappa + kappa
    # f approaches 1 as kappa grows: keep the per-sample arithmetic in float64 where supported.
    dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64
    offset = torch.zeros(shape, device=device, dtype=dtype)
    done = torch.zeros(shape, device=device, dtype=torch.bool)
    for round_index in range(REJECTION_ROUNDS):
        u1, u2, u3 = torch.rand((3, *shape), generator=generator, device=device, dtype=dtype).unbind(0)
        z = torch.cos(math.pi * u1)
        f = (1.0 + r * z) / (r + z)
        c = kappa * (r - f)
        accept = (c * (2.0 - c) - u2 > 0) | (torch.log(c / u2) + 1.0 - c >= 0)
        proposal = torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1.0, 1.0))
        last = round_index == REJECTION_ROUNDS - 1
        take = ~done if last else accept & ~done  # first accepted proposal; leftovers keep the last one
        offset = torch.where(take, proposal, offset)
        done = done | take
    return _wrap(offset + mu).to(torch.float32)


@dataclass(frozen=True, kw_only=True)
class VonMises(LatentCode):
    """Independent angle dimensions, theta ~ von Mises(mu, kappa), fed to G as (cos, sin).

    The default ``kappa=0`` is the uniform angle on [-pi, pi) (H = ln 2pi per dimension), the
    natural choice for a rotation-like factor. ``vonmises:2`` gives two separate codes.
    """

    type_name: ClassVar[str] = "vonmises"
    default_q_loss: ClassVar[str] = "vonmises_nll"
    default_lambda: ClassVar[float] = 0.1  # continuous, like the paper's continuous codes
    discrete: ClassVar[bool] = False

    mu: float = 0.0
    kappa: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.mu):
            raise ValueError(f"VonMises: mu must be finite, got mu={self.mu!r}")
        if not (math.isfinite(self.kappa) and self.kappa >= 0):
            raise ValueError(f"VonMises: kappa must be finite and >= 0, got kappa={self.kappa!r}")

    @property
    def input_width(self) -> int:
        return 2 * self.dim  # (cos, sin) per dimension

    @property
    def augment_invariant(self) -> bool:
        # --q-augment rotates the fakes, and an angle code is often the rotation itself: Q reads
        # it from the unmoved fakes (the default for a non-discrete code, stated on purpose)
        return False

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        angles = sample_von_mises((n, self.dim), mu=self.mu, kappa=self.kappa, generator=generator, device=device)
        return angles_to_input(angles)  # (n, 2 * dim)

    def entropy(self) -> float:
        """ln(2 pi I0(kappa)) - kappa I1(kappa) / I0(kappa) per dimension; ln 2pi for kappa = 0."""
        if self.kappa == 0:
            return self.dim * math.log(_TWO_PI)
        k = torch.tensor(self.kappa, dtype=torch.float64)
        i0e, i1e = torch.special.i0e(k), torch.special.i1e(k)  # I_v(k) * exp(-k)
        per_dim = math.log(_TWO_PI) + math.log(float(i0e)) + self.kappa - self.kappa * float(i1e / i0e)
        return self.dim * per_dim

    def traversal_values(self, *, steps: int = DEFAULT_TRAVERSAL_STEPS) -> torch.Tensor:
        """``steps`` equally spaced angles once around the circle from -pi, as ``(steps, 2)`` (cos, sin)."""
        if steps < 2:
            raise ValueError(f"VonMises: steps must be >= 2, got {steps!r}")
        angles = torch.arange(steps, dtype=torch.float64) * (_TWO_PI / steps) - math.pi
        return angles_to_input(angles.unsqueeze(1)).to(torch.float32)

    # generate / encode / explore: a value is an angle; G sees its (cos, sin), so the three
    # methods whose defaults assume one input column per dimension are spelled out here
    def traversal_range(self) -> tuple[float, float]:
        return -math.pi, math.pi

    def input_for(self, value: float | list[float]) -> torch.Tensor:
        """An angle in [-pi, pi] (or one per dimension) -> its ``(2 * dim,)`` (cos, sin) columns."""
        values = list(value) if isinstance(value, (list, tuple)) else [value] * self.dim
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if len(values) != self.dim or not numbers or not all(-math.pi <= v <= math.pi for v in values):
            raise ValueError(f"value {value!r} is not allowed: expected {self.values_text()}")
        return angles_to_input(torch.tensor([values], dtype=torch.float64))[0].to(torch.float32)

    def value_of(self, columns: torch.Tensor) -> torch.Tensor:
        return input_to_angles(columns.float())  # (B, dim) angles


@dataclass(frozen=True, kw_only=True)
class Bernoulli(LatentCode):
    """Independent 0/1 dimensions with P(1) = ``p``; ``bernoulli:3`` gives three separate codes."""

    type_name: ClassVar[str] = "bernoulli"
    default_q_loss: ClassVar[str] = "bernoulli_bce"
    default_lambda: ClassVar[float] = 1.0  # discrete, like the paper's categorical code
    discrete: ClassVar[bool] = True

    p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.p < 1.0:
            raise ValueError(f"Bernoulli: p must be in (0, 1), got p={self.p!r}")

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        unit = torch.rand((n, self.dim), generator=generator, device=device, dtype=torch.float32)
        return (unit < self.p).to(torch.float32)  # (n, dim)

    def entropy(self) -> float:
        p = self.p
        return -self.dim * (p * math.log(p) + (1.0 - p) * math.log1p(-p))

    def traversal_values(self, *, steps: int = DEFAULT_TRAVERSAL_STEPS) -> torch.Tensor:
        return torch.tensor([[0.0], [1.0]])  # both values; steps is ignored as for any discrete code
