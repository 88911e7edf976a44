"""Latent code types for InfoGAN (Chen et al. 2016).

A latent code c is the structured part of the generator input that InfoGAN makes
recoverable from G(z, c) by maximising a variational lower bound on I(c; G(z, c)).
Each code type here knows how to sample itself, how wide it is in G's input, its
entropy H(c) (needed for the bound L_I = H(c) - E[-log Q(c|x)]), which values to
sweep in a traversal figure, and which Q loss / lambda the paper pairs with it.

Codes are frozen keyword-only dataclasses so that a new type is one short
subclass (fields + ``sample``/``entropy``/``traversal_values``), e.g.::

    @dataclass(frozen=True, kw_only=True)
    class Bernoulli(LatentCode):
        type_name = "bernoulli"
        default_q_loss = "bernoulli_bce"
        default_lambda = 1.0
        discrete = True
        p: float = 0.5

        def sample(self, n, *, generator, device):
            probs = torch.full((n, self.dim), self.p, device=device)
            return torch.bernoulli(probs, generator=generator)

        def entropy(self):
            return -self.dim * (self.p * math.log(self.p) + (1 - self.p) * math.log1p(-self.p))

        def traversal_values(self, *, steps=5):
            return torch.tensor([[0.0], [1.0]])

Traversal convention: ``traversal_values`` returns the values of ONE code
dimension, shape ``(V, input_width // dim)``. For a categorical code (dim 1) that
is ``eye(k)``; for a continuous code it is a ``(V, 1)`` column. The caller writes
those values into the columns of the dimension being swept and keeps every other
input fixed, so multi-dimensional codes are traversed one dimension at a time.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["DEFAULT_TRAVERSAL_STEPS", "LatentCode", "ContinuousCode", "Categorical", "Uniform", "Gaussian"]

DEFAULT_TRAVERSAL_STEPS = 5


@dataclass(frozen=True, kw_only=True)
class LatentCode(abc.ABC):
    """Base class of all latent code types.

    Required (checked when a plugin registers the class): the four class variables below and
    ``sample``, ``entropy`` and ``traversal_values``. A subclass with a ``__post_init__`` of
    its own calls ``super().__post_init__()`` (it checks ``dim``). Everything else has a
    default that a subclass overrides where the default says so:

    - ``augment_invariant`` (default: ``discrete``): whether ``--q-augment`` reads this code
      from randomly transformed fakes; ``show_progress`` (default: ``discrete``): whether the
      progress bar shows this code's ``L_I / H``;
    - ``traversal_range``, ``value_range``, ``values_text``, ``input_for``, ``value_of``: the
      values a user may choose for ``generate`` / ``explore`` and how they map to G's input.
      The defaults treat a discrete code's values as the indices of ``traversal_values()``
      rows; a code whose values are not those indices (a count fed to G scaled, with
      unbounded support) overrides ``value_range``, ``input_for`` and ``value_of``.

    ``discrete`` itself only picks those defaults; nothing else reads it, except Q losses
    that model only continuous or only discrete codes.
    """

    type_name: ClassVar[str]  # name in the code-type registry and in ``input_layout()``
    default_q_loss: ClassVar[str]  # registry name of the Q loss the code is paired with by default
    # The code's information weight when neither lambda= nor --lambda is given. The paper uses
    # 1.0 for its categorical code and 0.1 for continuous ones; a code whose Q loss is steep in
    # G's input (a count fed as (k - rate) / sqrt(rate)) needs less (docs/plugins.md, "Choosing
    # default_lambda").
    default_lambda: ClassVar[float]
    discrete: ClassVar[bool]  # whether the code takes countably many values (picks the defaults below)

    dim: int = 1  # number of independent code dimensions

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"{type(self).__name__}: dim must be an integer >= 1, got {self.dim!r}")

    @property
    def augment_invariant(self) -> bool:
        """Whether ``--q-augment`` reads this code from transformed fakes (what a small rotation,
        scaling or shift of the image must not change: a class, a count). Default: ``discrete``."""
        return self.discrete

    @property
    def show_progress(self) -> bool:
        """Whether the progress bar shows ``I/H`` for this code (meaningful when ``H(c)`` is a
        positive, discrete entropy; a differential entropy can be any sign). Default: ``discrete``."""
        return self.discrete

    @property
    def input_width(self) -> int:
        """Columns this code occupies in G's input (one per dimension unless overridden)."""
        return self.dim

    @abc.abstractmethod
    def sample(self, n: int, *, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        """Draw ``(n, input_width)`` float32 values using only ``generator``.

        Using an explicit generator (on ``device``) keeps runs reproducible and
        independent of whatever else consumes the global RNG.
        """
        ...

    @abc.abstractmethod
    def entropy(self) -> float:
        """H(c) in nats, summed over dimensions (differential entropy for continuous codes)."""
        ...

    @abc.abstractmethod
    def traversal_values(self, *, steps: int = DEFAULT_TRAVERSAL_STEPS) -> torch.Tensor:
        """Values of ONE code dimension to sweep: ``(V, input_width // dim)`` float32 on CPU.

        ``steps`` sets V for continuous codes; discrete codes enumerate all of
        their values and ignore it.
        """
        ...

    # ------------------------------------------------------------------ chosen values
    # generate / encode / explore set and read codes through these four methods, so a new
    # code type gets them from its traversal_values(); override where the defaults say so.

    def traversal_range(self) -> tuple[float, float]:
        """(start, end) of a continuous code's traversal, for one dimension (the explorer's slider).

        Default: the smallest and largest of ``traversal_values()``, which needs one input
        column per dimension; a code with a wider encoding (an angle fed as cos/sin) overrides it.
        """
        values = self.traversal_values()
        if self.discrete or values.shape[1] != 1:
            raise NotImplementedError(
                f"{type(self).__name__} has no linear traversal range; override traversal_range()"
            )
        return float(values.min()), float(values.max())

    def value_range(self) -> tuple[float, float]:
        """Closed interval of the values a user may choose for ONE dimension of this code.

        Default: for a discrete code the indices ``0 .. V-1`` of ``traversal_values()`` (which
        enumerates every value; a categorical's class index), for a continuous code its
        ``traversal_range()``: the range the traversal pictures show G on, beyond the prior's
        support for a uniform code as in the paper's figures.
        """
        if self.discrete:
            return 0.0, float(self.traversal_values().shape[0] - 1)
        return self.traversal_range()

    def values_text(self) -> str:
        """The allowed values in words, for error messages: ``an integer in 0..9``."""
        low, high = self.value_range()
        if self.discrete:
            return f"an integer in {int(low)}..{int(high)}"
        return f"a number in [{low:g}, {high:g}]"

    def input_for(self, value: float | int | Sequence[float]) -> torch.Tensor:
        """G-input columns ``(input_width,)`` float32 for a chosen value of this code.

        ``value`` is one number for every dimension or a sequence of ``dim`` numbers. Each must
        be finite and inside ``value_range()``, and an integer for a discrete code; otherwise
        ``ValueError`` names the value and the allowed range. Default: a discrete code's value
        ``k`` is row ``k`` of ``traversal_values()`` (a categorical's one-hot); a continuous
        code's value is its column, which needs one input column per dimension (a code with a
        wider encoding overrides this method and ``value_of``).
        """
        values = _per_dimension(value, self.dim)
        low, high = self.value_range()
        for v in values:
            if not (math.isfinite(v) and low <= v <= high) or (self.discrete and v != int(v)):
                raise ValueError(f"value {_show(value)} is not allowed: expected {self.values_text()}")
        if self.discrete:
            table = self.traversal_values()
            return torch.cat([table[int(v)] for v in values]).to(torch.float32)
        if self.input_width != self.dim:
            raise NotImplementedError(
                f"{type(self).__name__} feeds G {self.input_width} columns for {self.dim} "
                f"dimension(s); override input_for() and value_of()"
            )
        return torch.tensor(values, dtype=torch.float32)

    def value_of(self, columns: torch.Tensor) -> torch.Tensor:
        """Inverse of ``input_for``: ``(B, input_width)`` columns in G's input layout (or Q's
        point estimate, ``QLoss.predict``) -> the code's value per dimension, ``(B, dim)`` float32.

        Default: a discrete code's nearest row of ``traversal_values()`` (its index), a
        continuous code's columns as they are (one column per dimension).
        """
        columns = columns.float()
        if self.discrete:
            table = self.traversal_values().to(columns.device)  # (V, w)
            per_dim = rearrange(columns, "b (d w) -> b d 1 w", d=self.dim)
            return (per_dim - table).square().sum(-1).argmin(-1).to(torch.float32)  # (B, dim)
        if self.input_width != self.dim:
            raise NotImplementedError(
                f"{type(self).__name__}: override value_of() for a {self.input_width}-column encoding"
            )
        return columns

    def describe(self) -> dict[str, Any]:
        """JSON-able record of this code, stored in checkpoints to pin the input layout."""
        return {"type": self.type_name, **dataclasses.asdict(self)}

    @classmethod
    def from_spec(cls, size: int | None, options: Mapping[str, str]) -> list[LatentCode]:
        """Codes for a command-line spec ``TYPE[:N][,key=value...]``.

        By default ``N`` (default 1) independent one-dimensional codes, so ``uniform:2``
        gives two codes that are weighted, measured and traversed separately, like the
        paper's c2 and c3. Option values are converted to the field's declared type.
        """
        return [cls(**_convert_options(cls, options)) for _ in range(1 if size is None else size)]


@dataclass(frozen=True, kw_only=True)
class Categorical(LatentCode):
    """One categorical code with ``k`` equiprobable classes, fed to G as a one-hot vector."""

    type_name: ClassVar[str] = "categorical"
    default_q_loss: ClassVar[str] = "categorical_ce"
    default_lambda: ClassVar[float] = 1.0
    discrete: ClassVar[bool] = True

    k: int
    dim: int = field(default=1, init=False)  # a categorical is a single code dimension

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"Categorical: k must be an integer >= 2, got {self.k!r}")

    @property
    def input_width(self) -> int:
        return self.k

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        classes = torch.randint(self.k, (n,), generator=generator, device=device)  # (n,)
        return F.one_hot(classes, self.k).to(torch.float32)  # (n, k)

    def entropy(self) -> float:
        return math.log(self.k)

    def traversal_values(self, *, steps: int = DEFAULT_TRAVERSAL_STEPS) -> torch.Tensor:
        return torch.eye(self.k, dtype=torch.float32)  # (k, k): every class once

    @classmethod
    def from_spec(cls, size: int | None, options: Mapping[str, str]) -> list[LatentCode]:
        """``categorical:K`` is ONE code with K classes (K is required)."""
        if size is None:
            raise ValueError("categorical code needs its number of classes, e.g. categorical:10")
        return [cls(k=size, **_convert_options(cls, options))]


@dataclass(frozen=True, kw_only=True)
class ContinuousCode(LatentCode, abc.ABC):
    """Shared traversal logic for real-valued codes: one column per dimension."""

    default_lambda: ClassVar[float] = 0.1
    discrete: ClassVar[bool] = False

    @abc.abstractmethod
    def traversal_range(self) -> tuple[float, float]:
        """(start, end) of a traversal; the paper sweeps beyond the training range to test extrapolation."""
        ...

    def traversal_values(self, *, steps: int = DEFAULT_TRAVERSAL_STEPS) -> torch.Tensor:
        if steps < 2:
            raise ValueError(f"{type(self).__name__}: steps must be >= 2, got {steps!r}")
        start, end = self.traversal_range()
        return torch.linspace(start, end, steps, dtype=torch.float32).unsqueeze(1)  # (V, 1)


@dataclass(frozen=True, kw_only=True)
class Uniform(ContinuousCode):
    """Independent U(low, high) dimensions.

    The reference MNIST model pairs these with a fixed-std Gaussian Q, hence the
    default loss.
    """

    type_name: ClassVar[str] = "uniform"
    default_q_loss: ClassVar[str] = "gaussian_nll_fixed"

    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"Uniform: need finite low < high, got low={self.low!r}, high={self.high!r}")

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        unit = torch.rand((n, self.dim), generator=generator, device=device, dtype=torch.float32)
        return unit * (self.high - self.low) + self.low  # (n, dim)

    def entropy(self) -> float:
        return self.dim * math.log(self.high - self.low)

    def traversal_range(self) -> tuple[float, float]:
        # centre +/- the full width: -2..2 for U(-1, 1), as in the paper's figures
        centre = 0.5 * (self.low + self.high)
        width = self.high - self.low
        return centre - width, centre + width


@dataclass(frozen=True, kw_only=True)
class Gaussian(ContinuousCode):
    """Independent N(mean, std^2) dimensions, recovered by a Q with learned std."""

    type_name: ClassVar[str] = "gaussian"
    default_q_loss: ClassVar[str] = "gaussian_nll"

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.mean):
            raise ValueError(f"Gaussian: mean must be finite, got mean={self.mean!r}")
        if not math.isfinite(self.std) or self.std <= 0:
            raise ValueError(f"Gaussian: std must be finite and > 0, got std={self.std!r}")

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        unit = torch.randn((n, self.dim), generator=generator, device=device, dtype=torch.float32)
        return unit * self.std + self.mean  # (n, dim)

    def entropy(self) -> float:
        return self.dim * 0.5 * math.log(2.0 * math.pi * math.e * self.std**2)

    def traversal_range(self) -> tuple[float, float]:
        return self.mean - 2.0 * self.std, self.mean + 2.0 * self.std

    def value_range(self) -> tuple[float, float]:
        # the prior puts 5% of its draws beyond the +/- 2 std of a traversal; +/- 4 std keeps all
        # but 0.006% of them, and no value G has never seen
        return self.mean - 4.0 * self.std, self.mean + 4.0 * self.std


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, (str, bytes)) else str(value)


def _per_dimension(value: Any, dim: int) -> list[float]:
    """One float per code dimension from a number or a sequence of ``dim`` numbers."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    items = list(value) if isinstance(value, (list, tuple)) else [value] * dim
    if len(items) != dim:
        raise ValueError(f"value {_show(value)} has {len(items)} entries, expected one number or {dim}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"value {_show(value)} is not a number")
        out.append(float(item))
    return out


_CONVERTERS = {"float": float, "int": int, "str": str}


def _convert_options(cls: type[LatentCode], options: Mapping[str, str]) -> dict[str, Any]:
    """Turn raw ``key=value`` strings into constructor arguments, naming bad keys and values."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "dim"}
    converted: dict[str, Any] = {}
    for key, raw in options.items():
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ValueError(f"{cls.type_name} code has no option {key!r}; options: {known}")
        convert = _CONVERTERS.get(str(fields[key].type), float)
        try:
            converted[key] = convert(raw)
        except ValueError:
            raise ValueError(f"{cls.type_name} code option {key}={raw!r} is not a valid {fields[key].type}") from None
    return converted
