"""Training: the trainer that builds a run and loops (``trainer``) and its collaborators: one
D+G update (``step``), the metric sums (``metrics``), the divergence check (``divergence``), the
run's checkpoints (``persistence``); every seeded random stream (``rng``), torch.distributed
setup (``distributed``), the networks both training and inference build (``networks``) and a
run's networks restored for use without its training state (``inference``)."""

from registry.errors import DivergenceError
from registry.train.inference import InferenceState, restore_for_inference
from registry.train.noise import NoiseSampler, sample_noise
from registry.train.rng import EpochSampler, seed_for, step_seed
from registry.train.step import Pass, StepContext
from registry.train.device import resolve_device
from registry.train.trainer import Interrupted, Trainer

__all__ = [
    "DivergenceError",
    "EpochSampler",
    "InferenceState",
    "Interrupted",
    "NoiseSampler",
    "Pass",
    "StepContext",
    "Trainer",
    "resolve_device",
    "restore_for_inference",
    "sample_noise",
    "seed_for",
    "step_seed",
]
