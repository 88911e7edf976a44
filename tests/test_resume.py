"""Resuming runs: bit-exact continuation across processes and epochs, choosing the checkpoint,
refusing changed configurations and refusing bad checkpoint files without side effects."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

from registry.checkpoint import checkpoint_name, find_latest, read_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from conftest import Ganrun


# ------------------------------------------------------------------------------ exact resume

# 96 images in batches of 32: three steps per epoch, so steps 1-8 cross two epoch boundaries
# and the split at step 4 falls inside the second epoch.
EXACT = [
    "--model",
    "tinyconv",
    "--dataset",
    "mnist-idx",
    "--batch-size",
    32,
    "--seed",
    11,
    "--save-every",
    4,
    "--log-every",
    1,
    "--sample-every",
    100,
    "--keep-checkpoints",
    0,
]


@pytest.fixture(scope="module")
def exact(ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same 8 steps four ways: straight in a new process, straight in this process, and 4
    steps in this process resumed for 4 more in a new process. The model has convolutions both
    ways and BatchNorm, like the built-in pair, at a size that keeps this fast."""
    root = tmp_path_factory.mktemp("exact")
    data = ganrun.write_idx(root / "idx", 96, seed=5)
    common = [*EXACT, "--data-dir", data]
    runs = {name: root / name for name in ("subprocess", "inprocess", "split")}
    background = ganrun.popen(
        "train", "--out", runs["subprocess"], "--no-progress", "--steps", 8, *common, plugins=[tiny], cwd=root
    )
    try:
        ganrun.train(runs["inprocess"], "--steps", 8, *common, plugins=[tiny])
        ganrun.train(runs["split"], "--steps", 4, *common, plugins=[tiny])
        resumed = ganrun.run("train", "--resume", runs["split"], "--steps", 8, plugins=[tiny], cwd=root)
        _, err = background.communicate(timeout=300)
    finally:
        if background.poll() is None:
            background.kill()
            background.wait()
    assert background.returncode == 0, err
    assert resumed.returncode == 0, resumed.stderr
    return {**runs, "resumed": resumed}


def test_resume_in_a_new_process_is_bit_identical(ganrun: Ganrun, exact: dict[str, Any]) -> None:
    assert "resuming" in exact["resumed"].stderr and "from step 4" in exact["resumed"].stderr
    for step in (4, 8):
        ganrun.assert_same_checkpoint(
            exact["subprocess"] / "checkpoints" / checkpoint_name(step),
            exact["split"] / "checkpoints" / checkpoint_name(step),
        )
    assert ganrun.checkpoints(exact["split"]) == [checkpoint_name(4), checkpoint_name(8)]


def test_resumed_run_logs_every_step_once_with_the_same_values(ganrun: Ganrun, exact: dict[str, Any]) -> None:
    straight = ganrun.metrics(exact["subprocess"])
    resumed = ganrun.metrics(exact["split"])
    assert [m["step"] for m in resumed] == list(range(1, 9))
    strip = lambda records: [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in records]
    assert strip(resumed) == strip(straight)


def test_the_same_command_in_two_processes_is_bit_identical(ganrun: Ganrun, exact: dict[str, Any]) -> None:
    for step in (4, 8):
        ganrun.assert_same_checkpoint(
            exact["subprocess"] / "checkpoints" / checkpoint_name(step),
            exact["inprocess"] / "checkpoints" / checkpoint_name(step),
        )
    a, _ = read_checkpoint(exact["subprocess"] / "checkpoints" / checkpoint_name(4))
    b, _ = read_checkpoint(exact["subprocess"] / "checkpoints" / checkpoint_name(8))
    assert not torch.equal(a["model.G.0.weight"], b["model.G.0.weight"])  # it did train in between
    assert ganrun.config(exact["subprocess"])["model"] == "tinyconv"


# ------------------------------------------------------------------------------ choosing the checkpoint


def tiny_run(ganrun: Ganrun, tiny: str, run: Path, *args: Any, steps: int = 4, save_every: int = 2) -> Path:
    ganrun.train(
        run,
        "--model",
        "tiny",
        "--steps",
        steps,
        "--batch-size",
        16,
        "--save-every",
        save_every,
        "--log-every",
        1,
        *args,
        plugins=[tiny],
    )
    return run


def plant_incomplete_checkpoints(run: Path) -> None:
    """What a crash or a partial copy leaves: a cut-off newest file and a temporary file."""
    folder = run / "checkpoints"
    good = (folder / checkpoint_name(4)).read_bytes()
    (folder / checkpoint_name(999_999_999)).write_bytes(good[: len(good) // 2])
    (folder / f".{checkpoint_name(5)}.12345.tmp").write_bytes(good[:100])


def test_resume_uses_the_newest_complete_checkpoint(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tiny_run(ganrun, tiny, tmp_path / "run")
    plant_incomplete_checkpoints(run)
    result = ganrun.invoke("train", "--resume", run, "--steps", 6, plugins=[tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert f"from step 4 ({checkpoint_name(4)})" in result.stderr
    _, meta = read_checkpoint(run / "checkpoints" / checkpoint_name(6))
    assert meta["step"] == "6"
    assert [m["step"] for m in ganrun.metrics(run)] == [1, 2, 3, 4, 5, 6]
    assert find_latest(run / "checkpoints") == run / "checkpoints" / checkpoint_name(6)


def test_resume_from_an_older_checkpoint_rewinds_the_logs(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tiny_run(ganrun, tiny, tmp_path / "run", "--sample-every", 1)
    first = ganrun.metrics(run)
    assert [m["step"] for m in first] == [1, 2, 3, 4]
    (run / "samples" / "step-000000004.png").write_bytes(b"stale picture")
    result = ganrun.invoke("train", "--resume", run / "checkpoints" / checkpoint_name(2), plugins=[tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert "from step 2" in result.stderr
    again = ganrun.metrics(run)
    assert [m["step"] for m in again] == [1, 2, 3, 4]  # steps 3 and 4 were redone, not repeated
    strip = lambda records: [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in records]
    assert strip(again) == strip(first)  # and came out the same
    assert (run / "samples" / "step-000000004.png").read_bytes() != b"stale picture"


def test_pruning_never_deletes_the_checkpoint_just_written(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    """--keep-checkpoints counts usable checkpoints of this run: an incomplete file with a
    higher step must not push out the checkpoint the run has just saved."""
    run = tiny_run(ganrun, tiny, tmp_path / "run")
    plant_incomplete_checkpoints(run)
    result = ganrun.invoke("train", "--resume", run, "--steps", 6, "--keep-checkpoints", 1, plugins=[tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert find_latest(run / "checkpoints") == run / "checkpoints" / checkpoint_name(6)


def test_resume_of_a_moved_run_folder_continues_in_that_folder(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    """``--resume RUN_DIR`` without --out continues in RUN_DIR, also after the folder was moved
    or copied (the run folder recorded in the checkpoint is where it used to be)."""
    old = tiny_run(ganrun, tiny, tmp_path / "old-place")
    new = tmp_path / "new-place"
    shutil.move(old, new)
    result = ganrun.invoke("train", "--resume", new, "--steps", 6, plugins=[tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert (new / "checkpoints" / checkpoint_name(6)).exists()
    assert not old.exists()


def test_changed_architecture_is_refused_but_schedule_may_change(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tiny_run(ganrun, tiny, tmp_path / "run")
    before = ganrun.snapshot(run)
    result = ganrun.invoke("train", "--resume", run, "--steps", 6, "--noise-dim", 7, plugins=[tiny])
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "noise_dim: 100 -> 7" in line and checkpoint_name(4) in line
    assert ganrun.snapshot(run) == before

    result = ganrun.invoke("train", "--resume", run, "--steps", 6, "--seed", 1, "--lr-d", 0.1, plugins=[tiny])
    assert result.exit_code == 2
    line = ganrun.error_line(result)
    assert "seed: 0 -> 1" in line and "lr_d: 0.0002 -> 0.1" in line
    assert ganrun.snapshot(run) == before

    result = ganrun.invoke(
        "train",
        "--resume",
        run,
        "--steps",
        8,
        "--log-every",
        2,
        "--save-every",
        4,
        "--keep-checkpoints",
        0,
        plugins=[tiny],
    )
    assert result.exit_code == 0, ganrun.describe(result)
    assert ganrun.checkpoints(run) == [checkpoint_name(2), checkpoint_name(4), checkpoint_name(8)]
    assert [m["step"] for m in ganrun.metrics(run)] == [1, 2, 3, 4, 6, 8]
    saved = ganrun.config(run)["config"]
    assert (saved["steps"], saved["log_every"], saved["noise_dim"]) == (8, 2, 100)


# ------------------------------------------------------------------------------ bad checkpoints


@pytest.fixture(scope="module")
def runs(ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base run, and another run whose generator has a different input width."""
    root = tmp_path_factory.mktemp("bad-resume")
    base = root / "base"
    ganrun.train(base, "--model", "tiny", "--steps", 2, "--batch-size", 16, plugins=[tiny])
    other = root / "other"
    ganrun.train(other, "--model", "tiny", "--steps", 1, "--batch-size", 16, "--noise-dim", 8, plugins=[tiny])
    return {"root": root, "base": base, "other": other}


def make_bad(kind: str, runs: dict[str, Path], target: Path) -> list[str]:
    """Write a bad checkpoint of ``kind`` at ``target``; return extra train arguments."""
    good = runs["base"] / "checkpoints" / checkpoint_name(2)
    if kind == "truncated":
        data = good.read_bytes()
        target.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "pickle":
        target.write_bytes(pickle.dumps({"model.G.0.weight": [0.0] * 8}, protocol=4))
    elif kind == "torch-save":
        torch.save({"model.G.0.weight": torch.zeros(2)}, target)
    elif kind == "huge-header":
        target.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    elif kind == "other-run":
        shutil.copy(runs["other"] / "checkpoints" / checkpoint_name(1), target)
        return ["--noise-dim", 100]
    elif kind == "other-tensors":
        tensors, _ = read_checkpoint(runs["other"] / "checkpoints" / checkpoint_name(1))
        _, meta = read_checkpoint(good)
        save_checkpoint(target, tensors, meta)
    elif kind == "missing-optimizer-tensor":
        tensors, meta = read_checkpoint(good)
        del tensors[next(k for k in sorted(tensors) if k.startswith("optim.D.state.") and k.endswith("exp_avg"))]
        save_checkpoint(target, tensors, meta)
    elif kind == "missing-rng":
        tensors, meta = read_checkpoint(good)
        del tensors["rng.latent.0"]
        save_checkpoint(target, tensors, meta)
    elif kind == "trailing-bytes":
        target.write_bytes(good.read_bytes() + b"\0" * 16)
    elif kind == "header-over-100mb":
        target.write_bytes(struct.pack("<Q", 200 * 1024 * 1024) + b"{")
    elif kind == "header-not-json":
        target.write_bytes(struct.pack("<Q", 8) + b"not json")
    elif kind == "overlapping-offsets":
        header = json.dumps(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                "__metadata__": {"format_version": "1"},
            }
        ).encode()
        target.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 12)
    elif kind == "metadata-wrong-type":
        header = json.dumps({"__metadata__": {"format_version": "1", "step": 5}}).encode()
        target.write_bytes(struct.pack("<Q", len(header)) + header)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return []


@pytest.mark.parametrize(
    ("kind", "code", "cause"),
    [
        ("truncated", 1, "truncated"),
        ("pickle", 1, "looks like a pickle"),
        ("torch-save", 1, "looks like a pickle"),
        ("huge-header", 1, f"header length {2**63} exceeds"),
        ("other-run", 2, "noise_dim: 8 -> 100"),
        ("other-tensors", 1, "has shape"),
        ("missing-optimizer-tensor", 1, "missing optimizer entry"),
        ("missing-rng", 1, "missing RNG entry 'rng.latent.0'"),
        ("trailing-bytes", 1, "16 trailing bytes"),
        ("header-over-100mb", 1, "exceeds the 100 MB limit"),
        ("header-not-json", 1, "not valid JSON"),
        ("overlapping-offsets", 1, "overlap"),
        ("metadata-wrong-type", 1, "not a string"),
    ],
)
def test_bad_checkpoint_is_refused_without_side_effects(
    ganrun: Ganrun,
    tiny: str,
    runs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    code: int,
    cause: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "incoming" / checkpoint_name(2)
    bad.parent.mkdir()
    extra = make_bad(kind, runs, bad)
    before = {name: ganrun.snapshot(runs[name]) for name in ("base", "other")}
    bad_bytes = bad.read_bytes()

    result = ganrun.invoke("train", "--resume", bad, "--steps", 4, *extra, plugins=[tiny])
    assert result.exit_code == code, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert str(bad) in line and cause in line, line

    assert {name: ganrun.snapshot(runs[name]) for name in ("base", "other")} == before
    assert bad.read_bytes() == bad_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["incoming"]  # no runs/ folder appeared


def test_resume_from_a_folder_without_checkpoints(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    result = ganrun.invoke("train", "--resume", empty, plugins=[tiny])
    assert result.exit_code == 2
    assert f"{empty}: no checkpoint in this run folder" in ganrun.error_line(result)
    result = ganrun.invoke("train", "--resume", tmp_path / "nowhere", plugins=[tiny])
    assert result.exit_code == 2
    assert "does not exist" in ganrun.error_line(result)
