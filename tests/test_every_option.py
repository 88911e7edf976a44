"""Every option of ``train`` takes effect, is refused naming itself, or warns (issue 28,
class 1), over every option (found by introspecting the click command, so a new option fails
here until it is classified) and the built-in dataset/model pairs.

Each option is given a value other than its default on top of a run of each pair; the command
is stopped just before the trainer is built (``build_trainer``, which only reads the
configuration), so each case costs milliseconds: the configuration the trainer would read
must hold the value, or the command must refuse it (exit 2, one line naming the option) or
warn naming it. One real run then checks that the recorded values are the ones trained with
(``config.json``) and the behaviour of the options whose effect is cheap to see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from PIL import Image

import registry.cli.train as train_cli
from registry.cli.session import Session
from registry.cli.train import train_options

from conftest import Ganrun

PLUGINS = ["infogan", "infogan_cr"]
PAIRS = [("digits", "dcgan28"), ("shapes", "conv64"), ("mnist-idx", "dcgan28"), ("image-folder", "dcgan64")]
READS_FOLDER = {"mnist-idx", "image-folder"}

# option -> (extra flags with a non-default value, the key the run's configuration holds it
# under and the value, or None when the outcome is a refusal or warning given by ``OUTCOME``)
TAKES_EFFECT: dict[str, tuple[list[str], str, Any]] = {
    "dataset": ([], "dataset", None),  # set by every case: the pair's dataset
    "model": ([], "model", None),  # likewise
    "gan_loss": (["--gan-loss", "hinge"], "gan_loss", "hinge"),
    "noise_dim": (["--noise-dim", "7"], "noise_dim", 7),
    "noise": (["--noise", "normal"], "noise", "normal"),
    "steps": (["--steps", "3"], "steps", 3),
    "batch_size": (["--batch-size", "5"], "batch_size", 5),
    "lr_g": (["--lr-g", "0.003"], "lr_g", 0.003),
    "lr_d": (["--lr-d", "0.004"], "lr_d", 0.004),
    "lr_decay": (["--lr-decay", "0.5"], "lr_decay", 0.5),
    "beta1": (["--beta1", "0.1"], "beta1", 0.1),
    "beta2": (["--beta2", "0.9"], "beta2", 0.9),
    "spectral_norm": (["--spectral-norm"], "spectral_norm", True),
    "g_steps": (["--g-steps", "2"], "g_steps", 2),
    "max_loss": (["--max-loss", "50"], "max_loss", 50.0),
    "seed": (["--seed", "9"], "seed", 9),
    "device": (["--device", "cpu"], "device", "cpu"),
    "save_every": (["--save-every", "1"], "save_every", 1),
    "sample_every": (["--sample-every", "1"], "sample_every", 1),
    "log_every": (["--log-every", "1"], "log_every", 1),
    "keep_checkpoints": (["--keep-checkpoints", "1"], "keep_checkpoints", 1),
    "amp": (["--amp"], "amp", True),  # on a CPU without bf16 it warns once the trainer is built (test_unused_options)
    "compile": (["--compile"], "compile", True),
    "progress": (["--progress"], "progress", True),
    "cr_weight": (["--cr-weight", "0.5"], "cr_weight", 0.5),
    "cr_start": (["--cr-start", "1"], "cr_start", 1),
    "cr_batch": (["--cr-batch", "4"], "cr_batch", 4),
    "code": (["--code", "categorical:3", "--code", "uniform:1"], "code", ["categorical:3", "uniform:1"]),
    "info_lambda": (["--lambda", "0.5"], "info_lambda", 0.5),
    "q_augment": (["--q-augment", "affine"], "q_augment", "affine"),
    "q_real": (["--q-real", "0.5"], "q_real", 0.5),
    "q_hidden": (["--q-hidden", "16"], "q_hidden", 16),
    "q_norm": (["--q-norm", "none"], "q_norm", "none"),
    "q_slope": (["--q-slope", "0.2"], "q_slope", 0.2),
    "tensorboard": (["--tensorboard"], "tensorboard", True),
    "config": (["--config", "{tmp}/run.toml"], "seed", 5),  # the file sets seed = 5
    "out": ([], "out", None),  # set by every case
}

# Options that decide what the command does with a run folder rather than how the run trains;
# each has its own tests, named here.
COMMAND_FLOW = {
    "resume": "test_resume.py, test_messages.py",
    "auto_resume": "test_resume.py, test_reliability.py, test_messages.py",
    "overwrite": "test_run_folder.py",
}


def _outcome(option: str, dataset: str) -> tuple[str, str] | None:
    """(kind, text) for a case refused or warned about on this dataset; None when it takes effect."""
    if option == "data_dir" and dataset not in READS_FOLDER:
        return "refused", "reads no folder"
    if option == "eval_every" and dataset != "shapes":
        return "refused", "needs a dataset with ground-truth factors"
    if option == "eval_samples":
        return "warned", "--eval-samples 200 is unused"
    return None


CONDITIONAL: dict[str, list[str]] = {
    "data_dir": ["--data-dir", "{data}"],
    "image_size": ["--image-size", "{size}"],
    "eval_every": ["--eval-every", "2", "--log-every", "2"],
    "eval_samples": ["--eval-samples", "200"],
}


def _train_option_names() -> set[str]:
    options = train_options(Session(tuple(PLUGINS)))
    return {p.name for p in options.params if isinstance(p, click.Option) and p.name}


def test_every_train_option_is_classified() -> None:
    known = set(TAKES_EFFECT) | set(COMMAND_FLOW) | set(CONDITIONAL)
    names = _train_option_names()
    assert names - known == set(), f"classify these train options here: {sorted(names - known)}"
    assert known - names == set(), f"no longer options of train: {sorted(known - names)}"


class Stop(click.ClickException):
    """Raised in place of building the trainer: the configuration it would have read."""

    def __init__(self, config: Any) -> None:
        super().__init__("stopped before building the trainer")
        self.config = config


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("option-data")
    Ganrun.write_idx(folder / "idx", 32)
    images = folder / "images"
    images.mkdir()
    for i in range(8):
        Image.new("L", (40, 40), 30 * i).save(images / f"{i}.png")
    return {"mnist-idx": folder / "idx", "image-folder": images}


def _case_args(option: str, dataset: str, model: str, tmp: Path, data: dict[str, Path]) -> list[str]:
    flags = TAKES_EFFECT[option][0] if option in TAKES_EFFECT else CONDITIONAL[option]
    size = "28" if model == "dcgan28" else "64"
    base = ["--dataset", dataset, "--model", model, "--steps", "2", "--batch-size", "4", "--out", str(tmp / "run")]
    if dataset in READS_FOLDER and option != "data_dir":
        base += ["--data-dir", str(data[dataset])]
    folder = str(data.get(dataset, tmp / "nowhere"))
    return base + [f.replace("{tmp}", str(tmp)).replace("{data}", folder).replace("{size}", size) for f in flags]


CASES = [
    (option, dataset, model)
    for option in sorted(set(TAKES_EFFECT) | set(CONDITIONAL))
    for dataset, model in PAIRS
    if option not in ("dataset", "model", "out")
]


@pytest.mark.parametrize(("option", "dataset", "model"), CASES)
def test_each_option_takes_effect_or_is_refused_or_warned(
    ganrun: Ganrun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: dict[str, Path],
    option: str,
    dataset: str,
    model: str,
) -> None:
    seen: list[Any] = []

    def stop(config: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(config)
        raise Stop(config)

    monkeypatch.setattr(train_cli, "build_trainer", stop)
    (tmp_path / "run.toml").write_text("seed = 5\n")
    result = ganrun.invoke("train", *_case_args(option, dataset, model, tmp_path, data), plugins=PLUGINS)
    outcome = _outcome(option, dataset)
    flag = "--" + option.replace("_", "-")
    if outcome is not None and outcome[0] == "refused":
        assert result.exit_code == 2, ganrun.describe(result)
        line = ganrun.error_line(result)
        assert flag in line and outcome[1] in line, line
        return
    assert result.exit_code == 1 and seen, ganrun.describe(result)  # reached the trainer
    config = seen[0]
    if outcome is not None:  # warned, naming the option
        assert any(
            line.startswith("warning:") and flag in line and outcome[1] in line for line in result.stderr.splitlines()
        ), result.stderr
        return
    if option in TAKES_EFFECT:
        _, key, value = TAKES_EFFECT[option]
    else:
        conditional = {"data_dir": str(data.get(dataset)), "image_size": 28 if model == "dcgan28" else 64}
        key, value = option, conditional.get(option, 2)  # eval_every: 2
    got = getattr(config, key) if hasattr(config, key) else config.extra.get(key)
    assert got == value, (option, key, got, value)
    assert not [line for line in result.stderr.splitlines() if line.startswith("warning:")], result.stderr


def test_a_real_run_trains_with_what_it_records(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ganrun.train(
        run, "--model", "tiny", "--steps", 2, "--batch-size", 4, "--save-every", 1, "--keep-checkpoints", 1,
        "--log-every", 1, "--sample-every", 2, "--noise-dim", 3, "--noise", "normal", "--seed", 9,
        "--code", "categorical:3", "--code", "uniform:1", "--q-hidden", 8, "--q-norm", "none",
        plugins=["infogan", tiny],
    )  # fmt: skip
    recorded = ganrun.config(run)
    config, extra = recorded["config"], recorded["config"]["extra"]
    assert (config["noise_dim"], config["noise"], config["seed"]) == (3, "normal", 9)
    assert extra["code"] == ["categorical:3", "uniform:1"] and (extra["q_hidden"], extra["q_norm"]) == (8, "none")
    assert recorded["generator_input"] == 3 + 3 + 1  # noise, the categorical's one-hot, the uniform
    assert ganrun.checkpoints(run) == ["ckpt-000000002.safetensors"]  # --save-every 1, --keep-checkpoints 1
    assert [row["step"] for row in ganrun.metrics(run)] == [1, 2]  # --log-every 1


def test_resume_and_auto_resume_together_are_refused(ganrun: Ganrun, tmp_path: Path) -> None:
    result = ganrun.invoke(
        "train", "--resume", tmp_path, "--auto-resume", "--out", tmp_path / "run", "--steps", 1, plugins=["infogan"]
    )
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "--resume and --auto-resume" in line, line


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--cr-weight", "0", "--cr-start", "1"], "--cr-start unused: --cr-weight is 0"),
        (["--cr-start", "5"], "--cr-start 5 is at or past --steps 2"),
    ],
)
def test_contrastive_options_that_would_not_act_are_warned_about(
    ganrun: Ganrun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], text: str
) -> None:
    def stop(config: Any, *args: Any, **kwargs: Any) -> None:
        raise Stop(config)

    monkeypatch.setattr(train_cli, "build_trainer", stop)
    result = ganrun.invoke("train", "--out", tmp_path / "run", "--steps", 2, *args, plugins=PLUGINS)
    assert result.exit_code == 1, ganrun.describe(result)
    assert any(line.startswith("warning:") and text in line for line in result.stderr.splitlines()), result.stderr
