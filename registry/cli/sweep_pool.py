"""The processes of ``ganrun sweep``: one ``train`` child per seed, as many at once as the
sweep has slots, their states kept in ``SWEEP/sweep.json`` and shown one line per seed.

Each child is a real ``python -m registry [--plugin P]... train ... --seed N --out
SWEEP/seed-N --auto-resume --no-progress`` process with its own thread count (and GPU, where
a slot names one), its output appended to ``SWEEP/seed-N/sweep.log``. Children run in process
groups of their own, so a terminal's Ctrl-C reaches the sweep alone and each child gets the
signal exactly once, forwarded: a second signal would make ``train`` stop without saving.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from registry import runfiles
from registry.checkpoint import find_latest, step_of
from registry.checkpoint.atomic import atomic_write
from registry.cli.rundir import SWEEP_LOG

STATES = ("pending", "running", "done", "failed", "interrupted")
POLL_S = 0.5  # how often children are reaped and their metrics read
PLAIN_EVERY_S = 30.0  # without a terminal, a running seed's step is printed at most this often
ERROR_LINES = 5  # the last lines of a failed child's output kept as its error
# SIGHUP (the terminal closed) is forwarded as SIGTERM: train stops gracefully only on these two.
FORWARD = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM}


@dataclass
class SeedRun:
    """One seed of a sweep: what ``sweep.json`` records of it, and its live process."""

    seed: int
    folder: Path
    state: str = "pending"
    exit_code: int | None = None
    error: str | None = None
    wall_s: float = 0.0  # summed over every attempt of every sweep command
    step: int | None = None  # of the newest complete checkpoint
    metrics: dict[str, Any] | None = None  # the newest metrics.jsonl line
    proc: subprocess.Popen | None = field(default=None, repr=False)
    log: IO[bytes] | None = field(default=None, repr=False)
    log_start: int = 0  # where this attempt's output begins in the log
    started: float = 0.0
    slot: int | None = None

    def record(self) -> dict[str, Any]:
        metrics, _ = runfiles.finite_json(self.metrics) if self.metrics is not None else (None, [])
        return {
            "folder": self.folder.name,
            "state": self.state,
            "exit_code": self.exit_code,
            "error": self.error,
            "wall_s": round(self.wall_s, 3),
            "step": self.step,
            "final_metrics": metrics,
        }

    def restore(self, recorded: dict[str, Any]) -> None:
        """Take over what an earlier sweep command recorded: its wall time and its last process's
        outcome (its state is decided from its run folder, which is the truth)."""
        wall = recorded.get("wall_s")
        self.wall_s = float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) else 0.0
        code = recorded.get("exit_code")
        self.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        error = recorded.get("error")
        self.error = error if isinstance(error, str) else None


def newest_step(run_dir: Path) -> int | None:
    """The step of a run folder's newest complete checkpoint, if it has one."""
    path = find_latest(run_dir / "checkpoints")
    return step_of(path) if path is not None else None


def last_metrics(run_dir: Path, tail: int = 65536) -> dict[str, Any] | None:
    """The newest complete line of ``run_dir/metrics.jsonl`` (read from the file's end, so a
    long log costs nothing), or None; damaged lines are passed over as ``read_metrics`` does."""
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(size - tail, 0))
            data = fh.read()
    except OSError:
        return None
    lines = data[: data.rfind(b"\n") + 1].splitlines()  # a line still being written is left out
    if size > tail and lines:
        lines = lines[1:]  # the first one may start mid-line
    for raw in reversed(lines):
        try:
            row = runfiles.loads(raw.decode("utf-8"), non_finite="null")
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and not isinstance(row.get("step"), bool):
            return row
    return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _information(metrics: dict[str, Any]) -> list[str]:
    """A plugin's information figures on a seed's line (InfoGAN's ``L_I/cN`` metrics): the share
    ``L_I / H`` where the code can reach ``H`` (``L_I_max/cN`` equals ``H/cN``), else ``L_I`` in
    nats against its reachable maximum, or alone where none is stated."""
    shares, others = [], []
    for key in sorted(k for k in metrics if k.startswith("L_I/")):
        code = key.split("/", 1)[1]
        l_i, h, ceiling = metrics[key], metrics.get(f"H/{code}"), metrics.get(f"L_I_max/{code}")
        if not _number(l_i):
            continue
        if _number(h) and h > 0 and _number(ceiling) and math.isclose(ceiling, h, rel_tol=1e-9, abs_tol=1e-12):
            shares.append(f"{code} {l_i / h:.2f}")
        elif _number(ceiling):
            others.append(f"{code} {l_i:.2f} (max {ceiling:.2f})")
        else:
            others.append(f"{code} {l_i:.2f}")
    return (["L_I/H " + " ".join(shares)] if shares else []) + (["L_I " + " ".join(others)] if others else [])


def seed_line(run: SeedRun, steps: int, now: float) -> str:
    """``seed 3  running  120/2000  41.2 steps/s  L_I/H c1 0.93  L_I c2 -0.27 (max -0.23)``: one
    seed's progress."""
    metrics = run.metrics or {}
    step = (
        metrics.get("step") if run.state == "running" else (run.step if run.step is not None else metrics.get("step"))
    )
    parts = [f"seed {run.seed:<4}", f"{run.state:<11}", f"{step if step is not None else '-':>7}/{steps}"]
    rate = metrics.get("steps_per_sec")
    if run.state == "running" and isinstance(rate, (int, float)):
        parts.append(f"{rate:7.1f} steps/s")
    wall = run.wall_s + (now - run.started if run.state == "running" else 0.0)
    if wall > 0:
        parts.append(f"{_duration(wall):>7}")
    parts += _information(metrics)
    if run.state == "failed" and run.error:
        parts.append(run.error.splitlines()[-1])
    return "  ".join(parts)


class Progress:
    """One line per seed on stdout: redrawn in place on a terminal; elsewhere a plain line
    when a seed's state changes, and for a running seed's logged step at most every
    ``PLAIN_EVERY_S``, so a log file does not fill with progress."""

    def __init__(self, steps: int, *, enabled: bool = True, stream: IO[str] | None = None):
        self.steps, self.enabled = steps, enabled
        self.stream = stream or sys.stdout
        self.live = enabled and self.stream.isatty()
        self._drawn = 0
        self._shown: dict[int, tuple[str, Any, float]] = {}  # seed -> (state, step, when printed)

    def update(self, runs: list[SeedRun], now: float) -> None:
        if not self.enabled:
            return
        if self.live:
            width = max(shutil.get_terminal_size().columns - 1, 20)
            lines = [seed_line(run, self.steps, now)[:width] for run in runs]
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.stream.flush()
            self._drawn = len(lines)
            return
        for run in runs:
            step = (run.metrics or {}).get("step")
            state, shown_step, when = self._shown.get(run.seed, (None, None, 0.0))
            if run.state == state and (step == shown_step or run.state != "running" or now - when < PLAIN_EVERY_S):
                continue
            if run.state == "pending" and state is None:
                continue  # waiting for a slot is not news
            self._shown[run.seed] = (run.state, step, now)
            print(seed_line(run, self.steps, now), file=self.stream, flush=True)

    def forget_drawn(self) -> None:
        """Lines printed below the live block (the summary) start on a fresh line."""
        self._drawn = 0


class Pool:
    """Runs the seeds' train processes: ``slots`` at most at once, slot ``i`` adding
    ``slot_env[i]`` to the environment (``CUDA_VISIBLE_DEVICES``); writes ``sweep.json``
    through ``save`` whenever a state changes (and every few seconds while running)."""

    def __init__(
        self,
        runs: list[SeedRun],
        command: Callable[[SeedRun], list[str]],
        *,
        steps: int,
        env: dict[str, str],
        slot_env: list[dict[str, str]],
        save: Callable[[], None],
        progress: Progress,
    ):
        self.runs, self.command, self.steps = runs, command, steps
        self.env, self.slot_env, self.save, self.progress = env, slot_env, save, progress
        self.stop_signal: int | None = None

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        first = self.stop_signal is None
        if first:
            self.stop_signal = signum
        for run in self.running():
            try:  # a second signal reaches the children as a second one too: train stops at once
                run.proc.send_signal(FORWARD[signal.Signals(signum)])
            except (ProcessLookupError, OSError):
                pass

    def running(self) -> list[SeedRun]:
        return [run for run in self.runs if run.proc is not None]

    # ------------------------------------------------------------------ children
    def _start(self, run: SeedRun, slot: int) -> None:
        argv = self.command(run)
        try:
            run.folder.mkdir(parents=True, exist_ok=True)
            log = open(run.folder / SWEEP_LOG, "ab")
        except OSError as exc:
            run.state, run.exit_code = "failed", None
            run.error = f"cannot write {run.folder / SWEEP_LOG}: {exc.strerror or exc}"
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n=== ganrun sweep: seed {run.seed} started {when}: {' '.join(argv)}\n".encode())
        log.flush()
        run.log, run.log_start = log, log.tell()
        try:
            run.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, **self.slot_env[slot]},
                process_group=0,  # the sweep forwards signals; a terminal's must not arrive twice
            )
        except OSError as exc:
            log.close()
            run.log = None
            run.state, run.exit_code, run.error = "failed", None, f"could not start: {exc}"
            return
        run.state, run.exit_code, run.error, run.slot = "running", None, None, slot
        run.started = time.monotonic()

    def _error_text(self, run: SeedRun, code: int) -> str:
        lines: list[str] = []
        try:
            with open(run.folder / SWEEP_LOG, "rb") as fh:
                fh.seek(run.log_start)
                text = fh.read()[-65536:].decode("utf-8", errors="replace")
            lines = [line.rstrip() for line in text.splitlines() if line.strip()][-ERROR_LINES:]
        except OSError:
            pass
        if code < 0:
            try:
                lines.append(f"killed by {signal.Signals(-code).name}")
            except ValueError:
                lines.append(f"killed by signal {-code}")
        return "\n".join(lines) or f"exited with code {code} and printed nothing"

    def _reap(self, run: SeedRun, code: int) -> None:
        run.wall_s += time.monotonic() - run.started
        run.proc = None
        if run.log is not None:
            run.log.close()
            run.log = None
        run.exit_code = code
        run.step = newest_step(run.folder)
        run.metrics = last_metrics(run.folder) or run.metrics
        if run.step is not None and run.step >= self.steps:  # as a rerun judges it: the run is complete
            run.state, run.error = "done", None
        elif self.stop_signal is not None:
            where = f"resumes from step {run.step}" if run.step is not None else "starts again from step 0"
            run.state, run.error = "interrupted", f"stopped by {signal.Signals(self.stop_signal).name}; {where}"
        else:
            run.state, run.error = "failed", self._error_text(run, code)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        previous = {s: signal.signal(s, self._on_signal) for s in FORWARD}
        last_save = time.monotonic()
        try:
            while True:
                changed = False
                for run in self.running():
                    code = run.proc.poll()
                    if code is not None:
                        self._reap(run, code)
                        changed = True
                busy = {run.slot for run in self.running()}
                free = [slot for slot in range(len(self.slot_env)) if slot not in busy]
                if self.stop_signal is None:
                    for run in [r for r in self.runs if r.state == "pending"][: len(free)]:
                        self._start(run, free.pop(0))
                        changed = True
                now = time.monotonic()
                for run in self.running():
                    run.metrics = last_metrics(run.folder) or run.metrics
                if changed or now - last_save > 10:
                    self.save()
                    last_save = now
                self.progress.update(self.runs, now)
                if not self.running() and (
                    self.stop_signal is not None or not any(r.state == "pending" for r in self.runs)
                ):
                    break
                time.sleep(POLL_S)
        finally:
            for run in self.running():  # only on an error of the sweep itself: leave nothing behind
                run.proc.send_signal(signal.SIGTERM)
            for run in self.running():
                self._reap(run, run.proc.wait())
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.save()


def write_sweep_json(path: Path, document: dict[str, Any]) -> None:
    """``sweep.json`` in one atomic replacement, as strict JSON."""
    atomic_write(path, runfiles.dumps(document, indent=2) + "\n")
