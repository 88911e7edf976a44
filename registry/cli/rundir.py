"""The run folder of ``ganrun train``: chosen, checked (read-only) before anything is built,
locked (one writer per folder), then prepared; and whether ``--auto-resume`` may start a run
that died before its first checkpoint again."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import click

from registry import runfiles
from registry.checkpoint.lock import LOCK_NAME, RunFolderBusy, RunLock, stale_temporaries
from registry.checkpoint.run import run_dir_of
from registry.config import MUTABLE_ON_RESUME, TrainConfig, resume_differences


def choose_run_dir(config: TrainConfig, resume_path: Path | None) -> Path:
    """``--out``, else the resumed run's folder, else ``runs/<dataset>-<time>``."""
    if config.out is None:
        if resume_path is not None:
            config.out = str(run_dir_of(resume_path))
        else:
            config.out = os.path.join("runs", f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return Path(config.out)


# The log ``ganrun sweep`` keeps of a seed's train process, in that seed's run folder: written
# before the run's first file, so it does not make the folder a run that ``--auto-resume``
# would refuse to start.
SWEEP_LOG = "sweep.log"


def run_entries(run_dir: Path) -> list[Path]:
    """What a run folder holds, its lock file and a sweep's log aside (a failed start may leave
    only those)."""
    if not run_dir.is_dir():
        return []
    return [p for p in run_dir.iterdir() if p.name not in (LOCK_NAME, SWEEP_LOG)]


def check_run_dir(
    run_dir: Path,
    resume_path: Path | None,
    overwrite: bool,
    restart: TrainConfig | None = None,
    mutable: frozenset[str] = MUTABLE_ON_RESUME,
) -> None:
    """Refuse an unusable run folder before anything is built; changes nothing on disk.

    ``restart`` is the configuration of an ``--auto-resume`` that found no checkpoint: a run
    that died before its first checkpoint starts again from step 0 in its folder."""
    if run_dir.exists() and not run_dir.is_dir():
        raise click.BadParameter(f"{run_dir} exists and is not a folder", param_hint="--out")
    if not overwrite:  # the files training (re)writes: refused now, not after the first steps
        for name in ("config.json", "metrics.jsonl"):
            try:
                runfiles.check_writable(run_dir / name, hint="move it away (or pass --overwrite) and try again")
            except runfiles.RunFileError as exc:
                raise click.ClickException(str(exc)) from None
    has_run = bool(run_entries(run_dir))
    if has_run and resume_path is None:
        if restart is not None and not overwrite:
            check_restartable(run_dir, restart, mutable)
            return
        if not overwrite:
            raise click.BadParameter(
                f"run folder {run_dir} already exists; pass --resume {run_dir} to continue it, "
                f"--overwrite to start over, or another --out",
                param_hint="--out",
            )
        if not ((run_dir / "config.json").exists() or (run_dir / "checkpoints").is_dir()):
            raise click.BadParameter(f"{run_dir} is not a ganrun run folder; refusing to delete it", param_hint="--out")


def check_restartable(run_dir: Path, config: TrainConfig, mutable: frozenset[str]) -> None:
    """A folder ``--auto-resume`` may start again from step 0: a run of this same configuration
    that wrote no checkpoint yet. Anything else (checkpoints that do not validate, another
    configuration, a folder that is not a run) is refused as for a fresh start."""
    hint = "pass --overwrite to start over, or another --out"
    stranded = [
        p.name
        for folder in (run_dir, run_dir / "checkpoints")
        for p in (folder.glob("ckpt-*.safetensors") if folder.is_dir() else ())
    ]
    if stranded:
        raise click.BadParameter(
            f"run folder {run_dir} has checkpoints but none is complete ({', '.join(sorted(stranded)[:3])}); "
            f"refusing to start it again from step 0: {hint}",
            param_hint="--auto-resume",
        )
    config_path = run_dir / "config.json"
    try:
        recorded = runfiles.read_json(config_path).get("config")
        previous = TrainConfig.from_dict(recorded)
    except runfiles.RunFileError as exc:
        reason = exc.reason
    except ValueError as exc:
        reason = f"its 'config' entry is malformed ({exc})"
    else:
        reason = None
    if reason is not None:
        raise click.BadParameter(
            f"run folder {run_dir} has no checkpoint and its config.json is missing or unreadable "
            f"({config_path}: {reason}); refusing to start it again: {hint}",
            param_hint="--auto-resume",
        )
    diffs = resume_differences(previous, config, mutable)
    if diffs:
        raise click.BadParameter(
            f"run folder {run_dir} was started with a different configuration ({'; '.join(diffs)}); "
            f"refusing to start it again: {hint}",
            param_hint="--auto-resume",
        )


def lock_run_dir(run_dir: Path) -> RunLock:
    """Become the one writer of ``run_dir`` (creating it), or refuse naming the holder's pid."""
    try:
        return RunLock(run_dir).acquire()
    except RunFolderBusy as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.BadParameter(f"cannot write to {run_dir}: {exc.strerror}", param_hint="--out") from None


def prepare_run_dir(run_dir: Path, resume_path: Path | None, overwrite: bool) -> None:
    """Start over if asked (only once the new run has been built), create and probe the folder,
    and remove temporary files that killed saves left behind (the caller holds the lock)."""
    if overwrite and resume_path is None:
        for entry in run_entries(run_dir):  # the lock file stays: we hold it
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        for stale in stale_temporaries(run_dir):
            stale.unlink(missing_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot write to {run_dir}: {exc.strerror}", param_hint="--out") from None
