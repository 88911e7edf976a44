"""``ganrun plugins``: what is installed, what is active, and what each plugin registers."""

from __future__ import annotations

import dataclasses
import json
import warnings
from typing import Any

import click

from registry.cli.options import option
from registry.plugins import (
    BUILTIN_LABELS,
    DEFAULT_PLUGINS,
    PluginError,
    PluginWarning,
    Registries,
    activate,
    get_plugin_manager,
    hooks_of,
    installed_plugins,
    name_clashes,
)


@click.command("plugins")
@option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, which are active, their hooks and registered names."""
    active = set(ctx.obj.plugin_names if ctx.obj else ())
    rows = []
    candidates = [(name, None, None) for name in DEFAULT_PLUGINS]
    installed = installed_plugins()
    candidates += [(ep.name, ep.distribution, ep.version) for ep in installed.values()]
    candidates += [(name, None, None) for name in active if name not in installed]
    for name, dist, version in candidates:
        row: dict[str, Any] = {
            "name": name,
            "distribution": dist,
            "version": version,
            "active": name in active or name in DEFAULT_PLUGINS,
            "builtin": name in DEFAULT_PLUGINS,
        }
        try:  # each alone, so the registries below show only what that plugin registers
            pm = get_plugin_manager(defaults=False)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PluginWarning)
                activate(pm, [name])
            row["warnings"] = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
            row["hooks"] = hooks_of(pm, pm.get_plugin(name))
            broken: dict[str, str] = {}
            regs = Registries.collect(pm, broken=broken)
            row["registers"] = {
                f.name: getattr(regs, f.name).names() for f in dataclasses.fields(regs) if getattr(regs, f.name).names()
            }
            row["error"] = broken.get(name)
        except PluginError as exc:
            row.update(hooks=[], registers={}, error=str(exc), warnings=row.get("warnings", []))
        rows.append(row)
    for row in rows:
        row["clashes"] = name_clashes(rows, row["name"])
    if as_json:
        click.echo(json.dumps(rows, indent=2, allow_nan=False))
        return
    for row in rows:
        status = "active" if row["active"] else "installed"
        version = row["version"] or ("built-in" if row["builtin"] else "-")
        # the built-ins by the product's name (their module paths stay in --json's "name")
        shown = BUILTIN_LABELS[row["name"]].removesuffix(" (built-in)") if row["builtin"] else row["name"]
        click.echo(f"{shown} ({version}, {status})")
        for line in row.get("warnings", []):
            click.echo(f"  warning: {line}")
        if row["error"]:
            click.echo(f"  BROKEN: {row['error']}")
            continue
        click.echo(f"  hooks: {', '.join(row['hooks'])}")
        for kind, names in row["registers"].items():
            click.echo(f"  {kind.replace('_', ' ')}: {', '.join(names)}")
        for line in row["clashes"]:
            click.echo(f"  clash: {line}")
