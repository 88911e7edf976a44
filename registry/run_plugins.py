"""The plugins a run was trained with, and one message for every command that lacks one.

A run records its plugins (name -> version) in its checkpoints' metadata and in
``config.json``. Every command that loads a run (``train --resume``, ``eval``, ``traverse``,
``report``, ``generate``, ``encode``, ``explore``, ``export``, and ``load_run`` in Python)
calls ``require_run_plugins`` before it rebuilds anything, so a missing plugin is reported
the same way everywhere: which plugin, whether it is installed, and the command that loads
it, instead of a late error about an option or a code type the user never typed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from registry import runfiles
from registry.plugins import DEFAULT_PLUGINS, PluginError, installed_plugins

__all__ = ["MissingPluginError", "missing_plugin_message", "recorded_plugins", "require_run_plugins"]


class MissingPluginError(PluginError):
    """A run needs a plugin that is not active (or not installed); the message says which and how."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


def recorded_plugins(
    path: str | os.PathLike[str], *, warn: Callable[[str], None] | None = runfiles.warn
) -> dict[str, str | None]:
    """``{plugin: version}`` recorded by a run: ``path`` is a checkpoint file or a run folder
    (its ``config.json``, else its newest checkpoint). Empty when nothing is recorded. A damaged
    ``config.json`` (only informative: the checkpoint is what a run is rebuilt from) is named in
    one ``warn`` line and the checkpoint is read instead; ``warn=None`` skips it silently."""
    from registry import checkpoint as ckpt
    from registry.checkpoint.run import find_checkpoint

    path = Path(path)
    if path.is_dir():
        config = path / "config.json"
        try:
            found = (runfiles.read_json(config, required=False) or {}).get("plugins")
            if found is not None and not (isinstance(found, dict) and all(isinstance(k, str) for k in found)):
                raise runfiles.RunFileError(config, "its 'plugins' entry is not an object of plugin names")
        except runfiles.RunFileError as exc:
            if warn is not None:
                warn(f"{exc.path}: {exc.reason}; the run's plugins are read from its newest checkpoint instead")
            found = None
        if isinstance(found, dict):
            return dict(found)
    file = find_checkpoint(path) if path.exists() else None
    if file is None:
        return {}
    try:
        found = ckpt.json_entry(file, ckpt.read_metadata(file), "run", required=False)
        found = found.get("plugins") if isinstance(found, dict) else None
    except ckpt.CheckpointError:
        return {}  # a damaged file is reported by the loader, with its own message
    return {str(k): v for k, v in found.items()} if isinstance(found, dict) else {}


def _installed(name: str) -> bool:
    if name in installed_plugins():
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_plugin_message(
    run: str | os.PathLike[str], recorded: dict[str, str | None], missing: list[str], command: str
) -> str:
    """One line: ``RUN: the run was trained with plugin 'x' (version 0.1), which is not
    installed; pip install the package that provides it, then run: ganrun --plugin ... COMMAND RUN``."""
    described = ", ".join(
        f"{name!r}" + (f" (version {recorded[name]})" if recorded.get(name) else "") for name in missing
    )
    absent = [name for name in missing if not _installed(name)]
    state = (
        "not installed"
        if len(absent) == len(missing)
        else "not active"
        if not absent
        else f"not active ({', '.join(repr(n) for n in absent)} not installed)"
    )
    plural = len(missing) > 1
    flags = " ".join(f"--plugin {name}" for name in recorded if name not in DEFAULT_PLUGINS)
    if command == "load_run":
        how = f"load_run({str(run)!r}) activates the run's plugins itself"
    else:
        how = f"run: ganrun {flags} {command} {run}"
    if absent:
        how = f"pip install the package that provides {', '.join(repr(n) for n in absent)}, then {how}"
    return (
        f"{run}: the run was trained with plugin{'s' if plural else ''} {described}, which "
        f"{'are' if plural else 'is'} {state}; {how}"
    )


def require_run_plugins(
    run: str | os.PathLike[str], active: Iterable[str], command: str, *, recorded: dict[str, str | None] | None = None
) -> dict[str, str | None]:
    """Raise ``MissingPluginError`` when a plugin the run at ``run`` was trained with is not
    among ``active`` (for ``load_run``-style loaders, which activate the recorded plugins
    themselves, pass ``command="load_run"`` or the command name and the plugins that will be
    active). Returns the recorded plugins."""
    recorded = recorded_plugins(run) if recorded is None else recorded
    active = set(active)
    missing = [name for name in recorded if name not in active and name not in DEFAULT_PLUGINS]
    if missing:
        raise MissingPluginError(missing_plugin_message(run, recorded, missing, command), missing)
    return recorded


def loadable(names: Iterable[str]) -> list[str]:
    """Those of ``names`` that are installed or importable (for loaders that activate a run's
    recorded plugins themselves: the others are what ``require_run_plugins`` reports)."""
    return [name for name in names if _installed(name)]
