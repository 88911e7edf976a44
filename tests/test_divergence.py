"""Divergence and failed saves (issue 18): NaN/Inf anywhere in the state a checkpoint would hold
(buffers and optimizer state too, not only parameters) stops the run without saving it, the
message says truthfully whether a good checkpoint exists, and a save that cannot be written
(disk full) is one line saying the previous checkpoint is intact."""

from __future__ import annotations

import re

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
import torch

from registry.checkpoint import checkpoint_name, read_checkpoint

if TYPE_CHECKING:
    from conftest import Ganrun

POISON = """\
import torch
from torch import nn
from registry import hookimpl

@hookimpl
def ganrun_step_end(trainer, step):
    if step != {at}:
        return
    if "{what}" == "batchnorm":
        for m in trainer.modules["G"].modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_var.fill_(float("nan"))
    else:
        for state in trainer.optimizers["D"].state.values():
            state["exp_avg_sq"].fill_(float("inf"))
"""
ARGS = ("--model", "tiny", "--steps", 8, "--batch-size", 16, "--keep-checkpoints", 0)


@pytest.mark.parametrize(
    ("what", "named"), [("batchnorm", "module G (weights or buffers)"), ("adam", "the D optimizer's state")]
)
def test_non_finite_buffers_or_optimizer_state_stop_the_run_unsaved(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str], what: str, named: str
) -> None:
    poison = make_plugin(POISON.format(at=3, what=what))
    run = tmp_path / "run"
    result = ganrun.train(run, *ARGS, "--save-every", 2, plugins=[tiny, poison], expect=1)
    line = ganrun.error_line(result)
    assert "NaN or Inf at step 4" in line and named in line, line
    good = run / "checkpoints" / checkpoint_name(2)
    assert f"the last good checkpoint {good} is kept" in line
    assert ganrun.checkpoints(run) == [checkpoint_name(2)]
    tensors, _ = read_checkpoint(good)
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def test_the_message_does_not_promise_a_checkpoint_that_does_not_exist(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str]
) -> None:
    poison = make_plugin(POISON.format(at=1, what="batchnorm"))
    run = tmp_path / "run"
    result = ganrun.train(run, *ARGS, "--save-every", 2, plugins=[tiny, poison], expect=1)
    line = ganrun.error_line(result)
    assert "no checkpoint was written" in line and "last good checkpoint" not in line, line
    assert ganrun.checkpoints(run) == []


def test_a_save_on_a_full_disk_is_one_line_and_leaves_no_temporary(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes past 64 KB fail as a full disk does (EFBIG instead of ENOSPC),
    in a real process: the tiny model's checkpoint is a few hundred KB, its logs far less."""
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)); "
        "from registry.cli import main; sys.argv = ['ganrun', *sys.argv[1:]]; main()"
    )
    run = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--plugin",
            tiny,
            "train",
            "--out",
            str(run),
            "--no-progress",
            *map(str, ARGS),
            "--save-every",
            "1",
            "--sample-every",
            "1000",
        ],
        capture_output=True,
        text=True,
        env=ganrun.env(),
        timeout=240,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "could not write the checkpoint" in errors[0] and "no checkpoint was written" in errors[0], errors
    assert not list((run / "checkpoints").iterdir())  # neither a checkpoint nor a temporary file


# ---------------------------------------------------------------------------------------------
# Finite-but-exploding runs (issue 18, part 2): a loss term above --max-loss, or a weight or
# buffer above it, is divergence too; Inf in any state is caught at every log line, before
# any checkpoint holding it is written.

EXPLODE_ARGS = ("--model", "tiny", "--batch-size", 16, "--keep-checkpoints", 0, "--sample-every", 1000)


def _all_sane(path: Path, bound: float = 1e6) -> bool:
    """Every floating tensor of the checkpoint is finite; weights and buffers below ``bound``."""
    tensors, _ = read_checkpoint(path)
    for key, t in tensors.items():
        if not t.is_floating_point():
            continue
        if not torch.isfinite(t).all():
            return False
        if key.startswith("model.") and t.numel() and t.abs().max() > bound:
            return False
    return True


@pytest.mark.parametrize(
    ("flags", "plugins"),
    [
        (("--lr-d", "1e6", "--lr-g", "1e6"), ()),
        (("--lr-d", "1e6", "--lr-g", "1e6"), ("infogan",)),
        (("--lambda", "1e30"), ("infogan",)),
    ],
    ids=["plain-lr", "infogan-lr", "infogan-lambda"],
)
@pytest.mark.parametrize("save_every", [1, 3, 100])
def test_exploding_runs_stop_with_one_truthful_line(
    ganrun: Ganrun, tiny: str, tmp_path: Path, flags: tuple[str, ...], plugins: tuple[str, ...], save_every: int
) -> None:
    run = tmp_path / "run"
    args = (*EXPLODE_ARGS, "--steps", 12, "--log-every", 4, "--save-every", save_every, *flags)
    result = ganrun.train(run, *args, plugins=[*plugins, tiny], expect=1)
    line = ganrun.error_line(result)
    assert "done:" not in result.output
    saved = ganrun.checkpoints(run)
    assert all(_all_sane(run / "checkpoints" / name) for name in saved), saved
    if saved:
        newest = run / "checkpoints" / saved[-1]
        assert f"the last good checkpoint {newest} is kept" in line, line
    else:
        assert "no checkpoint was written" in line and "last good checkpoint" not in line, line
        assert "resume" not in line.split("no checkpoint was written", 1)[1].replace("nothing to resume", ""), line
    assert "--max-loss" in line or "NaN or Inf" in line, line


def test_an_explosion_before_the_first_checkpoint_says_none_exists(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = (*EXPLODE_ARGS, "--steps", 8, "--log-every", 1, "--save-every", 8, "--lambda", "1e30")
    line = ganrun.error_line(ganrun.train(run, *args, plugins=["infogan", tiny], expect=1))
    assert "above --max-loss" in line and "at step 1" in line, line
    assert "no checkpoint was written" in line, line
    assert ganrun.checkpoints(run) == []


def test_inf_in_the_optimizer_is_caught_at_the_next_log_line_not_only_at_a_save(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str]
) -> None:
    poison = make_plugin(POISON.format(at=3, what="adam"))
    run = tmp_path / "run"
    result = ganrun.train(run, *ARGS, "--save-every", 100, "--log-every", 2, plugins=[tiny, poison], expect=1)
    line = ganrun.error_line(result)
    assert "the D optimizer's state" in line and "at step 4" in line, line
    assert [m["step"] for m in ganrun.metrics(run)] == [2]


@pytest.mark.parametrize("bound", ["0", "1e40"])
def test_max_loss_zero_or_huge_lets_an_exploding_lambda_run_finish(
    ganrun: Ganrun, tiny: str, tmp_path: Path, bound: str
) -> None:
    """The bound is an option: 0 turns it off (NaN/Inf still stop a run)."""
    run = tmp_path / "run"
    args = (*EXPLODE_ARGS, "--steps", 3, "--log-every", 1, "--save-every", 3, "--lambda", "1e10", "--max-loss", bound)
    ganrun.train(run, *args, plugins=["infogan", tiny])
    assert max(abs(m["g/info"]) for m in ganrun.metrics(run)) > 1e6


@pytest.mark.parametrize("bad", ["-1", "nan", "inf"])
def test_max_loss_refuses_what_is_not_a_bound(ganrun: Ganrun, tiny: str, tmp_path: Path, bad: str) -> None:
    result = ganrun.train(tmp_path / "run", "--model", "tiny", "--max-loss", bad, plugins=[tiny], expect=2)
    assert "--max-loss" in ganrun.error_line(result)


def test_normal_runs_never_come_near_the_bound(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    """Per-step loss terms of a normal tiny InfoGAN run stay many orders of magnitude below 1e6."""
    run = tmp_path / "run"
    ganrun.train(run, *EXPLODE_ARGS, "--steps", 40, "--log-every", 1, plugins=["infogan", tiny])
    peak = max(abs(v) for m in ganrun.metrics(run) for k, v in m.items() if k[:2] in ("d/", "g/"))
    assert peak < 1e2, peak


@pytest.mark.parametrize("plugins", [(), ("infogan",)], ids=["plain", "infogan"])
def test_no_picture_is_drawn_from_a_diverged_model_between_log_lines(
    ganrun: Ganrun, tiny: str, tmp_path: Path, plugins: tuple[str, ...]
) -> None:
    """--log-every far beyond the run: the check before each picture is what stops it."""
    run = tmp_path / "run"
    args = (*EXPLODE_ARGS, "--lr-d", "1e6", "--lr-g", "1e6", "--steps", 12, "--log-every", 1000)
    result = ganrun.train(run, *args, "--sample-every", 1, "--save-every", 1000, plugins=[*plugins, tiny], expect=1)
    line = ganrun.error_line(result)
    assert "--max-loss" in line or "NaN or Inf" in line, line
    stopped = int(re.search(r"(?:at step|between steps \d+ and) (\d+)", line).group(1))
    drawn = sorted((run / "samples").glob("step-*.png")) if (run / "samples").exists() else []
    # every picture written comes from a step before the one the run stopped at
    assert all(int(p.stem.split("-")[1]) < max(stopped, 1) for p in drawn), (line, [p.name for p in drawn])
    assert len(drawn) < 12
