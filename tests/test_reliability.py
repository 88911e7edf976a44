"""A run is never lost: exact InfoGAN resume in a new process, and SIGKILL during saves."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from registry.checkpoint import find_latest, read_checkpoint

CLI = [sys.executable, "-c", "from registry.cli import main; main()"]
INFOGAN = [
    *CLI,
    "--plugin",
    "infogan",
    "train",
    "--dataset",
    "mnist-idx",
    "--batch-size",
    "16",
    "--log-every",
    "1",
    "--save-every",
    "100",
    "--sample-every",
    "2",
    "--no-progress",
    "--keep-checkpoints",
    "0",
    "--code",
    "categorical:3",
    "--code",
    "uniform:1",
    "--code",
    "gaussian:1",
]  # gaussian's default Q loss is the learned-std gaussian_nll


def write_idx(folder: Path, n: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    (folder / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
    (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())
    return folder


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=180, **kw)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_infogan_split_run_is_bit_identical_across_an_epoch_boundary(tmp_path):
    data = write_idx(tmp_path / "idx")  # 64 images / batch 16: 4 steps per epoch, the split is at 3
    common = [*INFOGAN, "--data-dir", str(data)]
    run([*common, "--steps", "6", "--out", str(tmp_path / "straight")])
    run([*common, "--steps", "3", "--out", str(tmp_path / "split")])
    run([*common, "--steps", "6", "--resume", str(tmp_path / "split")])

    a, meta_a = read_checkpoint(tmp_path / "straight" / "checkpoints" / "ckpt-000000006.safetensors")
    b, meta_b = read_checkpoint(tmp_path / "split" / "checkpoints" / "ckpt-000000006.safetensors")
    assert a.keys() == b.keys()
    assert {k.split(".")[1] for k in a if k.startswith("model.")} == {"G", "D", "Q"}
    assert any(k.startswith("optim.D.state.") for k in a) and any(k.startswith("optim.G.state.") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    assert meta_a["step"] == meta_b["step"] == "6"
    assert meta_a["optim.D"] == meta_b["optim.D"]

    steps = [
        int(line.split(",")[0].split(":")[1])
        for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]
    grids = sorted(p.name for p in (tmp_path / "split" / "traversals").glob("c1-*.png"))
    assert grids == [
        "c1-step-000000002.png",
        "c1-step-000000003.png",
        "c1-step-000000004.png",
        "c1-step-000000006.png",
    ]  # 3 is the first run's final picture


def test_sigkill_while_saving_every_step_never_leaves_a_bad_newest_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *CLI,
            "train",
            "--steps",
            "100000",
            "--batch-size",
            "8",
            "--save-every",
            "1",
            "--keep-checkpoints",
            "0",
            "--log-every",
            "1000",
            "--sample-every",
            "100000",
            "--no-progress",
            "--noise-dim",
            "8",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(list((out / "checkpoints").glob("ckpt-*.safetensors"))) >= 4:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the training process wrote no checkpoints")
        time.sleep(0.37)  # land somewhere inside the save loop
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    # Every file under a final name is complete; a partial write can only be a .tmp file.
    for path in (out / "checkpoints").glob("ckpt-*.safetensors"):
        read_checkpoint(path)
    newest = find_latest(out / "checkpoints")
    assert newest is not None
    step = int(read_checkpoint(newest)[1]["step"])

    result = run([*CLI, "train", "--steps", str(step + 2), "--resume", str(out), "--no-progress"])
    assert f"from step {step}" in result.stderr
    assert find_latest(out / "checkpoints").name == f"ckpt-{step + 2:09d}.safetensors"
