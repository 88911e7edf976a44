"""How fast is one step of the `shapes` disentanglement recipe, piece by piece?

Builds the trainer of ``examples/configs/shapes_infogan.toml`` (conv64, batch 64) and times
``Trainer.train_step`` for the recipe's pieces added one at a time, in fp32 and under bf16
autocast, on one thread with the process CPU-time clock (robust on a machine shared with
other jobs). The variants alternate within each repetition and the figure printed is the
median; ratios are against the plain step of the same precision, measured in the same process.

    python benchmarks/shapes_step.py                 # about 2 minutes
    python benchmarks/shapes_step.py --profile       # also the top operators of the full recipe

Prints steps/s per variant, the ratio to the plain step, and the hours the 322,560-step
schedule would take at that speed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

import torch

from registry.config import TrainConfig
from registry.plugins import Host
from registry.train import Trainer

PRESET = Path(__file__).resolve().parent.parent / "examples" / "configs" / "shapes_infogan.toml"
VARIANTS = {
    "plain (no SN, 1 G step, BN Q)": dict(spectral_norm=False, g_steps=1, q_norm="batch", q_slope=0.1),
    "+ spectral norm": dict(spectral_norm=True, g_steps=1, q_norm="batch", q_slope=0.1),
    "+ 2 G steps": dict(spectral_norm=True, g_steps=2, q_norm="batch", q_slope=0.1),
    "recipe (+ their Q)": dict(spectral_norm=True, g_steps=2, q_norm="none", q_slope=0.2),
}
SCHEDULE = 322_560


def build(variant: dict, amp: bool) -> Trainer:
    preset = tomllib.loads(PRESET.read_text())
    core = {k: v for k, v in preset.items() if k in TrainConfig.__dataclass_fields__}
    extra = {k: v for k, v in preset.items() if k not in core}
    core.update(
        spectral_norm=variant["spectral_norm"], g_steps=variant["g_steps"], amp=amp, device="cpu", progress=False
    )
    extra.update(q_norm=variant["q_norm"], q_slope=variant["q_slope"])
    host = Host.create(["infogan"])
    cfg = TrainConfig(**core, extra=extra)
    host.run("ganrun_configure", config=cfg, registries=host.registries)
    return Trainer(cfg, host, Path(tempfile.gettempdir()) / "ganrun-shapes-step-unused")


def timed(trainer: Trainer, steps: int) -> float:
    t0 = time.process_time()
    for _ in range(steps):
        trainer.train_step()
        trainer.step += 1
    return steps / (time.process_time() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repetition")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, process CPU time, batch 64, {args.reps} x {args.steps} steps")
    for amp in (False, True):
        trainers = {name: build(v, amp) for name, v in VARIANTS.items()}
        for t in trainers.values():
            timed(t, 3)  # warm-up
        speeds: dict[str, list[float]] = {name: [] for name in trainers}
        for _ in range(args.reps):
            for name, t in trainers.items():
                speeds[name].append(timed(t, args.steps))
        base = statistics.median(speeds[next(iter(speeds))])
        amp_on = next(iter(trainers.values())).amp
        fallback = "" if amp_on or not amp else " (requested; not native here: fp32)"
        print(f"\n{'bf16 autocast' if amp else 'fp32'}{fallback}")
        for name, values in speeds.items():
            med = statistics.median(values)
            print(
                f"  {name:32s} {med:6.2f} steps/s ({min(values):.2f}-{max(values):.2f})  x{med / base:.2f}  "
                f"schedule {SCHEDULE / med / 3600:5.1f} h"
            )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        trainer = build(VARIANTS["recipe (+ their Q)"], True)
        timed(trainer, 3)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            timed(trainer, 10)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
