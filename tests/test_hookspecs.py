"""The hook contract: every hookspec is documented and exercised, and each hook does what its
documentation promises when the host calls it.

The meta tests follow datasette's test_docs: they read ``registry.hookspecs`` and the test
files, so a new hook without documentation or without a test fails here. The behaviour
tests run ``ganrun`` with PROBE, a plugin that implements every hook, records how it was
called and leaves a visible effect for each.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import torch

from registry import hookspecs
from registry.checkpoint import read_checkpoint, save_checkpoint
from registry.config import TrainConfig
from registry.plugins import Host, Registries, activate, get_plugin_manager

if TYPE_CHECKING:
    from conftest import Ganrun

TESTS = Path(__file__).parent


def hookspec_names() -> list[str]:
    return sorted(
        name for name, obj in vars(hookspecs).items() if inspect.isfunction(obj) and hasattr(obj, "ganrun_spec")
    )


# ------------------------------------------------------------------------------ meta tests


def test_hookspecs_are_found() -> None:
    names = hookspec_names()
    assert len(names) >= 18
    assert {"ganrun_register_models", "ganrun_d_loss_terms", "ganrun_load_checkpoint_state"} <= set(names)


def test_every_hookspec_is_prefixed_and_every_prefixed_function_is_a_hookspec() -> None:
    functions = {name for name, obj in vars(hookspecs).items() if inspect.isfunction(obj)}
    specs = set(hookspec_names())
    assert sorted(name for name in specs if not name.startswith("ganrun_")) == []
    assert sorted(name for name in functions if name.startswith("ganrun_") and name not in specs) == []


@pytest.mark.parametrize("name", hookspec_names())
def test_every_hookspec_is_documented(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    sentences = re.findall(r"[^.!?]+[.!?](?=\s|$)", " ".join(doc.split()))
    assert len(sentences) >= 2, f"{name}: the docstring needs at least two sentences"
    assert re.search(r"\bcalled\b|\breturns?\b", doc, re.I), (
        f"{name}: the docstring must say when the hook is called or what it returns"
    )


def test_every_hookspec_is_exercised_by_a_test() -> None:
    text = "\n".join(path.read_text() for path in sorted(TESTS.glob("test_*.py")))
    missing = [name for name in hookspec_names() if not re.search(rf"\b{name}\b", text)]
    assert missing == [], f"hooks that no test mentions: {', '.join(missing)}"


# ------------------------------------------------------------------------------ the probe plugin

PROBE = '''\
"""Implements every ganrun hook; records each call in CALLS and leaves a visible effect."""
from pathlib import Path

import click
import torch
from torch import nn

from infogan_plugin import Categorical
from registry import hookimpl
from registry.checkpoint import CheckpointError
from registry.data import ImageDataset
from registry.nets.losses import GanLoss, nonsaturating_d, nonsaturating_g
from registry.nets.models import Discriminator

CALLS = {}
STATE = {"counter": 0}
CODE_DIMS = 3


def record(hook, **info):
    CALLS.setdefault(hook, []).append(info)


# ---- registration hooks

class ProbeCode(Categorical):
    """A latent-code type (consumed by plugins such as infogan, not by the host, which only
    checks at register() time that it has the members of the code contract)."""

    type_name = "probe-code"


def probe_q_loss(output, target):
    return (output - target).pow(2).sum(-1)


def probe_dataset(*, data_dir, image_size):
    record("dataset_factory", data_dir=data_dir, image_size=image_size)
    images = torch.randint(0, 256, (48, 1, 28, 28), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    return ImageDataset(images=images, labels=None, name="probe-data")


def probe_model(*, latent_dim, channels, image_size):
    record("model_factory", latent_dim=latent_dim, channels=channels, image_size=image_size,
           meta=torch.empty(()).is_meta)
    pixels = channels * image_size * image_size
    G = nn.Sequential(nn.Linear(latent_dim, pixels), nn.Tanh(), nn.Unflatten(1, (channels, image_size, image_size)))
    D = Discriminator(nn.Sequential(nn.Flatten(), nn.Linear(pixels, 8), nn.LeakyReLU(0.2)), 8)
    return G, D


def counted_d(real_logits, fake_logits):
    record("gan_loss_d")
    return nonsaturating_d(real_logits, fake_logits)


def counted_g(fake_logits):
    record("gan_loss_g")
    return nonsaturating_g(fake_logits)


@hookimpl
def ganrun_register_latent_codes(register):
    register("probe-code", ProbeCode)


@hookimpl
def ganrun_register_q_losses(register):
    register("probe-q", probe_q_loss)


@hookimpl
def ganrun_register_datasets(register):
    register("probe-data", probe_dataset)


@hookimpl
def ganrun_register_models(register):
    register("probe-model", probe_model)


@hookimpl
def ganrun_register_gan_losses(register):
    register("probe-loss", GanLoss(d=counted_d, g=counted_g))


@click.command("probe-hello")
@click.option("--name", default="world")
def hello(name):
    """Greet from the probe plugin."""
    click.echo(f"hello {name} from the probe plugin")


@hookimpl
def ganrun_register_commands(register):
    register(hello)


# ---- configuration hooks

@hookimpl
def ganrun_train_options():
    record("train_options")
    return [
        click.Option(["--probe-weight"], type=float, default=None, help="Weight of the probe loss term."),
        click.Option(["--probe-tag"], type=str, default=None, help="A free-form tag."),
    ]


@hookimpl
def ganrun_resume_mutable_options():
    record("resume_mutable_options")
    return ["probe_tag"]  # a free-form label: may change on resume; probe_weight may not


@hookimpl
def ganrun_config_defaults():
    return {"probe_weight": 0.5, "probe_tag": "auto", "log_every": 2, "batch_size": 16,
            "dataset": "probe-data", "model": "probe-model", "gan_loss": "probe-loss"}


@hookimpl
def ganrun_configure(config):
    record("configure", extra=dict(config.extra), log_every=config.log_every, batch_size=config.batch_size)
    if config.extra["probe_weight"] < 0:
        raise ValueError(f"--probe-weight must not be negative, got {config.extra['probe_weight']}")
    if config.extra["probe_tag"] == "bad":
        raise click.BadParameter("the tag 'bad' is reserved", param_hint="--probe-tag")
    if config.extra["probe_tag"] == "auto":
        config.extra["probe_tag"] = f"weight-{config.extra['probe_weight']}"


# ---- building hooks

class ProbeSampler:
    def __init__(self, noise_dim):
        self.input_dim = noise_dim + CODE_DIMS

    def sample(self, n, *, generator, device):
        g_input = torch.randn(n, self.input_dim, generator=generator, device=device)
        return g_input, {"kind": "probe-latent", "codes": g_input[:, -CODE_DIMS:]}


@hookimpl
def ganrun_latent_sampler(config):
    sampler = ProbeSampler(config.noise_dim)
    record("latent_sampler", noise_dim=config.noise_dim, sampler=sampler)
    return sampler


class ProbeHead(nn.Module):
    def __init__(self, feature_dim):
        super().__init__()
        self.linear = nn.Linear(feature_dim, CODE_DIMS)

    def forward(self, features):
        return self.linear(features)


@hookimpl
def ganrun_build_modules(config, models, sampler):
    head = ProbeHead(models["D"].feature_dim)
    record("build_modules", models=sorted(models), sampler=sampler, initial=head.linear.weight.detach().clone(),
           meta=head.linear.weight.is_meta)
    return {"probe": (head, "D")}


# ---- step hooks

def d_group(trainer):
    return [p for name in ("D", "probe") for p in trainer.modules[name].parameters()]


@hookimpl
def ganrun_d_loss_terms(ctx):
    record("d_loss_terms", step=ctx.step, phase=ctx.phase, has_real=ctx.real is not None,
           latent=ctx.latent["kind"], modules=sorted(ctx.modules),
           images=[tuple(ctx.real.images.shape), tuple(ctx.fake.images.shape), ctx.fake.images.requires_grad],
           trainable=all(p.requires_grad for p in d_group(ctx.trainer)))
    error = ctx.modules["probe"](ctx.fake.features) - ctx.latent["codes"]
    return {"probe": ctx.config.extra["probe_weight"] * error.pow(2).mean()}


@hookimpl
def ganrun_g_loss_terms(ctx):
    record("g_loss_terms", step=ctx.step, phase=ctx.phase, has_real=ctx.real is not None,
           latent=ctx.latent["kind"], modules=sorted(ctx.modules),
           images=[tuple(ctx.fake.images.shape), ctx.fake.images.requires_grad],
           frozen=not any(p.requires_grad for p in d_group(ctx.trainer)))
    error = ctx.modules["probe"](ctx.fake.features) - ctx.latent["codes"]
    return {"probe_g": error.pow(2).mean()}


@hookimpl
def ganrun_step_end(trainer, step):
    STATE["counter"] += 1
    grad = trainer.modules["probe"].linear.weight.grad
    record("step_end", step=step, probe_grad=None if grad is None else float(grad.abs().sum()))


@hookimpl
def ganrun_log(trainer, step, metrics):
    record("log", step=step, metrics=dict(metrics))
    return {"probe": f"{metrics['d/probe']:.2f}"}


@hookimpl
def ganrun_sample(trainer, step, run_dir):
    record("sample", step=step, run_dir=str(run_dir), grad_enabled=torch.is_grad_enabled(),
           training=sorted(name for name, m in trainer.modules.items() if m.training))
    folder = Path(run_dir) / "probe-samples"
    folder.mkdir(exist_ok=True)
    (folder / f"step-{step}.txt").write_text(f"counter={STATE['counter']}")


# ---- checkpoint hooks

@hookimpl
def ganrun_checkpoint_state(trainer):
    record("checkpoint_state", step=trainer.step)
    return {"probe_counter": torch.tensor([STATE["counter"]], dtype=torch.int64)}


@hookimpl
def ganrun_load_checkpoint_state(trainer, tensors):
    record("load_checkpoint_state", keys=sorted(tensors))
    if "probe_counter" not in tensors:
        raise CheckpointError("probe plugin: the checkpoint has no 'probe_counter' state")
    STATE["counter"] = int(tensors["probe_counter"][0])


@hookimpl
def ganrun_report_sections(run_dir, metrics, baseline_metrics):
    record("report_sections", steps=[row["step"] for row in metrics], baseline=baseline_metrics is not None)
    return [("Probe section", f"<p>probe saw {len(metrics)} metric lines</p>"),
            ("Probe headline", "<p>probe figure 42</p>", "headline")]


@hookimpl
def ganrun_run_summary(run_dir, config, metrics):
    record("run_summary", step=metrics.get("step"), weight=config.get("extra", {}).get("probe_weight"))
    return {"what": "Probe GAN", "results": [f"probe figure at step {metrics.get('step')}"],
            "commands": [(f"probe-hello --name {Path(run_dir).name}", "greet the run")]}
'''


@pytest.fixture
def probe(make_plugin: Callable[..., str]) -> str:
    return make_plugin(PROBE)


def module(name: str) -> Any:
    return importlib.import_module(name)


def probe_train(ganrun: Ganrun, probe: str, run: Path, *args: Any, expect: int | None = 0) -> Any:
    return ganrun.train(run, "--noise-dim", 5, *args, plugins=[probe], expect=expect)


# ------------------------------------------------------------------------------ registration


def test_registration_hooks_fill_every_registry(probe: str) -> None:
    pm = get_plugin_manager()
    assert activate(pm, [probe]) == {probe: None}
    regs = Registries.collect(pm)
    for registry_, name in (
        (regs.latent_codes, "probe-code"),
        (regs.q_losses, "probe-q"),
        (regs.datasets, "probe-data"),
        (regs.models, "probe-model"),
        (regs.gan_losses, "probe-loss"),
        (regs.commands, "probe-hello"),
    ):
        assert registry_.entries[name].plugin == probe
    plugin = module(probe)
    assert regs.latent_codes.get("probe-code") is plugin.ProbeCode
    assert regs.q_losses.get("probe-q") is plugin.probe_q_loss
    assert regs.commands.get("probe-hello") is plugin.hello


def test_plugins_command_lists_what_the_probe_registers(ganrun: Ganrun, probe: str) -> None:
    result = ganrun.invoke("plugins", "--json", plugins=[probe])
    assert result.exit_code == 0, ganrun.describe(result)
    row = next(row for row in json.loads(result.stdout) if row["name"] == probe)
    assert row["active"] is True and row["error"] is None
    assert row["hooks"] == hookspec_names()
    assert row["registers"] == {
        "latent_codes": ["probe-code"],
        "q_losses": ["probe-q"],
        "datasets": ["probe-data"],
        "models": ["probe-model"],
        "gan_losses": ["probe-loss"],
        "commands": ["probe-hello"],
    }


def test_report_sections_come_from_the_hook(ganrun: Ganrun, probe: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run).mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 2, "d/adv": 1.0, "g/adv": 0.5}\n{"step": 4, "d/adv": 0.9, "g/adv": 0.6}\n'
    )
    result = ganrun.invoke("report", run, plugins=[probe])
    assert result.exit_code == 0, ganrun.describe(result)
    page = (run / "report.html").read_text()
    assert "<h2>Probe section</h2><p>probe saw 2 metric lines</p>" in page
    assert page.index("Adversarial losses") < page.index("Probe section")  # a (title, html) pair: after the charts
    assert page.index("Probe headline") < page.index("Adversarial losses")  # placed: the headline comes first
    # ganrun_run_summary: the title says what the run is (no config.json: no dataset or planned steps)
    assert "<h1>run: Probe GAN, 4 steps</h1>" in page
    assert module(probe).CALLS["run_summary"] == [{"step": 4, "weight": None}]


def test_registered_command_runs(ganrun: Ganrun, probe: str) -> None:
    result = ganrun.invoke("probe-hello", "--name", "tester", plugins=[probe])
    assert result.exit_code == 0, ganrun.describe(result)
    assert result.output == "hello tester from the probe plugin\n"
    result = ganrun.invoke("probe-hello", "--help", plugins=[probe])
    assert result.exit_code == 0 and "Greet from the probe plugin." in result.output
    result = ganrun.invoke("probe-hello")  # not active: not available
    assert result.exit_code == 2 and "No such command 'probe-hello'" in result.output


def test_registered_command_is_listed_in_help(ganrun: Ganrun, probe: str) -> None:
    """``ganrun --plugin P --help`` lists P's commands next to the built-in ones."""
    result = ganrun.invoke("--help", plugins=[probe])
    assert result.exit_code == 0, ganrun.describe(result)
    assert re.search(r"^\s+train\s", result.output, re.M)
    assert re.search(r"^\s+probe-hello\s+Greet from the probe plugin", result.output, re.M), result.output


# ------------------------------------------------------------------------------ configuration


def test_train_options_appear_in_help_with_plugin_defaults(ganrun: Ganrun, probe: str) -> None:
    result = ganrun.invoke("train", "--help", plugins=[probe])
    assert result.exit_code == 0, ganrun.describe(result)
    text = " ".join(result.output.split())
    assert "--probe-weight FLOAT Weight of the probe loss term." in text
    assert "--probe-tag TEXT A free-form tag." in text
    # Core options show the default in effect with this plugin (ganrun_config_defaults).
    assert re.search(r"--log-every INTEGER Write metrics every N steps\. \[default: \(?2\)?\]", text), text
    assert re.search(r"--batch-size INTEGER Images per step and process\. \[default: \(?16\)?\]", text), text
    assert module(probe).CALLS["train_options"]
    assert "--probe-weight" not in ganrun.invoke("train", "--help").output


def test_defaults_apply_and_flags_override_them(ganrun: Ganrun, probe: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    probe_train(ganrun, probe, run, "--steps", 1, "--log-every", 1)
    configure = module(probe).CALLS["configure"]
    # tensorboard: the option of the built-in plugin registry.default_plugins.tensorboard, off by default
    assert configure == [
        {"extra": {"probe_weight": 0.5, "probe_tag": "auto", "tensorboard": False}, "log_every": 1, "batch_size": 16}
    ]
    saved = ganrun.config(run)["config"]
    assert saved["log_every"] == 1  # the flag beats the plugin default 2
    assert saved["batch_size"] == 16  # the plugin default beats the built-in 64
    assert saved["dataset"] == "probe-data" and saved["gan_loss"] == "probe-loss"
    assert saved["extra"] == {
        "probe_weight": 0.5,
        "probe_tag": "weight-0.5",  # adjusted by ganrun_configure
        "tensorboard": False,
    }


def test_config_file_sets_plugin_options_and_flags_win(ganrun: Ganrun, probe: str, tmp_path: Path) -> None:
    config = tmp_path / "probe.toml"
    config.write_text('probe_weight = 0.75\nprobe-tag = "from-file"\nlog_every = 3\n')
    run = tmp_path / "run"
    probe_train(ganrun, probe, run, "--steps", 1, "--config", config, "--probe-weight", 0.125)
    saved = ganrun.config(run)["config"]
    assert saved["extra"] == {"probe_weight": 0.125, "probe_tag": "from-file", "tensorboard": False}
    assert saved["log_every"] == 3


@pytest.mark.parametrize(
    ("args", "option", "message"),
    [
        (["--probe-weight", "-1"], "--probe-weight", "must not be negative, got -1.0"),
        (["--probe-tag", "bad"], "--probe-tag", "the tag 'bad' is reserved"),
    ],
    ids=["value-error", "bad-parameter"],
)
def test_configure_refusal_is_a_usage_error(
    ganrun: Ganrun, probe: str, tmp_path: Path, args: list[str], option: str, message: str
) -> None:
    result = probe_train(ganrun, probe, tmp_path / "run", "--steps", 1, *args, expect=2)
    line = ganrun.error_line(result)
    assert option in line and message in line
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ a run


def test_every_training_hook_is_called_as_documented(ganrun: Ganrun, probe: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = ganrun.invoke(
        "train",
        "--out",
        run,
        "--progress",
        "--noise-dim",
        5,
        "--steps",
        4,
        "--save-every",
        2,
        "--sample-every",
        2,
        "--probe-weight",
        0.25,
        plugins=[probe],
    )
    assert result.exit_code == 0, ganrun.describe(result)
    calls = module(probe).CALLS
    plugin = module(probe)

    # Building: dataset, sampler, model, extra modules.
    assert calls["dataset_factory"] == [{"data_dir": None, "image_size": None}]
    [sampler_call] = calls["latent_sampler"]
    assert sampler_call["noise_dim"] == 5
    # sized on the meta device first (documented), then built for real, once
    assert [c.pop("meta") for c in calls["model_factory"]] == [True, False]
    assert calls["model_factory"][1] == {"latent_dim": 5 + plugin.CODE_DIMS, "channels": 1, "image_size": 28}
    assert [c["meta"] for c in calls["build_modules"]] == [True, False]
    built = calls["build_modules"][1]
    assert built["models"] == ["D", "G"] and built["sampler"] is sampler_call["sampler"]
    described = ganrun.config(run)
    assert described["generator_input"] == 8 and described["model"] == "probe-model"
    assert described["config"]["extra"] == {"probe_weight": 0.25, "probe_tag": "weight-0.25", "tensorboard": False}

    # Steps: the loss hooks see the documented context on every step.
    assert [c["step"] for c in calls["d_loss_terms"]] == [0, 1, 2, 3]
    assert all(
        c["phase"] == "d"
        and c["has_real"]
        and c["latent"] == "probe-latent"
        and c["modules"] == ["D", "probe"]
        and c["trainable"]
        for c in calls["d_loss_terms"]
    )
    IMAGES = (16, 1, 28, 28)
    # the images D read: real and detached fakes in the D step, fakes with their graph in the G step
    assert all(c["images"] == [IMAGES, IMAGES, False] for c in calls["d_loss_terms"])
    assert all(c["images"] == [IMAGES, True] for c in calls["g_loss_terms"])
    assert [c["step"] for c in calls["g_loss_terms"]] == [0, 1, 2, 3]
    assert all(
        c["phase"] == "g"
        and not c["has_real"]
        and c["latent"] == "probe-latent"
        and c["modules"] == ["D", "G", "probe"]
        and c["frozen"]
        for c in calls["g_loss_terms"]
    )
    assert len(calls["gan_loss_d"]) == 4 and len(calls["gan_loss_g"]) == 4  # the registered --gan-loss
    assert [c["step"] for c in calls["step_end"]] == [1, 2, 3, 4]
    assert all(c["probe_grad"] is not None and c["probe_grad"] > 0 for c in calls["step_end"])

    # Logging: the terms are logged as d/<name> and g/<name>, every --log-every (2) steps.
    assert [c["step"] for c in calls["log"]] == [2, 4]
    lines = ganrun.metrics(run)
    assert [line["step"] for line in lines] == [2, 4]
    for call, line in zip(calls["log"], lines):
        assert {"d/adv", "d/probe", "g/adv", "g/probe_g"} <= set(call["metrics"])
        assert all(isinstance(v, float) for v in call["metrics"].values())
        assert line["d/probe"] == pytest.approx(call["metrics"]["d/probe"], abs=1e-6)
        assert line["g/probe_g"] == pytest.approx(call["metrics"]["g/probe_g"], abs=1e-6)
        assert line["d/probe"] > 0
    # What ganrun_log returns is shown in the progress bar.
    assert f"probe={calls['log'][-1]['metrics']['d/probe']:.2f}" in result.stderr

    # Sampling: after the host's grid, in eval mode without gradients.
    assert [c["step"] for c in calls["sample"]] == [2, 4]
    assert all(c["run_dir"] == str(run) and not c["grad_enabled"] and c["training"] == [] for c in calls["sample"])
    assert (run / "probe-samples" / "step-2.txt").read_text() == "counter=2"
    assert (run / "probe-samples" / "step-4.txt").read_text() == "counter=4"
    assert (run / "samples" / "step-000000004.png").exists()

    # Checkpoints: the extra module under model.probe, plugin state under plugin.<key>.
    assert [c["step"] for c in calls["checkpoint_state"]] == [2, 4]
    tensors, meta = read_checkpoint(run / "checkpoints" / "ckpt-000000004.safetensors")
    assert tensors["plugin.probe_counter"].tolist() == [4]
    assert sorted(k for k in tensors if k.startswith("model.probe.")) == [
        "model.probe.linear.bias",
        "model.probe.linear.weight",
    ]
    assert not torch.equal(tensors["model.probe.linear.weight"], built["initial"])  # it trained
    d_params = len(list(module(probe).probe_model(latent_dim=8, channels=1, image_size=28)[1].parameters()))
    groups = json.loads(meta["optim.D"])["param_groups"]
    assert len(groups[0]["params"]) == d_params + 2  # the head joined D's optimizer
    earlier, _ = read_checkpoint(run / "checkpoints" / "ckpt-000000002.safetensors")
    assert earlier["plugin.probe_counter"].tolist() == [2]
    assert "load_checkpoint_state" not in calls


def test_checkpoint_state_round_trips_through_resume(ganrun: Ganrun, probe: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    probe_train(ganrun, probe, run, "--steps", 4, "--save-every", 2)
    plugin = module(probe)
    plugin.STATE["counter"] = -1000  # as in a fresh process: only the checkpoint knows the value
    plugin.CALLS.clear()

    result = ganrun.invoke("train", "--resume", run, "--steps", 6, plugins=[probe])
    assert result.exit_code == 0, ganrun.describe(result)
    assert plugin.CALLS["load_checkpoint_state"] == [{"keys": ["probe_counter"]}]
    assert [c["step"] for c in plugin.CALLS["step_end"]] == [5, 6]
    tensors, _ = read_checkpoint(run / "checkpoints" / "ckpt-000000006.safetensors")
    assert tensors["plugin.probe_counter"].tolist() == [6]

    # Missing plugin state is an error that stops the resume, never silently skipped.
    tensors, meta = read_checkpoint(run / "checkpoints" / "ckpt-000000004.safetensors")
    del tensors["plugin.probe_counter"]
    stripped = tmp_path / "elsewhere" / "ckpt-000000004.safetensors"
    stripped.parent.mkdir()
    save_checkpoint(stripped, tensors, meta)
    before = ganrun.snapshot(run)
    result = ganrun.invoke("train", "--resume", stripped, "--steps", 8, plugins=[probe])
    assert result.exit_code == 1, ganrun.describe(result)
    assert "missing tensors plugin.probe_counter" in ganrun.error_line(result)
    assert ganrun.snapshot(run) == before


def test_resume_mutable_options_decide_what_may_change_on_resume(ganrun: Ganrun, probe: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    probe_train(ganrun, probe, run, "--steps", 2, "--save-every", 2)
    plugin = module(probe)
    plugin.CALLS.clear()
    result = ganrun.invoke("train", "--resume", run, "--steps", 3, "--probe-tag", "relabelled", plugins=[probe])
    assert result.exit_code == 0, ganrun.describe(result)
    assert plugin.CALLS["resume_mutable_options"] == [{}]
    refused = ganrun.invoke("train", "--resume", run, "--steps", 4, "--probe-weight", "2.0", plugins=[probe])
    assert refused.exit_code == 2 and "probe_weight: 0.5 -> 2.0" in refused.output
    assert "probe_tag" in refused.output.split("Only ", 1)[1]


def test_trainer_can_be_built_directly_with_the_probe(probe: str, tmp_path: Path) -> None:
    """Embedding: a Trainer built from a TrainConfig and a Host calls the same hooks."""
    from registry.train import Trainer

    host = Host.create([probe])
    config = TrainConfig(
        dataset="probe-data",
        model="probe-model",
        gan_loss="probe-loss",
        steps=2,
        batch_size=16,
        noise_dim=4,
        progress=False,
        log_every=1,
        extra={"probe_weight": 1.0, "probe_tag": "direct"},
    )
    trainer = Trainer(config, host, tmp_path / "run")
    assert set(trainer.modules) == {"G", "D", "probe"}
    assert trainer.groups == {"G": ["G"], "D": ["D", "probe"]}
    assert trainer.sampler.input_dim == 7
    last = trainer.fit()
    assert last == tmp_path / "run" / "checkpoints" / "ckpt-000000002.safetensors"
    assert trainer.step == 2 and set(trainer.last_metrics) >= {"d/adv", "d/probe", "g/adv", "g/probe_g"}
    assert [c["step"] for c in module(probe).CALLS["log"]] == [1, 2]


def test_run_summary_names_the_run_and_leads_to_the_next_commands(ganrun: Ganrun, probe: str, tmp_path: Path) -> None:
    """``ganrun_run_summary`` at the end of training: the plugin's words, its figures and its
    commands prefixed with the run's --plugin flags; and a result that breaks the contract is
    named with the plugin."""
    run = tmp_path / "run"
    result = probe_train(ganrun, probe, run, "--steps", 2)
    assert module(probe).CALLS["run_summary"] == [{"step": 2, "weight": 0.5}]
    assert "Probe GAN" in result.stderr and "probe figure at step 2" in result.stderr
    assert f"ganrun --plugin {probe} probe-hello --name run" in result.stderr and "greet the run" in result.stderr

    from registry.plugins import Host, PluginError
    from registry.report.summary import run_summary

    host = Host.create([probe])
    summary = run_summary(host, run, {}, {"step": 2})
    assert summary.whats == ["Probe GAN"] and summary.commands == [("probe-hello --name run", "greet the run")]
    bad = {"what": 3}
    impl = next(i for i in host.pm.hook.ganrun_run_summary.get_hookimpls() if i.plugin_name == probe)
    original = impl.function
    impl.function = lambda run_dir, config, metrics: bad
    try:
        with pytest.raises(PluginError, match=rf"plugin '{probe}' broke the ganrun_run_summary contract: .*'what'"):
            run_summary(host, run, {}, {})
    finally:
        impl.function = original
