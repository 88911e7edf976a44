"""Divergence and failed saves (issue 18): NaN/Inf anywhere in the state a checkpoint would hold
(buffers and optimizer state too, not only parameters) stops the run without saving it, the
message says truthfully whether a good checkpoint exists, and a save that cannot be written
(disk full) is one line saying the previous checkpoint is intact."""

from __future__ import annotations

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
