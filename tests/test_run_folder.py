"""A run is never lost (issue 18, "Losing a run"): a restart before the first checkpoint, one
writer per run folder, a resume that validates before it touches a file, abandoned timelines
kept whole, and temporary files of killed saves cleaned up. Real files and real processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.checkpoint import CheckpointError, checkpoint_name, find_latest, read_checkpoint, save_checkpoint
from registry.checkpoint.lock import LOCK_NAME, RunFolderBusy, RunLock, stale_temporaries
from registry.checkpoint.run import checked_step

if TYPE_CHECKING:
    from conftest import Ganrun

TINY = ["--model", "tiny", "--batch-size", 16, "--log-every", 1, "--keep-checkpoints", 0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` but the lock file (whose content is its holder's pid)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


# ------------------------------------------------------------------------------ restart before a checkpoint


def test_auto_resume_restarts_a_run_killed_before_its_first_checkpoint(
    ganrun: Ganrun, tiny: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = (
        "train",
        "--out",
        run,
        "--no-progress",
        "--auto-resume",
        "--save-every",
        1000,
        "--sample-every",
        1000,
        *TINY,
    )
    proc = ganrun.popen(*args, "--steps", 100000, plugins=[tiny])
    try:
        wait_for(
            lambda: (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 0,
            "the first metrics line",
            proc,
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        stop(proc)
    assert (run / "config.json").exists() and not list(run.rglob("ckpt-*.safetensors"))

    result = ganrun.run(*args, "--steps", 3, plugins=[tiny])
    assert result.returncode == 0, result.stderr
    assert "restarting" in result.stderr and "step 0" in result.stderr
    assert [row["step"] for row in ganrun.metrics(run)] == [1, 2, 3]  # the dead attempt's lines set aside
    ganrun.train(
        tmp_path / "straight", "--steps", 3, "--save-every", 1000, "--sample-every", 1000, *TINY, plugins=[tiny]
    )
    ganrun.assert_same_checkpoint(
        tmp_path / "straight" / "checkpoints" / checkpoint_name(3), run / "checkpoints" / checkpoint_name(3)
    )


def test_auto_resume_does_not_restart_a_different_run(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    ganrun.train(tmp_path / "other", "--steps", 1, *TINY, plugins=[tiny])
    (run / "config.json").write_bytes((tmp_path / "other" / "config.json").read_bytes())
    before = snapshot(run)
    result = ganrun.train(run, "--auto-resume", "--steps", 2, "--seed", 7, *TINY, plugins=[tiny], expect=2)
    line = ganrun.error_line(result)
    assert "--auto-resume" in line and "seed: 0 -> 7" in line and "--overwrite" in line
    assert snapshot(run) == before

    (run / "config.json").write_text("{not json")
    result = ganrun.train(run, "--auto-resume", "--steps", 2, *TINY, plugins=[tiny], expect=2)
    assert "config.json" in ganrun.error_line(result)


def test_auto_resume_does_not_start_over_beside_damaged_checkpoints(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ganrun.train(run, "--steps", 2, *TINY, plugins=[tiny])
    path = run / "checkpoints" / checkpoint_name(2)
    path.write_bytes(path.read_bytes()[:100])  # truncated: find_latest skips it
    before = snapshot(run)
    result = ganrun.train(run, "--auto-resume", "--steps", 4, *TINY, plugins=[tiny], expect=2)
    line = ganrun.error_line(result)
    assert "--auto-resume" in line and "no usable checkpoint" in line and checkpoint_name(2) in line, line
    assert snapshot(run) == before


# ------------------------------------------------------------------------------ one writer


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_lock(
    ganrun: Ganrun, tiny: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    common = ("--no-progress", "--save-every", 2, "--sample-every", 100000, *TINY)
    holder = ganrun.popen("train", "--out", run, "--steps", 100000, *common, plugins=[tiny])
    try:
        wait_for(lambda: len(list((run / "checkpoints").glob("ckpt-*.safetensors"))) >= 1, "a checkpoint", holder)
        assert (run / LOCK_NAME).read_text().strip() == str(holder.pid)
        for args in (
            ("--out", run, "--steps", 4),  # train --out X twice
            ("--out", run, "--steps", 4, "--auto-resume"),
            ("--resume", run, "--steps", 100000),
        ):  # --resume X while X trains
            result = ganrun.run("train", *args, *common, plugins=[tiny])
            errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
            assert result.returncode == 1 and len(errors) == 1, result.stderr
            assert f"in use by process {holder.pid}" in errors[0] and str(run) in errors[0], errors
            assert "Traceback" not in result.stderr
        assert holder.poll() is None  # the live run was not disturbed
        assert not (run / "checkpoints" / "superseded").exists()
        holder.send_signal(signal.SIGKILL)
    finally:
        stop(holder)
    # The kernel released the lock with the process: the run continues at once.
    newest = find_latest(run / "checkpoints")
    result = ganrun.run(
        "train", "--out", run, "--auto-resume", "--steps", ganrun_step(newest) + 1, *common, plugins=[tiny]
    )
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr


def ganrun_step(path: Path) -> int:
    return int(read_checkpoint(path)[1]["step"])


def test_run_lock_between_processes(tmp_path: Path) -> None:
    """The lock itself: held by one process, refused to another, free once the holder dies."""
    code = (
        "import sys, time; from registry.checkpoint.lock import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy, match=f"process {proc.pid}"):
            RunLock(tmp_path / "run").acquire()
        with pytest.raises(RunFolderBusy):
            RunLock(tmp_path / "run").check_free()
        proc.kill()
        proc.wait(timeout=30)
        with RunLock(tmp_path / "run") as lock:
            assert lock.held and (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------ validate before touching


@pytest.mark.parametrize("step", ["-5", "abc", "", "1e3", " 4", "4_0", "+4", "7", "99999999999999999999", "٣"])
def test_an_invalid_step_is_refused_with_the_run_folder_untouched(
    ganrun: Ganrun, tiny: str, tmp_path: Path, step: str
) -> None:
    run = tmp_path / "run"
    ganrun.train(run, "--steps", 4, "--save-every", 2, "--sample-every", 2, *TINY, plugins=[tiny])
    path = run / "checkpoints" / checkpoint_name(4)
    tensors, meta = read_checkpoint(path)
    save_checkpoint(path, tensors, {**meta, "step": step})
    before = snapshot(run)
    result = ganrun.invoke("train", "--resume", run, "--steps", 6, plugins=[tiny])
    assert result.exit_code == 1, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert str(path) in line and "'step'" in line, line
    assert snapshot(run) == before


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=25), st.integers(-(10**30), 10**30).map(str)), st.integers(0, 10**9))
def test_checked_step_accepts_only_what_a_run_writes(text: str, steps: int) -> None:
    writes = text.isascii() and text.isdigit() and len(text) <= 18 and int(text) <= steps
    try:
        step = checked_step(Path("ckpt.safetensors"), {"step": text}, steps)
    except CheckpointError as exc:
        assert not writes and "\n" not in str(exc) and "'step'" in str(exc)
    else:
        assert writes and step == int(text)


# ------------------------------------------------------------------------------ abandoned timelines


def test_a_second_resume_from_an_older_checkpoint_keeps_every_superseded_file(
    ganrun: Ganrun, tiny: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ("--save-every", 2, "--sample-every", 2, "--lr-decay", 1.0, *TINY)
    ganrun.train(run, "--steps", 6, *args, plugins=["infogan", tiny])
    extra = run / "plugin-pictures" / "probe-step-000000005.png"  # any plugin's per-step picture
    extra.parent.mkdir()
    extra.write_bytes(b"png of step 5")
    first = run / "checkpoints" / checkpoint_name(2)
    superseded = run / "checkpoints" / "superseded"

    # --steps 8 changes the decay schedule, so each timeline's later checkpoints differ
    result = ganrun.invoke("train", "--resume", first, "--steps", 8, plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    kept = snapshot(superseded)
    assert sorted(kept) == [checkpoint_name(4), checkpoint_name(6)]
    result = ganrun.invoke("train", "--resume", first, "--steps", 3, plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)

    after = snapshot(superseded)
    assert {k: after[k] for k in kept} == kept  # the first timeline's files were not overwritten
    assert len(after) == 5 and len(set(after.values())) == 5, sorted(after)  # 4, 6 | 4, 6, 8
    for root in (run / "samples", run / "traversals", run / "plugin-pictures"):
        steps = sorted({int(p.stem.rsplit("-", 1)[1]) for p in root.glob("*.png")})
        assert all(s <= 3 for s in steps), (root, steps)  # report sees only this timeline
    assert [int(p.stem.split("-")[1]) for p in sorted((run / "samples").glob("*.png"))] == [2, 3]
    assert (run / "superseded" / "plugin-pictures" / extra.name).read_bytes() == b"png of step 5"
    assert (run / "superseded" / "samples" / "step-000000006.png").exists()
    assert (run / "superseded" / "samples" / "step-000000006.timeline-2.png").exists()
    assert [row["step"] for row in ganrun.metrics(run)] == [1, 2, 3]
    dropped = [json.loads(line)["step"] for line in (run / "superseded" / "metrics.jsonl").read_text().splitlines()]
    assert dropped == [3, 4, 5, 6]


# ------------------------------------------------------------------------------ temporary files


def test_stale_temporaries_of_killed_saves_are_removed_on_resume(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ganrun.train(run, "--steps", 2, *TINY, plugins=[tiny])
    dead = dead_pid()
    stale = [
        run / "checkpoints" / f".{checkpoint_name(4)}.{dead}.0123abcd.tmp",
        run / f".metrics.jsonl.{dead}.deadbeef.tmp",
        run / "samples" / f".step-000000004.png.{dead}.00ff00ff.tmp",
    ]
    for path in stale:
        path.write_bytes(b"\0" * 4096)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live = run / f".report.html.{sleeper.pid}.12345678.tmp"  # another command writing right now
        live.write_text("half a page")
        unrelated = run / ".notes.tmp"
        unrelated.write_text("mine")
        assert stale_temporaries(run) == sorted(stale)
        ganrun.train(run, "--resume", run, "--steps", 3, plugins=[tiny])
        assert not any(path.exists() for path in stale)
        assert live.read_text() == "half a page" and unrelated.read_text() == "mine"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_nothing_is_cleaned_without_the_lock(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ganrun.train(run, "--steps", 2, *TINY, plugins=[tiny])
    stale = run / "checkpoints" / f".{checkpoint_name(4)}.{dead_pid()}.0123abcd.tmp"
    stale.write_bytes(b"partial")
    code = (
        "import sys, time; from registry.checkpoint.lock import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        result = ganrun.train(run, "--resume", run, "--steps", 3, plugins=[tiny], expect=1)
        assert f"process {proc.pid}" in ganrun.error_line(result)
        assert stale.read_bytes() == b"partial"
    finally:
        proc.kill()
        proc.wait()
