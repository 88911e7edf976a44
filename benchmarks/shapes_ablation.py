"""The disentanglement recipe's pieces one at a time, on `shapes`, at one fixed step count.

Row 0 is the best recipe measured before InfoGAN-CR's pieces were built (docs/results.md: conv64,
five U(-1, 1) codes, five noise values, lambda 0.05, G 1e-3, D 2e-4, the paper's Q head with
batch norm); each further row adds one piece to the row before, the last being InfoGAN-CR's
whole setting (``examples/configs/shapes_infogan.toml``) at the same length. Every row trains
on batches drawn fresh from the whole grid. Each finished row is scored with
disentanglement_lib's four metrics at ``--metrics-samples`` and appended to a CSV with D's
balance averaged over the last fifth of the run; rows already in the CSV are skipped and an
interrupted row resumes (``--auto-resume``), so the same command completes the table.

    OMP_NUM_THREADS=1 python benchmarks/shapes_ablation.py --runs ../runs --steps 4000 --seed 0 --amp
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from infogan_plugin.evaluate import disentanglement_metrics
from shapes_curve import append_row  # benchmarks/ is on sys.path when a script in it runs
from registry.plugins import Host
from registry.train import Trainer

BASE = [
    "--dataset",
    "shapes",
    "--model",
    "conv64",
    "--code",
    "uniform:5",
    "--noise",
    "uniform",
    "--noise-dim",
    "5",
    "--lambda",
    "0.05",
    "--batch-size",
    "64",
    "--lr-g",
    "1e-3",
    "--lr-d",
    "2e-4",
    "--beta1",
    "0.5",
]
ROWS = [
    ("0 before: paper rates, BN Q", []),
    ("1 + spectral norm", ["--spectral-norm"]),
    ("2 + D and Q at 2e-3", ["--spectral-norm", "--lr-d", "2e-3"]),
    ("3 + two G steps", ["--spectral-norm", "--lr-d", "2e-3", "--g-steps", "2"]),
    (
        "4 + InfoGAN-CR's Q (= shapes_infogan.toml)",
        ["--spectral-norm", "--lr-d", "2e-3", "--g-steps", "2", "--q-norm", "none", "--q-slope", "0.2"],
    ),
]
FIELDS = [
    "row",
    "seed",
    "steps",
    "mig",
    "factor_vae",
    "dci",
    "sap",
    "metrics_samples",
    "acc_real",
    "acc_fake",
    "logit_gap",
    "train_seconds",
    "steps_per_sec",
    "flags",
]
METRICS = ("mig", "factor_vae", "dci", "sap")


def late_balance(run: Path, steps: int) -> dict[str, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    late = [r for r in rows if r["step"] > 0.8 * steps]
    return {k: statistics.fmean(r[f"balance/{k}"] for r in late) for k in ("acc_real", "acc_fake", "logit_gap")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="folder for the run folders")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--rows", type=int, nargs="*", default=None, help="row numbers to run (default: all)")
    parser.add_argument("--metrics-samples", type=int, default=10_000)
    parser.add_argument("--csv", type=Path, default=Path(__file__).parent / "results" / "shapes_ablation.csv")
    args = parser.parse_args()
    print("command: " + shlex.join([sys.executable, *sys.argv]), flush=True)
    done = set()
    if args.csv.exists():
        done = {(r["row"], int(r["seed"]), int(r["steps"])) for r in csv.DictReader(args.csv.open())}
    for number, (name, flags) in enumerate(ROWS):
        if args.rows is not None and number not in args.rows or (name, args.seed, args.steps) in done:
            continue
        run = args.runs / f"ablation-{number}-s{args.seed}-{args.steps}"
        cmd = [
            sys.executable,
            "-c",
            "from registry.cli import main; main()",
            "--plugin",
            "infogan",
            "train",
            *BASE,
            *flags,
            "--steps",
            str(args.steps),
            "--seed",
            str(args.seed),
            "--out",
            str(run),
            "--auto-resume",
            "--save-every",
            "1000",
            "--sample-every",
            "1000",
            "--log-every",
            "100",
            "--no-progress",
            *(["--amp"] if args.amp else []),
        ]
        print(f"row {name}\n$ " + shlex.join(["ganrun", *cmd[3:]]), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        train_seconds = time.perf_counter() - t0
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        speed = statistics.median(r["steps_per_sec"] for r in rows)
        trainer = Trainer.from_checkpoint(run, Host.create(["infogan"]), device="cpu")
        report = disentanglement_metrics(trainer, num_samples=args.metrics_samples, seed=0)
        row = {
            "row": name,
            "seed": args.seed,
            "steps": args.steps,
            **{k: f"{report[k]['score']:.4f}" for k in METRICS},
            "metrics_samples": args.metrics_samples,
            **{k: f"{v:.4f}" for k, v in late_balance(run, args.steps).items()},
            "train_seconds": f"{train_seconds:.0f}",
            "steps_per_sec": f"{speed:.2f}",
            "flags": " ".join(flags),
        }
        append_row(args.csv, FIELDS, row)
        print(", ".join(f"{k} {row[k]}" for k in ("row", *METRICS, "acc_real", "acc_fake", "logit_gap")), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
