"""What the ``ganrun`` group options chose, shared by every command."""

from __future__ import annotations

import os
import sys
import traceback

import click

from registry.plugins import Host, PluginError


class Session:
    """What the group options chose; the plugin host is built on first use."""

    def __init__(self, plugin_names: tuple[str, ...]):
        self.plugin_names = plugin_names
        self._host: Host | None = None

    def host(self) -> Host:
        if self._host is None:
            try:
                self._host = Host.create(self.plugin_names)
            except PluginError as exc:
                raise click.ClickException(str(exc)) from None
        return self._host


def plugin_failure(exc: BaseException, context: str = "") -> str:
    """The one-line message for a plugin's failure (a ``HookError`` or a broken hook contract),
    with ``context`` appended. With ``GANRUN_TRACE=1`` the plugin's own traceback is printed
    to stderr first; otherwise the line says how to get it."""
    message = str(exc) + (f" ({context})" if context else "")
    cause = exc.__cause__
    if cause is None:
        return message
    if os.environ.get("GANRUN_TRACE"):
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        return message
    return f"{message}; GANRUN_TRACE=1 shows the plugin's traceback"
