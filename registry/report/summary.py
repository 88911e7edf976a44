"""What the plugins say about a run in words (``ganrun_run_summary``), for the report's title
and the end of training, and the ``ganrun`` prefix that runs a command on it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from registry.plugins import DEFAULT_PLUGINS, PluginError, results_by_plugin

__all__ = ["RunSummary", "ganrun_prefix", "run_summary"]


@dataclass
class RunSummary:
    """Every active plugin's ``ganrun_run_summary``, merged in the order pluggy calls them."""

    whats: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (arguments after the prefix, purpose)


def ganrun_prefix(plugins: Iterable[str]) -> str:
    """``ganrun --plugin infogan --plugin x``: the command line start that activates a run's
    plugins (the built-in ones need no flag), for the commands a user is told to run next."""
    flags = [f"--plugin {shlex.quote(name)}" for name in plugins if name not in DEFAULT_PLUGINS]
    return " ".join(["ganrun", *flags])


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _commands(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(part, str) for part in item)
        for item in value
    )


def run_summary(host: Any, run_dir: Path, config: dict[str, Any], metrics: dict[str, Any]) -> RunSummary:
    """Call ``ganrun_run_summary`` on every active plugin; a result that breaks the hook's
    contract is a ``PluginError`` naming the plugin and the key."""
    summary = RunSummary()
    for plugin, result in results_by_plugin(
        host.pm, "ganrun_run_summary", run_dir=run_dir, config=config, metrics=metrics
    ):
        if not isinstance(result, dict):
            raise PluginError(
                f"plugin {plugin!r} broke the ganrun_run_summary contract: it returned {type(result).__name__}, "
                f"not a dict with 'what', 'results' or 'commands'"
            )
        checks = {"what": lambda v: isinstance(v, str), "results": _texts, "commands": _commands}
        for key, value in result.items():
            check = checks.get(key)
            if check is None or not check(value):
                form = {
                    "what": "a string",
                    "results": "a list of strings",
                    "commands": "a list of (arguments, purpose)",
                }
                expected = f"{key!r} must be {form[key]}" if key in form else f"keys are {', '.join(form)}"
                raise PluginError(
                    f"plugin {plugin!r} broke the ganrun_run_summary contract: it returned {key!r} as "
                    f"{type(value).__name__}; {expected}"
                )
        if result.get("what"):
            summary.whats.append(result["what"])
        summary.results += result.get("results", [])
        summary.commands += [(str(args), str(purpose)) for args, purpose in result.get("commands", [])]
    return summary
