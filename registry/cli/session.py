"""What the ``ganrun`` group options chose, shared by every command."""

from __future__ import annotations

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
