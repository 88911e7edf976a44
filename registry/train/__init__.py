"""Training: the trainer that builds a run and loops (``trainer``), one D+G update
(``step``), every seeded random stream (``rng``) and torch.distributed setup
(``distributed``)."""

from registry.train.noise import NoiseSampler
from registry.train.rng import EpochSampler, seed_for, step_seed
from registry.train.step import DivergenceError, Pass, StepContext
from registry.train.trainer import Interrupted, Trainer, resolve_device

__all__ = [
    "DivergenceError",
    "EpochSampler",
    "Interrupted",
    "NoiseSampler",
    "Pass",
    "StepContext",
    "Trainer",
    "resolve_device",
    "seed_for",
    "step_seed",
]
