"""Tests for the ``ganrun`` command line: plugin listing, broken plugins, usage errors and
how the run folder and configuration are chosen.

Most commands run in this process through click's CliRunner; one test starts real
processes to check the installed entry point end to end.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import torch

import registry.plugins

if TYPE_CHECKING:
    from conftest import Ganrun

BROKEN_SOURCE = "raise RuntimeError('the plugin exploded on import')\n"


@pytest.fixture
def broken(make_plugin: Callable[..., str]) -> str:
    return make_plugin(BROKEN_SOURCE)


@pytest.fixture(scope="module")
def small_idx(ganrun: Ganrun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ganrun.write_idx(tmp_path_factory.mktemp("idx") / "data", 48)


def usage_error(ganrun: Ganrun, result: Any, option: str) -> str:
    """Check a usage error (exit 2, no traceback) whose message names ``option``."""
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert option in line, line
    return line


# ------------------------------------------------------------------------------ real processes


def test_help_and_plugins_in_real_processes(ganrun: Ganrun, tmp_path: Path) -> None:
    commands = {
        "help": ["--help"],
        "plugins": ["plugins"],
        "json": ["plugins", "--json"],
    }
    started = {key: ganrun.popen(*args, cwd=tmp_path) for key, args in commands.items()}
    done = {}
    for key, proc in started.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (key, err)
        assert "Traceback" not in err
        done[key] = out

    assert "Usage: ganrun" in done["help"]
    assert re.search(r"^\s+train\s", done["help"], re.M) and re.search(r"^\s+plugins\s", done["help"], re.M)

    lines = done["plugins"].splitlines()
    first = lines.index("ganrun (built-in, active)")
    listed = {}
    for line in lines[first + 1 :]:
        if not line.startswith("  "):
            break
        kind, _, names = line.strip().partition(": ")
        listed[kind] = names.split(", ")
    assert {"digits", "image-folder", "mnist-idx"} <= set(listed["datasets"])
    assert {"dcgan28", "dcgan64"} <= set(listed["models"])
    assert {"hinge", "nonsaturating"} <= set(listed["gan losses"])

    rows = json.loads(done["json"])
    builtin = next(row for row in rows if row["name"] == "registry.default_plugins.builtins")
    assert builtin["builtin"] is True and builtin["active"] is True and builtin["error"] is None
    assert set(builtin["registers"]) == {"datasets", "models", "gan_losses"}
    assert builtin["registers"]["datasets"] == listed["datasets"]
    assert builtin["registers"]["models"] == listed["models"]
    assert builtin["registers"]["gan_losses"] == listed["gan losses"]
    assert builtin["hooks"] == ["ganrun_register_datasets", "ganrun_register_gan_losses", "ganrun_register_models"]
    # Every installed entry point is listed, whether or not it loads.
    names = {row["name"] for row in rows}
    installed = {ep.name for ep in md.entry_points(group="ganrun")}
    assert installed <= names
    for row in rows:
        assert set(row) == {
            "name",
            "distribution",
            "version",
            "active",
            "builtin",
            "hooks",
            "registers",
            "error",
            "warnings",
            "clashes",
        }
    assert not list(tmp_path.iterdir())  # listing plugins writes nothing


# ------------------------------------------------------------------------------ broken plugins


def test_broken_plugin_does_not_take_down_help(ganrun: Ganrun, broken: str) -> None:
    result = ganrun.invoke("--help", plugins=[broken])
    assert result.exit_code == 0, ganrun.describe(result)
    assert "train" in result.output and "plugins" in result.output
    result = ganrun.invoke("train", "--help", plugins=[broken])
    assert result.exit_code == 0, ganrun.describe(result)
    assert "unavailable" in result.output


def test_plugins_command_reports_the_broken_plugin(ganrun: Ganrun, broken: str) -> None:
    result = ganrun.invoke("plugins", plugins=[broken])
    assert result.exit_code == 0, ganrun.describe(result)
    lines = result.output.splitlines()
    header = lines.index(f"{broken} (-, active)")
    assert lines[header + 1].startswith("  BROKEN: ")
    assert broken in lines[header + 1] and "RuntimeError: the plugin exploded on import" in lines[header + 1]
    assert "ganrun (built-in, active)" in lines

    result = ganrun.invoke("plugins", "--json", plugins=[broken])
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows[broken]["active"] is True
    assert "the plugin exploded on import" in rows[broken]["error"]
    assert rows[broken]["hooks"] == [] and rows[broken]["registers"] == {}
    assert rows["registry.default_plugins.builtins"]["error"] is None


RAISES_IN_HOOK = """\
from registry import hookimpl


@hookimpl
def ganrun_register_latent_codes(register):
    raise KeyError("poisson")
"""
OPTIONS_RAISE = """\
from registry import hookimpl


@hookimpl
def ganrun_train_options():
    raise ValueError("bad option table")
"""


@pytest.mark.parametrize(
    ("source", "hook", "cause"),
    [
        (RAISES_IN_HOOK, "ganrun_register_latent_codes", "KeyError: 'poisson'"),
        (OPTIONS_RAISE, "ganrun_train_options", "ValueError: bad option table"),
    ],
    ids=["registration-hook", "train-options"],
)
def test_a_hook_that_raises_is_one_line_everywhere(
    ganrun: Ganrun, make_plugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, hook: str, cause: str
) -> None:
    name = make_plugin(source)
    line = f"plugin {name!r} failed in {hook}: {cause}"
    monkeypatch.chdir(tmp_path)
    listed = ganrun.invoke("plugins", plugins=[name])
    assert listed.exit_code == 0, ganrun.describe(listed)
    if hook.startswith("ganrun_register"):  # listing runs only the registration hooks
        assert f"  BROKEN: {line}" in listed.output.splitlines()
        rows = {row["name"]: row for row in json.loads(ganrun.invoke("plugins", "--json", plugins=[name]).stdout)}
        assert rows[name]["error"] == line and rows[name]["registers"] == {}
    helped = ganrun.invoke("train", "--help", plugins=[name])
    assert helped.exit_code == 0 and "unavailable" in helped.output, ganrun.describe(helped)
    assert ganrun.invoke("--help", plugins=[name]).exit_code == 0
    result = ganrun.invoke("train", "--steps", 1, plugins=[name])
    assert result.exit_code == 1 and ganrun.error_line(result) == f"Error: {line}"
    assert list(tmp_path.iterdir()) == [tmp_path / "plugin-modules"]


def test_plugins_command_shows_unmarked_hooks_and_clashes(ganrun: Ganrun, make_plugin) -> None:
    unmarked = make_plugin("def ganrun_register_models(register):\n    pass\n")
    clash = (
        "from registry import hookimpl\n\n@hookimpl\ndef ganrun_register_q_losses(register):\n"
        "    from infogan_plugin import CategoricalCE\n    register('twin', CategoricalCE)\n"
    )
    first, second = make_plugin(clash), make_plugin(clash)
    result = ganrun.invoke("plugins", plugins=[unmarked, first, second])
    assert result.exit_code == 0, ganrun.describe(result)
    lines = result.output.splitlines()
    assert (
        f"  warning: plugin {unmarked!r}: ganrun_register_models has no @hookimpl marker and is never called; "
        "decorate it with @registry.hookimpl" in lines
    )
    assert f"  clash: q losses 'twin' is also registered by {second}" in lines
    assert f"  clash: q losses 'twin' is also registered by {first}" in lines


def test_train_with_a_broken_plugin_fails_with_one_line(
    ganrun: Ganrun, broken: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = f"Error: plugin {broken!r} failed to load: RuntimeError: the plugin exploded on import"
    result = ganrun.invoke("train", plugins=[broken])
    assert result.exit_code == 1, ganrun.describe(result)
    assert ganrun.error_line(result) == expected
    assert list(tmp_path.iterdir()) == [tmp_path / "plugin-modules"]


def test_train_with_a_broken_plugin_and_options_names_the_plugin(ganrun: Ganrun, broken: str, tmp_path: Path) -> None:
    """The options a user typed must not hide why train cannot run: the plugin failure is
    the error, not 'No such option'."""
    expected = f"Error: plugin {broken!r} failed to load: RuntimeError: the plugin exploded on import"
    result = ganrun.train(tmp_path / "run", "--steps", 1, plugins=[broken], expect=None)
    assert result.exit_code == 1, ganrun.describe(result)
    assert ganrun.error_line(result) == expected
    assert not (tmp_path / "run").exists()


def test_unknown_command_says_which_installed_plugin_provides_it(
    ganrun: Ganrun, make_plugin: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = make_plugin(
        "import click\nfrom registry import hookimpl\n\n"
        "@click.command('fake-report')\ndef report():\n    click.echo('report!')\n\n"
        "@hookimpl\ndef ganrun_register_commands(register):\n    register(report)\n"
    )
    point = md.EntryPoint(name="fakeplug", value=module, group="ganrun")
    monkeypatch.setattr(registry.plugins.md, "entry_points", lambda **kw: md.EntryPoints([point]))
    result = ganrun.invoke("fake-report")
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "No such command 'fake-report'" in line
    assert "ganrun --plugin fakeplug fake-report" in line

    result = ganrun.invoke("fake-report", plugins=["fakeplug"])
    assert result.exit_code == 0, ganrun.describe(result)
    assert result.output == "report!\n"

    rows = {row["name"]: row for row in json.loads(ganrun.invoke("plugins", "--json").stdout)}
    assert rows["fakeplug"]["active"] is False
    assert rows["fakeplug"]["registers"] == {"commands": ["fake-report"]}


# ------------------------------------------------------------------------------ usage errors


@pytest.mark.parametrize(
    ("args", "option", "details"),
    [
        (
            ["--dataset", "cifar"],
            "--dataset",
            ["unknown dataset 'cifar'; known: ", "digits", "image-folder", "mnist-idx"],
        ),
        (["--model", "resnet"], "--model", ["unknown model 'resnet'; known: ", "dcgan28", "dcgan64"]),
        (["--gan-loss", "wgan"], "--gan-loss", ["unknown GAN loss 'wgan'; known: ", "hinge", "nonsaturating"]),
        (["--steps", "0"], "--steps", ["must be a positive integer, got 0"]),
        (["--batch-size", "-1"], "--batch-size", ["must be a positive integer, got -1"]),
        (["--noise-dim", "0"], "--noise-dim", ["got 0"]),
        (["--lr-d", "0"], "--lr-d", ["must be positive"]),
        (["--image-size", "2"], "--image-size", ["at least 4"]),
        (["--noise", "cauchy"], "--noise", ["cauchy"]),
        (["--steps", "many"], "--steps", ["many"]),
        (["--dataset", "mnist-idx"], "--data-dir", ["needs a data folder"]),
    ],
)
def test_bad_option_is_a_usage_error(
    ganrun: Ganrun, tmp_path: Path, args: list[str], option: str, details: list[str]
) -> None:
    result = ganrun.train(tmp_path / "run", *args, expect=2)
    line = usage_error(ganrun, result, option)
    assert all(detail in line for detail in details), line
    assert not (tmp_path / "run").exists() or ganrun.snapshot(tmp_path / "run") == {}


def test_batch_larger_than_the_dataset(ganrun: Ganrun, tmp_path: Path, small_idx: Path) -> None:
    result = ganrun.train(
        tmp_path / "run", "--dataset", "mnist-idx", "--data-dir", small_idx, "--batch-size", 49, expect=2
    )
    line = usage_error(ganrun, result, "--batch-size 49")
    assert "48 images" in line


def test_cuda_requested_without_cuda(ganrun: Ganrun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = ganrun.train(tmp_path / "run", "--device", "cuda", "--steps", 1, expect=2)
    line = usage_error(ganrun, result, "'--device'")
    assert "'cuda'" in line and "CUDA is not available" in line


def test_unknown_key_in_the_config_file(ganrun: Ganrun, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("steps = 3\nlearning_rate = 0.1\n")
    result = ganrun.train(tmp_path / "run", "--config", config, expect=2)
    line = usage_error(ganrun, result, "--config")
    assert "unknown key(s) learning_rate" in line and str(config) in line
    assert "known keys:" in line and "lr_g" in line


def test_malformed_config_file(ganrun: Ganrun, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("steps = = 3\n")
    result = ganrun.train(tmp_path / "run", "--config", config, expect=2)
    line = usage_error(ganrun, result, "--config")
    assert "not valid TOML" in line and str(config) in line

    result = ganrun.train(tmp_path / "run", "--config", tmp_path / "missing.toml", expect=2)
    assert "cannot read config file" in usage_error(ganrun, result, "--config")


def test_existing_run_folder_needs_resume_or_overwrite(ganrun: Ganrun, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    result = ganrun.train(run, "--steps", 1, expect=2)
    line = usage_error(ganrun, result, "--out")
    assert "already exists" in line and f"--resume {run}" in line and "--overwrite" in line
    assert ganrun.snapshot(run) == {"config.json": ganrun.snapshot(run)["config.json"]}


def test_unwritable_run_folder(ganrun: Ganrun, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = ganrun.train(blocker / "run", "--steps", 1, expect=2)
    line = usage_error(ganrun, result, "--out")
    assert "cannot be created" in line and f"{blocker} is a file, not a folder" in line, line
    result = ganrun.train(blocker, "--steps", 1, expect=2)
    assert f"{blocker} is a file; name a folder" in usage_error(ganrun, result, "--out")
    assert blocker.read_text() == "not a folder"


# ------------------------------------------------------------------------------ configuration


def test_config_file_sets_options_and_flags_override_it(ganrun: Ganrun, tmp_path: Path, tiny: str) -> None:
    run = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text(
        'model = "tiny"\n'
        "steps = 2\n"
        "batch-size = 16\n"  # dashes work as in the flag names
        "seed = 5\n"
        "log_every = 1\n"
        "lr_g = 0.001\n"
        'noise = "uniform"\n'
        "progress = false\n"
        f"out = {json.dumps(str(run))}\n"
    )
    result = ganrun.invoke("train", "--config", config, "--seed", 9, "--lr-g", 0.003, plugins=[tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    saved = ganrun.config(run)["config"]
    assert saved["seed"] == 9 and saved["lr_g"] == 0.003  # flags win
    assert saved["steps"] == 2 and saved["batch_size"] == 16  # from the file
    assert saved["noise"] == "uniform" and saved["progress"] is False and saved["log_every"] == 1
    assert saved["model"] == "tiny" and saved["out"] == str(run)
    assert saved["lr_d"] == 2e-4 and saved["save_every"] == 500  # untouched defaults
    assert [m["step"] for m in ganrun.metrics(run)] == [1, 2]


def test_overwrite_starts_over(ganrun: Ganrun, tmp_path: Path, tiny: str) -> None:
    run = tmp_path / "run"
    ganrun.train(run, "--model", "tiny", "--steps", 2, "--batch-size", 16, "--log-every", 1, plugins=[tiny])
    assert ganrun.checkpoints(run) == ["ckpt-000000002.safetensors"]
    (run / "notes.txt").write_text("left by the first run")

    result = ganrun.train(
        run, "--model", "tiny", "--steps", 1, "--batch-size", 16, "--log-every", 1, plugins=[tiny], expect=2
    )
    assert "already exists" in usage_error(ganrun, result, "--out")

    ganrun.train(
        run,
        "--model",
        "tiny",
        "--steps",
        1,
        "--batch-size",
        16,
        "--log-every",
        1,
        "--seed",
        3,
        "--overwrite",
        plugins=[tiny],
    )
    assert ganrun.checkpoints(run) == ["ckpt-000000001.safetensors"]
    assert [m["step"] for m in ganrun.metrics(run)] == [1]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-000000001.png"]
    assert not (run / "notes.txt").exists()
    assert ganrun.config(run)["config"]["seed"] == 3


def test_overwrite_refuses_a_folder_that_is_not_a_run(ganrun: Ganrun, tmp_path: Path) -> None:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    result = ganrun.train(folder, "--steps", 1, "--overwrite", expect=2)
    line = usage_error(ganrun, result, "--out")
    assert "not a ganrun run folder" in line and "refusing to delete" in line
    assert (folder / "chapter1.tex").read_text() == "precious"


def test_overwrite_keeps_the_old_run_when_the_new_one_is_refused(ganrun: Ganrun, tmp_path: Path, tiny: str) -> None:
    """A refused command must not have deleted anything: --overwrite only takes effect for a
    run that actually starts."""
    run = tmp_path / "run"
    ganrun.train(run, "--model", "tiny", "--steps", 1, "--batch-size", 16, plugins=[tiny])
    before = ganrun.snapshot(run)
    result = ganrun.train(
        run, "--model", "tiny", "--steps", 1, "--dataset", "mnist-idx", "--overwrite", plugins=[tiny], expect=2
    )
    usage_error(ganrun, result, "--data-dir")
    assert ganrun.snapshot(run) == before


def test_no_command_runs_train(ganrun: Ganrun, tmp_path: Path, tiny: str, make_plugin: Callable[..., str]) -> None:
    run = tmp_path / "default-run"
    defaults = make_plugin(
        "from registry import hookimpl\n\n"
        "@hookimpl\n"
        "def ganrun_config_defaults():\n"
        f"    return {{'steps': 2, 'batch_size': 16, 'model': 'tiny', 'progress': False, 'out': {str(run)!r}}}\n"
    )
    result = ganrun.invoke(plugins=[tiny, defaults])
    assert result.exit_code == 0, ganrun.describe(result)
    assert f"training in {run}" in result.stderr
    assert "done: 2 steps" in result.stderr
    assert ganrun.checkpoints(run) == ["ckpt-000000002.safetensors"]
    saved = ganrun.config(run)
    assert saved["config"]["steps"] == 2 and saved["model"] == "tiny"
    assert saved["plugins"] == {tiny: None, defaults: None}
