"""ganrun: a generic GAN trainer whose every extension point is a pluggy hook.

Public API for plugin authors and for projects that embed pieces of it. Names listed in
``__all__`` are stable; the CHANGELOG records every change to them.
"""

from registry.checkpoint import CheckpointError, atomic_write, find_latest, read_checkpoint, save_checkpoint
from registry.checkpoint import load_module_state, load_optimizer_state, module_state, optimizer_state
from registry.checkpoint.embedding import load_training_state, save_training_state
from registry.checkpoint.run import choose_checkpoint, find_checkpoint, run_dir_of
from registry.config import TrainConfig
from registry.cpu.linear import Linear, use_onednn_linear
from registry.data import DatasetError, ImageDataset, resize_uint8, to_training_tensor, uint8_to_float
from registry.plugins import Host, PluginError, UnknownNameError, get_plugin_manager, hookimpl
from registry.report.images import make_grid, save_grid
from registry.run import Run, atomic_output, load_run
from registry.run_plugins import MissingPluginError, recorded_plugins, require_run_plugins
from registry.train.noise import sample_noise
from registry.train.rng import seed_for, step_seed

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
    # files and runs: one atomic write; a run folder's newest checkpoint and a checkpoint's run folder
    "atomic_write",
    "choose_checkpoint",
    "find_checkpoint",
    "find_latest",
    "run_dir_of",
    # data: what dataset plugins return, and the image conversions the trainer uses
    "DatasetError",
    "ImageDataset",
    "resize_uint8",
    "to_training_tensor",
    "uint8_to_float",
    # random streams: the seeds of a run (registry/train/rng.py) and the noise z
    "sample_noise",
    "seed_for",
    "step_seed",
    # pictures
    "make_grid",
    "save_grid",
    # embedding: save and restore a hand-written loop's modules and optimizers
    "load_module_state",
    "load_optimizer_state",
    "load_training_state",
    "module_state",
    "optimizer_state",
    "save_training_state",
    # fp32 CPU linear layers through oneDNN (registry/cpu/linear.py)
    "Linear",
    "use_onednn_linear",
    # a trained run back in Python (registry/run.py)
    "Run",
    "atomic_output",
    "load_run",
    # the plugins a run was trained with, and the one message for a missing one (registry/run_plugins.py)
    "MissingPluginError",
    "recorded_plugins",
    "require_run_plugins",
]
