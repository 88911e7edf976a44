"""InfoGAN on the procedural ``shapes`` dataset: how disentangled are Q's code estimates?

For each seed it trains ``ganrun --plugin infogan train --dataset shapes`` with five U(-1, 1)
codes (``--code uniform:5``; ``--shape-code`` adds ``categorical:3`` for the shape), then
scores the final checkpoint with disentanglement_lib's four metrics on fresh ground truth
from the full factor grid (``infogan_plugin.evaluate.disentanglement_metrics``): MIG, the
FactorVAE score, DCI disentanglement and SAP, each with the seconds it took.

    python benchmarks/shapes_disentanglement.py --steps 20000 --seeds 0 1 2
    python benchmarks/shapes_disentanglement.py --steps 200 --seeds 0 --batch-size 32 --metrics-samples 100

``--save-every N`` also scores the checkpoints every N steps, one line each, to show the trend.

Options it does not know go to ``ganrun train`` unchanged (e.g. ``--noise-dim 5 --lr-g 2e-4``).
``--plugin infogan_cr`` trains InfoGAN-CR instead (its ``--cr-*`` options pass through too):

    python benchmarks/shapes_disentanglement.py --plugin infogan_cr --cr-weight 2 --steps 6000
``--metrics-samples 10000`` (the default) is disentanglement_lib's size: the FactorVAE score
alone then passes about 960,000 rendered images through D, minutes on a GPU and far longer on
a CPU; a few hundred gives a quick, noisier reading.

Prints the command line and budget, one line per seed and the median/min/max over seeds;
writes ``summary.json`` into the output folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from infogan_plugin.evaluate import disentanglement_metrics
from registry.plugins import Host
from registry.train import Trainer

METRICS = (("mig", "MIG"), ("factor_vae", "FactorVAE"), ("dci", "DCI"), ("sap", "SAP"))


def train(out: Path, seed: int, args: argparse.Namespace, extra: list[str]) -> float:
    codes = ["--code", "uniform:5"] + (["--code", "categorical:3"] if args.shape_code else [])
    plugins = [flag for name in ["infogan", *args.plugin] for flag in ("--plugin", name)]
    cmd = [
        sys.executable,
        "-c",
        "from registry.cli import main; main()",
        *plugins,
        "train",
        "--dataset",
        "shapes",
        *codes,
        "--seed",
        str(seed),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--out",
        str(out),
        "--keep-checkpoints",
        "0" if args.save_every else "1",
        "--save-every",
        str(args.save_every or args.steps),
        "--sample-every",
        str(args.save_every or args.steps),
        "--overwrite",
        "--no-progress",
        *extra,
    ]
    print("$ " + shlex.join(cmd[3:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def evaluate(run: Path, args: argparse.Namespace) -> dict:
    """Scores of one checkpoint file (or of a run folder's newest)."""
    trainer = Trainer.from_checkpoint(run, Host.create(["infogan", *args.plugin]), device=args.device)
    report = disentanglement_metrics(trainer, num_samples=args.metrics_samples, seed=args.metrics_seed)
    report["step"] = trainer.step
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=20_000, help="training steps per seed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shape-code", action="store_true", help="add a categorical:3 code for the shape")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="another plugin beside infogan, repeatable (e.g. infogan_cr, whose options such "
        "as --cr-weight are then passed on like any other)",
    )
    parser.add_argument("--device", default="auto", help="training and evaluation device")
    parser.add_argument(
        "--metrics-samples",
        type=int,
        default=10_000,
        help="disentanglement_lib's sizes scaled by this / 10,000 (see ganrun eval --help)",
    )
    parser.add_argument("--metrics-seed", type=int, default=0)
    parser.add_argument(
        "--save-every",
        type=int,
        default=0,
        help="also score the checkpoints every this many steps (default: the final one only)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-shapes"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads for evaluation")
    args, extra = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print(
        f"budget: {len(args.seeds)} seed(s) x {args.steps} steps at batch {args.batch_size} on {args.device}; "
        f"codes uniform:5{' + categorical:3' if args.shape_code else ''}; metrics at {args.metrics_samples} "
        f"samples (disentanglement_lib: 10000); extra train options: {extra or 'none'}",
        flush=True,
    )

    rows = []
    for seed in args.seeds:
        run = args.out / f"seed{seed}"
        train_seconds = train(run, seed, args, extra)
        for path in sorted((run / "checkpoints").glob("ckpt-*.safetensors"))[:-1] if args.save_every else []:
            t0 = time.perf_counter()
            report = evaluate(path, args)
            shown = ", ".join(f"{label} {report[key]['score']:.3f}" for key, label in METRICS)
            print(f"seed {seed}: step {report['step']}: {shown} ({time.perf_counter() - t0:.0f} s)", flush=True)
        t0 = time.perf_counter()
        report = evaluate(run, args)
        eval_seconds = time.perf_counter() - t0
        scores = {key: report[key]["score"] for key, _ in METRICS}
        seconds = {key: report[key]["seconds"] for key, _ in METRICS}
        rows.append(
            {
                "seed": seed,
                "step": report["step"],
                "train_seconds": train_seconds,
                "eval_seconds": eval_seconds,
                "scores": scores,
                "seconds": seconds,
                "report": report,
            }
        )
        shown = ", ".join(f"{label} {scores[key]:.3f} ({seconds[key]:.1f} s)" for key, label in METRICS)
        print(
            f"seed {seed}: step {report['step']}, trained in {train_seconds:.0f} s; {shown}; "
            f"codes {', '.join(report['encoder'])}; DCI model {report['dci']['importance_model']}",
            flush=True,
        )

    print(f"\nover {len(rows)} seed(s)")
    for key, label in METRICS:
        values = [row["scores"][key] for row in rows]
        print(f"{label:10s} median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": [sys.executable, *sys.argv],
        "steps": args.steps,
        "batch_size": args.batch_size,
        "device": args.device,
        "metrics_samples": args.metrics_samples,
        "extra": extra,
        "runs": rows,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
