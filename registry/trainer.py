"""Deprecated alias of ``registry.train`` (moved in ganrun 0.2.0, removed in 0.3.0); every name
warns with the import to use instead."""

from registry.deprecation import alias

_MOVED = {
    name: "registry.train"
    for name in (
        "DivergenceError",
        "Interrupted",
        "NoiseSampler",
        "Pass",
        "StepContext",
        "Trainer",
        "resolve_device",
        "seed_for",
    )
}
__all__ = sorted(_MOVED)
__getattr__, __dir__ = alias(__name__, _MOVED)
