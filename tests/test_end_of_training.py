"""What ``train`` prints when it ends: a short summary for people (steps and time, what the run
is, L_I per code read against what it can reach, the checkpoint, the commands to run next with
the run's plugins), while every metric stays in metrics.jsonl."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest


def test_infogan_run_ends_with_a_summary_and_the_next_commands(ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "digits-0312"
    codes = ("--code", "categorical:3", "--code", "uniform:1")
    result = ganrun.train(run, "--model", "tiny", "--steps", 4, "--batch-size", 16, *codes, plugins=["infogan", tiny])
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("done: "))
    summary = lines[start:]
    assert re.fullmatch(
        r"done: 4 steps in [0-9hmins ]+ \(digits-0312: InfoGAN, categorical:3 \+ uniform:1 on digits\)", summary[0]
    ), summary
    last = ganrun.metrics(run)[-1]
    assert summary[1] == f"  c1: L_I {last['L_I/c1']:.3f} nats of H 1.099 ({last['L_I/c1'] / last['H/c1']:.1%})"
    assert summary[2] == f"  c2: L_I {last['L_I/c2']:.3f} nats (reachable max -0.226; H 0.693)"
    assert summary[3] == f"checkpoint: {run / 'checkpoints' / 'ckpt-000000004.safetensors'}"
    assert summary[4] == f"every metric: {run / 'metrics.jsonl'}"
    assert summary[5] == "next:"
    commands = [line.split("  # ")[0].strip() for line in summary[6:]]
    prefix = f"ganrun --plugin infogan --plugin {tiny}"
    quoted = shlex.quote(str(run))
    for verb in ("eval", "traverse", "generate", "report"):
        assert any(command.startswith(f"{prefix} {verb} {quoted}") for command in commands), (verb, commands)
    assert len(summary) <= 14  # short: a screen, not a log
    assert not any(line.lstrip().startswith("{") for line in lines)  # no JSON line any more

    # the commands it prints run as printed (eval is the first a user would try)
    evaluated = ganrun.invoke(*shlex.split(next(c for c in commands if " eval " in c))[1:], "--samples", 64)
    assert evaluated.exit_code == 0, ganrun.describe(evaluated)
    assert (run / "eval.json").exists()


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (42, "42 s"), (592, "9 min 52 s"), (7500, "2 h 05 min")])
def test_durations_read_as_people_write_them(seconds: float, text: str) -> None:
    from registry.cli.train import _duration

    assert _duration(seconds) == text
