"""The cost of each per-step check the trainer makes, as a fraction of one training step.

The paper's MNIST InfoGAN step (``throughput.build_trainer``: batch 64, fp32, CPU), timed in one
process with this process's CPU time (``--threads 1``: other jobs on a busy machine barely
disturb it), each variant with one check taken out, the variants alternating in every
repetition so that drift hits them alike:

- ``full``: the step as it trains;
- ``no balance``: without the balance metrics (D's accuracy on real and fake, logit gap and
  spread, summed on the device);
- ``no peaks``: without the loss peaks (the largest magnitude of each loss term, for
  ``--max-loss``);
- ``plain hooks``: the loss hooks called as ``pm.hook.<name>(ctx=ctx)``, without the host's
  isolation and result checks (``Host.run``);
- the divergence check (``Trainer.check_divergence``: one device sync over the loss flags and
  every weight, buffer and optimizer state) is timed alone; it runs once per log line, so its
  cost per step is divided by ``--log-every``.

    python benchmarks/step_additions.py --threads 1 --reps 5

Prints the median milliseconds of each variant and, per check, the median over repetitions of
``(full - without) / full``: the check's share of a step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from throughput import build_trainer  # benchmarks/ is on sys.path when a script in it runs


class _PlainHooks:
    """A host whose ``run`` is pluggy's bare call (no isolation, no result checks)."""

    def __init__(self, host):
        self.pm = host.pm

    def run(self, hook_name, **kwargs):
        return getattr(self.pm.hook, hook_name)(**kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (each variant once per repetition)")
    parser.add_argument("--steps-per-rep", type=int, default=3)
    parser.add_argument(
        "--log-every", type=int, default=50, help="steps per divergence check (the default --log-every)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    trainer = build_trainer(args.batch_size, "cpu", amp=False, compile=False)
    stepper, metrics = trainer.stepper, trainer.metrics
    real = {"balance": metrics.log_balance, "peaks": metrics.watch, "host": stepper.host}
    variants = {
        "full": {},
        "no balance": {"balance": lambda real_, fake_: None},
        "no peaks": {"peaks": lambda name, value: None},
        "plain hooks": {"host": _PlainHooks(stepper.host)},
    }

    def use(swaps: dict) -> None:
        metrics.log_balance = swaps.get("balance", real["balance"])
        metrics.watch = swaps.get("peaks", real["peaks"])
        stepper.host = swaps.get("host", real["host"])

    def timed(n: int) -> float:
        start = time.process_time()
        for _ in range(n):
            trainer.train_step()
            trainer.step += 1
        return (time.process_time() - start) / n

    for swaps in variants.values():  # warm up every path
        use(swaps)
        timed(2)
    times: dict[str, list[float]] = {name: [] for name in variants}
    check: list[float] = []
    for rep in range(args.reps):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for name in order:
            use(variants[name])
            times[name].append(timed(args.steps_per_rep))
        use({})
        start = time.process_time()
        trainer.check_divergence(trainer.step)
        check.append(time.process_time() - start)
    use({})

    full = times["full"]
    print(f"batch {args.batch_size}, {args.threads} thread(s), {args.reps} reps x {args.steps_per_rep} steps, CPU time")
    for name, values in times.items():
        print(f"  {name:<12} {statistics.median(values) * 1e3:8.1f} ms/step")
    labels = {"no balance": "balance metrics", "no peaks": "loss peaks", "plain hooks": "host.run hooks"}
    for name, label in labels.items():
        shares = [(f - w) / f for f, w in zip(full, times[name])]
        print(f"  {label:<18} {statistics.median(shares):+7.2%} of a step")
    per_step = statistics.median(check) / args.log_every / statistics.median(full)
    print(
        f"  divergence check   {statistics.median(check) * 1e3:.2f} ms per check = {per_step:+.3%} of a step "
        f"at --log-every {args.log_every}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
