"""InfoGAN on the built-in MNIST digits: does the categorical code capture the classes?

For each seed it trains the paper's MNIST setting (``ganrun --plugin infogan``, the main
job's defaults unless overridden), then evaluates every saved checkpoint: L_I of the
categorical code against H = ln 10 on 10,000 generated samples, and the unsupervised
classification accuracy of argmax Q(c|x) on the 10,000 labelled digits (Hungarian
matching). ``--baseline`` adds the same run with ``--lambda 0`` (the paper's Figure 1
baseline: Q learns to read the codes, G gets no information gradient).

    python benchmarks/mnist_quality.py --seeds 0 1 2 --baseline

Any other option is passed on to ``ganrun train`` (for example ``--code uniform:2,lambda=1``
or ``--amp``), so a variant of the main job is measured the same way.

Prints one line per checkpoint and a summary (median and spread over seeds); writes
``summary.json`` into the output folder and appends one row per seed and checkpoint to
``--csv`` (default ``benchmarks/results/mnist_seeds.csv``) as soon as that seed is scored, so
an interrupted sweep loses nothing measured. Rerunning the same command continues: a seed
with rows for ``--recipe`` in the CSV is skipped, an unfinished run folder is resumed from its
newest checkpoint (``--auto-resume``, the exact resume) instead of starting over.

    OMP_NUM_THREADS=1 python benchmarks/mnist_quality.py --recipe digits --seeds 0 \
        --threads 1 --save-every 1000 --out ../runs/mnist --config examples/configs/mnist_digits.toml --amp
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from infogan_plugin.evaluate import classification_accuracy, information_bounds
from registry.plugins import Host
from registry.train import Trainer


def train(out: Path, seed: int, steps: int | None, extra: list[str]) -> float:
    cmd = [
        sys.executable,
        "-c",
        "from registry.cli import main; main()",
        "--plugin",
        "infogan",
        "train",
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--keep-checkpoints",
        "0",
        "--auto-resume",
        "--no-progress",
        *extra,
    ]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    # Wall time over every leg of the run (an interrupted run resumes and adds its next leg).
    ledger = out / "train_seconds.json"
    before = json.loads(ledger.read_text())["seconds"] if ledger.exists() else 0.0
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    total = before + time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    ledger.write_text(json.dumps({"seconds": total}))
    return total


CSV_COLUMNS = ["recipe", "seed", "step", "accuracy", "L_I", "H", "L_I_over_H", "train_seconds", "threads", "options"]


def scored_seeds(path: Path, recipe: str) -> set[int]:
    if not path.exists():
        return set()
    with path.open(newline="") as f:
        return {int(row["seed"]) for row in csv.DictReader(f) if row["recipe"] == recipe}


def append_rows(path: Path, recipe: str, seed: int, wall: float, options: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    "recipe": recipe,
                    "seed": seed,
                    "step": row["step"],
                    "accuracy": f"{row['accuracy']:.4f}",
                    "L_I": f"{row['L_I']:.4f}",
                    "H": f"{row['H']:.4f}",
                    "L_I_over_H": f"{row['L_I'] / row['H']:.4f}",
                    "train_seconds": f"{wall:.0f}",
                    "threads": os.environ.get("OMP_NUM_THREADS", ""),
                    "options": " ".join(options),
                }
            )


def evaluate(run: Path, samples: int) -> list[dict]:
    host = Host.create(["infogan"])
    rows = []
    for path in sorted((run / "checkpoints").glob("ckpt-*.safetensors")):
        trainer = Trainer.from_checkpoint(path, host, device="cpu")
        info = information_bounds(trainer, n=samples)
        acc = classification_accuracy(trainer)
        cat = next(name for name, slot in ((s.name, s) for s in trainer.sampler.slots) if slot.code.discrete)
        rows.append(
            {"step": trainer.step, "L_I": info[cat]["L_I"], "H": info[cat]["H"], "accuracy": acc[cat]["accuracy"]}
        )
        print(
            f"  {run.name} step {trainer.step:6d}: L_I {info[cat]['L_I']:.3f} / {info[cat]['H']:.3f} nats, "
            f"accuracy {acc[cat]['accuracy']:.2%}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the main job's)")
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--samples", type=int, default=10_000, help="generated samples for L_I")
    parser.add_argument("--baseline", action="store_true", help="also run --lambda 0 for each seed")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-mnist"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads for evaluation")
    parser.add_argument("--recipe", default="paper", help="the recipe's name in the CSV rows")
    parser.add_argument(
        "--csv", type=Path, default=Path("benchmarks/results/mnist_seeds.csv"), help="results file (rows appended)"
    )
    args, train_flags = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    summary: dict[str, list] = {"infogan": [], "lambda0": []}
    variants = [("infogan", [])] + ([("lambda0", ["--lambda", "0"])] if args.baseline else [])
    for seed in args.seeds:
        for variant, flags in variants:
            recipe = args.recipe if variant == "infogan" else f"{args.recipe}-lambda0"
            if seed in scored_seeds(args.csv, recipe):
                print(f"{recipe} seed {seed}: already in {args.csv}, skipped", flush=True)
                continue
            run = args.out / f"{args.recipe}-{variant}-seed{seed}"
            wall = train(run, seed, args.steps, ["--save-every", str(args.save_every), *train_flags, *flags])
            print(f"{variant} seed {seed}: trained in {wall:.0f} s", flush=True)
            rows = evaluate(run, args.samples)
            append_rows(args.csv, recipe, seed, wall, [*train_flags, *flags], rows)
            summary[variant].append({"seed": seed, "train_seconds": wall, "checkpoints": rows})

    print("\nfinal checkpoint per seed")
    for variant, runs in summary.items():
        if not runs:
            continue
        accs = [r["checkpoints"][-1]["accuracy"] for r in runs]
        lis = [r["checkpoints"][-1]["L_I"] for r in runs]
        for r in runs:
            last = r["checkpoints"][-1]
            print(
                f"{variant:8s} seed {r['seed']}: step {last['step']}, L_I {last['L_I']:.3f} nats "
                f"({last['L_I'] / last['H']:.1%} of H), accuracy {last['accuracy']:.2%}, "
                f"train {r['train_seconds']:.0f} s"
            )
        print(
            f"{variant:8s} median accuracy {statistics.median(accs):.2%} (min {min(accs):.2%}, max {max(accs):.2%}); "
            f"median L_I {statistics.median(lis):.3f} nats (min {min(lis):.3f}, max {max(lis):.3f})"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"command": sys.argv, **summary}, indent=2))


if __name__ == "__main__":
    main()
