"""The ``ganrun`` command line, built by ``build_cli()`` (nothing happens at import).

``ganrun [--plugin NAME]... [COMMAND]``: plugins are loaded only when a command needs
them, so a broken plugin never takes down ``--help`` or ``ganrun plugins``. With no
command, ``train`` runs with its defaults. Each command lives in its own module:
``plugins.py``, ``report.py``, ``train.py``, ``sweep.py``, ``export.py``;
plugin commands come from the active plugins' registries.
"""

from __future__ import annotations

import warnings

import click

from registry.cli.plugins import plugins_command
from registry.cli.report import report_command
from registry.cli.session import Session, plugin_failure
from registry.cli.train import make_train_command
from registry.plugins import RESERVED_COMMANDS, Host, PluginError, PluginWarning, installed_plugins


class GanrunGroup(click.Group):
    """Adds ``train`` (with the active plugins' options) and plugin commands on demand."""

    def _session(self, ctx: click.Context) -> Session:
        return Session(tuple(ctx.params.get("plugin") or ()))

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(RESERVED_COMMANDS)
        try:
            names += [n for n in self._session(ctx).host().registries.commands.names() if n not in names]
        except click.ClickException:
            pass  # a broken plugin is reported when it is used, not in --help
        return names

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "plugins":
            return plugins_command
        if name == "report":
            return report_command
        if name == "export":
            from registry.cli.export import export_command

            return export_command
        if name == "train":
            return make_train_command(self._session(ctx))
        if name == "sweep":
            from registry.cli.sweep import make_sweep_command

            return make_sweep_command(self._session(ctx))
        session = self._session(ctx)
        host = session.host()
        if name in host.registries.commands:
            return host.registries.commands.get(name)
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands, then those that installed plugins provide and how to enable them (a
        newcomer's next commands, ``eval`` or ``traverse``, come from the InfoGAN plugin)."""
        super().format_commands(ctx, formatter)
        shown = set(self.list_commands(ctx))
        rows = []
        for plugin, commands in plugin_commands(exclude=shown).items():
            rows.append((f"--plugin {plugin}", ", ".join(commands)))
        if rows:
            with formatter.section("Commands of installed plugins (enable with --plugin NAME)"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        """Run the command; a plugin's failure or an allocator failure anywhere in it is one line
        (naming the plugin, or the command and its size options), never a traceback."""
        try:
            return super().invoke(ctx)
        except PluginError as exc:  # a plugin's hook failed in any command: one line naming it
            raise click.ClickException(plugin_failure(exc)) from None
        except Exception as exc:
            from registry.errors import is_out_of_memory

            if not is_out_of_memory(exc):
                raise
            name = ctx.invoked_subcommand or "train"
            command = self.get_command(ctx, name)
            sizes = [
                p.opts[0]
                for p in (command.params if command is not None else [])
                if isinstance(p, click.Option) and isinstance(p.type, (click.types.IntParamType, click.IntRange))
            ]
            lower = f"; lower its sizes ({', '.join(sizes)})" if sizes else ""
            raise click.ClickException(f"'{name}' ran out of memory{lower} or use a device with more memory") from None

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if args and not args[0].startswith("-"):
                hint = _command_hint(args[0])
                if hint:
                    raise click.UsageError(f"{exc.message} {hint}", ctx) from None
            raise


def plugin_commands(exclude: set[str] = frozenset()) -> dict[str, list[str]]:
    """``{entry point: [command, ...]}``: the commands each installed plugin registers, less
    ``exclude`` (those already available); a plugin that fails to load is left out here (``ganrun
    plugins`` and the commands that need it name it with its error)."""
    found: dict[str, list[str]] = {}
    for ep_name in sorted(installed_plugins()):
        try:
            host = Host.create([ep_name])
        except (PluginError, click.ClickException):
            continue
        names = [name for name in host.registries.commands.names() if name not in exclude]
        if names:
            found[ep_name] = names
    return found


def _command_hint(name: str) -> str:
    """Say which installed plugin provides an unknown command, if one does."""
    for ep_name in installed_plugins():
        try:
            host = Host.create([ep_name])
        except PluginError:
            continue
        if name in host.registries.commands:
            return f"Command {name!r} is provided by plugin {ep_name!r}: run 'ganrun --plugin {ep_name} {name}'."
    return ""


def build_cli() -> click.Group:
    @click.group(cls=GanrunGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option(
        "--plugin",
        "-p",
        multiple=True,
        metavar="NAME",
        is_eager=True,  # read before --help
        help="Activate a plugin: an installed entry-point name (see 'ganrun plugins') or a "
        "dotted module path. Repeatable.",
    )
    @click.version_option(package_name="ganrun", prog_name="ganrun")
    @click.pass_context
    def cli(ctx: click.Context, plugin: tuple[str, ...]) -> None:
        """Train GANs whose every piece is a plugin.

        \b
        ganrun --plugin infogan             train InfoGAN on the built-in MNIST digits
        ganrun train --steps 500            train a plain GAN
        ganrun -p infogan sweep --seeds 0-9 --out sweeps/infogan
                                            InfoGAN over ten seeds, several at once
        ganrun plugins                      list installed plugins and what they register

        With no command, 'train' runs with its defaults.
        """
        ctx.obj = Session(plugin)
        if ctx.invoked_subcommand is None:
            command = make_train_command(ctx.obj)
            with command.make_context("train", [], parent=ctx) as sub:
                command.invoke(sub)

    return cli


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Plugin warnings as one ``warning:`` line (like the CLI's own), not Python's two-line
    form with a source location inside ganrun; other warnings keep Python's format."""
    if issubclass(category, PluginWarning):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main() -> None:
    warnings.formatwarning = _format_warning
    build_cli()(prog_name="ganrun")
