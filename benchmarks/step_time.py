"""The CPU time of one ``Trainer.train_step`` of the paper's MNIST InfoGAN (batch 64, fp32, one
thread), for comparing two checkouts on a machine too busy for ``throughput.py``: process CPU
time, which other jobs barely disturb, and nothing else measured (no reference step, no
ceilings). Run it once per checkout at the same time:

    PYTHONPATH=BEFORE python benchmarks/step_time.py BEFORE 5 &
    PYTHONPATH=AFTER python benchmarks/step_time.py AFTER 5

``ROOT`` is the checkout whose ``benchmarks/throughput.py`` builds the trainer; the number is the
count of timed blocks of 3 steps (after 2 untimed steps). Prints each block's ms/step and the median.
"""

import statistics
import sys
import time

import torch

torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1] + "/benchmarks")
from throughput import build_trainer  # noqa: E402 - from the checkout named on the command line

trainer = build_trainer(64, "cpu", amp=False, compile=False)


def block(n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        trainer.train_step()
        trainer.step += 1
    return (time.process_time() - start) / n


block(2)
times = [block(3) for _ in range(int(sys.argv[2]))]
print(
    sys.argv[1],
    "ms/step blocks:",
    [round(t * 1e3, 1) for t in times],
    "median",
    round(statistics.median(times) * 1e3, 1),
    flush=True,
)
