"""InfoGAN-CR (entry point ``infogan_cr``): pairs that share one code, the classifier that names
it, its gradients, and runs with both plugins from the installed entry points."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from infogan_plugin import contrastive as cr
from infogan_plugin.latent import build_latent_spec
from registry.checkpoint import read_checkpoint
from registry.cli import build_cli
from registry.config import TrainConfig
from registry.plugins import Host, installed_plugins
from registry.train import Trainer

SHAPES = [
    "--dataset",
    "shapes",
    "--image-size",
    "28",
    "--noise-dim",
    "4",
    "--code",
    "uniform:3",
    "--code",
    "categorical:3",
    "--batch-size",
    "16",
    "--log-every",
    "1",
    "--sample-every",
    "100",
    "--no-progress",
    "--seed",
    "2",
]


@pytest.fixture(scope="module")
def host() -> Host:
    return Host.create(["infogan", "infogan_cr"])


def _spec(host, codes):
    cfg = TrainConfig(noise_dim=6, noise="uniform")
    cfg.extra = {"code": codes, "info_lambda": None}
    return build_latent_spec(cfg, host.registries)


def test_the_plugin_is_an_installed_entry_point():
    assert "infogan_cr" in installed_plugins()


def _split_input(spec, g_input):
    """G's input ``(B, input_dim)`` as z and the per-slot codes (the layout ``spec.sample`` writes)."""
    z, *codes = g_input.split([spec.noise_dim, *(slot.code.input_width for slot in spec.slots)], dim=1)
    return z, codes


def test_pairs_share_z_and_exactly_the_chosen_code(host):
    spec = _spec(host, ["uniform:3", "gaussian:1"])
    a, b, shared = spec.sample_pairs(4000, generator=torch.Generator().manual_seed(0), device="cpu")
    assert a.shape == b.shape == (4000, spec.input_dim) and shared.dtype == torch.int64
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=0, rtol=0)  # z shared
    codes = _split_input(spec, a)[1], _split_input(spec, b)[1]
    for i in range(len(spec.slots)):
        equal = (codes[0][i] == codes[1][i]).all(dim=1)
        assert torch.equal(equal, shared == i), f"slot {i}"
    counts = torch.bincount(shared, minlength=4).float() / 4000
    assert (counts - 0.25).abs().max() < 0.03  # uniform over slots
    again = spec.sample_pairs(4000, generator=torch.Generator().manual_seed(0), device="cpu")
    assert all(torch.equal(x, y) for x, y in zip((a, b, shared), again))


def test_categorical_pairs_share_the_one_hot_block(host):
    spec = _spec(host, ["categorical:5", "uniform:1"])
    a, b, shared = spec.sample_pairs(500, generator=torch.Generator().manual_seed(1), device="cpu")
    ca, cb = _split_input(spec, a)[1], _split_input(spec, b)[1]
    assert torch.equal(ca[0][shared == 0], cb[0][shared == 0])
    assert torch.equal(ca[1][shared == 1], cb[1][shared == 1])
    assert not torch.equal(ca[1][shared == 0], cb[1][shared == 0])


def test_classifier_checks_its_input_and_arguments():
    net = cr.ContrastiveClassifier(channels=1, n_codes=5)
    assert net(torch.zeros(3, 2, 28, 28)).shape == (3, 5)
    assert net(torch.zeros(3, 2, 64, 64)).shape == (3, 5)
    with pytest.raises(ValueError, match=r"expected \(B, 2, H, W\) image pairs, got \(3, 1, 28, 28\)"):
        net(torch.zeros(3, 1, 28, 28))
    with pytest.raises(ValueError, match="at least 2 codes"):
        cr.ContrastiveClassifier(channels=1, n_codes=1)


def test_cr_loss_trains_g_and_the_classifier_but_not_d(host):
    spec = _spec(host, ["uniform:3"])
    G, D = host.registries.models.get("dcgan28")(latent_dim=spec.input_dim, channels=1, image_size=28)
    net = cr.ganrun_build_modules(TrainConfig(), {"G": G, "D": D}, spec)["CR"]
    assert net[1] == "G"  # trained with G's optimizer
    loss, acc = cr.contrastive_loss(G, net[0], spec, 8, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert loss.dtype == torch.float32 and 0 <= float(acc) <= 1
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net[0].parameters())
    assert all(p.grad is None for p in D.parameters())


def test_classifier_learns_which_code_a_pair_shares(host):
    """A generator whose codes each paint their own stripe: CR must find the shared one well
    above chance (1/3) within a few hundred small steps."""
    torch.manual_seed(0)
    spec = _spec(host, ["uniform:3"])

    class Stripes(nn.Module):
        def forward(self, g_input):
            z, codes = _split_input(spec, g_input)
            img = torch.zeros(g_input.shape[0], 1, 16, 16)
            for i, c in enumerate(codes):
                img[:, 0, 5 * i : 5 * i + 4, :] = c[:, :1, None]
            return img + 0.1 * z[:, :1, None, None]

    net = cr.ContrastiveClassifier(channels=1, n_codes=3, width=16)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss, acc = cr.contrastive_loss(Stripes(), net, spec, 64, gen, torch.device("cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, acc = cr.contrastive_loss(Stripes(), net, spec, 1000, torch.Generator().manual_seed(9), torch.device("cpu"))
    assert acc > 0.8


def test_needs_the_infogan_plugin_and_two_codes(tmp_path):
    runner = CliRunner()
    alone = runner.invoke(
        build_cli(), ["--plugin", "infogan_cr", "train", "--out", str(tmp_path / "a"), "--steps", "1", "--no-progress"]
    )
    assert alone.exit_code != 0 and "activate the infogan plugin too" in alone.output
    one = runner.invoke(
        build_cli(),
        [
            "--plugin",
            "infogan",
            "--plugin",
            "infogan_cr",
            "train",
            "--out",
            str(tmp_path / "b"),
            "--steps",
            "1",
            "--code",
            "uniform:1",
            "--no-progress",
        ],
    )
    assert one.exit_code != 0 and "at least 2 latent codes" in one.output
    bad = runner.invoke(
        build_cli(),
        ["--plugin", "infogan", "--plugin", "infogan_cr", "train", "--out", str(tmp_path / "c"), "--cr-weight", "-1"],
    )
    assert bad.exit_code == 2 and "--cr-weight" in bad.output


def test_training_with_both_plugins_logs_checkpoints_and_resumes_exactly(tmp_path, host):
    args = [
        "--plugin",
        "infogan",
        "--plugin",
        "infogan_cr",
        "train",
        *SHAPES,
        "--cr-start",
        "1",
        "--cr-batch",
        "8",
        "--keep-checkpoints",
        "0",
        "--save-every",
        "2",
    ]
    runner = CliRunner()
    straight = runner.invoke(build_cli(), [*args, "--out", str(tmp_path / "a"), "--steps", "4"], catch_exceptions=False)
    assert straight.exit_code == 0, straight.output
    first = runner.invoke(build_cli(), [*args, "--out", str(tmp_path / "b"), "--steps", "2"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(
        build_cli(),
        [
            "--plugin",
            "infogan",
            "--plugin",
            "infogan_cr",
            "train",
            "--resume",
            str(tmp_path / "b"),
            "--steps",
            "4",
            "--no-progress",
        ],
        catch_exceptions=False,
    )
    assert resumed.exit_code == 0, resumed.output
    lines = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert "g/cr" not in lines[0] and "cr_acc" not in lines[0]  # --cr-start 1: step 1 is plain InfoGAN
    assert all("g/cr" in line and 0 <= line["cr_acc"] <= 1 for line in lines[1:])
    tensors, _ = read_checkpoint(tmp_path / "a" / "checkpoints" / "ckpt-000000004.safetensors")
    assert any(key.startswith("model.CR.") for key in tensors)
    a = Trainer.from_checkpoint(tmp_path / "a" / "checkpoints" / "ckpt-000000004.safetensors", host, device="cpu")
    b = Trainer.from_checkpoint(tmp_path / "b" / "checkpoints" / "ckpt-000000004.safetensors", host, device="cpu")
    for name in ("G", "D", "Q", "CR"):
        for (key, pa), pb in zip(a.modules[name].state_dict().items(), b.modules[name].state_dict().values()):
            assert torch.equal(pa, pb), f"{name}.{key}"
    # the classifier moved: it is trained with G's optimizer from step 2 on
    init = Trainer.from_checkpoint(tmp_path / "b" / "checkpoints" / "ckpt-000000002.safetensors", host, device="cpu")
    assert any(not torch.equal(p, q) for p, q in zip(a.modules["CR"].parameters(), init.modules["CR"].parameters()))


def test_a_cr_run_names_the_missing_plugin_when_loaded_without_it(tmp_path):
    runner = CliRunner()
    args = ["--plugin", "infogan", "--plugin", "infogan_cr", "train", *SHAPES, "--cr-batch", "4"]
    assert runner.invoke(build_cli(), [*args, "--out", str(tmp_path / "r"), "--steps", "1"]).exit_code == 0
    for command in (
        ["eval", str(tmp_path / "r"), "--metrics-samples", "100"],
        ["train", "--resume", str(tmp_path / "r"), "--steps", "2", "--no-progress"],
    ):
        result = runner.invoke(build_cli(), ["--plugin", "infogan", *command])
        assert result.exit_code != 0
        assert "the run was trained with plugin 'infogan_cr'" in result.output
        assert "which is not active; run: ganrun --plugin infogan --plugin infogan_cr " in result.output


def test_before_cr_start_the_run_is_exactly_the_plain_infogan_run(tmp_path, host):
    """The classifier is initialised from its own stream, so adding infogan_cr changes nothing
    before --cr-start: same weights, same losses as InfoGAN alone with the same seed."""
    runner = CliRunner()
    common = ["train", *SHAPES, "--steps", "3", "--save-every", "3"]
    plain = runner.invoke(
        build_cli(), ["--plugin", "infogan", *common, "--out", str(tmp_path / "plain")], catch_exceptions=False
    )
    assert plain.exit_code == 0, plain.output
    with_cr = runner.invoke(
        build_cli(),
        ["--plugin", "infogan", "--plugin", "infogan_cr", *common, "--cr-start", "10", "--out", str(tmp_path / "cr")],
        catch_exceptions=False,
    )
    assert with_cr.exit_code == 0, with_cr.output
    a, _ = read_checkpoint(tmp_path / "plain" / "checkpoints" / "ckpt-000000003.safetensors")
    b, _ = read_checkpoint(tmp_path / "cr" / "checkpoints" / "ckpt-000000003.safetensors")
    shared = [key for key in a if key.startswith(("model.G.", "model.D.", "model.Q."))]
    assert shared and all(key in b for key in shared)
    for key in shared:
        assert torch.equal(a[key], b[key]), key

    def losses(run: str) -> list[dict]:  # every logged value but the timing
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "steps_per_sec"} for row in rows]

    assert len(losses("plain")) == 3 and losses("plain") == losses("cr")
