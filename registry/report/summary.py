"""What the plugins say about a run in words (``ganrun_run_summary``), for the report's title
and the end of training, and the ``ganrun`` prefix that runs a command on it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from registry.plugins import DEFAULT_PLUGINS

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


def run_summary(host: Any, run_dir: Path, config: dict[str, Any], metrics: dict[str, Any]) -> RunSummary:
    """Call ``ganrun_run_summary`` on every active plugin; a result that breaks the hook's
    contract (``registry.contracts.KEYED_RESULTS``) is a ``PluginError`` naming the plugin and the key."""
    summary = RunSummary()
    for result in host.run("ganrun_run_summary", run_dir=run_dir, config=config, metrics=metrics):
        if result.get("what"):
            summary.whats.append(result["what"])
        summary.results += result.get("results", [])
        summary.commands += [(str(args), str(purpose)) for args, purpose in result.get("commands", [])]
    return summary
