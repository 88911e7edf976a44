"""Data-parallel training under a real ``torchrun`` launch on CPU (gloo, 2 processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from registry.checkpoint import read_checkpoint

PLUGINS = Path(__file__).parent / "plugins"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
TRAIN = [
    "-m",
    "registry",
    "--plugin",
    "infogan",
    "--plugin",
    "rank_dump",
    "train",
    "--batch-size",
    "16",
    "--log-every",
    "2",
    "--save-every",
    "2",
    "--sample-every",
    "100",
    "--no-progress",
    "--keep-checkpoints",
    "0",
    "--code",
    "categorical:3",
    "--code",
    "uniform:1",
    "--code",
    "gaussian:1",
]


def launch(
    out: Path,
    dump: Path,
    *extra: str,
    torchrun_args: tuple[str, ...] = (),
    env_extra: dict[str, str] | None = None,
    plugins: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
        "RANK_DUMP_DIR": str(dump),
        "OMP_NUM_THREADS": "1",
        **(env_extra or {}),
    }
    train = (
        TRAIN[: TRAIN.index("train")]
        + [f for name in plugins for f in ("--plugin", name)]
        + TRAIN[TRAIN.index("train") :]
    )
    result = subprocess.run(
        [*TORCHRUN, *torchrun_args, *train, "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    launch(root / "straight", root / "dump-straight", "--steps", "6")
    launch(root / "split", root / "dump-split", "--steps", "4")
    resumed = launch(root / "split", root / "dump-split", "--steps", "6", "--resume", str(root / "split"))
    return root, resumed


def test_ranks_hold_identical_weights(runs):
    root, _ = runs
    for step in (2, 4, 6):
        assert_same(
            load_file(str(root / "dump-straight" / f"rank0-step{step}.safetensors")),
            load_file(str(root / "dump-straight" / f"rank1-step{step}.safetensors")),
        )


def test_only_rank_zero_writes_one_checkpoint_per_save(runs):
    root, _ = runs
    files = sorted(p.name for p in (root / "straight" / "checkpoints").iterdir())
    assert files == ["ckpt-000000002.safetensors", "ckpt-000000004.safetensors", "ckpt-000000006.safetensors"]
    tensors, meta = read_checkpoint(root / "straight" / "checkpoints" / files[-1])
    assert meta["step"] == "6"
    # each rank's latent and CPU RNG streams are saved so a resume continues every rank exactly
    assert {"rng.latent.0", "rng.latent.1", "rng.torch_cpu.0", "rng.torch_cpu.1"} <= set(tensors)
    assert not torch.equal(tensors["rng.latent.0"], tensors["rng.latent.1"])  # rank-offset seeds
    lines = (root / "straight" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # not one per rank


def test_resume_under_torchrun_is_exact(runs):
    root, resumed = runs
    assert "resuming" in resumed.stderr and "from step 4" in resumed.stderr
    straight, _ = read_checkpoint(root / "straight" / "checkpoints" / "ckpt-000000006.safetensors")
    split, _ = read_checkpoint(root / "split" / "checkpoints" / "ckpt-000000006.safetensors")
    assert_same(straight, split)
    steps = [
        int(line.split(",")[0].split(":")[1]) for line in (root / "split" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 4, 6]


def test_max_restarts_continue_from_the_newest_complete_checkpoint(runs):
    """A worker killed at step 5 is restarted by torchrun; --auto-resume continues from step 4
    and ends bit-identical to the uninterrupted run."""
    root, _ = runs
    result = launch(
        root / "restarted",
        root / "dump-restarted",
        "--steps",
        "6",
        "--auto-resume",
        torchrun_args=("--max-restarts=1",),
        env_extra={"KILL_RANK_AT": "1:5"},
    )
    assert "from step 4" in result.stderr
    straight, _ = read_checkpoint(root / "straight" / "checkpoints" / "ckpt-000000006.safetensors")
    restarted, _ = read_checkpoint(root / "restarted" / "checkpoints" / "ckpt-000000006.safetensors")
    assert_same(straight, restarted)


def test_contrastive_pairs_and_augmented_reads_stay_in_step_across_ranks(tmp_path):
    """InfoGAN-CR's classifier trains in the G phase (wrapped for data parallelism there) and
    both it and --q-augment run G or D more than once before a backward pass."""
    launch(
        tmp_path / "cr",
        tmp_path / "dump",
        "--steps",
        "4",
        "--q-augment",
        "affine",
        "--cr-batch",
        "8",
        plugins=("infogan_cr",),
    )
    for step in (2, 4):
        rank0 = load_file(str(tmp_path / "dump" / f"rank0-step{step}.safetensors"))
        assert any(key.startswith("CR.") for key in rank0), sorted(rank0)[:5]
        assert_same(rank0, load_file(str(tmp_path / "dump" / f"rank1-step{step}.safetensors")))


def test_max_restarts_restart_a_run_killed_before_its_first_checkpoint(runs):
    """A worker lost at step 1, before any checkpoint: torchrun restarts the job, --auto-resume
    finds the run folder with config.json but no checkpoint and starts it again from step 0
    (rank 0 holds the run folder's lock; the dead attempt's lock went with its process)."""
    root, _ = runs
    result = launch(
        root / "early",
        root / "dump-early",
        "--steps",
        "4",
        "--save-every",
        "4",
        "--auto-resume",
        torchrun_args=("--max-restarts=1",),
        env_extra={"KILL_RANK_AT": "1:1"},
    )
    assert "restarting" in result.stderr and "step 0" in result.stderr
    straight, _ = read_checkpoint(root / "straight" / "checkpoints" / "ckpt-000000004.safetensors")
    early, _ = read_checkpoint(root / "early" / "checkpoints" / "ckpt-000000004.safetensors")
    assert_same(straight, early)
    steps = [
        int(line.split(",")[0].split(":")[1]) for line in (root / "early" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 4]
