"""Seeds per hour: ``ganrun sweep`` at its default parallelism against the same seeds trained
one after another, each with every core.

    python benchmarks/sweep_throughput.py                      # sized for ~10 minutes on 2 idle cores
    python benchmarks/sweep_throughput.py --seeds 4 --steps 1000 --rounds 3
    python benchmarks/sweep_throughput.py --steps 3 --rounds 1 -- --batch-size 16   # a smoke check

Both arms train the same configuration (``--plugin infogan``'s defaults, the paper's MNIST job,
plus whatever follows ``--``) for seeds ``0..N-1`` on the CPU, through the command line:

- ``sweep``: ``python -m registry --plugin infogan sweep --seeds 0-(N-1) --out ...`` with no
  ``--parallel`` or ``--threads``, so the sweep chooses (one process per core on a CPU,
  ``cores // parallel`` threads each; the choice is printed from its ``sweep.json``);
- ``serial``: ``python -m registry --plugin infogan train --seed i --out ...`` for each seed in
  turn, with ``OMP_NUM_THREADS`` = the number of cores (torch's own default).

The arms alternate within one run (sweep first in odd rounds, serial first in even ones), so a
change in the machine's load falls on both. Each arm's wall clock includes its processes'
start-up, as a user waits for it. The script prints seeds per hour of each arm per round and the
ratio sweep / serial (its median over rounds), with the load average before and after; nothing
of ``registry`` is imported. Every run folder goes to a temporary folder (or ``--keep DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def ganrun(*args: str, env: dict[str, str] | None = None) -> float:
    """Run ``python -m registry ARGS``; its wall-clock seconds. A failure stops the benchmark."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "registry", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"ganrun {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def sweep_arm(folder: Path, seeds: int, plugin: list[str], train: list[str]) -> tuple[float, dict]:
    seconds = ganrun(*plugin, "sweep", "--seeds", f"0-{seeds - 1}", "--out", str(folder), "--no-progress", *train)
    record = json.loads((folder / "sweep.json").read_text())
    return seconds, {"parallel": record["parallel"], "threads": record["threads"]}


def serial_arm(folder: Path, seeds: int, plugin: list[str], train: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(cores()), "MKL_NUM_THREADS": str(cores())}
    total = 0.0
    for seed in range(seeds):
        out = folder / f"seed-{seed}"
        total += ganrun(*plugin, "train", "--seed", str(seed), "--out", str(out), "--no-progress", *train, env=env)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per arm (default 2)")
    parser.add_argument("--steps", type=int, default=500, help="training steps per seed (default 500)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each running both arms (default 2)")
    parser.add_argument("--plugin", default="infogan", help="plugin to activate (default infogan)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    parser.add_argument("train_args", nargs="*", help="more train options, after --")
    args = parser.parse_args()

    plugin = ["--plugin", args.plugin]
    train = [
        "--steps",
        str(args.steps),
        "--device",
        "cpu",
        "--save-every",
        str(args.steps),
        "--sample-every",
        str(args.steps),
        *args.train_args,
    ]
    print(f"{args.seeds} seeds x {args.steps} steps, {args.rounds} round(s), {cores()} cores; train options: {train}")
    print(f"load average before: {load()}")
    ratios = []
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        for round_ in range(1, args.rounds + 1):
            order = ("sweep", "serial") if round_ % 2 else ("serial", "sweep")
            rate = {}
            chosen = {}
            for arm in order:
                folder = root / f"round-{round_}-{arm}"
                if arm == "sweep":
                    seconds, chosen = sweep_arm(folder, args.seeds, plugin, train)
                else:
                    seconds = serial_arm(folder, args.seeds, plugin, train)
                rate[arm] = args.seeds / seconds * 3600
                print(f"round {round_} {arm:>6}: {seconds:7.1f} s  {rate[arm]:7.1f} seeds/hour", flush=True)
            ratios.append(rate["sweep"] / rate["serial"])
            print(
                f"round {round_}: sweep ran {chosen['parallel']} at once with {chosen['threads']} thread(s) each; "
                f"ratio sweep/serial {ratios[-1]:.2f}",
                flush=True,
            )
    print(f"load average after: {load()}")
    print(
        f"sweep / serial seeds per hour: median {statistics.median(ratios):.2f} (rounds: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + ")"
    )


if __name__ == "__main__":
    main()
