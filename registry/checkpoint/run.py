"""A run folder's checkpoints as files: finding a run's newest checkpoint and a checkpoint's run
folder, the checks of a checkpoint's run-level entries (step, configuration, recorded plugins,
optimizer settings, RNG states) that ``--resume`` and ``load_run`` share, and setting aside the
checkpoints, pictures and log lines of an abandoned timeline when a run resumes from an older step.

What a trainer writes into a checkpoint and restores from it is ``registry.train.persistence``;
the file format itself is ``registry.checkpoint.file``, the module and optimizer entries
``registry.checkpoint.codec``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from registry import checkpoint as ckpt
from registry import runfiles
from registry.checkpoint.atomic import atomic_write
from registry.config import TrainConfig


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


def set_aside_after(run_dir: Path, step: int) -> None:
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
