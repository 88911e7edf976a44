"""The InfoGAN plugin through the real hooks, trainer and CLI."""

from __future__ import annotations

import json
import math
import shutil
import tomllib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from infogan_plugin import plugin as infogan
from infogan_plugin.latent import LatentSpec
from infogan_plugin.latent import build_latent_spec
from registry.cli import build_cli
from registry.config import TrainConfig
from registry.plugins import Host
from registry.train import Pass, StepContext, Trainer

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "32", "--log-every", "2", "--no-progress"]


@pytest.fixture(scope="module")
def host() -> Host:
    return Host.create(["infogan"])


def _config(**extra) -> TrainConfig:
    cfg = TrainConfig(noise_dim=62, noise="uniform", batch_size=16)
    cfg.extra = {"code": ["categorical:10", "uniform:2", "gaussian:1"], "info_lambda": None, **extra}
    return cfg


def _invoke(args: list[str]):
    result = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
    return result


def test_paper_mnist_layout_is_74_inputs(host):
    spec = build_latent_spec(_config(code=["categorical:10", "uniform:2"]), host.registries)
    assert spec.input_dim == 74
    assert [s.code.type_name for s in spec.slots] == ["categorical", "uniform", "uniform"]
    assert [s.lam for s in spec.slots] == [1.0, 0.1, 0.1]
    assert [type(s.q_loss).__name__ for s in spec.slots] == ["CategoricalCE", "GaussianNLLFixed", "GaussianNLLFixed"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist", 74),
        ("svhn", 168),
        ("celeba", 228),
        ("faces3d", 133),
        ("chairs3d", 189),
    ],
)
def test_paper_presets_have_the_papers_input_width(host, name, expected):
    data = tomllib.loads((ROOT / "examples" / "configs" / f"{name}.toml").read_text())
    cfg = TrainConfig(noise_dim=data["noise_dim"], noise=data["noise"])
    cfg.extra = {"code": data["code"], "info_lambda": None}
    assert build_latent_spec(cfg, host.registries).input_dim == expected


def test_digits_preset_trains_with_its_extra_options(tmp_path):
    """``mnist_digits.toml`` is the paper's MNIST preset plus --q-augment and --lr-decay."""
    paper = tomllib.loads((ROOT / "examples" / "configs" / "mnist.toml").read_text())
    digits = tomllib.loads((ROOT / "examples" / "configs" / "mnist_digits.toml").read_text())
    assert {k: v for k, v in digits.items() if k not in ("q_augment", "lr_decay")} == paper
    run = tmp_path / "run"
    result = _invoke(
        [
            "--plugin",
            "infogan",
            "train",
            "--config",
            str(ROOT / "examples" / "configs" / "mnist_digits.toml"),
            "--steps",
            "4",
            "--batch-size",
            "16",
            "--log-every",
            "1",
            "--no-progress",
            "--out",
            str(run),
        ]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["lr_decay"] == 0.5 and config["extra"]["q_augment"] == "affine,width=0.5"
    factors = [json.loads(line)["lr_factor"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert factors == [1.0, 1.0, 1.0, 0.5]


def test_per_code_options_and_global_lambda(host):
    cfg = _config(
        code=["uniform:1,low=0,high=2,lambda=0.5", "gaussian:1,std=0.5,loss=gaussian_nll_fixed", "categorical:4"],
        info_lambda=0.3,
    )
    spec = build_latent_spec(cfg, host.registries)
    assert [s.lam for s in spec.slots] == [0.5, 0.3, 0.3]
    assert spec.slots[0].code.low == 0 and spec.slots[0].code.high == 2
    assert type(spec.slots[1].q_loss).__name__ == "GaussianNLLFixed"
    assert spec.slots[1].code.std == 0.5


def _step_context(host, phase: str, **extra):
    trainer_like = type("T", (), {})()
    cfg = _config(**extra)
    spec = build_latent_spec(cfg, host.registries)
    trainer_like.sampler = spec
    G, D = host.registries.models.get("dcgan28")(latent_dim=spec.input_dim, channels=1, image_size=28)
    (modules,) = [m for m in [infogan.ganrun_build_modules(cfg, {"G": G, "D": D}, spec)]]
    Q = modules["Q"][0]
    gen = torch.Generator().manual_seed(0)
    g_input, codes = spec.sample(16, generator=gen, device="cpu")
    fake_x = G(g_input)
    logged = {}
    trainer_like.log_metric = lambda name, value: logged.__setitem__(name, value)
    fake = Pass(*D(fake_x.detach() if phase == "d" else fake_x))
    ctx = StepContext(0, phase, cfg, {"D": D, "Q": Q}, codes, None, fake, trainer_like)
    return ctx, G, D, Q, logged


def _grad_norm(module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_information_loss_trains_q_head_and_shared_trunk_in_the_d_step(host):
    ctx, G, D, Q, logged = _step_context(host, "d")
    terms = infogan.ganrun_d_loss_terms(ctx)
    terms["info"].backward()
    assert _grad_norm(Q) > 0
    assert _grad_norm(D.trunk) > 0  # Q shares the trunk: the trunk learns to expose c
    assert _grad_norm(D.head) == 0  # the real/fake head is not part of the info term
    assert _grad_norm(G) == 0  # fakes were detached in the D step
    assert {"L_I/c1", "L_I/c2", "L_I/c4", "q_std/c4"} <= set(logged)


def test_information_loss_sends_gradient_to_the_generator_in_the_g_step(host):
    ctx, G, D, Q, _ = _step_context(host, "g")
    terms = infogan.ganrun_g_loss_terms(ctx)
    terms["info"].backward()
    assert _grad_norm(G) > 0
    # every layer of G, the first included, receives the information gradient
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in G.parameters())


def test_lambda_zero_trains_q_without_touching_the_trunk_or_g(host):
    ctx, G, D, Q, _ = _step_context(host, "d", info_lambda=0.0)
    infogan.ganrun_d_loss_terms(ctx)["info"].backward()
    assert _grad_norm(Q) > 0 and _grad_norm(D) == 0
    ctx, *_ = _step_context(host, "g", info_lambda=0.0)
    assert infogan.ganrun_g_loss_terms(ctx) is None


@pytest.mark.parametrize(
    "code, message",
    [
        ("bogus:3", "unknown latent code type 'bogus'; known: categorical, gaussian, uniform"),
        ("categorical:1", "k must be an integer >= 2"),
        ("categorical", "needs its number of classes"),
        ("uniform:2,wide=3", "no option 'wide'"),
        ("uniform:x", "TYPE[:N][,key=value...]"),
        ("uniform:1,loss=nope", "unknown Q loss 'nope'"),
        ("categorical:10,loss=gaussian_nll", "categorical"),
    ],
)
def test_bad_code_specs_are_usage_errors_naming_the_option(code, message, tmp_path):
    result = CliRunner().invoke(
        build_cli(), ["--plugin", "infogan", "train", "--code", code, "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2, result.output
    assert "--code" in result.output and message in result.output
    assert "Traceback" not in result.output


def test_negative_lambda_is_refused(tmp_path):
    result = CliRunner().invoke(
        build_cli(), ["--plugin", "infogan", "train", "--lambda", "-1", "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2 and "--lambda" in result.output


def test_training_logs_bounds_writes_traversals_and_eval(tmp_path):
    run = tmp_path / "run"
    result = _invoke(
        [
            "--plugin",
            "infogan",
            "train",
            "--steps",
            "4",
            "--sample-every",
            "4",
            "--out",
            str(run),
            "--code",
            "categorical:3",
            "--code",
            "uniform:1",
            "--code",
            "gaussian:1",
            *FAST,
        ]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    last = lines[-1]
    assert last["H/c1"] == pytest.approx(math.log(3))
    assert last["L_I_over_H/c1"] == pytest.approx(last["L_I/c1"] / math.log(3), abs=1e-5)  # rounded in JSONL
    assert "q_std/c3" in last and "d/info" in last and "g/info" in last
    names = sorted(p.name for p in (run / "traversals").iterdir())
    assert names == ["c1-step-000000004.png", "c2-step-000000004.png", "c3-step-000000004.png"]
    ckpt = load_file(str(run / "checkpoints" / "ckpt-000000004.safetensors"))
    assert any(k.startswith("model.Q.") for k in ckpt)
    assert any(k.startswith("optim.D.") for k in ckpt)

    result = _invoke(["--plugin", "infogan", "eval", str(run), "--samples", "64"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[:2] == [
        "[eval] L_I of each code on 64 generated samples",
        "[eval] unsupervised classification accuracy on the labelled data",
    ]
    report = json.loads((run / "eval.json").read_text())
    assert report["step"] == 4
    assert set(report["information"]) == {"c1", "c2", "c3"}
    c1 = report["classification"]["c1"]
    assert 0.0 <= c1["accuracy"] <= 1.0
    assert len(c1["confusion"]) == 3 and c1["labels"] == list(range(10))
    n = sum(map(sum, c1["confusion"]))
    assert n == 10_000  # every labelled digit, once
    matched = sum(c1["confusion"][int(v)][c1["labels"].index(label)] for v, label in c1["mapping"].items())
    assert matched == round(c1["accuracy"] * n)
    assert "value  label |" in result.output

    result = _invoke(["--plugin", "infogan", "traverse", str(run), "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "t").glob("*.png"))) == 3


def test_plugin_commands_need_the_plugin(tmp_path):
    result = CliRunner().invoke(build_cli(), ["eval", str(tmp_path)])
    assert result.exit_code == 2
    assert "ganrun --plugin infogan eval" in result.output


def test_trainer_q_head_is_in_ds_optimizer(host, tmp_path):
    cfg = _config()
    infogan.ganrun_configure(cfg, host.registries)
    trainer = Trainer(cfg, host, tmp_path / "run")
    assert isinstance(trainer.sampler, LatentSpec)
    d_params = {id(p) for g in trainer.optimizers["D"].param_groups for p in g["params"]}
    g_params = {id(p) for g in trainer.optimizers["G"].param_groups for p in g["params"]}
    assert all(id(p) in d_params for p in trainer.modules["Q"].parameters())
    assert not any(id(p) in g_params for p in trainer.modules["Q"].parameters())
    assert len(trainer.optimizers) == 2  # no third optimizer over G and D


def test_report_is_one_self_contained_page_with_curves_pictures_and_eval(tmp_path):
    run, baseline = tmp_path / "run", tmp_path / "baseline"
    common = ["--steps", "4", "--sample-every", "4", "--code", "categorical:3", "--code", "uniform:1", *FAST]
    assert _invoke(["--plugin", "infogan", "train", "--out", str(run), *common]).exit_code == 0
    assert _invoke(["--plugin", "infogan", "train", "--out", str(baseline), "--lambda", "0", *common]).exit_code == 0
    assert _invoke(["--plugin", "infogan", "eval", str(run), "--samples", "32"]).exit_code == 0

    result = _invoke(["--plugin", "infogan", "report", str(run), "--baseline", str(baseline), "--plots", "svg"])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert page.count("<svg") == 3  # losses, L_I of c1 and of c2
    assert "baseline L_I c1" in page and "H = 1.099" in page  # Figure 1: the baseline against H(c)
    assert page.count("data:image/png;base64,") == 3  # samples + one traversal per code
    assert "c1 traversal" in page and "unsupervised accuracy" in page
    matched = json.loads((run / "eval.json").read_text())["classification"]["c1"]["mapping"]
    assert page.count("<tr><th>value &rarr; label</th>") == 1 and page.count("<td><b>") == len(matched) >= 1
    assert "&quot;categorical:3&quot;" in page  # the configuration table (HTML-escaped)
    # one row per setting: the model the run chose for its data, in the row of the option left unset
    assert page.count("<th>model</th>") == 1 and "(resolved)" not in page
    assert "<tr><th>model</th><td>&quot;dcgan28&quot; (chosen for the data; not set)</td></tr>" in page
    assert 'src="runs' not in page and "file:" not in page  # nothing points outside the page

    # without --plugin, the plugins the run was trained with (config.json) supply their sections
    plain = _invoke(["report", str(run), "--out", str(tmp_path / "plain.html"), "--plots", "svg"])
    assert plain.exit_code == 0, plain.output
    page = (tmp_path / "plain.html").read_text()
    assert "L_I (nats)" in page and "c1 traversal" in page
    # a recorded plugin that is not installed: the core sections, and a warning that names it
    foreign = tmp_path / "foreign"
    shutil.copytree(run, foreign)
    described = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**described, "plugins": {"no_such_plugin": "1.0"}}))
    core_only = _invoke(["report", str(foreign), "--plots", "svg"])
    assert (
        core_only.exit_code == 0
        and "trained with plugin 'no_such_plugin' (version 1.0), which is not installed" in core_only.output
    )
    page = (foreign / "report.html").read_text()
    assert "Adversarial losses" in page and "L_I (nats)" not in page  # InfoGAN sections come from the plugin
    refused = CliRunner().invoke(build_cli(), ["report", str(tmp_path)])
    assert refused.exit_code == 2 and "not a ganrun run folder" in refused.output
