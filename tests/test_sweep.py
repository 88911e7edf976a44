"""``ganrun sweep``: seeds trained as real ``train`` processes side by side, each seed's run
identical to the same seed trained alone, a killed or failing seed reported without stopping
the others, Ctrl-C leaving every seed resumable, and reruns that continue exactly.

Three sweeps of real processes carry the tests (the tiny model, 6 steps, one thread each, two
processes at once): ``base`` trains seeds 0-2 straight; ``broken`` has seed 1's process
SIGKILLed while it waits at step 5 and seed 2's folder unusable, then is rerun; ``stopped``
gets Ctrl-C while seeds 0 and 1 wait at step 3, then is rerun. Under a heavy load a process
can take minutes to start, so the waits are long; they end as soon as the awaited file appears.
A test plugin (``GATE``) holds a seed at a chosen step until the test lets it go, so the kill and
the Ctrl-C land at a known step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from registry.checkpoint import checkpoint_name
from registry.cli import sweep as sweep_cli
from registry.cli.sweep import parse_seeds, plan
from registry.config import TrainConfig

if TYPE_CHECKING:
    from conftest import Ganrun

GATE_PLUGIN = "ganrun_test_sweep_gate"
GATE_SOURCE = '''\
"""Test plugin: with SWEEP_TEST_GATE=DIR set, a run of seed S reaching step K while DIR/hold-S-K
exists writes DIR/at-S-K and waits until the hold file is gone or the run is asked to stop."""
import os
import time
from pathlib import Path

from registry import hookimpl


@hookimpl
def ganrun_step_end(trainer, step):
    gate = os.environ.get("SWEEP_TEST_GATE")
    if not gate:
        return
    name = f"{trainer.config.seed}-{step}"
    hold = Path(gate) / f"hold-{name}"
    if not hold.exists():
        return
    (Path(gate) / f"at-{name}").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while hold.exists() and trainer._stop_signal is None and time.monotonic() < deadline:
        time.sleep(0.05)
'''

STEPS = 6
COMMON = (
    "--model",
    "tiny",
    "--batch-size",
    16,
    "--noise-dim",
    4,
    "--code",
    "categorical:3",
    "--save-every",
    2,
    "--log-every",
    1,
    "--sample-every",
    100,
    "--keep-checkpoints",
    0,
    "--steps",
    STEPS,
)


@pytest.fixture(scope="module")
def plugins(ganrun: Ganrun, tiny: str) -> list[str]:
    (ganrun.plugin_dir / f"{GATE_PLUGIN}.py").write_text(GATE_SOURCE)
    return ["infogan", tiny, GATE_PLUGIN]


def sweep_args(out: Path, seeds: str = "0-2", *extra: Any) -> tuple[Any, ...]:
    return ("sweep", "--seeds", seeds, "--out", out, "--parallel", 2, "--threads", 1, *COMMON, *extra)


def run(ganrun: Ganrun, plugins: list[str], args: tuple[Any, ...], gate: Path | None = None):
    """Start ``ganrun ... sweep`` in a new process; the gate folder goes through the environment."""
    return ganrun.popen(*args, plugins=plugins, env={"SWEEP_TEST_GATE": str(gate)} if gate else None)


def finish(proc, timeout: float = 1800) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def stop(proc) -> None:
    """Leave no sweep behind when a fixture fails half-way: Ctrl-C (forwarded to its processes),
    then a kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(path: Path, proc, timeout: float = 1200) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the sweep ended (exit {proc.returncode}) before {path.name}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.05)


def record(sweep: Path) -> dict[str, Any]:
    return json.loads((sweep / "sweep.json").read_text())


def final(sweep: Path, seed: int) -> Path:
    return sweep / f"seed-{seed}" / "checkpoints" / checkpoint_name(STEPS)


@pytest.fixture(scope="module")
def base(ganrun: Ganrun, plugins: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Seeds 0-2, two at a time, straight through."""
    out = tmp_path_factory.mktemp("sweep-base") / "sweep"
    code, stdout, stderr = finish(run(ganrun, plugins, sweep_args(out)))
    assert code == 0, stdout + stderr
    return {"out": out, "stdout": stdout, "stderr": stderr}


@pytest.fixture(scope="module")
def broken(ganrun: Ganrun, plugins: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Seed 1's process SIGKILLed at step 5 (its checkpoint of step 4 on disk) and seed 2's folder
    unusable (a config.json that is not JSON); then the sweep rerun for seeds 0-1."""
    root = tmp_path_factory.mktemp("sweep-broken")
    out, gate = root / "sweep", root / "gate"
    gate.mkdir()
    (gate / "hold-1-5").touch()
    (out / "seed-2").mkdir(parents=True)
    (out / "seed-2" / "config.json").write_text("{not json")
    proc = run(ganrun, plugins, sweep_args(out), gate)
    try:
        wait_for(gate / "at-1-5", proc)
        child = int((gate / "at-1-5").read_text())
        assert (out / "seed-1" / ".ganrun.lock").read_text().strip() == str(child)
        os.kill(child, signal.SIGKILL)
        first = finish(proc)
    finally:
        stop(proc)
    after_first = {seed: ganrun.snapshot(out / f"seed-{seed}") for seed in (0, 1)}
    first_record = record(out)
    second = finish(run(ganrun, plugins, sweep_args(out, "0-1"), gate))  # seed 2 left out, and alone
    return {
        "out": out,
        "first": first,
        "first_record": first_record,
        "after_first": after_first,
        "second": second,
    }


@pytest.fixture(scope="module")
def stopped(ganrun: Ganrun, plugins: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Ctrl-C while seeds 0 and 1 wait at step 3 (seed 2 waits for a slot); then the sweep rerun
    for seeds 0-1 (seed 2 would only repeat the base sweep's)."""
    root = tmp_path_factory.mktemp("sweep-stopped")
    out, gate = root / "sweep", root / "gate"
    gate.mkdir()
    for seed in (0, 1):
        (gate / f"hold-{seed}-3").touch()
    proc = run(ganrun, plugins, sweep_args(out), gate)
    try:
        for seed in (0, 1):
            wait_for(gate / f"at-{seed}-3", proc)
        proc.send_signal(signal.SIGINT)
        first = finish(proc)
    finally:
        stop(proc)
    first_record = record(out)
    checkpoints = {seed: ganrun.checkpoints(out / f"seed-{seed}") for seed in (0, 1, 2)}
    second = finish(run(ganrun, plugins, sweep_args(out, "0-1"), gate))
    return {"out": out, "first": first, "first_record": first_record, "checkpoints": checkpoints, "second": second}


# ------------------------------------------------------------------------------ a sweep


def test_seeds_train_as_parallel_processes_each_in_its_own_run_folder(base: dict[str, Any]) -> None:
    out = base["out"]
    doc = record(out)
    assert doc["seeds"] == [0, 1, 2] and doc["parallel"] == 2 and doc["threads"] == 1
    assert doc["plugins"][0] == "infogan"
    assert {seed: entry["state"] for seed, entry in doc["runs"].items()} == {"0": "done", "1": "done", "2": "done"}
    for seed in (0, 1, 2):
        entry = doc["runs"][str(seed)]
        assert entry["exit_code"] == 0 and entry["error"] is None and entry["step"] == STEPS
        assert entry["wall_s"] > 0
        assert entry["final_metrics"]["step"] == STEPS and "L_I_over_H/c1" in entry["final_metrics"]
        assert final(out, seed).exists()
        log = (out / f"seed-{seed}" / "sweep.log").read_text()
        assert "train --model=tiny" in log and f"--seed={seed}" in log and "--auto-resume" in log
        assert json.loads((out / f"seed-{seed}" / "config.json").read_text())["config"]["seed"] == seed
    # Without a terminal: a line when a seed starts and when it ends, in the order it happened.
    events = [
        (line.split()[1], line.split()[2])
        for line in base["stdout"].splitlines()
        if line.startswith("seed ") and line.split()[2] in ("running", "done")
    ]
    firsts = {}
    for index, event in enumerate(events):
        firsts.setdefault(event, index)
    both_started = max(firsts[("0", "running")], firsts[("1", "running")])
    first_done = min(firsts[("0", "done")], firsts[("1", "done")])
    assert both_started < first_done, events  # two processes at once
    assert firsts[("2", "running")] > first_done, events  # and never more than --parallel
    assert "L_I/H c1" in base["stdout"]
    assert "3 done" in base["stdout"].splitlines()[-1]


def test_a_seed_of_a_sweep_is_bit_identical_to_the_same_seed_trained_alone(
    ganrun: Ganrun, plugins: list[str], base: dict[str, Any], tmp_path: Path
) -> None:
    alone = tmp_path / "alone"
    ganrun.train(alone, *COMMON, "--seed", 1, plugins=plugins)  # one thread, as the sweep's
    for step in (2, STEPS):
        name = checkpoint_name(step)
        ganrun.assert_same_checkpoint(alone / "checkpoints" / name, base["out"] / "seed-1" / "checkpoints" / name)
    strip = lambda rows: [{k: v for k, v in row.items() if k != "steps_per_sec"} for row in rows]  # noqa: E731
    assert strip(ganrun.metrics(alone)) == strip(ganrun.metrics(base["out"] / "seed-1"))
    # and the seeds differ from one another
    with pytest.raises(AssertionError, match="tensors differ"):
        ganrun.assert_same_checkpoint(final(base["out"], 0), final(base["out"], 1))


def test_rerunning_a_finished_sweep_starts_nothing(ganrun: Ganrun, plugins: list[str], base: dict[str, Any]) -> None:
    out = base["out"]
    before = ganrun.snapshot(out)
    code, stdout, stderr = finish(run(ganrun, plugins, sweep_args(out)))
    assert code == 0, stdout + stderr
    assert "0 of 3 seed(s) to train" in stdout and "finished before: 0, 1, 2" in stdout
    kept = lambda files: {k: v for k, v in files.items() if k not in ("sweep.json", ".ganrun.lock")}  # noqa: E731
    assert kept(ganrun.snapshot(out)) == kept(before)  # no seed's folder was touched
    assert record(out)["runs"] == json.loads(json.dumps(record(out)["runs"]))  # strict JSON, still all done
    assert all(entry["state"] == "done" for entry in record(out)["runs"].values())


# ------------------------------------------------------------------------------ a killed and a failing seed


def test_a_killed_seed_and_a_failing_seed_do_not_stop_the_others(broken: dict[str, Any]) -> None:
    code, stdout, stderr = broken["first"]
    assert code == 1, stdout + stderr
    runs = broken["first_record"]["runs"]
    assert runs["0"]["state"] == "done" and runs["0"]["exit_code"] == 0
    assert runs["1"]["state"] == "failed" and runs["1"]["exit_code"] == -signal.SIGKILL
    assert "killed by SIGKILL" in runs["1"]["error"] and runs["1"]["step"] == 4
    assert "1 done" in stdout and "2 failed (seed 1, 2)" in stdout
    assert "seed 1 failed" in stderr and "killed by SIGKILL" in stderr
    assert "Traceback" not in stdout + stderr


def test_a_failing_seed_reports_its_error(broken: dict[str, Any]) -> None:
    _, _, stderr = broken["first"]
    entry = broken["first_record"]["runs"]["2"]
    assert entry["state"] == "failed" and entry["exit_code"] == 2
    last = entry["error"].splitlines()[-1]
    assert last.startswith("Error:") and "config.json" in last, entry["error"]
    assert "seed 2 failed (exit code 2)" in stderr and last in stderr


def test_the_rerun_resumes_the_killed_seed_exactly_and_skips_the_finished_one(
    ganrun: Ganrun, broken: dict[str, Any], base: dict[str, Any]
) -> None:
    code, stdout, stderr = broken["second"]
    out = broken["out"]
    assert code == 0, stdout + stderr
    assert "1 of 2 seed(s) to train" in stdout and "finished before: 0" in stdout
    assert ganrun.snapshot(out / "seed-0") == broken["after_first"][0]  # untouched
    log = (out / "seed-1" / "sweep.log").read_text()
    assert "resuming" in log.split("=== ganrun sweep")[-1] and "from step 4" in log.split("=== ganrun sweep")[-1]
    runs = record(out)["runs"]
    assert (runs["0"]["state"], runs["1"]["state"]) == ("done", "done")
    assert runs["2"] == broken["first_record"]["runs"]["2"]  # a seed left out is left as it was
    assert record(out)["seeds"] == [0, 1]
    for seed in (0, 1):
        ganrun.assert_same_checkpoint(final(out, seed), final(base["out"], seed))
    assert runs["1"]["wall_s"] > broken["first_record"]["runs"]["1"]["wall_s"]


# ------------------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_stops_every_seed_with_a_checkpoint_and_the_rerun_completes(
    ganrun: Ganrun, stopped: dict[str, Any], base: dict[str, Any]
) -> None:
    code, stdout, stderr = stopped["first"]
    assert code == 128 + signal.SIGINT, stdout + stderr
    runs = stopped["first_record"]["runs"]
    assert [runs[s]["state"] for s in "012"] == ["interrupted", "interrupted", "pending"]
    for seed in (0, 1):
        assert stopped["checkpoints"][seed][-1] == checkpoint_name(3)  # saved on the way out
        assert runs[str(seed)]["exit_code"] == 128 + signal.SIGINT
        assert "resumes from step 3" in runs[str(seed)]["error"]
    assert stopped["checkpoints"][2] == []
    assert "continue with the same sweep command" in stderr

    code, stdout, stderr = stopped["second"]
    assert code == 0, stdout + stderr
    for seed in (0, 1):
        log = (stopped["out"] / f"seed-{seed}" / "sweep.log").read_text().split("=== ganrun sweep")[-1]
        assert "from step 3" in log
        ganrun.assert_same_checkpoint(final(stopped["out"], seed), final(base["out"], seed))


# ------------------------------------------------------------------------------ refused before anything runs


@pytest.mark.parametrize(
    "seeds, words",
    [
        ("3-1", ["'3-1' ends before it starts", "write 1-3"]),
        ("0,,2", ["empty item"]),
        ("a", ["'a' is not a seed"]),
        ("-1", ["'-1' is not a seed"]),
        ("0-2,2", ["seed 2 is named twice"]),
        ("0-99999", ["more than 10000 seeds"]),
        ("", ["empty item"]),
    ],
)
def test_bad_seeds_are_refused_in_one_line(ganrun: Ganrun, tmp_path: Path, seeds: str, words: list[str]) -> None:
    result = ganrun.invoke("sweep", "--seeds", seeds, "--out", tmp_path / "s", "--steps", 1)
    assert result.exit_code == 2
    line = ganrun.error_line(result)
    assert "'--seeds'" in line and all(word in line for word in words), line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (("--seed", 3), ["'--seed'", "--seeds"]),
        (("--resume", "x"), ["'--resume'", "rerun the same sweep command"]),
        (("--auto-resume",), ["'--auto-resume'", "already"]),
        (("--overwrite",), ["'--overwrite'", "never deletes"]),
    ],
)
def test_train_options_the_sweep_owns_are_refused_naming_why(
    ganrun: Ganrun, tmp_path: Path, args: tuple[Any, ...], words: list[str]
) -> None:
    result = ganrun.invoke("sweep", "--seeds", "0-1", "--out", tmp_path / "s", *args)
    assert result.exit_code == 2
    line = ganrun.error_line(result)
    assert all(word in line for word in words), line


@pytest.mark.parametrize("key, value", [("seed", "3"), ("out", '"elsewhere"')])
def test_a_config_file_may_not_set_the_seed_or_the_folder(ganrun: Ganrun, tmp_path: Path, key: str, value: str) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(f"steps = 2\n{key} = {value}\n")
    result = ganrun.invoke("sweep", "--seeds", "0-1", "--out", tmp_path / "s", "--config", toml)
    assert result.exit_code == 2
    line = ganrun.error_line(result)
    assert "--config" in line and repr(key) in line and "remove it" in line, line


def test_a_rerun_with_another_configuration_is_refused_naming_the_option(
    ganrun: Ganrun, plugins: list[str], base: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(base["out"], out)
    before = ganrun.snapshot(out)
    args = [a if a != base["out"] else out for a in sweep_args(base["out"])]
    result = ganrun.invoke(*args, "--lr-g", 0.01, "--code", "uniform:1", plugins=plugins)
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "different configuration" in line and "--lr-g: 0.001 -> 0.01" in line and "--code:" in line, line
    assert "--steps" in line.split("Only", 1)[1]  # what may change is said too
    assert ganrun.snapshot(out) == before


def test_another_sweeps_folder_is_refused_while_it_runs(ganrun: Ganrun, tmp_path: Path) -> None:
    from registry.checkpoint.lock import RunLock

    out = tmp_path / "s"
    with RunLock(out):  # another sweep holds the folder
        result = ganrun.invoke("sweep", "--seeds", "0", "--out", out, "--steps", 1, "--batch-size", 8)
    assert result.exit_code == 1
    assert "in use by process" in ganrun.error_line(result)


def test_a_folder_that_is_not_a_sweep_is_refused(ganrun: Ganrun, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = ganrun.invoke("sweep", "--seeds", "0", "--out", tmp_path, "--steps", 1)
    assert result.exit_code == 2
    assert "not a sweep folder" in ganrun.error_line(result)


def test_sweep_is_a_core_command_with_train_options_in_its_help(ganrun: Ganrun) -> None:
    result = ganrun.invoke("--help")
    assert "sweep" in result.output
    result = ganrun.invoke("sweep", "--help", plugins=["infogan"])
    assert result.exit_code == 0
    for option in ("--seeds", "--out", "--parallel", "--threads", "--no-progress", "--steps", "--code", "--config"):
        assert option in result.output, option
    options = result.output.split("Options:", 1)[1].splitlines()
    listed = {line.split()[0].rstrip(",") for line in options if line.startswith("  -")}
    assert not listed & {"--seed", "--resume", "--auto-resume", "--overwrite"}, listed  # hidden: the sweep's own


def test_a_broken_plugin_is_one_line_naming_it(ganrun: Ganrun, make_plugin, tmp_path: Path) -> None:
    broken = make_plugin("raise RuntimeError('boom')\n")
    result = ganrun.invoke("sweep", "--seeds", "0", "--out", tmp_path / "s", "--steps", 1, plugins=[broken])
    assert result.exit_code == 1
    line = ganrun.error_line(result)
    assert broken in line and "boom" in line, line
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------ pieces


def test_parse_seeds_reads_lists_and_ranges_in_order() -> None:
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds("0-3, 7") == [0, 1, 2, 3, 7]
    assert parse_seeds("7,0-1") == [7, 0, 1]


def test_the_default_plan_shares_the_cores_and_respects_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_cli, "cpu_cores", lambda: 8)
    monkeypatch.setattr(sweep_cli.memory, "available_bytes", lambda device="cpu": 64 * 10**9)
    cpu = TrainConfig(device="cpu")
    layout = plan(cpu, 10, 10**8, None, None, {})
    assert (len(layout.slot_env), layout.threads) == (8, 1)
    layout = plan(cpu, 3, 10**8, None, None, {})
    assert (len(layout.slot_env), layout.threads) == (3, 2)  # fewer seeds than cores: more threads each
    layout = plan(cpu, 10, 10**8, 2, None, {})
    assert (len(layout.slot_env), layout.threads) == (2, 4)
    monkeypatch.setattr(sweep_cli.memory, "available_bytes", lambda device="cpu": 3 * 10**9)
    layout = plan(cpu, 10, 10**9, None, None, {})
    assert len(layout.slot_env) == 2 and "memory" in layout.reason  # 3 GB hold two 1.5 GB processes


def test_the_default_plan_puts_processes_on_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(sweep_cli, "cpu_cores", lambda: 16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(sweep_cli, "_gpu_free", lambda env: [10 * 10**9, 10 * 10**9])
    layout = plan(TrainConfig(device="auto"), 10, 10**9, None, None, {})
    # each process: 2 x 1 GB of needs + 1 GB of context -> three fit in 10 GB on each device
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in layout.slot_env] == ["0", "1"] * 3
    assert layout.threads == 16 // 6
    monkeypatch.setattr(sweep_cli, "_gpu_free", lambda env: None)
    layout = plan(TrainConfig(device="cuda"), 10, 10**9, 4, None, {})
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in layout.slot_env] == ["0", "1", "0", "1"]
    layout = plan(TrainConfig(device="cuda:1"), 10, 10**9, 2, None, {})
    assert layout.slot_env == [{}, {}]  # the child's --device cuda:1 names the GPU itself
