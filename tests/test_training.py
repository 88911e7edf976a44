"""End-to-end training runs: what a run folder holds, the built-in datasets and models,
checkpoint retention, divergence and stopping on a signal."""

from __future__ import annotations

import shutil

import json
import math
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

from registry.checkpoint import FORMAT_VERSION, checkpoint_name, read_checkpoint

if TYPE_CHECKING:
    from conftest import Ganrun


def grid_side(image: int, per_row: int = 8, padding: int = 2) -> int:
    return per_row * (image + padding) + padding


# ------------------------------------------------------------------------------ a real run


@pytest.fixture(scope="module")
def digits_run(ganrun: Ganrun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The built-in digits and dcgan28, in a real process."""
    root = tmp_path_factory.mktemp("digits")
    run = root / "run"
    done = ganrun.run(
        "train",
        "--steps",
        6,
        "--batch-size",
        32,
        "--log-every",
        2,
        "--sample-every",
        3,
        "--save-every",
        3,
        "--no-progress",
        "--out",
        run,
        cwd=root,
    )
    return run, done


def test_real_run_exits_cleanly(digits_run: tuple[Path, Any]) -> None:
    run, done = digits_run
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"training in {run}" in done.stderr
    # the end of training is a short summary for people, not a line of JSON
    assert re.search(r"^done: 6 steps in [0-9hmins ]+ \(run: GAN on digits\)$", done.stderr, re.M), done.stderr
    assert f"checkpoint: {run / 'checkpoints' / 'ckpt-000000006.safetensors'}" in done.stderr
    assert f"every metric: {run / 'metrics.jsonl'}" in done.stderr
    assert re.search(rf"^  ganrun report {re.escape(str(run))} +# report\.html", done.stderr, re.M), done.stderr
    assert not any(line.lstrip().startswith("{") for line in done.stderr.splitlines())
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]  # nothing outside the run folder


def test_resuming_a_finished_run_says_there_is_nothing_to_train(
    digits_run: tuple[Path, Any], ganrun: Ganrun, tmp_path: Path
) -> None:
    run, _ = digits_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for flags in (["--resume", str(copy)], ["--auto-resume", "--out", str(copy)]):
        again = ganrun.run("train", *flags, "--no-progress", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "last checkpoint None" not in again.stderr and "{}" not in again.stderr
        assert f"nothing to train: {copy} is already at step 6 (--steps 6)" in again.stderr
        assert "ckpt-000000006.safetensors" in again.stderr and "larger --steps" in again.stderr


def test_real_run_writes_config(digits_run: tuple[Path, Any]) -> None:
    run, _ = digits_run
    described = json.loads((run / "config.json").read_text())
    config = described["config"]
    assert (
        config["steps"],
        config["batch_size"],
        config["log_every"],
        config["sample_every"],
        config["save_every"],
    ) == (6, 32, 2, 3, 3)
    assert config["dataset"] == "digits" and config["out"] == str(run) and config["progress"] is False
    assert described["model"] == "dcgan28"
    assert described["image_shape"] == [1, 28, 28]
    assert described["generator_input"] == 100
    assert described["world_size"] == 1
    assert "torch" in described["versions"]


def test_real_run_logs_metrics(digits_run: tuple[Path, Any]) -> None:
    run, _ = digits_run
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [2, 4, 6]
    for record in records:
        assert {"d/adv", "g/adv", "steps_per_sec"} <= set(record)
        assert all(isinstance(record[k], float) and math.isfinite(record[k]) for k in ("d/adv", "g/adv"))
        assert record["d/adv"] > 0 and record["g/adv"] > 0


def test_real_run_writes_sample_grids(digits_run: tuple[Path, Any]) -> None:
    run, _ = digits_run
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-000000003.png", "step-000000006.png"]
    grids = []
    for name in ("step-000000003.png", "step-000000006.png"):
        with Image.open(run / "samples" / name) as image:
            image.load()
            assert image.format == "PNG" and image.mode == "L"
            assert image.size == (grid_side(28), grid_side(28))
            grids.append(np.asarray(image))
    assert grids[0][:2].min() == 255  # padding is white
    assert not np.array_equal(grids[0], grids[1])  # the generator changed between the two


def test_real_run_writes_checkpoints(digits_run: tuple[Path, Any]) -> None:
    run, _ = digits_run
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [checkpoint_name(3), checkpoint_name(6)]  # and no temporary files
    for step in (3, 6):
        tensors, meta = read_checkpoint(run / "checkpoints" / checkpoint_name(step))
        assert meta["step"] == str(step)
        assert meta["format_version"] == FORMAT_VERSION
        assert json.loads(meta["config"])["steps"] == 6
        assert json.loads(meta["run"])["model"] == "dcgan28"
        assert {"optim.G", "optim.D"} <= set(meta)
        assert {"rng.torch_cpu.0", "rng.latent.0"} <= set(tensors)
        assert any(k.startswith("model.G.") for k in tensors) and any(k.startswith("model.D.") for k in tensors)
        assert any(k.startswith("optim.D.state.") for k in tensors)
    a, _ = read_checkpoint(run / "checkpoints" / checkpoint_name(3))
    b, _ = read_checkpoint(run / "checkpoints" / checkpoint_name(6))
    assert not torch.equal(a["model.G.0.weight"], b["model.G.0.weight"])


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(("keep", "expected"), [(1, [4]), (2, [3, 4]), (0, [1, 2, 3, 4])])
def test_keep_checkpoints(ganrun: Ganrun, tiny: str, tmp_path: Path, keep: int, expected: list[int]) -> None:
    run = tmp_path / "run"
    ganrun.train(
        run,
        "--model",
        "tiny",
        "--steps",
        4,
        "--batch-size",
        16,
        "--save-every",
        1,
        "--keep-checkpoints",
        keep,
        plugins=[tiny],
    )
    assert ganrun.checkpoints(run) == [checkpoint_name(s) for s in expected]


def test_mnist_idx_dataset_trains(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    data = ganrun.write_idx(tmp_path / "mnist", 64)
    run = tmp_path / "run"
    ganrun.train(
        run,
        "--dataset",
        "mnist-idx",
        "--data-dir",
        data,
        "--steps",
        2,
        "--batch-size",
        32,
        "--log-every",
        1,
        "--model",
        "tinyconv",
        plugins=[tiny],
    )
    described = ganrun.config(run)
    assert described["model"] == "tinyconv" and described["image_shape"] == [1, 28, 28]
    assert described["config"]["data_dir"] == str(data)
    assert [m["step"] for m in ganrun.metrics(run)] == [1, 2]
    assert ganrun.checkpoints(run) == [checkpoint_name(2)]


def test_image_folder_at_64_pixels_picks_dcgan64(ganrun: Ganrun, tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    rng = np.random.default_rng(0)
    for i in range(16):
        folder = pictures / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    ganrun.train(
        run, "--dataset", "image-folder", "--data-dir", pictures, "--image-size", 64, "--steps", 1, "--batch-size", 16
    )
    described = ganrun.config(run)
    assert described["model"] == "dcgan64" and described["image_shape"] == [3, 64, 64]
    with Image.open(run / "samples" / "step-000000001.png") as image:
        assert image.mode == "RGB" and image.size == (grid_side(64), grid_side(64))
    tensors, _ = read_checkpoint(run / "checkpoints" / checkpoint_name(1))
    assert tensors["model.D.trunk.0.weight"].shape == (64, 3, 4, 4)


def test_conv64_trains_shapes_at_64_pixels_and_refuses_other_sizes(ganrun: Ganrun, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ganrun.train(
        run,
        "--dataset",
        "shapes",
        "--model",
        "conv64",
        "--steps",
        2,
        "--batch-size",
        8,
        "--noise-dim",
        5,
        "--log-every",
        1,
    )
    described = ganrun.config(run)
    assert described["model"] == "conv64" and described["image_shape"] == [1, 64, 64]
    tensors, _ = read_checkpoint(run / "checkpoints" / checkpoint_name(2))
    assert tensors["model.D.trunk.0.weight"].shape == (32, 1, 4, 4)
    assert not any(".running_mean" in k for k in tensors if k.startswith("model.D."))  # no BN in D
    assert sum(t.numel() for k, t in tensors.items() if k.startswith("model.D.")) < 300_000  # dcgan64: 2.8 M
    result = ganrun.train(
        tmp_path / "small", "--dataset", "shapes", "--image-size", 28, "--model", "conv64", "--steps", 1, expect=None
    )
    assert result.exit_code != 0 and "conv64 needs 64x64 images" in result.output


@pytest.mark.parametrize(("loss", "first_d"), [("hinge", 2.0), ("nonsaturating", 2 * math.log(2))])
def test_gan_loss_option(ganrun: Ganrun, tiny: str, tmp_path: Path, loss: str, first_d: float) -> None:
    """The tiny model's D starts with a zero head, so the first D loss is the loss at logits 0:
    hinge 1 + 1, non-saturating 2 log 2."""
    run = tmp_path / "run"
    ganrun.train(
        run, "--model", "tiny", "--gan-loss", loss, "--steps", 3, "--batch-size", 16, "--log-every", 1, plugins=[tiny]
    )
    assert ganrun.config(run)["config"]["gan_loss"] == loss
    records = ganrun.metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[0]["d/adv"] == pytest.approx(first_d, abs=1e-5)
    assert all(math.isfinite(r["g/adv"]) for r in records)


# ------------------------------------------------------------------------------ stopping

POISON = '''\
from registry import hookimpl


@hookimpl
def ganrun_d_loss_terms(ctx):
    """A loss term that is 0 except on the third step (two steps completed), where it is NaN."""
    scale = float("nan") if ctx.step == 2 else 0.0
    return {"poison": ctx.real.logits.mean() * scale}
'''


@pytest.mark.parametrize(
    ("log_every", "noticed"), [(1, "at step 3"), (10, "between steps 3 and 4")], ids=["at-log-step", "at-save-step"]
)
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    ganrun: Ganrun, tiny: str, make_plugin: Callable[..., str], tmp_path: Path, log_every: int, noticed: str
) -> None:
    poison = make_plugin(POISON)
    run = tmp_path / "run"
    result = ganrun.train(
        run,
        "--model",
        "tiny",
        "--steps",
        8,
        "--batch-size",
        16,
        "--save-every",
        2,
        "--log-every",
        log_every,
        plugins=[tiny, poison],
        expect=1,
    )
    line = ganrun.error_line(result)
    assert "NaN" in line and noticed in line and "last good checkpoint" in line
    assert ganrun.checkpoints(run) == [checkpoint_name(2)]
    tensors, meta = read_checkpoint(run / "checkpoints" / checkpoint_name(2))
    assert meta["step"] == "2"
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    records = ganrun.metrics(run)
    assert [r["step"] for r in records] == ([1, 2] if log_every == 1 else [])
    assert all(r["d/poison"] == 0.0 for r in records)
    assert not list((run / "checkpoints").glob(".*"))  # no temporary file left behind


def test_sigint_checkpoints_the_current_step(
    ganrun: Ganrun, tiny: str, make_plugin: Callable[..., str], tmp_path: Path
) -> None:
    interrupter = make_plugin(
        "import os, signal\nfrom registry import hookimpl\n\n"
        "@hookimpl\ndef ganrun_step_end(trainer, step):\n"
        "    if step == 3:\n        os.kill(os.getpid(), signal.SIGINT)\n"
    )
    previous = signal.getsignal(signal.SIGINT)
    run = tmp_path / "run"
    result = ganrun.train(
        run,
        "--model",
        "tiny",
        "--steps",
        50,
        "--batch-size",
        16,
        "--save-every",
        40,
        "--log-every",
        2,
        plugins=[tiny, interrupter],
        expect=130,
    )
    assert signal.getsignal(signal.SIGINT) is previous  # the handler was put back
    assert "stopped by SIGINT at step 3" in result.stderr
    assert f"--resume {run}" in result.stderr
    assert "Traceback" not in result.output
    assert ganrun.checkpoints(run) == [checkpoint_name(3)]
    _, meta = read_checkpoint(run / "checkpoints" / checkpoint_name(3))
    assert meta["step"] == "3"


def test_sigterm_checkpoints_and_the_run_resumes(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = ganrun.popen(
        "train",
        "--model",
        "tiny",
        "--out",
        run,
        "--no-progress",
        "--steps",
        10_000_000,
        "--batch-size",
        16,
        "--log-every",
        5,
        "--save-every",
        10_000_000,
        "--sample-every",
        10_000_000,
        plugins=[tiny],
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM == 143, err
    assert "Traceback" not in err
    found = re.search(r"stopped by SIGTERM at step (\d+)", err)
    assert found, err
    stopped = int(found.group(1))
    assert stopped >= 5
    assert ganrun.checkpoints(run) == [checkpoint_name(stopped)]
    _, meta = read_checkpoint(run / "checkpoints" / checkpoint_name(stopped))
    assert meta["step"] == str(stopped)

    result = ganrun.invoke("train", "--resume", run, "--steps", stopped + 2, plugins=[tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert f"from step {stopped}" in result.stderr
    assert f"done: {stopped + 2} steps" in result.stderr
    _, meta = read_checkpoint(run / "checkpoints" / checkpoint_name(stopped + 2))
    assert meta["step"] == str(stopped + 2)
    # Log lines every 5 steps up to the stop, then on the schedule after it: none repeated or lost.
    expected = [s for s in range(1, stopped + 3) if s % 5 == 0 or s == stopped + 2]
    assert [m["step"] for m in ganrun.metrics(run)] == expected
