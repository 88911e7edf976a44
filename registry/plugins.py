"""Plugin discovery and the name registries that plugins fill.

``get_plugin_manager()`` builds a fresh manager (no module-level state, so tests and
embedded users can hold several); ``activate()`` loads plugins named on the command line
by entry-point name or dotted module path; ``Registries.collect()`` runs the
registration hooks and remembers which plugin registered each name.

Every call into a plugin is isolated. The hooks called to list, describe or build (the
registration hooks, ``ganrun_train_options``, ``ganrun_config_defaults``) go through
``call_hook`` or ``Registries.collect``; the hooks called while training, checkpointing and
reporting go through ``Host.hook`` (``IsolatedHooks``: pluggy's call, with the failing plugin
found from the traceback) or ``Host.checked`` (one plugin at a time, each result checked
against the hook's contract). Either way an exception becomes one ``HookError`` line naming
the plugin, the hook and the exception. What a plugin registers is checked when it registers it
(``registry.contracts``), and ``ganrun_*`` functions that pluggy would never call (no
``@hookimpl`` marker, or no such hook) are reported with a ``PluginWarning``.

Set ``GANRUN_TRACE=1`` to print every hook call to stderr while debugging a plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from registry import contracts, hookspecs
from registry.errors import (
    CheckpointError,
    DuplicateNameError,
    HookError,
    PluginError,
    UnknownNameError,
    is_out_of_memory,
)

hookimpl = pluggy.HookimplMarker("ganrun")

ENTRY_POINT_GROUP = "ganrun"
RESERVED_COMMANDS = ("train", "sweep", "plugins", "report", "export")  # built-in commands no plugin may replace
# Plugins that ship with the framework and are always active. They go through the same
# hooks as third-party plugins; nothing else in the host knows their contents.
# registry.default_plugins.tensorboard adds --tensorboard (off by default).
DEFAULT_PLUGINS = ("registry.default_plugins.builtins", "registry.default_plugins.tensorboard")

REGISTRY_KINDS = {
    "latent_codes": ("ganrun_register_latent_codes", "latent code type"),
    "q_losses": ("ganrun_register_q_losses", "Q loss"),
    "datasets": ("ganrun_register_datasets", "dataset"),
    "models": ("ganrun_register_models", "model"),
    "gan_losses": ("ganrun_register_gan_losses", "GAN loss"),
}


class PluginWarning(UserWarning):
    """Something in a plugin that is not an error but does nothing: an unmarked hook."""


def get_plugin_manager(*, defaults: bool = True) -> pluggy.PluginManager:
    """A new plugin manager with the ganrun hookspecs and the default plugins."""
    pm = pluggy.PluginManager("ganrun")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("GANRUN_TRACE"):
        pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
        pm.enable_tracing()
    if defaults:
        for module_name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
    return pm


@dataclass
class InstalledPlugin:
    """One entry point of group ``ganrun``, loaded or not."""

    name: str
    value: str
    distribution: str | None
    version: str | None


def installed_plugins() -> dict[str, InstalledPlugin]:
    """Entry points in group ``ganrun``, by name, without importing them."""
    found: dict[str, InstalledPlugin] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found[ep.name] = InstalledPlugin(
            name=ep.name,
            value=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
    return found


def _import_plugin(name: str) -> tuple[Any, str | None]:
    """Load plugin ``name``: an entry point of group ``ganrun``, else a dotted module path."""
    installed = {ep.name: ep for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
    try:
        if name in installed:
            ep = installed[name]
            dist = getattr(ep, "dist", None)
            return ep.load(), (dist.version if dist is not None else None)
        if "." in name or name.isidentifier():
            try:
                module = importlib.import_module(name)
                return module, getattr(module, "__version__", None)
            except ModuleNotFoundError as exc:
                if exc.name != name:  # the plugin exists but one of its imports is missing
                    raise
                known = ", ".join(sorted(installed)) or "none installed"
                raise PluginError(
                    f"plugin {name!r} is neither an installed plugin (installed: {known}) "
                    f"nor an importable module; pip install the package that provides it"
                ) from None
        raise PluginError(f"plugin name {name!r} is not an entry-point name or a module path")
    except PluginError:
        raise
    except Exception as exc:  # anything a broken plugin raises while importing
        raise PluginError(f"plugin {name!r} failed to load: {type(exc).__name__}: {exc}") from exc


def _one_line(exc: BaseException) -> str:
    """pluggy's validation messages span three lines; the CLI promises one."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def activate(pm: pluggy.PluginManager, names: Iterable[str]) -> dict[str, str | None]:
    """Import and register the named plugins; return ``{name: version}``.

    Raises ``PluginError`` naming the plugin when it cannot be imported, implements a hook
    that does not exist, or gives a hook an argument the spec does not know.
    """
    versions: dict[str, str | None] = {}
    for name in names:
        if pm.has_plugin(name) or name in versions:
            continue
        plugin, version = _import_plugin(name)
        if pm.is_registered(plugin):  # same module under another name (entry point + path)
            versions[name] = version
            continue
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} is invalid: {_one_line(exc)}") from exc
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(name=name)
            raise PluginError(f"plugin {name!r} is invalid: {_one_line(exc)}") from exc
        for line in contracts.unmarked_hooks(plugin):
            warnings.warn(f"plugin {name!r}: {line}", PluginWarning, stacklevel=2)
        versions[name] = version
    return versions


def hooks_of(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Names of the ganrun hooks that ``plugin`` implements."""
    callers = pm.get_hookcallers(plugin) or []
    return sorted(caller.name for caller in callers)


@dataclass
class Entry:
    value: Any
    plugin: str


@dataclass
class Registry:
    """Objects registered under a name, with the plugin that registered each."""

    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)

    def add(self, name: str, value: Any, plugin: str) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r}")
        missing = contracts.check_registration(self.kind, value)
        if missing:
            raise PluginError(
                f"plugin {plugin!r} registered {self.kind} {name!r} without "
                + "; ".join(missing)
                + " (docs/plugins.md lists what each registration needs)"
            )
        if name in self.entries:
            other = self.entries[name].plugin
            if other in BUILTIN_OWNERS:
                raise DuplicateNameError(
                    f"{self.kind} {name!r} is built in (plugin {other!r}) and plugin {plugin!r} registers it too; "
                    f"a built-in cannot be deactivated, so rename the plugin's, e.g. {_renamed(plugin, name)!r}"
                )
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered by both plugin {other!r} and plugin {plugin!r}; "
                f"deactivate one of them"
            )
        self.entries[name] = Entry(value, plugin)

    def get(self, name: str) -> Any:
        if name not in self.entries:
            raise UnknownNameError(self.kind, name, self.entries)
        return self.entries[name].value

    def names(self) -> list[str]:
        return sorted(self.entries)

    def by_plugin(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for name, entry in sorted(self.entries.items()):
            grouped.setdefault(entry.plugin, []).append(name)
        return grouped

    def __contains__(self, name: object) -> bool:
        return name in self.entries


BUILTIN_OWNERS = frozenset((*DEFAULT_PLUGINS, "ganrun"))  # owners of names no --plugin can switch off


def _renamed(plugin: str, name: str) -> str:
    return f"{plugin.rsplit('.', 1)[-1]}-{name}"


def _call_each(
    pm: pluggy.PluginManager,
    hook_name: str,
    make_register: Callable[[str], Callable],
    broken: dict[str, str] | None = None,
) -> None:
    """Call each implementation of a registration hook with a ``register`` bound to its plugin.

    Calling implementations one by one (rather than through ``pm.hook``) is what lets the
    host record which plugin registered each name, and isolates each plugin: an exception
    raised inside its hook becomes a ``HookError`` naming it. With ``broken``, the error is
    recorded there (plugin name -> message) and the other plugins still register.
    """
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order, so a duplicate blames the later plugin
        if broken is not None and impl.plugin_name in broken:
            continue
        try:
            try:
                impl.function(make_register(impl.plugin_name))
            except PluginError:
                raise
            except Exception as exc:  # anything a plugin's hook raises
                raise HookError(impl.plugin_name, hook_name, exc) from exc
        except PluginError as exc:
            if broken is None:
                raise
            broken[impl.plugin_name] = str(exc)


def call_hook(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """``pm.hook.<hook_name>(**kwargs)``, one plugin at a time, in pluggy's order (the plugin
    registered last first), non-None results only; a hook that raises is a ``HookError``."""
    return [result for _, result in results_by_plugin(pm, hook_name, **kwargs)]


def results_by_plugin(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Like ``call_hook``, with each non-None result paired with the plugin that returned it,
    so the host can name the plugin when a result breaks the hook's contract."""
    results = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        try:
            result = impl.function(*(kwargs[arg] for arg in impl.argnames))
        except Exception as exc:  # anything a plugin's hook raises
            if _passes_through(exc, hook_name):
                raise
            raise HookError(impl.plugin_name, hook_name, exc) from exc
        if result is not None:
            results.append((impl.plugin_name, result))
    return results


@dataclass
class Registries:
    """Every name registry, filled from the active plugins."""

    latent_codes: Registry
    q_losses: Registry
    datasets: Registry
    models: Registry
    gan_losses: Registry
    commands: Registry

    @classmethod
    def collect(cls, pm: pluggy.PluginManager, *, broken: dict[str, str] | None = None) -> "Registries":
        """Run every registration hook. A plugin whose hook raises (or registers something
        that breaks its contract) is a ``PluginError`` naming it; with ``broken`` (for
        listings and help) it is recorded there instead and nothing it registered is kept."""
        filled: dict[str, Registry] = {}
        for attr, (hook_name, kind) in REGISTRY_KINDS.items():
            reg = Registry(kind)
            _call_each(pm, hook_name, lambda plugin, reg=reg: lambda name, value: reg.add(name, value, plugin), broken)
            filled[attr] = reg
        commands = Registry("command")
        for name in RESERVED_COMMANDS:
            commands.entries[name] = Entry(None, "ganrun")

        def add_command(plugin: str) -> Callable[[Any], None]:
            def register(command: Any) -> None:
                missing = contracts.check_registration("command", command)
                if missing:
                    raise PluginError(f"plugin {plugin!r} registered a command without {'; '.join(missing)}")
                commands.add(command.name, command, plugin)

            return register

        _call_each(pm, "ganrun_register_commands", add_command, broken)
        for name in RESERVED_COMMANDS:
            del commands.entries[name]
        registries = cls(commands=commands, **filled)
        for registry_ in registries.all():
            for name in [n for n, entry in registry_.entries.items() if broken and entry.plugin in broken]:
                del registry_.entries[name]
        return registries

    def all(self) -> list[Registry]:
        return [self.latent_codes, self.q_losses, self.datasets, self.models, self.gan_losses, self.commands]


def name_clashes(rows: Iterable[dict[str, Any]], plugin: str) -> list[str]:
    """Names ``plugin`` registers that another listed plugin registers too (``ganrun plugins``
    rows: ``{"name", "registers": {kind: [names]}}``), one line each: such plugins cannot be
    active together."""
    rows = list(rows)
    own = next((row.get("registers") or {} for row in rows if row["name"] == plugin), {})
    lines = []
    for kind, names in own.items():
        for name in names:
            others = [
                row["name"]
                for row in rows
                if row["name"] != plugin and name in (row.get("registers") or {}).get(kind, ())
            ]
            if others:
                lines.append(f"{kind.replace('_', ' ')} {name!r} is also registered by {', '.join(others)}")
    return lines


@dataclass
class Host:
    """A plugin manager with its active plugins loaded and registries collected."""

    pm: pluggy.PluginManager
    registries: Registries
    plugins: dict[str, str | None]  # active non-default plugins -> version

    @classmethod
    def create(cls, names: Iterable[str] = ()) -> "Host":
        pm = get_plugin_manager()
        versions = activate(pm, names)
        return cls(pm=pm, registries=Registries.collect(pm), plugins=versions)

    @property
    def hook(self) -> "IsolatedHooks":
        """``pm.hook`` with every call isolated: an exception a plugin's implementation raises
        becomes a ``HookError`` naming that plugin and the hook (see ``IsolatedHooks``)."""
        return IsolatedHooks(self.pm)

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """A hook's non-None results, each plugin isolated (see ``call_hook``)."""
        return call_hook(self.pm, hook_name, **kwargs)

    def checked(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """A hook's non-None results, each plugin isolated and each result checked against the
        hook's contract (``contracts.check_hook_result``); a result that breaks it is a
        ``PluginError`` naming the plugin."""
        results = []
        for plugin, result in results_by_plugin(self.pm, hook_name, **kwargs):
            problem = contracts.check_hook_result(hook_name, result)
            if problem:
                raise PluginError(f"plugin {plugin!r} broke the {hook_name} contract: it {problem}")
            results.append(result)
        return results


# Exceptions a hook may raise to refuse something, with a message meant for the user; they pass
# through unchanged. ``ganrun_configure`` may also refuse a configuration with ``ValueError``.
_USER_FACING = (PluginError,)
_REFUSALS = {"ganrun_configure": (ValueError,)}


def _user_facing() -> tuple[type[BaseException], ...]:
    import click

    return (*_USER_FACING, click.ClickException, CheckpointError)


def _passes_through(exc: BaseException, hook_name: str) -> bool:
    """Exceptions a hook does not own: refusals meant for the user, and running out of memory
    (a size to lower, reported as such by the command, not a bug of the plugin that allocated)."""
    return isinstance(exc, _user_facing() + _REFUSALS.get(hook_name, ())) or is_out_of_memory(exc)


class IsolatedHooks:
    """``pm.hook`` whose calls keep pluggy's semantics (order, ``firstresult``, wrappers) but
    turn an exception raised inside a plugin's implementation into a ``HookError`` that names
    the plugin (found from the traceback) and the hook. Used for every hook the host calls
    while training, sampling, checkpointing and reporting, so a plugin's bug is one line that
    says whose it is, and the run's last checkpoint stays as it was."""

    __slots__ = ("_pm",)

    def __init__(self, pm: pluggy.PluginManager):
        self._pm = pm

    def __getattr__(self, name: str) -> "_IsolatedCaller":
        return _IsolatedCaller(getattr(self._pm.hook, name), name)

    @staticmethod
    def wrap(caller: Any, name: str) -> "_IsolatedCaller":
        """Isolate one hook caller (e.g. a ``pm.subset_hook_caller``) the same way."""
        return _IsolatedCaller(caller, name)


class _IsolatedCaller:
    __slots__ = ("_caller", "_name")

    def __init__(self, caller: Any, name: str):
        self._caller, self._name = caller, name

    def __call__(self, **kwargs: Any) -> Any:
        try:
            return self._caller(**kwargs)
        except Exception as exc:
            if _passes_through(exc, self._name):
                raise
            plugin = _blame(exc, self._caller)
            if plugin is None:
                raise
            raise HookError(plugin, self._name, exc) from exc

    def __getattr__(self, name: str) -> Any:  # get_hookimpls, spec, ...
        return getattr(self._caller, name)


def _blame(exc: BaseException, caller: Any) -> str | None:
    """The plugin whose implementation of ``caller``'s hook the traceback passed through (the
    outermost such frame), or ``None`` when the exception did not come from a plugin."""
    codes = {}
    for impl in caller.get_hookimpls():
        code = getattr(getattr(impl.function, "__func__", impl.function), "__code__", None)
        if code is not None:
            codes[code] = impl.plugin_name
    tb = exc.__traceback__
    while tb is not None:
        plugin = codes.get(tb.tb_frame.f_code)
        if plugin is not None:
            return plugin
        tb = tb.tb_next
    return None
