"""Persisting a training run: a checkpoint of everything the trainer holds (modules,
optimizers, every rank's RNG states, plugin state, the step and configuration), the exact
restore that ``--resume`` needs, keeping only the newest checkpoints, and setting aside the
checkpoints and log lines of an abandoned timeline when a run resumes from an older step.

``RunPersistence`` holds these methods of ``registry.train.Trainer``; the file format
itself is ``registry.checkpoint.file``, the module and optimizer entries ``registry.checkpoint.codec``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from registry import checkpoint as ckpt
from registry import runfiles
from registry.checkpoint.atomic import atomic_write
from registry.config import TrainConfig
from registry.plugins import Host
from registry.train import distributed

if TYPE_CHECKING:  # pragma: no cover - typing only (the trainer imports this module)
    from registry.train.trainer import Trainer


def find_checkpoint(path: Path) -> Path | None:
    """``path`` itself when it is a file; for a run folder its newest complete checkpoint
    (in ``checkpoints/``, else in the folder itself), or None when there is none."""
    path = Path(path)
    if path.is_dir():
        return ckpt.find_latest(path / "checkpoints") or ckpt.find_latest(path)
    return path


def choose_checkpoint(path: Path, *, warn: Any = runfiles.warn) -> Path:
    """The checkpoint a command reads from ``path``: the file itself, or a run folder's newest
    usable one (in ``checkpoints/``, else in the folder itself). When newer checkpoints cannot
    be used, ``warn`` (one line; None: silent) says which one is used instead and why the newer
    ones are not; when none can be used, ``CheckpointError`` says why (each file's own reason:
    truncated, tampered with, another format version), not merely that none is complete."""
    path = Path(path)
    if not path.is_dir():
        return path
    found, skipped = None, []
    for folder in (path / "checkpoints", path):
        found, skipped = ckpt.latest_checkpoint(folder)
        if found is not None or skipped:
            break
    if found is None:
        if not skipped:
            raise ckpt.CheckpointError(f"{path}: no checkpoint in this run folder (no checkpoints/ckpt-*.safetensors)")
        newest, why = skipped[0]
        others = f"; the {len(skipped) - 1} older one(s) cannot be used either" if len(skipped) > 1 else ""
        raise ckpt.CheckpointError(f"{path}: no usable checkpoint: the newest, {newest.name}, is {why}{others}")
    if skipped and warn is not None:
        names = ", ".join(p.name for p, _ in skipped)
        warn(
            f"{path}: using {found.name} (step {ckpt.step_of(found)}), not the newer {names}: "
            f"{skipped[0][0].name} is {skipped[0][1]}"
        )
    return found


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to: the parent of ``checkpoints/``, else its folder."""
    parent = Path(checkpoint).parent
    return parent.parent if parent.name == "checkpoints" else parent


class RunPersistence:
    """Checkpoint methods of ``Trainer``."""

    def describe(self) -> dict[str, Any]:
        """The effective configuration and what was resolved from it."""
        return {
            "config": json.loads(self.config.to_json()),
            "model": self.model_name,
            "generator_input": self.sampler.input_dim,
            "image_shape": list(self.data.shape[1:]),
            "plugins": self.host.plugins,
            "world_size": self.dist.world_size,
            "versions": _versions(),
        }

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, str] = {}
        for name, module in self.modules.items():
            tensors.update(ckpt.module_state(module, f"model.{name}"))
        for name, opt in self.optimizers.items():
            t, meta[f"optim.{name}"] = ckpt.optimizer_state(opt, f"optim.{name}")
            tensors.update(t)
        for rank, state in enumerate(distributed.gather_bytes(self.dist, torch.get_rng_state())):
            tensors[f"rng.torch_cpu.{rank}"] = state
        for rank, state in enumerate(distributed.gather_bytes(self.dist, self.latent_gen.get_state())):
            tensors[f"rng.latent.{rank}"] = state
        if self.device.type == "cuda":
            for rank, state in enumerate(distributed.gather_bytes(self.dist, torch.cuda.get_rng_state(self.device))):
                tensors[f"rng.cuda.{rank}"] = state
        tensors.update({f"plugin.{key}": value for key, value in self.plugin_state().items()})
        run = runfiles.dumps(self.describe(), sort_keys=True)
        meta.update(step=str(self.step), config=self.config.to_json(), run=run)
        return tensors, meta

    def plugin_state(self) -> dict[str, torch.Tensor]:
        """What the active plugins' ``ganrun_checkpoint_state`` returns now, merged (keys without
        the ``plugin.`` prefix); a key two plugins both use is a ValueError."""
        return collect_plugin_state(self.host, self)

    def last_good_checkpoint_text(self) -> str:
        """Where a stopped run can continue from, truthfully: the newest complete checkpoint of
        this run's timeline, or that none was written."""
        newest = ckpt.find_latest(self.run_dir / "checkpoints")
        if newest is None or (ckpt.step_of(newest) or 0) > self.step:
            return "no checkpoint was written before it, so there is nothing to resume"
        return f"the last good checkpoint {newest} is kept"

    def _state_flags(self, bound: float) -> tuple[list[tuple[str, str]], list[torch.Tensor]]:
        """``(what, kind)`` and a flag on the device (1: bad) per check of the state a checkpoint
        holds: each module's parameters and buffers (BatchNorm statistics, spectral-norm
        vectors) for NaN/Inf and, with a ``bound`` above 0, for a magnitude above it; each
        optimizer's state (Adam's moments, squared gradients: not bounded) for NaN/Inf."""
        names: list[tuple[str, str]] = []
        flags: list[torch.Tensor] = []
        for name, module in self.modules.items():
            values = [t.detach() for t in module.state_dict().values() if torch.is_tensor(t) and t.is_floating_point()]
            values = [t for t in values if t.numel()]
            if values:
                what = f"module {name} (weights or buffers)"
                names.append((what, "non-finite"))
                flags.append(~torch.stack([torch.isfinite(t).all() for t in values]).all())
                if bound > 0:
                    names.append((what, "exploded"))
                    flags.append(torch.stack([t.abs().max().float() for t in values]).max() > bound)
        for name, opt in self.optimizers.items():
            values = [
                t
                for state in opt.state.values()
                for t in state.values()
                if torch.is_tensor(t) and t.is_floating_point()
            ]
            if values:
                names.append((f"the {name} optimizer's state", "non-finite"))
                flags.append(~torch.stack([torch.isfinite(t).all().to(self.device) for t in values]).all())
        return names, [flag.float().to(self.device) for flag in flags]

    def save(self) -> Path | None:
        """Write ``checkpoints/ckpt-<step>.safetensors`` atomically (rank 0); refuse to save
        NaN/Inf (weights, buffers, optimizer state) or exploded values (``--max-loss``) so a
        poisoned checkpoint never replaces a good one. A failed write (disk full) is a one-line
        CheckpointError saying the previous checkpoint is intact."""
        self._check_finite()
        tensors, meta = self.state_tensors()
        path = self.run_dir / "checkpoints" / ckpt.checkpoint_name(self.step)
        if self.dist.is_main:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                ckpt.save_checkpoint(path, tensors, meta)
            except OSError as exc:
                raise ckpt.CheckpointError(
                    f"{path}: could not write the checkpoint ({exc.strerror or exc}); nothing was replaced: "
                    f"{self.last_good_checkpoint_text()}. Free space (or fix the folder) and resume"
                ) from None
            self._prune_checkpoints()
        distributed.barrier(self.dist)
        return path

    def _prune_checkpoints(self) -> None:
        """Keep the newest ``keep_checkpoints`` of this run's timeline (steps up to now), so the
        file just written is never the one deleted, whatever else lies in the folder."""
        keep = self.config.keep_checkpoints
        if keep <= 0:
            return
        ours = sorted(
            (step, path)
            for path in (self.run_dir / "checkpoints").glob("ckpt-*.safetensors")
            if (step := ckpt.step_of(path)) is not None and step <= self.step
        )
        for _, old in ours[:-keep]:
            old.unlink(missing_ok=True)

    @classmethod
    def from_checkpoint(cls, path: Path, host: Host, *, device: str | None = None) -> "Trainer":
        """A trainer restored from a checkpoint file or a run folder's newest one, for
        evaluation and pictures (the run's logs are left untouched)."""
        path = choose_checkpoint(Path(path))
        tensors, meta = ckpt.read_checkpoint(path)
        config = saved_config(path, meta)
        if device is not None:
            config.device = device
        run_dir = run_dir_of(path)
        trainer = cls(config, host, run_dir)
        trainer.restore(path, loaded=(tensors, meta), truncate_logs=False)
        return trainer

    def _check_plugins(self, path: Path, meta: dict[str, str]) -> None:
        """Refuse a checkpoint written with plugins that are not active now, naming them."""
        check_recorded_plugins(path, meta, self.host.plugins)

    def restart_from_zero(self) -> None:
        """Start a run folder's run again from step 0 (``--auto-resume`` of a run that died before
        its first checkpoint): what the dead attempt logged and drew is set aside."""
        _truncate_after(self.run_dir, 0)

    def restore(self, path: Path, *, loaded: tuple[dict, dict] | None = None, truncate_logs: bool = True) -> None:
        """Continue exactly from a checkpoint: weights, optimizers, RNGs, step, plugin state.

        Everything the checkpoint carries is checked before the run folder is touched: the
        logs are set aside only once every entry has loaded."""
        tensors, meta = loaded if loaded is not None else ckpt.read_checkpoint(path)
        step = checked_step(path, meta, self.config.steps)
        self._check_plugins(path, meta)
        for name, module in self.modules.items():
            ckpt.load_module_state(module, tensors, f"model.{name}", path=path)
        for name, opt in self.optimizers.items():
            ckpt.load_optimizer_state(
                opt, tensors, f"optim.{name}", optimizer_json(path, meta, name), path=path, strict=True
            )
        rank = self.dist.rank
        like = {f"rng.torch_cpu.{rank}": torch.get_rng_state(), f"rng.latent.{rank}": self.latent_gen.get_state()}
        if self.device.type == "cuda":
            like[f"rng.cuda.{rank}"] = torch.cuda.get_rng_state(self.device)
        check_rng_entries(path, tensors, like)
        try:
            torch.set_rng_state(tensors[f"rng.torch_cpu.{rank}"])
            self.latent_gen.set_state(tensors[f"rng.latent.{rank}"])
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{rank}"], self.device)
        except (RuntimeError, ValueError) as exc:
            raise ckpt.CheckpointError(f"{path}: RNG state is malformed ({exc})") from None
        plugin_state = check_plugin_state(path, tensors, self.host, self)
        self.host.hook.ganrun_load_checkpoint_state(trainer=self, tensors=plugin_state)
        self.step = step
        if truncate_logs and self.dist.is_main:
            _truncate_after(self.run_dir, self.step)
            self.balance.replay(self.run_dir / "metrics.jsonl")


def check_recorded_plugins(path: Path, meta: dict[str, str], active: Iterable[str]) -> None:
    """Refuse a checkpoint written with plugins not among ``active``, naming them and the command
    line that activates them."""
    run = ckpt.json_entry(path, meta, "run", required=False)
    recorded = run.get("plugins") if isinstance(run, dict) else None
    if not isinstance(recorded, (dict, list)):
        return  # older or foreign metadata: the module and optimizer checks still apply
    active = set(active)
    missing = [name for name in recorded if name not in active]
    if missing:
        flags = " ".join(f"--plugin {name}" for name in recorded)
        raise ckpt.CheckpointError(
            f"{path}: the run was trained with plugin(s) {', '.join(missing)}, which are not active; "
            f"run the command as 'ganrun {flags} ...'"
        )


def optimizer_json(path: Path, meta: dict[str, str], name: str) -> str:
    """The metadata entry ``optim.<name>`` (the optimizer's settings and state layout)."""
    if f"optim.{name}" not in meta:
        raise ckpt.CheckpointError(f"{path}: missing optimizer entry 'optim.{name}' in the metadata")
    return meta[f"optim.{name}"]


def check_rng_entries(path: Path, tensors: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> None:
    """Each RNG entry named in ``like`` present, of the dtype and shape of ``like``'s state: what
    this build writes (uint8 states of a fixed size)."""
    ckpt.require_keys(tensors, list(like), path=path, what="RNG")
    for key, current in like.items():
        if tensors[key].dtype != current.dtype or tensors[key].shape != current.shape:
            raise ckpt.CheckpointError(
                f"{path}: RNG entry {key!r} is {str(tensors[key].dtype).removeprefix('torch.')} of shape "
                f"{list(tensors[key].shape)}; this build writes {str(current.dtype).removeprefix('torch.')} "
                f"of shape {list(current.shape)}"
            )


def collect_plugin_state(host: Host, holder: Any) -> dict[str, torch.Tensor]:
    """What the active plugins' ``ganrun_checkpoint_state(trainer=holder)`` returns now, merged
    (keys without the ``plugin.`` prefix); a key two plugins both use is a ValueError."""
    state: dict[str, torch.Tensor] = {}
    for extra in host.checked("ganrun_checkpoint_state", trainer=holder):
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


def saved_config(path: Path, meta: dict[str, str]) -> TrainConfig:
    """The configuration a checkpoint records, every key and type checked; one-line error."""
    try:
        return TrainConfig.from_dict(ckpt.json_entry(path, meta, "config"))
    except ValueError as exc:
        raise ckpt.CheckpointError(f"{path}: metadata entry 'config' is malformed ({exc})") from None


def checked_step(path: Path, meta: dict[str, str], steps: int, *, resuming: bool = True) -> int:
    """The checkpoint's step: decimal digits, and at most ``steps`` (the run's length), so a
    resume never acts on a step this build could not have written for this run (``resuming``:
    the refusal says how a resume can go on; using the trained model has no --steps)."""
    text = meta.get("step")
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,18}", text):
        raise ckpt.CheckpointError(f"{path}: metadata entry 'step' is {text!r}, not a non-negative integer")
    step = int(text)
    if step > steps:
        hint = f"; pass --steps {step} or more to continue it" if resuming else ""
        raise ckpt.CheckpointError(f"{path}: metadata entry 'step' is {step}, beyond the run's {steps} steps{hint}")
    return step


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"torch": torch.__version__}
    try:
        out["ganrun"] = md.version("ganrun")
    except md.PackageNotFoundError:
        out["ganrun"] = "unknown"
    return out


# A picture a run writes for one step: ``step-000000004.png`` (samples), ``c1-step-000000004.png``
# (InfoGAN's traversals), or any plugin's ``...step<N>...png`` below the run folder.
_STEP_PICTURE_RE = re.compile(r"(?:^|.*[-_.])step[-_]?(\d+)(?:[-_.].*)?\.png", re.IGNORECASE)
SUPERSEDED = "superseded"


def _timeline_names(names: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """``(source, target)`` pairs with targets no earlier timeline has taken: the first abandoned
    timeline keeps the plain names; a later one gets ``.timeline-N`` before the suffix, with one
    N for all its files so they stay recognisable as one timeline."""
    if not any(target.exists() for _, target in names):
        return names
    n = 2
    while True:
        renamed = [(src, t.with_name(f"{t.stem}.timeline-{n}{t.suffix}")) for src, t in names]
        if not any(target.exists() for _, target in renamed):
            return renamed
        n += 1


def _truncate_after(run_dir: Path, step: int) -> None:
    """Set aside what a run wrote after ``step`` (a resumed run redoes it), so logs never repeat a
    step number and nothing already kept is overwritten. Checkpoints from after ``step`` belong
    to an abandoned timeline: they move to ``checkpoints/superseded/`` (kept, but never picked by
    ``--resume RUN``). Pictures with a step after ``step`` in their name (samples, traversals,
    any plugin's) move to ``superseded/`` under the same relative path, where ``report`` does not
    look; metric lines after ``step`` go to ``superseded/metrics.jsonl``. A second resume from an
    older step gets ``.timeline-N`` names instead of overwriting the first one's files."""
    later = [
        p
        for p in (run_dir / "checkpoints").glob("ckpt-*.safetensors")
        if (s := ckpt.step_of(p)) is not None and s > step
    ]
    aside = run_dir / "checkpoints" / SUPERSEDED
    for path, target in _timeline_names([(p, aside / p.name) for p in sorted(later)]):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    pictures = []
    for png in run_dir.rglob("*.png"):
        rel = png.relative_to(run_dir)
        if rel.parts[0] == SUPERSEDED or SUPERSEDED in rel.parts[:-1] or not png.is_file():
            continue
        match = _STEP_PICTURE_RE.fullmatch(png.name)
        if match and int(match.group(1)) > step:
            pictures.append((png, run_dir / SUPERSEDED / rel))
    for path, target in _timeline_names(sorted(pictures)):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        rows = runfiles.read_metrics(run_dir)  # damaged lines are named in a warning and left out
        kept = [row for row in rows if row["step"] <= step]
        dropped = [row for row in rows if row["step"] > step]
        if dropped:
            [(_, target)] = _timeline_names([(metrics, run_dir / SUPERSEDED / "metrics.jsonl")])
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, _metric_lines(dropped))
        atomic_write(metrics, _metric_lines(kept))


def _metric_lines(rows: list[dict]) -> str:
    """``metrics.jsonl`` text of ``rows``: strict JSON, one object per line (a NaN an older build
    wrote comes back as null)."""
    return "".join(f"{runfiles.dumps(runfiles.finite_json(row)[0])}\n" for row in rows)
