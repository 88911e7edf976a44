"""The options every command shares (``registry.cli.options``): ``--device`` defaults to auto in
every command and a bad one is refused before anything loads, naming the option, the value and
the accepted forms; output paths that cannot be written are refused the same way; ``--help``
shows every default one way. Each class is checked over every command that has the option,
found by introspecting the click commands (a new command is covered without editing this file)."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
import torch

from registry.cli import build_cli
from registry.cli.options import Device, Option, OutputPath

from conftest import Ganrun

PLUGINS = ["infogan"]


def _commands() -> dict[str, click.Command]:
    cli = build_cli()
    ctx = click.Context(cli, info_name="ganrun")
    ctx.params["plugin"] = tuple(PLUGINS)
    return {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}


COMMANDS = _commands()
WITH_DEVICE = sorted(name for name, cmd in COMMANDS.items() if any(p.name == "device" for p in cmd.params))


def _required(name: str, tmp: Path) -> list[str]:
    """The arguments a command needs before its --device is looked at (any existing folder
    serves as RUN: the options are checked before the run is read)."""
    run = tmp / "some-run"
    run.mkdir(exist_ok=True)
    return {
        "train": ["--out", str(tmp / "r")],
        "sweep": ["--seeds", "0", "--out", str(tmp / "s")],
        "encode": [str(run), "--images", "digits", "--out", str(tmp / "codes.csv")],
        "export": [str(run), "--format", "safetensors", "--out", str(tmp / "g.safetensors")],
        "report": [str(run)],
        "plugins": [],
    }.get(name, [str(run)])


def test_the_commands_a_user_runs_on_a_device_all_have_the_shared_device_option() -> None:
    assert {"train", "sweep", "eval", "traverse", "generate", "encode", "explore", "select"} <= set(WITH_DEVICE)
    for name in WITH_DEVICE:
        (device,) = [p for p in COMMANDS[name].params if p.name == "device"]
        assert isinstance(device.type, Device), name
        shown = device.get_help_record(click.Context(COMMANDS[name]))[1]
        assert "[default: auto]" in shown, (name, shown)


BAD_DEVICES = [
    ("gpu", "is not a device"),
    ("cuda:-1", "is not a device"),
    ("mps", "CPU and CUDA devices only"),
    ("cuda:7", "CUDA is not available"),
    ("CPU:0", "is not a device"),
]


@pytest.mark.parametrize("command", WITH_DEVICE)
@pytest.mark.parametrize(("device", "why"), BAD_DEVICES)
def test_a_bad_device_is_refused_before_anything_runs(
    ganrun: Ganrun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, device: str, why: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = ganrun.invoke(command, *_required(command, tmp_path), "--device", device, plugins=PLUGINS)
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "'--device'" in line and repr(device) in line and why in line, line
    if why != "CUDA is not available":
        assert "auto (CUDA when present, else CPU), cpu, cuda or cuda:N" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some-run"]  # nothing written


@pytest.mark.parametrize("command", WITH_DEVICE)
def test_a_gpu_the_machine_does_not_have_is_named_with_the_ones_it_has(
    ganrun: Ganrun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    result = ganrun.invoke(command, *_required(command, tmp_path), "--device", "cuda:7", plugins=PLUGINS)
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "'--device'" in line and "2 CUDA devices (cuda:0 to cuda:1)" in line, line


def test_a_bad_device_in_a_config_file_is_named_under_device(ganrun: Ganrun, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('device = "gpu"\n')
    result = ganrun.invoke("train", "--out", tmp_path / "run", "--config", config, plugins=PLUGINS)
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "--device" in line and "'gpu' is not a device" in line, line
    assert not (tmp_path / "run").exists()


def test_a_bad_device_in_a_real_process_is_one_line(ganrun: Ganrun, tmp_path: Path) -> None:
    proc = ganrun.run("--plugin", "infogan", "traverse", tmp_path, "--device", "gpu", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Invalid value for '--device': 'gpu' is not a device" in proc.stderr


# ------------------------------------------------------------------------------ output paths

OUTPUTS = sorted(
    (name, p.opts[0], p.type.kind)
    for name, cmd in COMMANDS.items()
    for p in cmd.params
    if isinstance(p.type, OutputPath)
)


def test_every_command_that_writes_names_its_output_with_the_shared_type() -> None:
    names = {name for name, _, _ in OUTPUTS}
    assert {"train", "sweep", "traverse", "generate", "encode", "export", "report"} <= names, OUTPUTS


def _invoke_with_output(ganrun: Ganrun, tmp: Path, name: str, flag: str, value: Path):
    args = [a for a in _required(name, tmp)]
    if flag in args:  # replace the required value
        args[args.index(flag) + 1] = str(value)
    else:
        args += [flag, str(value)]
    return ganrun.invoke(name, *args, plugins=PLUGINS)


@pytest.mark.parametrize(("command", "flag", "kind"), OUTPUTS)
def test_an_output_of_the_wrong_kind_is_refused(ganrun: Ganrun, tmp_path: Path, command: str, flag: str, kind: str):
    wrong = tmp_path / "taken"
    if kind == "folder":
        wrong.write_text("a file where a folder is expected")
    else:
        wrong.mkdir()
    result = _invoke_with_output(ganrun, tmp_path, command, flag, wrong)
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    other = "file" if kind == "folder" else "folder"
    assert f"'{flag}'" in line and f"{wrong} is a {other}; name a {kind}" in line, line


@pytest.mark.parametrize(("command", "flag", "kind"), OUTPUTS)
def test_an_output_under_a_file_is_refused(ganrun: Ganrun, tmp_path: Path, command: str, flag: str, kind: str):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = _invoke_with_output(ganrun, tmp_path, command, flag, blocker / "sub" / "out")
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert f"'{flag}'" in line and f"{blocker} is a file, not a folder" in line, line


@pytest.mark.parametrize(("command", "flag", "kind"), OUTPUTS)
def test_an_output_in_a_folder_that_cannot_be_written_is_refused(
    ganrun: Ganrun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, flag: str, kind: str
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # the tests may run as root, whom permission bits do not stop: the check reads os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    result = _invoke_with_output(ganrun, tmp_path, command, flag, locked / "out")
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert f"'{flag}'" in line and f"{locked} is not writable" in line, line


# ------------------------------------------------------------------------------ --help


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_every_default_one_way(command: str) -> None:
    cmd = COMMANDS[command]
    ctx = click.Context(cmd, info_name=command)
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        assert isinstance(param, Option), f"{command} {param.opts[0]}: declared without registry.cli.options"
        record = param.get_help_record(ctx)
        assert record is not None
        text = record[1]
        assert "(default" not in text.lower(), f"{command} {param.opts[0]}: a default in the help text: {text}"
        assert "[default: (" not in text, f"{command} {param.opts[0]}: {text}"
        assert text.count("[default:") <= 1, f"{command} {param.opts[0]}: {text}"
        if isinstance(param.show_default, str):
            assert f"[default: {param.show_default}" in text, text
        if param.is_bool_flag and param.secondary_opts and "[default:" in text:
            assert "[default: on]" in text or "[default: off]" in text, text


def test_an_output_that_exists_as_the_right_kind_is_accepted(tmp_path: Path) -> None:
    """Replacing an existing file (encode, export, report with --overwrite) or writing into an
    existing folder is the type's business to allow; whether to overwrite is the command's."""
    from registry.cli.options import output_problem

    existing = tmp_path / "codes.csv"
    existing.write_text("x")
    assert output_problem(existing, "file") == ""
    assert output_problem(tmp_path, "folder") == ""
    assert output_problem(Path("relative-name.csv"), "file") == ""
    assert output_problem(tmp_path / "new" / "deeper", "folder") == ""
