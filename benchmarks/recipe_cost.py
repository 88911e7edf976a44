"""Training time of the digits recipes against the paper's recipe, on this machine.

The issue's budget for a recipe is at most 1.5 times the paper's training time. Each recipe is
a ``Trainer`` built from the main job's configuration plus the recipe's options; all of them
train in this one process, in timed blocks of ``--steps-per-rep`` steps, alternated (the order
rotates every repetition), so a machine shared with other jobs slows every arm alike. Prints
steps per second per recipe (median over repetitions) and the ratio of each recipe's time per
step to the paper's (median of the per-repetition ratios).

    OMP_NUM_THREADS=1 python benchmarks/recipe_cost.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from registry.config import TrainConfig
from registry.plugins import Host
from registry.train import Trainer

RECIPES = {
    "paper": {},
    "digits (q-augment + lr-decay)": {"q_augment": "affine,width=0.5"},
    "digits + q-real": {"q_augment": "affine,width=0.5", "q_real": 1.0},
    "paper + q-real": {"q_real": 1.0},
}


def build(extra: dict, batch_size: int) -> Trainer:
    host = Host.create(["infogan"])
    cfg = TrainConfig(
        noise_dim=62,
        noise="uniform",
        lr_g=1e-3,
        lr_d=2e-4,
        batch_size=batch_size,
        device="cpu",
        progress=False,
        extra={"code": ["categorical:10", "uniform:2"], "info_lambda": None, **extra},
    )
    host.run("ganrun_configure", config=cfg, registries=host.registries)
    return Trainer(cfg, host, Path(tempfile.gettempdir()) / "ganrun-recipe-cost-unused")  # train_step writes nothing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps-per-rep", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    trainers = {name: build(extra, args.batch_size) for name, extra in RECIPES.items()}
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.train_step()
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    names = list(trainers)
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            t0 = time.perf_counter()
            for _ in range(args.steps_per_rep):
                trainers[name].train_step()
            seconds[name].append((time.perf_counter() - t0) / args.steps_per_rep)
        print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{n} {1 / seconds[n][-1]:.2f}" for n in names), flush=True)
    print(f"\nbatch {args.batch_size}, threads {torch.get_num_threads()}, {args.reps} x {args.steps_per_rep} steps")
    for name in names:
        ratios = [s / p for s, p in zip(seconds[name], seconds["paper"])]
        print(
            f"{name:32s} {1 / statistics.median(seconds[name]):6.2f} steps/s   "
            f"time per step x paper: {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
