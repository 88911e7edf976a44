"""Checkpoints: the validated safetensors file (``file``), the tensors of modules and
optimizers (``codec``), a training run's persistence (``run``) and the save/restore pair
for hand-written loops (``embedding``)."""

from registry.checkpoint.atomic import atomic_write
from registry.checkpoint.codec import (
    OptimizerSettings,
    check_entries,
    check_optimizer_state,
    load_module_state,
    load_optimizer_state,
    module_state,
    optimizer_state,
)
from registry.checkpoint.file import (
    FORMAT_VERSION,
    MAX_HEADER_BYTES,
    CheckpointError,
    checkpoint_name,
    find_latest,
    latest_checkpoint,
    json_entry,
    read_checkpoint,
    read_metadata,
    require_keys,
    save_checkpoint,
    step_of,
)

__all__ = [
    "OptimizerSettings",
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "CheckpointError",
    "atomic_write",
    "check_entries",
    "check_optimizer_state",
    "checkpoint_name",
    "find_latest",
    "latest_checkpoint",
    "json_entry",
    "load_module_state",
    "load_optimizer_state",
    "module_state",
    "optimizer_state",
    "read_checkpoint",
    "read_metadata",
    "require_keys",
    "save_checkpoint",
    "step_of",
]
