"""Persisting a training run: a checkpoint of everything the trainer holds (modules, optimizers,
every rank's RNG states, plugin state, the step and configuration), the exact restore that
``--resume`` needs (``state_tensors``, ``restore``), and the run folder's side of it
(``RunPersistence``: writing atomically on rank 0, keeping only the newest checkpoints, saying
where a stopped run can continue from, setting aside an abandoned timeline).

The file format is ``registry.checkpoint.file``, the module and optimizer entries
``registry.checkpoint.codec``, the run-level entry checks ``registry.checkpoint.run``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from registry import checkpoint as ckpt
from registry import runfiles
from registry.checkpoint.run import (
    check_recorded_plugins,
    check_rng_entries,
    checked_step,
    optimizer_json,
    set_aside_after,
)
from registry.plugins import Host
from registry.train import distributed


class RunPersistence:
    """One run folder's checkpoints: where they go, how many are kept, what a stopped run can
    continue from. Knows the folder, the process group and ``keep_checkpoints``, not the trainer."""

    def __init__(self, run_dir: Path, dist: distributed.DistInfo, keep_checkpoints: int):
        self.run_dir, self.dist, self.keep = Path(run_dir), dist, keep_checkpoints

    @property
    def folder(self) -> Path:
        return self.run_dir / "checkpoints"

    def last_good_checkpoint_text(self, step: int) -> str:
        """Where a run stopped after ``step`` can continue from, truthfully: the newest complete
        checkpoint of its timeline, or that none was written."""
        newest = ckpt.find_latest(self.folder)
        if newest is None or (ckpt.step_of(newest) or 0) > step:
            return "no checkpoint was written before it, so there is nothing to resume"
        return f"the last good checkpoint {newest} is kept"

    def write(self, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
        """Write ``checkpoints/ckpt-<step>.safetensors`` atomically (rank 0), then keep the newest;
        every rank waits for it. A failed write (disk full) is a one-line CheckpointError saying
        the previous checkpoint is intact."""
        path = self.folder / ckpt.checkpoint_name(step)
        if self.dist.is_main:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                ckpt.save_checkpoint(path, tensors, meta)
            except OSError as exc:
                raise ckpt.CheckpointError(
                    f"{path}: could not write the checkpoint ({exc.strerror or exc}); nothing was replaced: "
                    f"{self.last_good_checkpoint_text(step)}. Free space (or fix the folder) and resume"
                ) from None
            self.prune(step)
        distributed.barrier(self.dist)
        return path

    def prune(self, step: int) -> None:
        """Keep the newest ``keep_checkpoints`` of this run's timeline (steps up to ``step``), so
        the file just written is never the one deleted, whatever else lies in the folder."""
        if self.keep <= 0:
            return
        ours = sorted(
            (s, path)
            for path in self.folder.glob("ckpt-*.safetensors")
            if (s := ckpt.step_of(path)) is not None and s <= step
        )
        for _, old in ours[: -self.keep]:
            old.unlink(missing_ok=True)

    def set_aside_after(self, step: int) -> None:
        """Set aside what the run wrote after ``step`` (``registry.checkpoint.run.set_aside_after``)."""
        set_aside_after(self.run_dir, step)


def versions() -> dict[str, str]:
    """The versions a checkpoint records: torch and this package."""
    import importlib.metadata as md

    out = {"torch": torch.__version__}
    try:
        out["ganrun"] = md.version("ganrun")
    except md.PackageNotFoundError:
        out["ganrun"] = "unknown"
    return out


def describe(trainer: Any) -> dict[str, Any]:
    """The effective configuration of a trainer's run and what was resolved from it."""
    return {
        "config": json.loads(trainer.config.to_json()),
        "model": trainer.model_name,
        "generator_input": trainer.sampler.input_dim,
        "image_shape": list(trainer.data.shape[1:]),
        "plugins": trainer.host.plugins,
        "world_size": trainer.dist.world_size,
        "versions": versions(),
    }


def state_tensors(trainer: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Everything a checkpoint of ``trainer`` holds: tensors and string metadata (collective under
    torchrun: every rank's RNG states are gathered)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    dist, device = trainer.dist, trainer.device
    for name, module in trainer.modules.items():
        tensors.update(ckpt.module_state(module, f"model.{name}"))
    for name, opt in trainer.optimizers.items():
        t, meta[f"optim.{name}"] = ckpt.optimizer_state(opt, f"optim.{name}")
        tensors.update(t)
    for rank, state in enumerate(distributed.gather_bytes(dist, torch.get_rng_state())):
        tensors[f"rng.torch_cpu.{rank}"] = state
    for rank, state in enumerate(distributed.gather_bytes(dist, trainer.latent_gen.get_state())):
        tensors[f"rng.latent.{rank}"] = state
    if device.type == "cuda":
        for rank, state in enumerate(distributed.gather_bytes(dist, torch.cuda.get_rng_state(device))):
            tensors[f"rng.cuda.{rank}"] = state
    tensors.update({f"plugin.{key}": value for key, value in collect_plugin_state(trainer.host, trainer).items()})
    run = runfiles.dumps(trainer.describe(), sort_keys=True)
    meta.update(step=str(trainer.step), config=trainer.config.to_json(), run=run)
    return tensors, meta


def restore(trainer: Any, path: Path, *, loaded: tuple[dict, dict] | None = None, truncate_logs: bool = True) -> None:
    """Continue ``trainer`` exactly from a checkpoint: weights, optimizers, RNGs, step, plugin state.

    Everything the checkpoint carries is checked before the run folder is touched: the
    logs are set aside only once every entry has loaded."""
    tensors, meta = loaded if loaded is not None else ckpt.read_checkpoint(path)
    step = checked_step(path, meta, trainer.config.steps)
    check_recorded_plugins(path, meta, trainer.host.plugins)
    for name, module in trainer.modules.items():
        ckpt.load_module_state(module, tensors, f"model.{name}", path=path)
    for name, opt in trainer.optimizers.items():
        ckpt.load_optimizer_state(
            opt, tensors, f"optim.{name}", optimizer_json(path, meta, name), path=path, strict=True
        )
    rank, device = trainer.dist.rank, trainer.device
    like = {f"rng.torch_cpu.{rank}": torch.get_rng_state(), f"rng.latent.{rank}": trainer.latent_gen.get_state()}
    if device.type == "cuda":
        like[f"rng.cuda.{rank}"] = torch.cuda.get_rng_state(device)
    check_rng_entries(path, tensors, like)
    try:
        torch.set_rng_state(tensors[f"rng.torch_cpu.{rank}"])
        trainer.latent_gen.set_state(tensors[f"rng.latent.{rank}"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(tensors[f"rng.cuda.{rank}"], device)
    except (RuntimeError, ValueError) as exc:
        raise ckpt.CheckpointError(f"{path}: RNG state is malformed ({exc})") from None
    plugin_state = check_plugin_state(path, tensors, trainer.host, trainer)
    trainer.host.run("ganrun_load_checkpoint_state", trainer=trainer, tensors=plugin_state)
    trainer.step = step
    if truncate_logs and trainer.dist.is_main:
        trainer.persistence.set_aside_after(step)
        trainer.balance.replay(trainer.run_dir / "metrics.jsonl")


def collect_plugin_state(host: Host, holder: Any) -> dict[str, torch.Tensor]:
    """What the active plugins' ``ganrun_checkpoint_state(trainer=holder)`` returns now, merged
    (keys without the ``plugin.`` prefix); a key two plugins both use is a ValueError."""
    state: dict[str, torch.Tensor] = {}
    for extra in host.run("ganrun_checkpoint_state", trainer=holder):
        for key, value in extra.items():
            if key in state:
                raise ValueError(f"two plugins save checkpoint state under {key!r}")
            state[key] = value
    return state


def check_plugin_state(path: Path, tensors: dict[str, torch.Tensor], host: Host, holder: Any) -> dict:
    """The checkpoint's ``plugin.*`` entries (prefix removed), checked like the core's against
    what the active plugins' ``ganrun_checkpoint_state(trainer=holder)`` would write now."""
    return ckpt.check_entries(
        tensors,
        {key: torch.as_tensor(value) for key, value in collect_plugin_state(host, holder).items()},
        "plugin",
        path=path,
        holder="the active plugins' state",
        cause="the file was written with other plugins or another plugin version?",
    )
