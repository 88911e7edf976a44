"""How long DCI takes at disentanglement_lib's sizes, on the ``shapes`` factor grid.

DCI fits scikit-learn's ``GradientBoostingClassifier()`` once per factor, as disentanglement_lib
does: 100 boosting stages of one depth-3 tree per class, so the ``shapes`` factors (3, 6, 40, 32
and 32 values) cost 113 trees per stage, 11,300 in all, each grown on ``--num-train`` points.
This times that on synthetic codes with a known answer, so no trained run is needed:

- ``aligned``: one dimension per factor, the factor's index scaled to [0, 1] plus N(0, 0.002^2)
  noise (DCI near 1);
- ``rotated``: the same codes, standardised, under a fixed random rotation (DCI low).

    OMP_NUM_THREADS=1 python benchmarks/dci_timing.py                      # 10,000 / 5,000 points
    OMP_NUM_THREADS=1 python benchmarks/dci_timing.py --num-train 2000 --encoders aligned

Prints, per encoder, the wall-clock and process CPU seconds of the whole metric, the CPU
seconds of each factor's fit, and the scores. scikit-learn's tree building is single-threaded,
so the CPU seconds are what one core spends.
"""

from __future__ import annotations

import argparse
import time

import torch

from registry.eval import disentanglement as dis
from registry.data import shapes


def aligned(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    top = torch.tensor(shapes.factor_sizes(), dtype=torch.float64) - 1

    def encode(factors: torch.Tensor) -> torch.Tensor:
        x = factors.double() / top
        return x + 0.002 * torch.randn(x.shape, generator=gen, dtype=torch.float64)

    return encode


def rotated(seed: int = 0):
    base = aligned(seed)
    q, r = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    rotation = q * torch.sign(torch.diagonal(r))

    def encode(factors: torch.Tensor) -> torch.Tensor:
        return ((base(factors) - 0.5) / 0.3) @ rotation.T

    return encode


ENCODERS = {"aligned": aligned, "rotated": rotated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-train", type=int, default=10_000, help="training points (disentanglement_lib: 10,000)")
    parser.add_argument("--num-test", type=int, default=None, help="test points (default: half of --num-train)")
    parser.add_argument("--encoders", nargs="+", choices=sorted(ENCODERS), default=["aligned", "rotated"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the encoders only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    num_test = args.num_test or max(1, args.num_train // 2)

    fits: list[float] = []
    fit = dis.gbt_importance

    def timed_fit(*a, **kw):
        t0 = time.process_time()
        try:
            return fit(*a, **kw)
        finally:
            fits.append(time.process_time() - t0)

    dis.gbt_importance = timed_fit
    print(
        f"DCI on the shapes factors {shapes.factor_sizes()} ({', '.join(shapes.FACTOR_NAMES)}), "
        f"{args.num_train} training / {num_test} test points, seed {args.seed}",
        flush=True,
    )
    for name in args.encoders:
        fits.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        result = dis.dci(
            ENCODERS[name](args.seed),
            shapes.factor_sizes(),
            shapes.sample_factors,
            lambda f: f,
            seed=args.seed,
            num_train=args.num_train,
            num_test=num_test,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        per_factor = ", ".join(f"{n} {s:.1f}" for n, s in zip(shapes.FACTOR_NAMES, fits))
        print(
            f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU (fits, CPU s: {per_factor}); "
            f"disentanglement {result.score:.3f}, completeness {result.details['completeness']:.3f}, "
            f"informativeness train {result.details['informativeness_train']:.3f} "
            f"test {result.details['informativeness_test']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
