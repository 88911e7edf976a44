"""ganrun: a generic GAN trainer whose every extension point is a pluggy hook.

Public API for plugin authors and for projects that embed pieces of it. Names listed in
``__all__`` are stable; the CHANGELOG records every change to them.
"""

from registry.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from registry.config import TrainConfig
from registry.plugins import Host, PluginError, UnknownNameError, get_plugin_manager, hookimpl

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
]
