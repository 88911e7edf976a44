"""Latent code types: sampling, entropies, traversal values, validation, extensibility."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from infogan_plugin.codes import Categorical, Gaussian, LatentCode, Uniform

N_LARGE = 100_000

CODES = [Categorical(k=10), Uniform(dim=2), Uniform(low=0.0, high=5.0), Gaussian(dim=3, mean=1.0, std=0.5)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("code", CODES, ids=repr)
def test_sample_shape_dtype(code: LatentCode) -> None:
    x = code.sample(7, generator=_gen(0), device="cpu")
    assert x.shape == (7, code.input_width)
    assert x.dtype == torch.float32


@pytest.mark.parametrize("code", CODES, ids=repr)
def test_sampling_reproducible_and_independent_of_global_rng(code: LatentCode) -> None:
    torch.manual_seed(1)
    first = code.sample(64, generator=_gen(42), device="cpu")
    torch.manual_seed(999)
    torch.rand(17)  # disturb the global stream
    global_state = torch.get_rng_state()
    second = code.sample(64, generator=_gen(42), device="cpu")
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), global_state), "sampling must not touch the global RNG"
    assert not torch.equal(first, code.sample(64, generator=_gen(43), device="cpu"))


def test_categorical_one_hot_and_uniform_frequencies() -> None:
    k = 10
    x = Categorical(k=k).sample(N_LARGE, generator=_gen(0), device="cpu")
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x.sum(dim=1), torch.ones(N_LARGE))
    freq = x.mean(dim=0)
    # binomial std of a frequency is ~0.001 here; 0.006 is a 6-sigma band
    assert torch.allclose(freq, torch.full((k,), 1 / k), atol=0.006)


def test_uniform_range_and_moments() -> None:
    low, high = -1.0, 3.0
    x = Uniform(dim=2, low=low, high=high).sample(N_LARGE, generator=_gen(1), device="cpu")
    assert x.min() >= low and x.max() <= high
    assert torch.allclose(x.mean(dim=0), torch.full((2,), (low + high) / 2), atol=0.03)
    assert torch.allclose(x.var(dim=0), torch.full((2,), (high - low) ** 2 / 12), atol=0.03)


def test_gaussian_moments() -> None:
    x = Gaussian(dim=2, mean=0.5, std=2.0).sample(N_LARGE, generator=_gen(2), device="cpu")
    assert torch.allclose(x.mean(dim=0), torch.full((2,), 0.5), atol=0.04)
    assert torch.allclose(x.std(dim=0), torch.full((2,), 2.0), atol=0.03)


def test_entropies_match_closed_forms_and_torch_distributions() -> None:
    assert Categorical(k=10).entropy() == pytest.approx(math.log(10))
    uniform = Uniform(dim=3, low=-1.0, high=2.0)
    assert uniform.entropy() == pytest.approx(3 * math.log(3.0))
    torch_uniform = torch.distributions.Uniform(torch.tensor(-1.0), torch.tensor(2.0)).entropy().item()
    assert uniform.entropy() == pytest.approx(3 * torch_uniform, rel=1e-6)
    gaussian = Gaussian(dim=2, mean=3.0, std=0.5)
    assert gaussian.entropy() == pytest.approx(2 * 0.5 * math.log(2 * math.pi * math.e * 0.25))
    torch_normal = torch.distributions.Normal(torch.tensor(3.0), torch.tensor(0.5)).entropy().item()
    assert gaussian.entropy() == pytest.approx(2 * torch_normal, rel=1e-6)


def test_paper_defaults() -> None:
    assert (Categorical.default_q_loss, Categorical.default_lambda, Categorical.discrete) == (
        "categorical_ce",
        1.0,
        True,
    )
    assert (Uniform.default_q_loss, Uniform.default_lambda, Uniform.discrete) == ("gaussian_nll_fixed", 0.1, False)
    assert (Gaussian.default_q_loss, Gaussian.default_lambda, Gaussian.discrete) == ("gaussian_nll", 0.1, False)
    assert Categorical(k=10).dim == 1 and Categorical(k=10).input_width == 10
    assert Uniform(dim=2).input_width == 2


def test_traversal_values() -> None:
    assert torch.equal(Categorical(k=4).traversal_values(), torch.eye(4))
    # uniform: centre +/- full width, i.e. -2..2 for the paper's U(-1, 1)
    assert torch.allclose(Uniform().traversal_values().squeeze(1), torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]))
    assert torch.allclose(
        Uniform(low=0.0, high=1.0).traversal_values(steps=3).squeeze(1), torch.tensor([-0.5, 0.5, 1.5])
    )
    assert torch.allclose(Gaussian(mean=1.0, std=0.5).traversal_values().squeeze(1), torch.linspace(0.0, 2.0, 5))
    # multi-dim continuous codes: values of ONE dimension, the caller picks which
    assert Uniform(dim=3).traversal_values(steps=7).shape == (7, 1)
    with pytest.raises(ValueError, match="steps"):
        Uniform().traversal_values(steps=1)


@pytest.mark.parametrize(
    ("factory", "pattern"),
    [
        (lambda: Categorical(k=1), r"k .*got 1"),
        (lambda: Uniform(dim=0), r"dim .*got 0"),
        (lambda: Gaussian(dim=-2), r"dim .*got -2"),
        (lambda: Uniform(low=1.0, high=1.0), r"low=1.0, high=1.0"),
        (lambda: Uniform(low=2.0, high=-1.0), r"low=2.0, high=-1.0"),
        (lambda: Gaussian(std=0.0), r"std=0.0"),
        (lambda: Gaussian(std=-1.0), r"std=-1.0"),
    ],
)
def test_constructor_validation(factory, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        factory()


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Categorical(10)  # type: ignore[misc]


@pytest.mark.parametrize("code", CODES, ids=repr)
def test_describe_is_json(code: LatentCode) -> None:
    description = json.loads(json.dumps(code.describe()))
    assert description["type"] == code.type_name and description["dim"] == code.dim


def test_describe_records_options() -> None:
    assert Categorical(k=10).describe() == {"type": "categorical", "dim": 1, "k": 10}
    assert Uniform(dim=2, low=-0.5, high=0.5).describe() == {"type": "uniform", "dim": 2, "low": -0.5, "high": 0.5}


def test_new_code_type_is_one_short_subclass() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Bernoulli(LatentCode):
        type_name: ClassVar[str] = "bernoulli"
        default_q_loss: ClassVar[str] = "bernoulli_bce"
        default_lambda: ClassVar[float] = 1.0
        discrete: ClassVar[bool] = True
        p: float = 0.5

        def sample(self, n, *, generator, device):
            return torch.bernoulli(torch.full((n, self.dim), self.p, device=device), generator=generator)

        def entropy(self):
            return -self.dim * (self.p * math.log(self.p) + (1 - self.p) * math.log(1 - self.p))

        def traversal_values(self, *, steps=5):
            return torch.tensor([[0.0], [1.0]])

    code = Bernoulli(dim=3, p=0.25)
    x = code.sample(N_LARGE // 10, generator=_gen(0), device="cpu")
    assert x.shape == (N_LARGE // 10, 3) and code.input_width == 3
    assert torch.allclose(x.mean(dim=0), torch.full((3,), 0.25), atol=0.02)
    assert code.describe() == {"type": "bernoulli", "dim": 3, "p": 0.25}
    with pytest.raises(ValueError, match="dim"):
        Bernoulli(dim=0)
