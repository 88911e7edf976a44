"""``--lr-decay``: both learning rates fall linearly to zero over the last part of a run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable

import pytest

from registry.checkpoint import checkpoint_name, read_checkpoint
from registry.config import TrainConfig
from registry.train import Trainer

if TYPE_CHECKING:
    from conftest import Ganrun

RUN = [
    "--model",
    "tiny",
    "--batch-size",
    16,
    "--seed",
    4,
    "--log-every",
    1,
    "--save-every",
    4,
    "--sample-every",
    100,
    "--keep-checkpoints",
    0,
    "--lr-g",
    1e-3,
    "--lr-d",
    2e-4,
]


def _factors(steps: int, decay: float) -> list[float]:
    state = SimpleNamespace(config=TrainConfig(steps=steps, lr_decay=decay), step=0)
    return [Trainer.lr_factor(state, s) for s in range(steps)]


def test_schedule_is_flat_then_linear_to_zero() -> None:
    assert _factors(10, 0.0) == [1.0] * 10
    assert _factors(10, 0.5) == [1.0] * 5 + [1.0, 0.8, 0.6, 0.4, 0.2]
    assert _factors(4, 1.0) == [1.0, 0.75, 0.5, 0.25]
    assert _factors(10, 0.04) == [1.0] * 10  # rounds to no decay step


def _lrs(path: Path) -> dict[str, float]:
    _, meta = read_checkpoint(path)
    return {g: json.loads(meta[f"optim.{g}"])["param_groups"][0]["lr"] for g in ("G", "D")}


def test_decayed_rates_reach_the_optimizers_and_resume_exactly(
    ganrun: Ganrun, tiny: str, make_plugin: Callable[..., str], tmp_path: Path
) -> None:
    # the split run is stopped by SIGINT inside the decay window (after step 6 of 8)
    stop = make_plugin(
        "import os, signal\nfrom registry import hookimpl\n\n"
        "@hookimpl\ndef ganrun_step_end(trainer, step):\n"
        "    if step == 6:\n        os.kill(os.getpid(), signal.SIGINT)\n"
    )
    straight, split, flat = tmp_path / "straight", tmp_path / "split", tmp_path / "flat"
    ganrun.train(straight, "--steps", 8, "--lr-decay", 0.5, *RUN, plugins=[tiny])
    ganrun.train(flat, "--steps", 8, *RUN, plugins=[tiny])
    ganrun.train(split, "--steps", 8, "--lr-decay", 0.5, *RUN, plugins=[tiny, stop], expect=130)
    assert ganrun.checkpoints(split) == [checkpoint_name(4), checkpoint_name(6)]
    resumed = ganrun.invoke("train", "--resume", split, "--no-progress", plugins=[tiny, stop])
    assert resumed.exit_code == 0, ganrun.describe(resumed)

    # the last step (index 7) ran at 1/4 of the base rates; the step-4 checkpoint at full rates
    last = checkpoint_name(8)
    assert _lrs(straight / "checkpoints" / last) == pytest.approx({"G": 2.5e-4, "D": 5e-5})
    assert _lrs(straight / "checkpoints" / checkpoint_name(4)) == pytest.approx({"G": 1e-3, "D": 2e-4})
    assert _lrs(flat / "checkpoints" / last) == pytest.approx({"G": 1e-3, "D": 2e-4})
    assert [m["lr_factor"] for m in ganrun.metrics(straight)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert "lr_factor" not in ganrun.metrics(flat)[0]

    ganrun.assert_same_checkpoint(straight / "checkpoints" / last, split / "checkpoints" / last)
    a, _ = read_checkpoint(straight / "checkpoints" / last)
    b, _ = read_checkpoint(flat / "checkpoints" / last)
    assert any(not a[k].equal(b[k]) for k in a if k.startswith("model.G.")), "decay changed nothing"


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_decay_outside_zero_to_one_is_refused(ganrun: Ganrun, tiny: str, tmp_path: Path, value: str) -> None:
    result = ganrun.train(tmp_path / "run", "--model", "tiny", "--lr-decay", value, plugins=[tiny], expect=2)
    line = ganrun.error_line(result)
    assert "--lr-decay" in line and "between 0 and 1" in line and value in line
    assert not (tmp_path / "run").exists()
