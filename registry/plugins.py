"""Plugin discovery and the name registries that plugins fill.

``get_plugin_manager()`` builds a fresh manager (no module-level state, so tests and
embedded users can hold several); ``activate()`` loads plugins named on the command line
by entry-point name or dotted module path; ``Registries.collect()`` runs the
registration hooks and remembers which plugin registered each name.

Every hook the host calls goes through one path, ``Host.run`` (``run_hook`` for a bare plugin
manager): pluggy's semantics (order, ``firstresult``, wrappers), each plugin isolated (an
exception becomes one ``HookError`` line naming the plugin, the hook and the exception) and each
result checked against the hook's contract (``registry.contracts``). What a plugin registers is
checked when it registers it, and ``ganrun_*`` functions that pluggy would never call (no
``@hookimpl`` marker, or no such hook) are reported with a ``PluginWarning``.

Set ``GANRUN_TRACE=1`` to print every hook call to stderr while debugging a plugin.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import os
import sys
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from registry import contracts, hookspecs
from registry.errors import (
    BUILTIN_LABELS,
    CheckpointError,
    DuplicateNameError,
    HookError,
    PluginError,
    UnknownNameError,
    is_out_of_memory,
    label,
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


def _dist_of(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist is not None else (None, None)


def origin(name: str) -> str:
    """Where plugin ``name`` comes from, for messages: ``ganrun (built-in)``, ``entry point
    'vonmises' of ganrun-vonmises 0.1.0``, or ``module my_plugin`` (a dotted path)."""
    if name in BUILTIN_LABELS:
        return BUILTIN_LABELS[name]
    found = installed_plugins().get(name)
    if found is not None:
        of = f" of {found.distribution} {found.version or ''}".rstrip() if found.distribution else ""
        return f"entry point {name!r}{of}"
    return f"module {name}"


def _not_found(name: str, installed: dict[str, md.EntryPoint]) -> PluginError:
    """A name that is no installed entry point and no importable module: what is installed (with
    each distribution), the nearest name, and which distribution to install where one fits."""
    import difflib

    by_dist: dict[str, list[str]] = {}
    for ep_name, ep in sorted(installed.items()):
        dist, version = _dist_of(ep)
        by_dist.setdefault(f"{dist} {version or ''}".rstrip() if dist else "no distribution", []).append(ep_name)
    listed = "; ".join(f"{', '.join(names)} (from {dist})" for dist, names in by_dist.items()) or "none"
    norm = lambda text: text.lower().replace("-", "_").replace(".", "_")  # PEP 503 without the dashes
    provides = [ep_name for ep_name, ep in installed.items() if norm(_dist_of(ep)[0] or "") == norm(name)]
    if provides:  # a distribution's name, not its entry point's
        provides.sort()
        return PluginError(
            f"plugin {name!r} is the name of the distribution {_dist_of(installed[provides[0]])[0]}, not of a "
            f"plugin; it installs {', '.join(repr(n) for n in provides)}: use --plugin {provides[0]}"
        )
    close = difflib.get_close_matches(name, list(installed), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    if not ("." in name or name.isidentifier()):
        return PluginError(
            f"plugin name {name!r} is not an entry-point name or a module path (installed: {listed}); {hint}"
            f"ganrun plugins lists what is installed"
        )
    return PluginError(
        f"plugin {name!r} is neither an installed plugin (installed: {listed}) nor an importable module; "
        f"{hint}pip install the distribution that declares entry point {name!r} in group {ENTRY_POINT_GROUP!r} "
        f"(ganrun plugins lists what is installed)"
    )


def _import_plugin(name: str) -> tuple[Any, str | None]:
    """Load plugin ``name``: an entry point of group ``ganrun``, else a dotted module path."""
    installed = {ep.name: ep for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
    try:
        if name in installed:
            ep = installed[name]
            return ep.load(), _dist_of(ep)[1]
        if "." in name or name.isidentifier():
            try:
                module = importlib.import_module(name)
                return module, getattr(module, "__version__", None)
            except ModuleNotFoundError as exc:
                if exc.name != name:  # the plugin exists but one of its imports is missing
                    raise
                raise _not_found(name, installed) from None
        raise _not_found(name, installed)
    except PluginError:
        raise
    except Exception as exc:  # anything a broken plugin raises while importing
        where = f" ({origin(name)})" if name in installed else ""
        raise PluginError(f"plugin {name!r}{where} failed to load: {type(exc).__name__}: {exc}") from exc


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
            why = "; ".join(contracts.unknown_hooks(plugin)) or _one_line(exc)  # with the nearest hook name
            raise PluginError(f"plugin {name!r} is invalid: {why}") from exc
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
            raise DuplicateNameError(_clash(self.kind, name, self.entries[name].plugin, plugin))
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


def _clash(kind: str, name: str, first: str, second: str) -> str:
    """Two plugins register ``name``: both named with where they come from, and the fix a plugin
    author can make. Deactivating one is no fix when the other extends it (a code type for the
    infogan plugin needs infogan active), so the advice is a rename in the registration hook, of
    the plugin that is not ganrun's own where one is."""
    hook = {kind_: hook_ for hook_, kind_ in REGISTRY_KINDS.values()}.get(kind, "ganrun_register_commands")
    if first in BUILTIN_OWNERS:
        return (
            f"{kind} {name!r} is built in ({label(first)}) and plugin {second!r} ({origin(second)}) registers it "
            f"too; a built-in cannot be deactivated, so rename the plugin's in its {hook}, e.g. "
            f"{_renamed(second, name)!r}"
        )
    ours = {ep.name for ep in installed_plugins().values() if ep.distribution == "ganrun"}
    rename = first if second in ours and first not in ours else second
    return (
        f"{kind} {name!r} is registered by both plugin {first!r} ({origin(first)}) and plugin {second!r} "
        f"({origin(second)}); each name is registered once: rename the one plugin {rename!r} registers in its "
        f"{hook}, e.g. {_renamed(rename, name)!r}, and use that name"
    )


def _call_each(
    pm: pluggy.PluginManager,
    hook_name: str,
    make_register: Callable[[str], Callable],
    broken: dict[str, str] | None = None,
) -> None:
    """Call each plugin's implementation of a registration hook (``run_hook`` with ``only``) with
    a ``register`` bound to that plugin, so the host records which plugin registered each name.
    With ``broken``, a plugin's error is recorded there (plugin name -> message) and the other
    plugins still register."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():  # registration order: a duplicate blames the later
        if broken is not None and impl.plugin_name in broken:
            continue
        try:
            run_hook(pm, hook_name, only=impl.plugin_name, register=make_register(impl.plugin_name))
        except PluginError as exc:
            if broken is None:
                raise
            broken[impl.plugin_name] = str(exc)
        except Exception as exc:  # a refusal that passes run_hook unchanged is still this plugin's fault here
            error = HookError(impl.plugin_name, hook_name, exc)
            if broken is None:
                raise error from exc
            broken[impl.plugin_name] = str(error)


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


# pm -> {(hook, implementations): [(implementation, a caller of it alone)]}, built on first use
_SINGLE_CALLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _one_by_one(pm: pluggy.PluginManager, hook_name: str, impls: list) -> list[tuple[Any, Any]]:
    """Each implementation in pluggy's call order (the plugin registered last first, ``tryfirst``
    and ``trylast`` honoured) with a pluggy caller of it alone (``subset_hook_caller``), so every
    call still goes through pluggy (its argument handling and ``GANRUN_TRACE``'s tracing)."""
    cache = _SINGLE_CALLERS.setdefault(pm, {})
    key = (hook_name, tuple(map(id, impls)))
    callers = cache.get(key)
    if callers is None:
        everyone = [impl.plugin for impl in getattr(pm.hook, hook_name).get_hookimpls()]
        callers = [
            (impl, pm.subset_hook_caller(hook_name, remove_plugins=[p for p in everyone if p is not impl.plugin]))
            for impl in reversed(impls)
        ]
        cache[key] = callers
    return callers


def run_hook(pm: pluggy.PluginManager, hook_name: str, /, *, only: str | None = None, **kwargs: Any) -> Any:
    """``pm.hook.<hook_name>(**kwargs)`` with the host's guarantees; ``Host.run`` documents them."""
    caller = getattr(pm.hook, hook_name)
    impls = caller.get_hookimpls()
    if only is not None:
        impls = [impl for impl in impls if impl.plugin_name == only]
    firstresult = bool(caller.spec is not None and caller.spec.opts.get("firstresult"))
    contract = hook_name in contracts.HOOK_RESULTS
    if any(impl.hookwrapper or impl.wrapper for impl in impls):
        return _run_wrapped(pm, caller, hook_name, impls, firstresult, contract, kwargs)
    results = []
    for impl, single in _one_by_one(pm, hook_name, impls):
        try:
            result = single(**kwargs)
        except Exception as exc:  # anything a plugin's hook raises
            if _passes_through(exc, hook_name):
                raise
            raise HookError(impl.plugin_name, hook_name, exc) from exc
        if not firstresult:  # a caller of one implementation returns [] or [result]
            result = result[0] if result else None
        if result is None:
            continue
        if contract:
            _check_result(hook_name, result, impl.plugin_name)
        if firstresult:
            return result
        results.append(result)
    return None if firstresult else results


def _check_result(hook_name: str, result: Any, plugin: str) -> None:
    problem = contracts.check_hook_result(hook_name, result)
    if problem:
        raise PluginError(f"plugin {label(plugin)} broke the {hook_name} contract: it {problem}")


def _run_wrapped(
    pm: pluggy.PluginManager,
    caller: Any,
    hook_name: str,
    impls: list,
    firstresult: bool,
    contract: bool,
    kwargs: dict[str, Any],
) -> Any:
    """A hook some plugin wraps (``hookwrapper``/``wrapper``): one pluggy call of all of them, so
    the wrappers see the whole call; the failing plugin is found from the traceback, and a result
    that breaks the contract names the plugins that could have returned it."""
    if len(impls) != len(caller.get_hookimpls()):
        wanted = {id(impl.plugin) for impl in impls}
        others = [impl.plugin for impl in caller.get_hookimpls() if id(impl.plugin) not in wanted]
        caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
    try:
        outcome = caller(**kwargs)
    except Exception as exc:
        if _passes_through(exc, hook_name):
            raise
        plugin = _blame(exc, impls)
        if plugin is None:
            raise
        raise HookError(plugin, hook_name, exc) from exc
    if contract:
        plain = [impl.plugin_name for impl in reversed(impls) if not (impl.hookwrapper or impl.wrapper)]
        for result in [outcome] if firstresult else outcome:
            if result is not None:
                _check_result(hook_name, result, plain[0] if len(plain) == 1 else " or ".join(plain))
    return outcome


def call_hook(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """``run_hook`` as a list of results (kept for code written against it)."""
    result = run_hook(pm, hook_name, **kwargs)
    return result if isinstance(result, list) else ([] if result is None else [result])


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
                others = [BUILTIN_LABELS.get(other, other) for other in others]
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

    def run(self, hook_name: str, /, *, only: str | None = None, **kwargs: Any) -> Any:
        """Call hook ``hook_name`` with ``kwargs``: the one way the host calls a plugin.

        What every call guarantees:

        - pluggy's semantics: the implementations run in pluggy's order (the plugin registered
          last first, ``tryfirst``/``trylast`` honoured, wrappers around the others), each gets
          the arguments it names, ``None`` results are dropped; a ``firstresult`` hook returns the
          first non-None result (or None) and calls no further plugin, any other hook returns the
          list of non-None results. ``only`` calls one plugin's implementation alone.
        - isolation: an exception a plugin's implementation raises becomes one ``HookError``
          naming that plugin, the hook and the exception, so a plugin's bug is one line that says
          whose it is (and a training run's last checkpoint stays as it was). Refusals meant for
          the user pass through unchanged: ``PluginError``, click's exceptions,
          ``CheckpointError``, ``ValueError`` from ``ganrun_configure``, and running out of memory.
        - result checks: a hook with a result contract (``ganrun_d_loss_terms``,
          ``ganrun_g_loss_terms``, ``ganrun_log``, ``ganrun_checkpoint_state``; see
          ``registry.contracts``) has each plugin's result checked as it arrives; one that breaks
          it is a ``PluginError`` naming the plugin.
        - tracing: ``GANRUN_TRACE=1`` prints every call to stderr (each plugin's call is pluggy's).
        """
        return run_hook(self.pm, hook_name, only=only, **kwargs)

    @property
    def hook(self) -> "_HookNames":
        """``host.hook.<name>(**kwargs)`` is ``host.run("<name>", **kwargs)`` (the spelling of
        ``pm.hook``, kept for code written against it)."""
        return _HookNames(self)

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """``run`` as a list of results (kept for code written against it)."""
        return call_hook(self.pm, hook_name, **kwargs)

    checked = call  # every call is checked now; kept for code written against it


class _HookNames:
    """``host.hook``: an attribute per hook, each calling ``Host.run``."""

    __slots__ = ("_host",)

    def __init__(self, host: Host):
        self._host = host

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if not name.startswith("ganrun_"):
            raise AttributeError(name)
        return functools.partial(self._host.run, name)


def _blame(exc: BaseException, impls: list) -> str | None:
    """The plugin whose implementation (of ``impls``) the traceback passed through (the outermost
    such frame), or ``None`` when the exception did not come from a plugin."""
    codes = {}
    for impl in impls:
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
