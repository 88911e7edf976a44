"""Q losses: agreement with torch.distributions, clamping, dtype, descriptor behaviour."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from infogan_plugin.codes import Categorical, Gaussian, Uniform
from infogan_plugin.qlosses import (
    MAX_LOG_STD,
    MIN_LOG_STD,
    CategoricalCE,
    GaussianNLL,
    GaussianNLLFixed,
    QLoss,
    categorical_nll,
    gaussian_nll,
    gaussian_nll_fixed,
)

B, D, K = 16, 3, 10


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_categorical_nll_is_negative_log_softmax_of_true_class(gen: torch.Generator) -> None:
    logits = torch.randn(B, K, generator=gen) * 3
    classes = torch.randint(K, (B,), generator=gen)
    onehot = torch.nn.functional.one_hot(classes, K).float()
    expected = -torch.log_softmax(logits, dim=1).gather(1, classes[:, None]).squeeze(1)
    got = categorical_nll(logits, onehot)
    assert got.shape == (B,)
    torch.testing.assert_close(got, expected)


def test_gaussian_nll_matches_normal_log_prob(gen: torch.Generator) -> None:
    mean, c = torch.randn(B, D, generator=gen), torch.randn(B, D, generator=gen)
    log_std = torch.empty(B, D).uniform_(MIN_LOG_STD + 0.5, MAX_LOG_STD - 0.5, generator=gen)
    expected = -Normal(mean, log_std.exp()).log_prob(c).sum(dim=1)
    got = gaussian_nll(mean, log_std, c)
    assert got.shape == (B,)
    torch.testing.assert_close(got, expected)


def test_gaussian_nll_clamps_log_std(gen: torch.Generator) -> None:
    mean, c = torch.randn(B, D, generator=gen), torch.randn(B, D, generator=gen)
    low = torch.full((B, D), MIN_LOG_STD - 4.0, requires_grad=True)
    high = torch.full((B, D), MAX_LOG_STD + 4.0, requires_grad=True)
    torch.testing.assert_close(gaussian_nll(mean, low, c), -Normal(mean, math.exp(MIN_LOG_STD)).log_prob(c).sum(1))
    torch.testing.assert_close(gaussian_nll(mean, high, c), -Normal(mean, math.exp(MAX_LOG_STD)).log_prob(c).sum(1))
    (gaussian_nll(mean, low, c).sum() + gaussian_nll(mean, high, c).sum()).backward()
    assert torch.count_nonzero(low.grad) == 0 and torch.count_nonzero(high.grad) == 0
    # the range is configurable per call
    narrow = gaussian_nll(mean, torch.zeros(B, D), c, min_log_std=0.5, max_log_std=1.0)
    torch.testing.assert_close(narrow, -Normal(mean, math.exp(0.5)).log_prob(c).sum(1))


@pytest.mark.parametrize("std", [1.0, 0.3, 2.5])
def test_gaussian_nll_fixed_matches_normal_and_formula(gen: torch.Generator, std: float) -> None:
    mean, c = torch.randn(B, D, generator=gen), torch.randn(B, D, generator=gen)
    got = gaussian_nll_fixed(mean, c, std=std)
    torch.testing.assert_close(got, -Normal(mean, std).log_prob(c).sum(dim=1))
    formula = ((c - mean) ** 2 / (2 * std**2)).sum(1) + D * (math.log(std) + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(got, formula)
    with pytest.raises(ValueError, match="std"):
        gaussian_nll_fixed(mean, c, std=0.0)


def test_losses_return_fp32_for_bf16_inputs(gen: torch.Generator) -> None:
    logits = torch.randn(B, K, generator=gen).bfloat16()
    onehot = torch.nn.functional.one_hot(torch.arange(B) % K, K).bfloat16()
    mean, log_std, c = (torch.randn(B, D, generator=gen).bfloat16() for _ in range(3))
    results = {
        "categorical": (categorical_nll(logits, onehot), categorical_nll(logits.float(), onehot.float())),
        "gaussian": (gaussian_nll(mean, log_std, c), gaussian_nll(mean.float(), log_std.float(), c.float())),
        "fixed": (gaussian_nll_fixed(mean, c, std=0.1), gaussian_nll_fixed(mean.float(), c.float(), std=0.1)),
    }
    for name, (got, reference) in results.items():
        assert got.dtype == torch.float32, name
        torch.testing.assert_close(got, reference, msg=name)  # computed from upcast inputs, not in bf16


def test_num_outputs_and_mismatch_errors() -> None:
    assert CategoricalCE().num_outputs(Categorical(k=7)) == 7
    assert GaussianNLL().num_outputs(Uniform(dim=3)) == 6  # mean and log_std per dim
    assert GaussianNLLFixed().num_outputs(Gaussian(dim=2)) == 2
    with pytest.raises(ValueError, match="categorical_ce.*uniform"):
        CategoricalCE().num_outputs(Uniform())
    with pytest.raises(ValueError, match="gaussian_nll.*categorical"):
        GaussianNLL().num_outputs(Categorical(k=3))
    with pytest.raises(ValueError, match="gaussian_nll_fixed.*categorical"):
        GaussianNLLFixed().num_outputs(Categorical(k=3))


def test_descriptor_nll_uses_mean_then_log_std_layout(gen: torch.Generator) -> None:
    mean, log_std, c = (
        torch.randn(B, D, generator=gen),
        torch.randn(B, D, generator=gen),
        torch.randn(B, D, generator=gen),
    )
    q_out = torch.cat([mean, log_std], dim=1)
    loss = GaussianNLL()
    torch.testing.assert_close(loss.nll(q_out, c), gaussian_nll(mean, log_std, c))
    torch.testing.assert_close(loss.predict(q_out), mean)
    torch.testing.assert_close(loss.stats(q_out)["q_std"], log_std.clamp(MIN_LOG_STD, MAX_LOG_STD).exp().mean())
    assert not loss.stats(q_out.requires_grad_())["q_std"].requires_grad


def test_fixed_and_categorical_descriptors(gen: torch.Generator) -> None:
    mean, c = torch.randn(B, D, generator=gen), torch.randn(B, D, generator=gen)
    fixed = GaussianNLLFixed(std=0.5)
    torch.testing.assert_close(fixed.nll(mean, c), gaussian_nll_fixed(mean, c, std=0.5))
    torch.testing.assert_close(fixed.predict(mean), mean)
    assert fixed.stats(mean)["q_std"].item() == pytest.approx(0.5)

    logits = torch.randn(B, K, generator=gen)
    onehot = torch.nn.functional.one_hot(torch.randint(K, (B,), generator=gen), K).float()
    ce = CategoricalCE()
    torch.testing.assert_close(ce.nll(logits, onehot), categorical_nll(logits, onehot))
    assert torch.equal(ce.predict(logits), torch.nn.functional.one_hot(logits.argmax(1), K).float())
    assert ce.stats(logits) == {}


def test_point_estimates(gen: torch.Generator) -> None:
    """The representation the disentanglement metrics score: the class index of a categorical
    Q, the mean of a Gaussian one, and by default whatever ``predict`` gives."""
    logits = torch.randn(B, K, generator=gen)
    estimate = CategoricalCE().point_estimate(logits)
    assert estimate.shape == (B, 1) and estimate.dtype == torch.float32
    assert torch.equal(estimate[:, 0], logits.argmax(dim=1).float())
    mean, log_std = torch.randn(B, D, generator=gen), torch.randn(B, D, generator=gen)
    torch.testing.assert_close(GaussianNLL().point_estimate(torch.cat([mean, log_std], dim=1)), mean)
    torch.testing.assert_close(GaussianNLLFixed().point_estimate(mean.double()), mean)  # float32 always

    class OneLogit(QLoss):  # a third-party loss for a one-column 0/1 code, with predict only
        name = "one_logit"

        def num_outputs(self, code):
            return 1

        def nll(self, q_out, code_value):
            return torch.nn.functional.binary_cross_entropy_with_logits(q_out, code_value, reduction="none")[:, 0]

        def predict(self, q_out):
            return (q_out > 0).float()

    q_out = torch.randn(B, 1, generator=gen)
    # bound to its code (CodeSlot does this): the default is the code's value of ``predict``
    assert torch.equal(OneLogit().bind(Uniform()).point_estimate(q_out), (q_out > 0).float())

    class NoEstimate(OneLogit):
        name = "no_estimate"
        predict = QLoss.predict  # the base class's, which gives nothing

    with pytest.raises(NotImplementedError, match="NoEstimate has neither predict"):
        NoEstimate().bind(Uniform()).point_estimate(q_out)


def test_descriptor_validation_and_describe() -> None:
    with pytest.raises(ValueError, match="std"):
        GaussianNLLFixed(std=-1.0)
    with pytest.raises(ValueError, match="min_log_std"):
        GaussianNLL(min_log_std=1.0, max_log_std=0.0)
    assert GaussianNLLFixed(std=0.5).describe() == {"name": "gaussian_nll_fixed", "std": 0.5}
    assert GaussianNLL().describe() == {"name": "gaussian_nll", "min_log_std": MIN_LOG_STD, "max_log_std": MAX_LOG_STD}
    assert CategoricalCE().describe() == {"name": "categorical_ce"}


# ------------------------------------------------------------------------------ bound code, point estimate


def test_code_slot_binds_its_code_and_point_estimates_are_values_per_dimension() -> None:
    from infogan_plugin import CodeSlot
    from infogan_plugin.qlosses import QLoss

    cat = CodeSlot("c1", Categorical(k=4), CategoricalCE(), 1.0)
    assert cat.q_loss.code == Categorical(k=4)
    logits = torch.tensor([[0.1, 3.0, 0.2, 0.0], [5.0, 0.0, 0.0, 0.0]])
    assert cat.q_loss.point_estimate(logits).tolist() == [[1.0], [0.0]]  # the class index, (B, 1)
    gauss = CodeSlot("c2", Gaussian(dim=2), GaussianNLL(), 0.1)
    q_out = torch.tensor([[0.5, -1.0, 0.0, 0.0]])  # [mean | log_std]
    assert gauss.q_loss.point_estimate(q_out).tolist() == [[0.5, -1.0]]
    fixed = CodeSlot("c3", Uniform(), GaussianNLLFixed(), 0.1)
    assert fixed.q_loss.point_estimate(torch.tensor([[0.25]])).tolist() == [[0.25]]

    class NoPredict(QLoss):
        name = "no_predict"

        def num_outputs(self, code):
            return code.input_width

        def nll(self, q_out, code_value):
            return q_out.sum(1)

    assert NoPredict().predict(torch.zeros(1, 1)) is None  # documented default
    with pytest.raises(ValueError, match="not bound to a code"):
        NoPredict().point_estimate(torch.zeros(1, 1))
    with pytest.raises(NotImplementedError, match="neither predict"):
        CodeSlot("c1", Uniform(), NoPredict(), 0.1).q_loss.point_estimate(torch.zeros(1, 1))
    assert "code" not in CodeSlot("c1", Uniform(), GaussianNLLFixed(), 0.1).q_loss.describe()


def test_code_members_that_discrete_only_defaults() -> None:
    for code in (Categorical(k=3), Uniform(), Gaussian()):
        assert code.augment_invariant is code.discrete and code.show_progress is code.discrete
    assert Categorical.default_lambda == 1.0 and Uniform.default_lambda == Gaussian.default_lambda == 0.1
