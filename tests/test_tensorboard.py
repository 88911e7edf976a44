"""``ganrun train --tensorboard`` (the built-in plugin registry.default_plugins.tensorboard): event files
read back with TensorBoard's own reader after real runs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("tensorboard")  # the ``tensorboard`` extra, part of the ``test`` extra

from PIL import Image  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from registry.default_plugins import tensorboard as tb  # noqa: E402
from registry.config import TrainConfig  # noqa: E402

if TYPE_CHECKING:
    from conftest import Ganrun

INFOGAN = ["--model", "tiny", "--batch-size", 16, "--log-every", 1, "--code", "categorical:3", "--code", "uniform:1"]


def events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def scalar_steps(acc: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in acc.Scalars(tag)]


def test_metrics_and_pictures_of_an_infogan_run(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ganrun.train(run, *INFOGAN, "--steps", 4, "--sample-every", 2, "--tensorboard", plugins=["infogan", tiny])
    acc = events(run)
    rows = ganrun.metrics(run)
    assert [row["step"] for row in rows] == [1, 2, 3, 4]

    tags = acc.Tags()
    # Every metric of metrics.jsonl, including those InfoGAN derives in its own ganrun_log (H, L_I/H).
    assert set(tags["scalars"]) == {key for row in rows for key in row if key != "step"}
    assert {"d/adv", "g/adv", "L_I/c1", "L_I/c2", "H/c1", "L_I_over_H/c1"} <= set(tags["scalars"])
    for tag in ("d/adv", "L_I/c1", "H/c2"):
        assert [(e.step, e.value) for e in acc.Scalars(tag)] == [
            (row["step"], pytest.approx(row[tag], abs=1e-5)) for row in rows
        ]

    assert set(tags["images"]) == {"samples", "traversals/c1", "traversals/c2"}
    for tag, path in (
        ("samples", run / "samples" / "step-000000004.png"),
        ("traversals/c1", run / "traversals" / "c1-step-000000004.png"),
    ):
        logged = acc.Images(tag)
        assert [e.step for e in logged] == [2, 4]
        with Image.open(path) as image:
            assert (logged[-1].width, logged[-1].height) == image.size


def test_off_by_default_and_switched_on_by_toml_or_on_resume(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    ganrun.train(plain, "--model", "tiny", "--steps", 2, "--log-every", 1, "--batch-size", 8, plugins=[tiny])
    assert not (plain / "tensorboard").exists()
    assert ganrun.config(plain)["config"]["extra"] == {"tensorboard": False}

    # Logging only, so it may be switched on when the run continues.
    result = ganrun.invoke("train", "--resume", plain, "--steps", 3, "--no-progress", "--tensorboard", plugins=[tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert scalar_steps(events(plain), "d/adv") == [3]

    config = tmp_path / "run.toml"
    config.write_text('model = "tiny"\nsteps = 2\nlog_every = 1\nbatch_size = 8\ntensorboard = true\n')
    toml = tmp_path / "toml"
    ganrun.train(toml, "--config", config, plugins=[tiny])
    assert scalar_steps(events(toml), "g/adv") == [1, 2]
    assert ganrun.config(toml)["config"]["extra"] == {"tensorboard": True}


def test_resume_purges_the_events_after_the_checkpoint(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = [*INFOGAN, "--steps", 6, "--save-every", 2, "--sample-every", 3, "--keep-checkpoints", 0]
    ganrun.train(run, *common, "--tensorboard", plugins=["infogan", tiny])
    [first] = (run / "tensorboard").iterdir()
    started = int(first.name.split(".")[3])
    while int(time.time()) <= started:  # event files are read in name order: time, host, pid
        time.sleep(0.05)

    # Continue from step 4 as after a crash: steps 5 and 6 are trained (and logged) again.
    # The saved configuration keeps TensorBoard logging on.
    result = ganrun.invoke(
        "train",
        "--resume",
        run / "checkpoints" / "ckpt-000000004.safetensors",
        "--no-progress",
        plugins=["infogan", tiny],
    )
    assert result.exit_code == 0, ganrun.describe(result)
    assert len(list((run / "tensorboard").iterdir())) == 2
    acc = events(run)
    rows = ganrun.metrics(run)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert scalar_steps(acc, "d/adv") == [1, 2, 3, 4, 5, 6]  # once each, not 1..6 then 5, 6 again
    assert scalar_steps(acc, "L_I/c1") == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Images("samples")] == [3, 6]
    assert [e.step for e in acc.Images("traversals/c2")] == [3, 6]


def test_missing_package_is_refused_before_training(
    ganrun: Ganrun, tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    run = tmp_path / "run"
    result = ganrun.train(run, "--model", "tiny", "--steps", 1, "--tensorboard", plugins=[tiny], expect=2)
    line = ganrun.error_line(result)
    assert "--tensorboard" in line and "pip install 'ganrun[tensorboard]'" in line
    assert not run.exists()
    ganrun.train(run, "--model", "tiny", "--steps", 1, "--batch-size", 8, plugins=[tiny])  # off: not needed


def test_toml_value_must_be_a_boolean(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('tensorboard = "yes"\n')
    result = ganrun.train(tmp_path / "run", "--config", config, plugins=[tiny], expect=2)
    line = ganrun.error_line(result)
    assert "--tensorboard" in line and "must be true or false, got 'yes'" in line


def test_only_rank_0_writes(tmp_path: Path) -> None:
    config = TrainConfig(extra={"tensorboard": True})
    other_rank = SimpleNamespace(config=config, dist=SimpleNamespace(is_main=False), run_dir=tmp_path)
    assert tb.writer(other_rank) is None
    assert tb.ganrun_log(trainer=other_rank, step=1, metrics={"d/adv": 1.0}) is None
    assert not (tmp_path / "tensorboard").exists()


def test_listed_as_a_builtin_plugin_with_its_own_hooks(ganrun: Ganrun) -> None:
    result = ganrun.invoke("plugins", "--json")
    assert result.exit_code == 0, ganrun.describe(result)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    row = rows["registry.default_plugins.tensorboard"]
    assert row["builtin"] is True and row["active"] is True and row["error"] is None
    assert row["registers"] == {}  # listed alone: the other built-in's names are not its own
    assert row["hooks"] == [
        "ganrun_config_defaults",
        "ganrun_configure",
        "ganrun_log",
        "ganrun_resume_mutable_options",
        "ganrun_sample",
        "ganrun_step_end",
        "ganrun_train_options",
    ]
    assert set(rows["registry.default_plugins.builtins"]["registers"]) == {"datasets", "models", "gan_losses"}


def test_ganrun_resume_mutable_options_is_how_the_switch_may_change(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    from registry.default_plugins import tensorboard

    assert tensorboard.ganrun_resume_mutable_options() == ["tensorboard"]
    run = tmp_path / "run"
    ganrun.train(run, "--model", "tiny", "--steps", 2, "--batch-size", 8, plugins=[tiny])
    refused = ganrun.invoke(
        "train", "--resume", run, "--steps", 3, "--no-progress", "--tensorboard", "--lr-g", "0.5", plugins=[tiny]
    )
    assert refused.exit_code == 2, ganrun.describe(refused)
    changed, allowed = refused.output.split("Only ", 1)
    assert "lr_g" in changed and "tensorboard:" not in changed  # the declared option is not a difference
    assert "tensorboard" in allowed.split("may change")[0]
