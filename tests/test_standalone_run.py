"""A run folder stands alone: after its training data has moved, ``load_run`` and every command
that uses the trained model (generate, encode, explore, export, traverse, eval's L_I) still work,
in real processes; only what needs the data (eval's accuracy and disentanglement scores,
``train --resume``) says in one line which data is missing.

Two tiny InfoGAN runs, one on an image folder (RGB, convolutions with spectral norm) and one on MNIST-style
IDX files (with labels), are trained once; their data folders are then moved away.
"""

from __future__ import annotations

import json
import shutil
import signal
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

import infogan_plugin
import registry
from registry import DatasetError
from registry.checkpoint.lock import RunLock

if TYPE_CHECKING:
    from conftest import Ganrun

CODES = ["--code", "categorical:3", "--code", "uniform:1"]
TINY = ["--steps", 4, "--batch-size", 8, "--log-every", 2, "--save-every", 4, "--sample-every", 4]


@dataclass
class Moved:
    """A trained run whose data folder ``data`` (as recorded in the run) now lies at ``elsewhere``."""

    dataset: str
    run: Path
    data: Path
    elsewhere: Path
    image_shape: tuple[int, int, int]


def _image_folder(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), "RGB").save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module", params=["image-folder", "mnist-idx"])
def moved(request, ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Moved:
    root = tmp_path_factory.mktemp(request.param)
    data = root / "data"
    if request.param == "image-folder":
        _image_folder(data, 24)
        # convolutions with spectral norm (the tiny model's zero head has no spectral norm)
        extra, shape = ["--image-size", 16, "--spectral-norm", "--model", "tinyconv"], (3, 16, 16)
    else:
        ganrun.write_idx(data, 48)
        extra, shape = ["--model", "tiny"], (1, 28, 28)
    run = root / "run"
    ganrun.train(run, "--dataset", request.param, "--data-dir", data, *extra, *TINY, *CODES, plugins=["infogan", tiny])
    elsewhere = root / "moved"
    shutil.move(str(data), str(elsewhere))
    return Moved(request.param, run, data, elsewhere, shape)


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr, result.stderr
    return result.stdout


def test_load_run_needs_only_the_run_folder(moved: Moved) -> None:
    run = infogan_plugin.load_run(moved.run)
    assert run.image_shape == moved.image_shape and run.step == 4
    images = run.generate(5, codes={"c1": 2}, seed=1)
    assert images.shape == (5, *moved.image_shape)
    assert run.encode(images)["c1"].value.shape == (5,)
    plain = registry.load_run(moved.run)
    assert torch.equal(plain.generate(3, seed=2), registry.Run.generate(run, 3, seed=2))
    # a run being trained (its folder locked) can be used all the same
    lock = RunLock(moved.run)
    lock.acquire()
    try:
        assert infogan_plugin.load_run(moved.run).step == 4
    finally:
        lock.release()

    # the trainer (dataset, optimizers) is there for what needs the data, and says what is missing
    with pytest.raises(DatasetError) as info:
        run.trainer
    message = str(info.value)
    assert "\n" not in message and "run.trainer needs the run's dataset" in message, message
    assert str(moved.data) in message, message
    shutil.move(str(moved.elsewhere), str(moved.data))
    try:
        assert run.trainer.dataset.images.shape[1:] == moved.image_shape
        assert run.trainer.step == run.step
    finally:
        shutil.move(str(moved.data), str(moved.elsewhere))


def test_generate_encode_export_traverse_without_the_data(ganrun: Ganrun, tiny: str, moved: Moved, tmp_path) -> None:
    plugins, out = ["infogan", tiny], tmp_path / "G.pt"
    commands = {  # four processes at once: each spends most of its time starting
        "generate": ["generate", moved.run, "--n", 4, "--code", "c1=1", "--out", tmp_path / "g"],
        "encode": ["encode", moved.run, "--images", moved.elsewhere, "--out", tmp_path / "c.csv"],
        "export": ["export", moved.run, "--format", "torchscript", "--out", out],
        "traverse": ["traverse", moved.run, "--out", tmp_path / "t"],
    }
    procs = {name: ganrun.popen(*args, plugins=plugins) for name, args in commands.items()}
    printed = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0 and "Traceback" not in stderr and "Error:" not in stderr, (name, stderr)
            printed[name] = stdout
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    with Image.open(tmp_path / "g" / "grid.png") as grid:
        assert grid.size[0] > moved.image_shape[2]
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert rows[0].startswith("image,c1,c1_prob,c2") and len(rows) == 1 + (
        24 if moved.dataset == "image-folder" else 48
    )
    G = torch.jit.load(str(out))
    assert G(torch.zeros(2, 62 + 3 + 1)).shape == (2, *moved.image_shape)
    names = sorted(Path(p).name for p in printed["traverse"].split())
    assert names == ["c1-step-000000004.png", "c2-step-000000004.png"]


def test_explore_serves_the_run_without_the_data(ganrun: Ganrun, tiny: str, moved: Moved) -> None:
    proc = ganrun.popen("explore", moved.run, "--port", 0, plugins=["infogan", tiny])
    try:
        line = proc.stdout.readline()
        assert "at http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" at ", 1)[1].split()[0].rstrip("/")
        with urllib.request.urlopen(url + "/", timeout=60) as page:
            assert page.status == 200 and b"c1" in page.read()
        with urllib.request.urlopen(url + "/image.png?c1=2&c2=0.5&seed=3&n=4", timeout=60) as image:
            assert image.status == 200 and image.headers["Content-Type"] == "image/png"
            assert image.read().startswith(b"\x89PNG")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_eval_reports_L_I_and_one_line_about_what_it_skipped(ganrun: Ganrun, tiny: str, moved: Moved) -> None:
    printed = _ok(ganrun.run("eval", moved.run, "--samples", 40, plugins=["infogan", tiny])).splitlines()
    assert [line.split(":")[0] for line in printed if "L_I" in line] == ["c1", "c2"], printed
    skipped = [line for line in printed if line.startswith("skipped")]
    assert len(skipped) == 1 and len([line for line in printed if str(moved.data) in line]) == 1, printed
    assert skipped[0].startswith("skipped the accuracy and the disentanglement scores, which read the run's data: ")
    assert str(moved.data) in skipped[0] and skipped[0].endswith("pass --data-dir DIR to point eval at the data")
    result = json.loads((moved.run / "eval.json").read_text())
    assert set(result["information"]) == {"c1", "c2"} and result["classification"] == {}
    assert set(result["skipped"]) == {"classification", "disentanglement"}
    assert all(str(moved.data) in why for why in result["skipped"].values())
    report = ganrun.invoke("report", moved.run, "--plots", "svg", plugins=["infogan", tiny])
    assert report.exit_code == 0, ganrun.describe(report)
    page = (moved.run / "report.html").read_text()
    assert "<li>classification: skipped (the run&#x27;s dataset" in page  # in the headline


def test_eval_reads_the_data_where_it_has_moved_to(ganrun: Ganrun, tiny: str, moved: Moved) -> None:
    result = ganrun.invoke("eval", moved.run, "--samples", 40, "--data-dir", moved.elsewhere, plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert "skipped" not in result.stdout
    written = json.loads((moved.run / "eval.json").read_text())
    assert "skipped" not in written
    if moved.dataset == "mnist-idx":  # labelled: the accuracy is back
        assert "c1: unsupervised accuracy" in result.stdout and set(written["classification"]) == {"c1"}
    else:  # an image folder has no labels: nothing to score, nothing skipped
        assert written["classification"] == {}
    missing = ganrun.invoke("eval", moved.run, "--data-dir", moved.data, plugins=["infogan", tiny])
    assert missing.exit_code == 2 and str(moved.data) in missing.stderr and "--data-dir" in missing.stderr


def test_resume_refuses_in_one_line_naming_the_missing_data(ganrun: Ganrun, tiny: str, moved: Moved) -> None:
    before = ganrun.snapshot(moved.run)
    result = ganrun.run("train", "--resume", moved.run, "--steps", 6, "--no-progress", plugins=["infogan", tiny])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert line.startswith(f"Error: train --resume needs the run's dataset {moved.dataset!r}, which cannot be read: ")
    assert f"{moved.data}: data folder does not exist" in line and line.endswith("put the data back there"), line
    assert ganrun.snapshot(moved.run) == before


def test_the_networks_are_those_the_trainer_restores(trained_infogan_run: Path) -> None:
    """Built from the checkpoint alone or by the trainer (with its dataset): the same modules,
    the same weights and buffers, the same pictures."""
    from registry.plugins import Host
    from registry.train import Trainer

    run = infogan_plugin.load_run(trained_infogan_run)
    trainer = Trainer.from_checkpoint(run.checkpoint, Host.create(list(run.plugins)), device="cpu")
    reference = infogan_plugin.InfoGANRun(trainer, run.checkpoint)
    assert sorted(run.modules) == sorted(reference.modules) == ["D", "G", "Q"]
    for name, module in run.modules.items():
        mine, theirs = module.state_dict(), reference.modules[name].state_dict()
        assert sorted(mine) == sorted(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine), name
    assert torch.equal(run.generate(8, codes={"c1": 1}, seed=5), reference.generate(8, codes={"c1": 1}, seed=5))
    assert reference.trainer is trainer and run.image_shape == reference.image_shape


def test_a_checkpoint_written_on_a_gpu_is_usable_on_a_cpu(trained_plain_run: Path, tmp_path: Path) -> None:
    """Its RNG entries hold CUDA generator states, which a resume on a CPU refuses (it would
    continue the run's random streams), but which using the model never reads: they are checked
    against the generator kind that wrote them, or for their type where that kind is absent."""
    from registry.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
    from registry.plugins import Host
    from registry.train import Trainer

    source = registry.find_checkpoint(trained_plain_run)
    tensors, meta = read_checkpoint(source)
    philox = torch.arange(16, dtype=torch.uint8)  # a CUDA generator's state: seed and offset, 8 bytes each
    tensors.update({"rng.latent.0": philox, "rng.cuda.0": philox.clone()})
    config = json.loads(meta["config"])
    config["device"] = "cuda"
    path = tmp_path / "run" / "checkpoints" / source.name
    path.parent.mkdir(parents=True)
    save_checkpoint(path, tensors, {**meta, "config": json.dumps(config)})

    run = registry.load_run(path.parent.parent)
    assert run.device == torch.device("cpu") and run.generate(2).shape == (2, *run.image_shape)
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointError, match="RNG entry 'rng.latent.0'"):
            Trainer.from_checkpoint(path, Host.create(list(run.plugins)), device="cpu")
    tensors["rng.latent.0"] = philox.to(torch.int32)  # still refused when it is not a state at all
    save_checkpoint(path, tensors, {**meta, "config": json.dumps(config)})
    with pytest.raises(CheckpointError, match="RNG entry 'rng.latent.0' is int32 of shape"):
        registry.load_run(path.parent.parent)


def test_the_optimizer_settings_checked_are_those_of_the_adams_training_builds(tiny: str) -> None:
    """Using a run checks the optimizer entries against ``optimizer_settings`` instead of building
    Adams (whose constructor imports torch._dynamo); both must describe the same optimizers, so a
    torch release that changes Adam's settings fails here, not in a user's load_run."""
    from registry.config import TrainConfig
    from registry.plugins import Host
    from registry.train.networks import build_networks, make_optimizers, make_sampler, optimizer_settings

    host = Host.create(["infogan", tiny])
    config = TrainConfig(model="tiny", lr_g=0.003, lr_d=0.0001, beta1=0.25)
    host.run("ganrun_configure", config=config, registries=host.registries)
    networks = build_networks(config, host, make_sampler(config, host), channels=1, image_size=8, device="cpu")
    built, described = make_optimizers(config, networks), optimizer_settings(config, networks)
    for group in ("G", "D"):
        [real], [settings] = built[group].param_groups, described[group].param_groups
        assert sorted(real) == sorted(settings), group
        assert all(a is b for a, b in zip(real["params"], settings["params"], strict=True))
        for key in set(real) - {"params", "fused", "foreach"}:  # torch picks fused or foreach per machine
            assert type(real[key]) is type(settings[key]) and real[key] == settings[key], (group, key)
