"""Full-length `shapes` runs in resumable legs, with a metric curve that grows leg by leg.

InfoGAN-CR's schedule is 322,560 steps: many hours per seed on a CPU, longer than any one
sitting. Each call of this script trains one leg of a run and scores what it produced:

1. ``ganrun train --config PRESET --auto-resume`` continues the run folder's newest
   checkpoint (or starts it) for ``--leg-steps`` more steps, never past the preset's length;
2. every checkpoint of the run not yet in the CSV is scored with disentanglement_lib's four
   metrics (MIG, FactorVAE, DCI, SAP) at ``--metrics-samples`` (10,000 is the library's own
   size), next to D's balance from ``metrics.jsonl`` at that step, and appended as one row.

Started again with the same command it picks up where it stopped, so a run survives any
number of interruptions; commit the CSV after each leg and nothing measured is lost.

    python benchmarks/shapes_curve.py --config examples/configs/shapes_infogan.toml --seed 0 \\
        --runs ../runs --leg-steps 20000 --amp
    python benchmarks/shapes_curve.py --config examples/configs/shapes_infogan.toml --seed 0 \\
        --runs ../runs --leg-steps 0      # score only

Options it does not know go to ``ganrun train`` unchanged (e.g. ``--save-every 2000``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import torch

from infogan_plugin.evaluate import disentanglement_metrics
from registry import find_latest
from registry.plugins import Host
from registry.train import Trainer

FIELDS = [
    "recipe",
    "seed",
    "step",
    "mig",
    "factor_vae",
    "dci",
    "sap",
    "metrics_samples",
    "acc_real",
    "acc_fake",
    "logit_gap",
    "eval_seconds",
]
METRICS = ("mig", "factor_vae", "dci", "sap")


def append_row(path: Path, fields: list[str], row: dict) -> None:
    """Append one row to a results CSV (the header first in a new file): one row at a time, so
    an interruption loses at most the row being measured."""
    new_file = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def step_of(path: Path) -> int:
    return int(path.name.split(".")[0].split("-")[1])


def plugins_of(preset: dict) -> list[str]:
    return ["infogan", "infogan_cr"] if "cr_weight" in preset else ["infogan"]


def train_leg(args: argparse.Namespace, run: Path, preset: dict, extra: list[str]) -> None:
    total = int(preset.get("steps", 0)) or args.total
    latest = find_latest(run / "checkpoints") if run.exists() else None
    done = step_of(latest) if latest is not None else 0
    target = min(total, done + args.leg_steps)
    if target <= done:
        print(f"{run}: at step {done} of {total}; nothing to train", flush=True)
        return
    flags = [f for name in plugins_of(preset) for f in ("--plugin", name)]
    cmd = [
        sys.executable,
        "-c",
        "from registry.cli import main; main()",
        *flags,
        "train",
        "--config",
        str(args.config),
        "--out",
        str(run),
        "--seed",
        str(args.seed),
        "--steps",
        str(target),
        "--auto-resume",
        "--no-progress",
        *(["--amp"] if args.amp else []),
        *extra,
    ]
    print(f"leg: steps {done} -> {target} of {total}\n$ " + shlex.join(["ganrun", *cmd[3:]]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    print(f"leg done in {seconds:.0f} s ({(target - done) / seconds:.2f} steps/s)", flush=True)


def balance_at(run: Path, step: int) -> dict[str, float]:
    """D's balance on the last log line at or before ``step``."""
    best: dict = {}
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("step", step + 1) <= step:
            best = row
    return {key: best.get(f"balance/{key}", float("nan")) for key in ("acc_real", "acc_fake", "logit_gap")}


def score_new(args: argparse.Namespace, run: Path, recipe: str, plugins: list[str]) -> None:
    rows = list(csv.DictReader(args.csv.open())) if args.csv.exists() else []
    seen = {
        int(r["step"])
        for r in rows
        if r["recipe"] == recipe and int(r["seed"]) == args.seed and int(r["metrics_samples"]) == args.metrics_samples
    }
    pending = (
        sorted((p for p in (run / "checkpoints").glob("ckpt-*.safetensors") if step_of(p) not in seen), key=step_of)
        if (run / "checkpoints").exists()
        else []
    )
    host = Host.create(plugins)
    for path in pending:
        t0 = time.perf_counter()
        trainer = Trainer.from_checkpoint(path, host, device=args.device)
        report = disentanglement_metrics(trainer, num_samples=args.metrics_samples, seed=args.metrics_seed)
        row = {
            "recipe": recipe,
            "seed": args.seed,
            "step": trainer.step,
            **{k: f"{report[k]['score']:.4f}" for k in METRICS},
            "metrics_samples": args.metrics_samples,
            **{k: f"{v:.4f}" for k, v in balance_at(run, trainer.step).items()},
            "eval_seconds": f"{time.perf_counter() - t0:.0f}",
        }
        append_row(args.csv, FIELDS, row)
        print(", ".join(f"{k} {row[k]}" for k in ("step", *METRICS, "acc_real", "acc_fake", "logit_gap")), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", type=Path, required=True, help="a preset, e.g. examples/configs/shapes_infogan.toml"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--runs", type=Path, required=True, help="folder for the run folders (outside the checkout: they outlive it)"
    )
    parser.add_argument("--leg-steps", type=int, default=20_000, help="steps to train in this call (0: score only)")
    parser.add_argument("--total", type=int, default=322_560, help="the schedule's length if the preset sets none")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (where the CPU has native bf16)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--metrics-samples", type=int, default=10_000)
    parser.add_argument("--metrics-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for scoring")
    parser.add_argument("--csv", type=Path, default=Path(__file__).parent / "results" / "shapes_curve.csv")
    args, extra = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with args.config.open("rb") as fh:
        preset = tomllib.load(fh)
    recipe = args.config.stem + ("-amp" if args.amp else "")
    run = args.runs / f"{recipe}-s{args.seed}"
    print("command: " + shlex.join([sys.executable, *sys.argv]), flush=True)
    if args.leg_steps > 0:
        train_leg(args, run, preset, extra)
    score_new(args, run, recipe, plugins_of(preset))


if __name__ == "__main__":
    main()
