"""Messages that name the real cause (issue 28, class 5), each checked as a class over the
commands that meet it: JSON nested too deep is not called invalid; a checkpoint of another
format version says which version it is and which this build reads, in every command that
looks for a run's newest checkpoint, and a command that falls back to an older checkpoint says
which one and why; a bad value in a --config file names the file and the key; labels the
accuracy cannot use give no accuracy, with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from registry import runfiles
from registry.checkpoint import read_metadata
from registry.checkpoint.file import MAX_JSON_DEPTH, json_entry
from registry.checkpoint import CheckpointError

from conftest import Ganrun

IG = ["infogan"]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ------------------------------------------------------------------------------ deep JSON


def test_json_nested_too_deep_is_named_as_such_in_run_files_and_checkpoints(tmp_path: Path) -> None:
    depth = MAX_JSON_DEPTH + 8
    path = tmp_path / "config.json"
    path.write_text('{"a": ' + _nested(depth) + "}")
    with pytest.raises(runfiles.RunFileError) as caught:
        runfiles.read_json(path)
    message = str(caught.value)
    assert f"nested {depth + 1} levels deep" in message and "not valid JSON" not in message, message
    with pytest.raises(CheckpointError) as caught:
        json_entry(tmp_path / "ckpt", {"config": '{"a": ' + _nested(depth) + "}"}, "config")
    assert f"metadata entry 'config' is nested {depth + 1} levels deep" in str(caught.value)


def test_a_deep_sweep_record_is_named_by_the_command(ganrun: Ganrun, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text('{"seeds": ' + _nested(MAX_JSON_DEPTH + 4) + "}")
    result = ganrun.invoke("sweep", "--seeds", "0", "--out", sweep, "--steps", 1, "--no-progress", plugins=IG)
    assert result.exit_code != 0, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "sweep.json" in line and "levels deep" in line and "not valid JSON" not in line, line


# ------------------------------------------------------------------------------ checkpoints


def _set_format_version(path: Path, version: str) -> None:
    """Rewrite a checkpoint as the same tensors with another format_version (a well-formed file)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    metadata = read_metadata(path)
    metadata["format_version"] = version
    save_file(tensors, str(path), metadata=metadata)


@pytest.fixture
def versioned_run(trained_infogan_run: Path, tmp_path: Path) -> Path:
    """A copy of the trained run whose newest checkpoint (step 200) is format version 2."""
    run = tmp_path / "run"
    shutil.copytree(trained_infogan_run, run)
    _set_format_version(run / "checkpoints" / "ckpt-000000200.safetensors", "2")
    return run


def _older_only(run: Path) -> None:
    (run / "checkpoints" / "ckpt-000000100.safetensors").unlink()


USE_COMMANDS = [
    ("eval", ["--samples", "16", "--no-disentanglement"]),
    ("traverse", []),
    ("generate", ["--n", "2"]),
    ("encode", ["--images", "digits", "--out", "{tmp}/codes.csv"]),
    ("export", ["--format", "safetensors", "--out", "{tmp}/g.safetensors"]),
]


def _args(args: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in args]


@pytest.mark.parametrize(("command", "args"), USE_COMMANDS, ids=[c for c, _ in USE_COMMANDS])
def test_a_checkpoint_of_another_format_version_is_named_with_both_versions(
    ganrun: Ganrun, tiny: str, versioned_run: Path, tmp_path: Path, command: str, args: list[str]
) -> None:
    _older_only(versioned_run)
    result = ganrun.invoke(command, versioned_run, *_args(args, tmp_path), plugins=[*IG, tiny])
    assert result.exit_code == 1, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "no complete checkpoint" not in line, line
    assert "ckpt-000000200.safetensors" in line and "format version '2'" in line and "format '1'" in line, line


def test_resume_from_a_folder_of_another_format_version_names_it(
    ganrun: Ganrun, tiny: str, versioned_run: Path, tmp_path: Path
) -> None:
    _older_only(versioned_run)
    for args in (["--resume", versioned_run], ["--out", versioned_run, "--auto-resume"]):
        result = ganrun.invoke("train", *args, "--steps", 300, "--no-progress", plugins=[*IG, tiny])
        assert result.exit_code == 2, ganrun.describe(result)
        line = ganrun.error_line(result)
        assert "format version '2'" in line and "format '1'" in line, line
    assert ganrun.checkpoints(versioned_run) == ["ckpt-000000200.safetensors"]  # nothing trained over it


@pytest.mark.parametrize(("command", "args"), USE_COMMANDS, ids=[c for c, _ in USE_COMMANDS])
def test_falling_back_to_an_older_checkpoint_says_which_and_why(
    ganrun: Ganrun, tiny: str, versioned_run: Path, tmp_path: Path, command: str, args: list[str]
) -> None:
    result = ganrun.invoke(command, versioned_run, *_args(args, tmp_path), plugins=[*IG, tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any(
        "using ckpt-000000100.safetensors (step 100), not the newer ckpt-000000200.safetensors" in w
        and "format version '2'" in w
        for w in warnings
    ), result.stderr
    if command == "eval":
        assert json.loads((versioned_run / "eval.json").read_text())["step"] == 100


# ------------------------------------------------------------------------------ --config values


@pytest.mark.parametrize(
    ("toml", "key", "detail"),
    [
        ('code = ["bogus:3"]', "code", "bogus"),
        ('code = ["categorical:1"]', "code", "categorical"),
        ("steps = 0", "steps", "positive integer"),
        ('device = "gpu"', "device", "not a device"),
        ('q_augment = "affine,rotate=x"', "q_augment", "rotate"),
        ("eval_every = 7", "eval_every", "multiple of --log-every"),
    ],
)
def test_a_bad_value_in_a_config_file_names_the_file_and_the_key(
    ganrun: Ganrun, tmp_path: Path, toml: str, key: str, detail: str
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(toml + "\n")
    result = ganrun.invoke("train", "--out", tmp_path / "run", "--config", config, plugins=IG)
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "--config" in line and f"{config}: {key}:" in line and detail in line, line
    assert f"(option --{key.replace('_', '-')})" in line, line
    assert not (tmp_path / "run").exists()


def test_the_same_bad_value_as_a_flag_is_named_under_the_flag(ganrun: Ganrun, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('code = ["categorical:10"]\n')
    result = ganrun.invoke("train", "--out", tmp_path / "run", "--config", config, "--code", "bogus:3", plugins=IG)
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "--code" in line and str(config) not in line, line


# ------------------------------------------------------------------------------ labels


def test_labels_of_a_single_class_give_no_accuracy_and_say_why(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    data = ganrun.write_idx(tmp_path / "data", 64)
    labels = data / "train-labels-idx1-ubyte"
    raw = labels.read_bytes()
    labels.write_bytes(raw[:8] + bytes([200]) * (len(raw) - 8))  # every label 200: one class
    run = tmp_path / "run"
    ganrun.train(
        run, "--dataset", "mnist-idx", "--data-dir", data, "--model", "tiny", "--steps", 2, "--batch-size", 16,
        "--code", "categorical:3", plugins=[*IG, tiny],
    )  # fmt: skip
    result = ganrun.invoke("eval", run, "--samples", 16, plugins=[*IG, tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert "unsupervised accuracy" not in result.stdout, result.stdout
    assert "warning: no accuracy: every label is 200, a single class" in result.stderr, result.stderr
    written = json.loads((run / "eval.json").read_text())
    assert written["classification"] == {} and "every label is 200" in written["skipped"]["classification"]


def test_more_label_classes_than_code_values_are_named_with_the_cap() -> None:
    from infogan_plugin.evaluate import label_problem, label_warnings
    from infogan_plugin.latent import build_latent_spec
    from registry.config import TrainConfig
    from registry.plugins import Host

    host = Host.create(["infogan"])
    spec = build_latent_spec(TrainConfig(noise_dim=2, extra={"code": ["categorical:3"]}), host.registries)
    labels = torch.tensor([0, 1, 2, 3, 4, 4, 4, 4])
    assert label_problem(labels) == ""
    (line,) = label_warnings(labels, spec)
    assert "5 classes (0..4)" in line and "at most 75.00%" in line, line
    assert "range over -1..2" in label_problem(torch.tensor([-1, 0, 2]))
    assert label_warnings(torch.tensor([0, 1, 2]), spec) == []
