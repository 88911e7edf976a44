"""``--q-augment``: the discrete codes are read from randomly transformed fakes."""

from __future__ import annotations


import pytest
import torch
from click.testing import CliRunner

from infogan_plugin import plugin as infogan
from infogan_plugin.augment import AffineAugment, parse_augment
from infogan_plugin.information import information
from infogan_plugin.latent import build_latent_spec
from registry.cli import build_cli
from registry.config import TrainConfig
from registry.plugins import Host
from registry.train import Pass, StepContext

from conftest import assert_same_weights, straight_and_resumed

FAST = ["--batch-size", "16", "--log-every", "1", "--no-progress", "--sample-every", "100"]


@pytest.fixture(scope="module")
def host() -> Host:
    return Host.create(["infogan"])


def test_parse_augment_defaults_options_and_off():
    assert parse_augment(None) is None and parse_augment("none") is None
    assert parse_augment("affine") == AffineAugment()
    assert parse_augment("affine, rotate=10,shift=0") == AffineAugment(rotate=10.0, shift=0.0)
    assert parse_augment(AffineAugment(rotate=5).spec()) == AffineAugment(rotate=5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("flip", "unknown transform 'flip'"),
        ("affine,tilt=3", "bad option 'tilt=3'"),
        ("affine,rotate=x", "rotate must be a number"),
        ("affine,scale=1.5", "scale must be < 1"),
        ("affine,shift=-1", "shift must be a finite number >= 0"),
        ("none,rotate=3", "'none' takes no options"),
    ],
)
def test_bad_specs_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_augment(text)


def test_bad_spec_is_a_usage_error_naming_the_option(tmp_path):
    result = CliRunner().invoke(
        build_cli(),
        ["--plugin", "infogan", "train", "--out", str(tmp_path / "r"), "--q-augment", "affine,tilt=3", "--steps", "1"],
    )
    assert result.exit_code == 2
    assert "--q-augment" in result.output and "bad option 'tilt=3'" in result.output
    assert not (tmp_path / "r").exists()


def test_zero_strength_is_the_identity_and_shift_moves_pixels():
    images = torch.rand(4, 1, 28, 28) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    same = AffineAugment(rotate=0, scale=0, shift=0)(images, gen)
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)
    # a single bright pixel on a -1 background: a shift moves it (and the border stays background)
    dot = torch.full((64, 1, 28, 28), -1.0)
    dot[:, :, 14, 14] = 1.0
    moved = AffineAugment(rotate=0, scale=0, shift=0.2)(dot, torch.Generator().manual_seed(1))
    peaks = moved.flatten(1).argmax(dim=1)
    assert (peaks != 14 * 28 + 14).float().mean() > 0.8
    assert moved.min() >= -1 - 1e-6 and moved[:, :, 0, :].max() <= -1 + 1e-6


def test_transform_is_per_sample_reproducible_and_differentiable():
    images = (torch.rand(8, 1, 28, 28) * 2 - 1).requires_grad_()
    aug = AffineAugment()
    a = aug(images, torch.Generator().manual_seed(3))
    b = aug(images, torch.Generator().manual_seed(3))
    c = aug(images, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)
    # every sample gets its own map: repeating one image gives different outputs
    rep = aug(images[:1].expand(8, -1, -1, -1), torch.Generator().manual_seed(5))
    assert torch.unique(rep.flatten(1).sum(1)).numel() == 8
    a.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def _ctx(host, phase: str, q_augment: str | None):
    cfg = TrainConfig(noise_dim=8, noise="uniform", batch_size=16, seed=7)
    cfg.extra = {"code": ["categorical:4", "uniform:1"], "info_lambda": None, "q_augment": q_augment}
    spec = build_latent_spec(cfg, host.registries)
    torch.manual_seed(0)
    G, D = host.registries.models.get("dcgan28")(latent_dim=spec.input_dim, channels=1, image_size=28)
    Q = infogan.ganrun_build_modules(cfg, {"G": G, "D": D}, spec)["Q"][0]
    g_input, codes = spec.sample(16, generator=torch.Generator().manual_seed(0), device="cpu")
    fake_x = G(g_input)
    images = fake_x.detach() if phase == "d" else fake_x
    seen: list[torch.Tensor] = []

    def spy(x):
        seen.append(x)
        return D(x)

    trainer_like = type("T", (), {})()
    trainer_like.sampler = spec
    trainer_like.log_metric = lambda name, value: None
    trainer_like.step_generator = lambda stream: torch.Generator().manual_seed(len(stream))
    ctx = StepContext(5, phase, cfg, {"D": spy, "Q": Q}, codes, None, Pass(*D(images), images=images), trainer_like)
    return ctx, spec, G, D, Q, seen


@pytest.mark.parametrize("phase", ["d", "g"])
def test_discrete_codes_are_read_from_transformed_fakes_continuous_from_the_fakes(host, phase):
    ctx, spec, G, D, Q, seen = _ctx(host, phase, "affine")
    loss, nll, _ = information(ctx, spec, [1.0, 1.0], detach=False)
    assert len(seen) == 1  # one more pass of D, on moved images
    moved = AffineAugment()(ctx.fake.images, ctx.trainer.step_generator(f"q-augment-{phase}"))
    torch.testing.assert_close(seen[0], moved)
    assert not torch.allclose(seen[0], ctx.fake.images)
    with torch.no_grad():
        q_moved, q_plain = Q(D(moved)[1]), Q(ctx.fake.features)
        cat_loss, cont_loss = spec.slots[0].q_loss, spec.slots[1].q_loss
        want_cat = cat_loss.nll(spec.split_q(q_moved)[0], ctx.latent[0]).mean()
        want_cont = cont_loss.nll(spec.split_q(q_plain)[1], ctx.latent[1]).mean()
    torch.testing.assert_close(nll["c1"].detach(), want_cat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nll["c2"].detach(), want_cont, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss.detach(), want_cat + want_cont, atol=1e-5, rtol=1e-5)
    loss.backward()
    if phase == "g":
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


def test_probe_mode_trains_q_alone_and_records_no_graph_through_d(host):
    ctx, spec, G, D, Q, seen = _ctx(host, "d", "affine")
    grad_mode: list[bool] = []
    spy = ctx.modules["D"]
    ctx.modules["D"] = lambda x: (grad_mode.append(torch.is_grad_enabled()), spy(x))[1]
    loss, _, _ = information(ctx, spec, [1.0, 1.0], detach=True)
    assert len(seen) == 1 and grad_mode == [False]  # the extra pass builds no graph
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in Q.parameters())
    assert all(p.grad is None for p in D.parameters())
    assert all(p.grad is None for p in G.parameters())


def test_without_augment_no_extra_pass(host):
    ctx, spec, *_, seen = _ctx(host, "g", None)
    information(ctx, spec, [1.0, 1.0], detach=False)
    assert seen == []


def test_training_with_augment_resumes_exactly(tmp_path, host):
    args = ["--plugin", "infogan", "train", *FAST, "--q-augment", "affine,rotate=30", "--seed", "3"]
    a, b = straight_and_resumed(tmp_path, [*args, "--keep-checkpoints", "0", "--save-every", "2"], host)
    assert a.config.extra["q_augment"] == "affine,rotate=30"
    assert_same_weights(a, b)


def test_width_thickens_or_thins_strokes():
    bar = torch.full((256, 1, 28, 28), -1.0)
    bar[:, :, 8:20, 13:15] = 1.0  # a 2-pixel-wide stroke
    out = AffineAugment(rotate=0, scale=0, shift=0, width=1.0)(bar, torch.Generator().manual_seed(0))
    ink = ((out + 1) / 2).flatten(1).sum(1)
    base = float(((bar[0] + 1) / 2).sum())
    assert (ink > base * 1.2).any() and (ink < base * 0.8).any()  # both directions occur
    assert ink.max() <= 4 * 14 + 1e-3 and ink.min() >= -1e-3  # between erased and a full 3x3 dilation
    with pytest.raises(ValueError, match="width must be <= 1"):
        AffineAugment(width=2)
    assert parse_augment("affine,width=0.5").spec() == "affine,rotate=20,scale=0.1,shift=0.1,width=0.5"


def test_which_codes_q_augment_reads_is_the_codes_augment_invariant_member(host, monkeypatch):
    """A continuous code that declares itself invariant is read from the moved fakes, and a
    categorical that declares otherwise from the plain ones: ``discrete`` decides nothing here."""
    from infogan_plugin.codes import Categorical, Uniform

    monkeypatch.setattr(Categorical, "augment_invariant", property(lambda self: False))
    monkeypatch.setattr(Uniform, "augment_invariant", property(lambda self: True))
    ctx, spec, G, D, Q, seen = _ctx(host, "d", "affine")
    _, nll, _ = information(ctx, spec, [1.0, 1.0], detach=False)
    assert len(seen) == 1
    with torch.no_grad():
        q_moved, q_plain = Q(D(seen[0])[1]), Q(ctx.fake.features)
        want_cat = spec.slots[0].q_loss.nll(spec.split_q(q_plain)[0], ctx.latent[0]).mean()
        want_cont = spec.slots[1].q_loss.nll(spec.split_q(q_moved)[1], ctx.latent[1]).mean()
    torch.testing.assert_close(nll["c1"].detach(), want_cat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nll["c2"].detach(), want_cont, atol=1e-5, rtol=1e-5)
