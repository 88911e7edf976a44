"""How long loading a trained run for use takes, and how much memory: ``generate`` through
``load_run`` (the checkpoint alone) against the reference path that restores a whole trainer
(``Trainer.from_checkpoint``: dataset, optimizers and the sampler's training state), which
``load_run`` used before.

Each measurement is a fresh interpreter that imports ganrun, loads the run, draws ``--n``
images and reports its seconds per phase (wall and CPU time) and its peak resident memory
(``ru_maxrss``), so neither path profits from the other's caches. The command line (``ganrun generate``, one
process each) is timed from outside too.

    OMP_NUM_THREADS=1 python benchmarks/load_run.py RUN
    OMP_NUM_THREADS=1 python benchmarks/load_run.py --make-run runs/bench-digits   # trains 2 steps first

``--make-run DIR`` trains the default InfoGAN (dcgan28 on the bundled ``digits``, 10,000
images) for two steps into DIR, a run whose dataset is what a real MNIST run reads.
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

PROBE = r"""
import json, resource, sys, time
c0, t0 = time.process_time(), time.perf_counter()
import torch
torch.set_num_threads(1)
import infogan_plugin
from registry import Host, find_checkpoint
c1, t1 = time.process_time(), time.perf_counter()
path, how, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if how == "reference":
    from registry.train import Trainer
    file = find_checkpoint(path)
    host = Host.create(["infogan"])
    run = infogan_plugin.InfoGANRun(Trainer.from_checkpoint(file, host, device="cpu"), file)
else:
    run = infogan_plugin.load_run(path)
c2, t2 = time.process_time(), time.perf_counter()
images = run.generate(n, seed=0)
c3, t3 = time.process_time(), time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2,
                  "import_cpu_s": c1 - c0, "load_cpu_s": c2 - c1, "generate_cpu_s": c3 - c2,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def probe(run: Path, how: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(run), how, str(n)], capture_output=True, text=True, env=_env(), check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli(run: Path, n: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "registry", "--plugin", "infogan", "generate", str(run), "--n", str(n)]
            + ["--out", out],
            capture_output=True,
            env=_env(),
            check=True,
        )
        return time.perf_counter() - started


def make_run(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "registry", "--plugin", "infogan", "train", "--out", str(folder), "--steps", "2"]
        + ["--batch-size", "16", "--save-every", "2", "--sample-every", "2", "--log-every", "2", "--no-progress"],
        env=_env(),
        check=True,
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", help="a run folder or checkpoint file")
    parser.add_argument("--make-run", type=Path, metavar="DIR", help="train a 2-step digits run into DIR first")
    parser.add_argument("--n", type=int, default=64, help="images to generate (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per path; medians are shown (default 3)")
    args = parser.parse_args()
    if (args.run is None) == (args.make_run is None):
        parser.error("give a RUN or --make-run DIR")
    run = args.run or make_run(args.make_run)

    rows = {}
    for how in ("reference", "checkpoint"):
        samples = []
        for _ in range(args.repeats):
            samples.append(probe(run, how, args.n))
            print(f"{how}: {json.dumps(samples[-1])}", file=sys.stderr, flush=True)
        rows[how] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    command = statistics.median(cli(run, args.n) for _ in range(args.repeats))

    print(f"{run}: generate {args.n} images, median of {args.repeats} fresh processes each (CPU, 1 thread)")
    print("seconds: wall (CPU time of the process, the steadier figure on a shared machine)")
    print(f"{'path':<34} {'import':>15} {'load':>15} {'generate':>15} {'peak RSS MB':>12}")
    names = {"reference": "Trainer.from_checkpoint (before)", "checkpoint": "load_run, checkpoint alone"}
    for how, row in rows.items():
        cells = [f"{row[f'{phase}_s']:.2f} ({row[f'{phase}_cpu_s']:.2f})" for phase in ("import", "load", "generate")]
        print(f"{names[how]:<34} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15} {row['peak_rss_mb']:>12.0f}")
    print(f"ganrun --plugin infogan generate (whole process): {command:.2f} s")


if __name__ == "__main__":
    main()
