"""ganrun: a generic GAN trainer whose every extension point is a pluggy hook.

Public API for plugin authors and for projects that embed pieces of it. Names listed in
``__all__`` are stable; the CHANGELOG records every change to them.
"""

from registry.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from registry.checkpoint import load_module_state, load_optimizer_state, module_state, optimizer_state
from registry.config import TrainConfig
from registry.cpu.linear import Linear, use_onednn_linear
from registry.plugins import Host, PluginError, UnknownNameError, get_plugin_manager, hookimpl
from registry.checkpoint.embedding import load_training_state, save_training_state

__all__ = [
    "CheckpointError",
    "Host",
    "PluginError",
    "TrainConfig",
    "UnknownNameError",
    "get_plugin_manager",
    "hookimpl",
    "read_checkpoint",
    "save_checkpoint",
    # embedding: save and restore a hand-written loop's modules and optimizers
    "load_module_state",
    "load_optimizer_state",
    "load_training_state",
    "module_state",
    "optimizer_state",
    "save_training_state",
    # fp32 CPU linear layers through oneDNN (registry/linear.py)
    "Linear",
    "use_onednn_linear",
]
