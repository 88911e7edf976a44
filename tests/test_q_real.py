"""``--q-real``: the categorical codes also cluster the real images (IIC's agreement term)."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from infogan_plugin import plugin as infogan
from infogan_plugin.augment import AffineAugment
from infogan_plugin.information import real_agreement, real_cluster_loss
from infogan_plugin.latent import build_latent_spec
from registry.cli import build_cli
from registry.config import TrainConfig
from registry.plugins import Host
from registry.train import Pass, StepContext, Trainer

from conftest import assert_same_weights, straight_and_resumed

FAST = ["--batch-size", "16", "--log-every", "1", "--no-progress", "--sample-every", "100"]


@pytest.fixture(scope="module")
def host() -> Host:
    return Host.create(["infogan"])


def _one_hot(labels: list[int], k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(labels), k).float()


def test_agreement_is_ln_k_for_balanced_confident_agreeing_readings():
    p = _one_hot([i % 10 for i in range(200)], 10)
    assert real_agreement(p, p).item() == pytest.approx(math.log(10), abs=1e-5)


def test_agreement_is_zero_for_a_constant_or_an_independent_reading():
    constant = _one_hot([3] * 100, 10)
    assert real_agreement(constant, constant).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((100, 10), 0.1)
    assert real_agreement(uniform, _one_hot([i % 10 for i in range(100)], 10)).item() == pytest.approx(0, abs=1e-6)


def test_agreement_penalises_an_unbalanced_partition():
    balanced = _one_hot([i % 4 for i in range(400)], 4)
    lopsided = _one_hot([0] * 250 + [1, 2, 3] * 50, 4)
    assert real_agreement(lopsided, lopsided) < real_agreement(balanced, balanced)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(2, 64), st.integers(0, 2**31 - 1))
def test_agreement_is_a_mutual_information_and_blind_to_relabelling(k, n, seed):
    gen = torch.Generator().manual_seed(seed)
    p = torch.rand(n, k, generator=gen).softmax(dim=1)
    q = torch.rand(n, k, generator=gen).softmax(dim=1)
    value = real_agreement(p, q).item()
    assert -1e-5 <= value <= math.log(k) + 1e-5
    perm = torch.randperm(k, generator=gen)
    # the same permutation of both readings' values leaves the joint distribution's MI unchanged
    assert real_agreement(p[:, perm], q[:, perm]).item() == pytest.approx(value, abs=1e-5)
    assert real_agreement(q, p).item() == pytest.approx(value, abs=1e-5)  # symmetric


def _ctx(host, extra):
    cfg = TrainConfig(noise_dim=8, noise="uniform", batch_size=16, seed=7)
    cfg.extra = {"code": ["categorical:10", "uniform:2"], "info_lambda": None, "q_augment": None, **extra}
    spec = build_latent_spec(cfg, host.registries)
    torch.manual_seed(0)
    G, D = host.registries.models.get("dcgan28")(latent_dim=spec.input_dim, channels=1, image_size=28)
    Q = infogan.ganrun_build_modules(cfg, {"G": G, "D": D}, spec)["Q"][0]
    real = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    g_input, latent = spec.sample(16, generator=torch.Generator().manual_seed(0), device="cpu")
    fake = G(g_input).detach()
    seen: list[torch.Tensor] = []

    def spy(x):
        seen.append(x)
        return D(x)

    logged: dict[str, torch.Tensor] = {}
    trainer_like = type("T", (), {})()
    trainer_like.sampler = spec
    trainer_like.log_metric = logged.__setitem__
    trainer_like.step_generator = lambda stream: torch.Generator().manual_seed(len(stream))
    ctx = StepContext(
        5, "d", cfg, {"D": spy, "Q": Q}, latent, Pass(*D(real), images=real), Pass(*D(fake), images=fake), trainer_like
    )
    return ctx, spec, D, Q, seen, logged


@pytest.mark.parametrize("augment, expected", [(None, AffineAugment()), ("affine,rotate=5", AffineAugment(rotate=5))])
def test_reads_the_real_batch_and_one_transformed_copy(host, augment, expected):
    ctx, spec, D, Q, seen, logged = _ctx(host, {"q_augment": augment})
    loss = real_cluster_loss(ctx, spec, 2.0)
    assert len(seen) == 1  # one more pass of D, on the transformed real batch
    torch.testing.assert_close(seen[0], expected(ctx.real.images, ctx.trainer.step_generator("q-real")))
    with torch.no_grad():
        p = Q(ctx.real.features)[:, :10].softmax(dim=1)
        p_moved = Q(D(seen[0])[1])[:, :10].softmax(dim=1)
    want = real_agreement(p, p_moved)
    torch.testing.assert_close(loss.detach(), -2.0 * want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logged["q_real/c1"], want, atol=1e-5, rtol=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in Q.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())


def test_no_categorical_code_no_term(host):
    ctx, spec, *_ = _ctx(host, {})
    cfg = TrainConfig(noise_dim=8)
    cfg.extra = {"code": ["uniform:2"], "info_lambda": None}
    spec_cont = build_latent_spec(cfg, host.registries)
    assert real_cluster_loss(ctx, spec_cont, 1.0) is None


@pytest.mark.parametrize("value", ["-1", "inf", "nan", "x"])
def test_bad_weight_is_refused_under_its_option(tmp_path, value):
    result = CliRunner().invoke(
        build_cli(), ["--plugin", "infogan", "train", "--out", str(tmp_path / "r"), "--q-real", value, "--steps", "1"]
    )
    assert result.exit_code == 2, result.output
    assert "--q-real" in result.output
    assert not (tmp_path / "r").exists()


def test_training_with_q_real_logs_it_and_resumes_exactly(tmp_path, host):
    args = ["--plugin", "infogan", "train", *FAST, "--q-real", "1", "--seed", "3", "--keep-checkpoints", "0"]
    a, b = straight_and_resumed(tmp_path, [*args, "--save-every", "2"], host)
    metrics = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert '"q_real/c1"' in metrics and '"d/q_real"' in metrics
    assert a.config.extra["q_real"] == 1.0
    assert_same_weights(a, b)


def test_weight_zero_trains_exactly_as_without_the_option(tmp_path, host):
    runner = CliRunner()
    base = ["--plugin", "infogan", "train", *FAST, "--steps", "2", "--seed", "1"]
    for name, extra in (("off", []), ("zero", ["--q-real", "0"])):
        result = runner.invoke(build_cli(), [*base, *extra, "--out", str(tmp_path / name)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    a = Trainer.from_checkpoint(tmp_path / "off", host, device="cpu")
    b = Trainer.from_checkpoint(tmp_path / "zero", host, device="cpu")
    assert_same_weights(a, b)
