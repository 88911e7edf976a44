"""Training: the trainer that builds a run and loops (``trainer``), one D+G update
(``step``), every seeded random stream (``rng``), torch.distributed setup
(``distributed``), the networks both build (``networks``) and a run's networks restored for
use without its training state (``inference``)."""

import importlib

# Where each public name lives; imported on first use (PEP 562), so importing one
# submodule (say registry.checkpoint.run, which needs registry.train.step) never drags in
# the trainer and its imports in a cycle.
_EXPORTS = {
    "DivergenceError": "registry.train.step",
    "EpochSampler": "registry.train.rng",
    "InferenceState": "registry.train.inference",
    "Interrupted": "registry.train.trainer",
    "NoiseSampler": "registry.train.noise",
    "Pass": "registry.train.step",
    "StepContext": "registry.train.step",
    "Trainer": "registry.train.trainer",
    "resolve_device": "registry.train.device",
    "restore_for_inference": "registry.train.inference",
    "sample_noise": "registry.train.noise",
    "seed_for": "registry.train.rng",
    "step_seed": "registry.train.rng",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'registry.train' has no attribute {name!r}")
