"""A run's networks restored from a checkpoint alone, for using the trained model: no dataset, no
optimizers, no run lock.

``restore_for_inference`` builds the sampler, G, D and the plugins' modules from the configuration
and image shape the checkpoint records (through ``registry.train.networks``, as the trainer builds
them) and checks every entry of the file as ``--resume`` does, in the same order and with the same
messages: the step, the recorded plugins, each module's tensors, each optimizer's settings and
state (against the settings a fresh Adam over the restored parameters would hold, without
building one), the RNG states and the plugins' checkpoint state. Only the weights are kept.
``registry.load_run`` wraps the result in a ``Run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from registry import checkpoint as ckpt
from registry.checkpoint.run import (
    check_recorded_plugins,
    check_rng_entries,
    checked_step,
    optimizer_json,
    run_dir_of,
    saved_config,
)
from registry.config import TrainConfig
from registry.plugins import Host
from registry.train.networks import build_networks, make_sampler, optimizer_settings
from registry.train.persistence import check_plugin_state

__all__ = ["InferenceState", "recorded_image_shape", "restore_for_inference"]


@dataclass
class InferenceState:
    """What using a trained run needs, restored from one checkpoint.

    The plugins' ``ganrun_checkpoint_state`` and ``ganrun_load_checkpoint_state`` receive it as
    ``trainer`` when a run is loaded for use: it has ``config``, ``host``, ``run_dir``,
    ``checkpoint``, ``step``, ``device``, ``model_name``, ``modules``, ``groups``, ``sampler`` and
    ``image_shape`` ``(C, H, W)``, but no dataset, optimizers or step generators; a plugin may
    keep attributes of its own on it, as on a trainer.
    """

    config: TrainConfig
    host: Host
    run_dir: Path
    checkpoint: Path
    step: int
    device: torch.device
    model_name: str
    modules: dict[str, nn.Module]
    groups: dict[str, list[str]]
    sampler: Any
    image_shape: tuple[int, int, int]


def recorded_image_shape(path: Path, meta: dict[str, str], config: TrainConfig) -> tuple[int, int, int] | None:
    """``(C, H, W)`` from the checkpoint's ``run`` entry, checked against what this build writes
    (three positive integers, square, the configured ``image_size`` if one was set); ``None``
    when the entry records none (metadata not written by ganrun's trainer)."""
    run = ckpt.json_entry(path, meta, "run", required=False)
    shape = run.get("image_shape") if isinstance(run, dict) else None
    if shape is None:
        return None
    ok = (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**20 for v in shape)
        and shape[1] == shape[2]
        and (config.image_size is None or shape[1] == config.image_size)
    )
    if not ok:
        size = "size" if config.image_size is None else str(config.image_size)
        raise ckpt.CheckpointError(
            f"{path}: metadata entry 'run' has image_shape {str(shape)[:60]}; this build writes "
            f"[channels, {size}, {size}] of positive integers"
        )
    return (shape[0], shape[1], shape[2])


def _shape_from_dataset(path: Path, config: TrainConfig, host: Host) -> tuple[int, int, int]:
    """The image shape of a checkpoint that records none, read from the run's dataset."""
    from registry.data import DatasetError

    try:
        dataset = host.registries.datasets.get(config.dataset)(data_dir=config.data_dir, image_size=config.image_size)
    except DatasetError as exc:
        raise DatasetError(
            f"{path} records no image shape, so it is read from the run's dataset {config.dataset!r}: {exc}"
        ) from None
    return (int(dataset.channels), int(dataset.image_size), int(dataset.image_size))


def _check_rng(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """The RNG entries of rank 0, as ``--resume`` checks them on the device that wrote them.

    Inference draws nothing from them, so a run written on a GPU loads on a CPU and the other
    way round; their presence, dtype and shape are still checked (against the generator kind
    that wrote them: a CUDA generator's state where ``rng.cuda.0`` is present), and each state
    is set on a throwaway generator to refuse a malformed one."""
    cuda_written = "rng.cuda.0" in tensors
    like = {"rng.torch_cpu.0": torch.get_rng_state()}
    if not cuda_written:
        like["rng.latent.0"] = torch.Generator().get_state()
    elif torch.cuda.is_available():
        like["rng.latent.0"] = torch.Generator(device="cuda").get_state()
        like["rng.cuda.0"] = torch.cuda.get_rng_state()
    else:  # no CUDA here to describe a CUDA generator's state: the entry must exist, as bytes
        ckpt.require_keys(tensors, ["rng.torch_cpu.0", "rng.latent.0"], path=path, what="RNG")
        latent = tensors["rng.latent.0"]
        if latent.dtype != torch.uint8 or latent.dim() != 1:
            raise ckpt.CheckpointError(
                f"{path}: RNG entry 'rng.latent.0' is {str(latent.dtype).removeprefix('torch.')} of shape "
                f"{list(latent.shape)}; this build writes a uint8 vector"
            )
    check_rng_entries(path, tensors, like)
    try:
        torch.Generator().set_state(tensors["rng.torch_cpu.0"])
        if not cuda_written:
            torch.Generator().set_state(tensors["rng.latent.0"])
        elif torch.cuda.is_available():
            torch.Generator(device="cuda").set_state(tensors["rng.latent.0"])
    except (RuntimeError, ValueError) as exc:
        raise ckpt.CheckpointError(f"{path}: RNG state is malformed ({exc})") from None


def restore_for_inference(path: Path, host: Host, *, device: str | None = None) -> InferenceState:
    """The networks of checkpoint file ``path`` in eval mode with gradients off, on ``device``
    (default: the recorded one), every entry checked as ``--resume`` checks it.

    Raises ``CheckpointError`` (one line naming the file and the entry) for anything damaged,
    tampered with or from another configuration, ``ValueError`` for a bad device, and
    ``DatasetError`` only for a checkpoint that records no image shape and whose dataset cannot
    be read. Torch's global random state is left as it was."""
    from registry.train.device import resolve_device

    path = Path(path)
    tensors, meta = ckpt.read_checkpoint(path)
    config = saved_config(path, meta)
    if device is not None:
        config.device = device
    resolved = resolve_device(config.device)
    shape = recorded_image_shape(path, meta, config) or _shape_from_dataset(path, config, host)
    with torch.random.fork_rng(devices=[]):  # the build seeds the global RNG for its initialisation
        sampler = make_sampler(config, host)
        networks = build_networks(config, host, sampler, channels=shape[0], image_size=shape[1], device=resolved)
    step = checked_step(path, meta, config.steps, resuming=False)
    check_recorded_plugins(path, meta, host.plugins)
    for name, module in networks.modules.items():
        ckpt.load_module_state(module, tensors, f"model.{name}", path=path)
    for name, opt in optimizer_settings(config, networks).items():
        ckpt.check_optimizer_state(
            opt, tensors, f"optim.{name}", optimizer_json(path, meta, name), path=path, strict=True
        )
    _check_rng(path, tensors)
    state = InferenceState(
        config=config,
        host=host,
        run_dir=run_dir_of(path),
        checkpoint=path,
        step=step,
        device=resolved,
        model_name=networks.model_name,
        modules=networks.modules,
        groups=networks.groups,
        sampler=sampler,
        image_shape=shape,
    )
    plugin_state = check_plugin_state(path, tensors, host, state)
    host.run("ganrun_load_checkpoint_state", trainer=state, tensors=plugin_state)
    for module in state.modules.values():
        module.eval()
        module.requires_grad_(False)
    return state
