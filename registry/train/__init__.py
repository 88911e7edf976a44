"""Training: the trainer that builds a run and loops (``trainer``), one D+G update
(``step``), every seeded random stream (``rng``) and torch.distributed setup
(``distributed``)."""

import importlib

# Where each public name lives; imported on first use (PEP 562), so importing one
# submodule (say registry.checkpoint.run, which needs registry.train.step) never drags in
# the trainer and its imports in a cycle.
_EXPORTS = {
    "DivergenceError": "registry.train.step",
    "EpochSampler": "registry.train.rng",
    "Interrupted": "registry.train.trainer",
    "NoiseSampler": "registry.train.noise",
    "Pass": "registry.train.step",
    "StepContext": "registry.train.step",
    "Trainer": "registry.train.trainer",
    "resolve_device": "registry.train.trainer",
    "sample_noise": "registry.train.noise",
    "seed_for": "registry.train.rng",
    "step_seed": "registry.train.rng",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'registry.train' has no attribute {name!r}")
