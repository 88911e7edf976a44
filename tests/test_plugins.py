"""Tests for registry.plugins: plugin managers, discovery, activation and name registries."""

from __future__ import annotations

import importlib.metadata as md
import types
from typing import Any, Callable, Iterator

import pytest

import registry.plugins
from registry.data import base as datasets
from registry.default_plugins import builtins
from registry.nets import losses, models
from registry.plugins import (
    DuplicateNameError,
    HookError,
    Host,
    PluginError,
    PluginWarning,
    Registries,
    UnknownNameError,
    activate,
    call_hook,
    get_plugin_manager,
    hookimpl,
    hooks_of,
    installed_plugins,
    name_clashes,
)

GOOD_SOURCE = """\
from registry import hookimpl
from registry.data import load_digits
from registry.nets.models import dcgan28


@hookimpl
def ganrun_register_datasets(register):
    register("toy-data", load_digits)


@hookimpl
def ganrun_register_models(register):
    register("toy-model", dcgan28)
"""


def toy_factory(**kwargs: Any) -> None:
    raise AssertionError("registries store factories; they must not call them")


class ClassPlugin:
    """A plugin written as a class: hook implementations are methods."""

    @hookimpl
    def ganrun_register_datasets(self, register: Callable) -> None:
        register("class-data", toy_factory)

    @hookimpl
    def ganrun_register_models(self, register: Callable) -> None:
        register("class-model", toy_factory)


def module_plugin() -> types.ModuleType:
    """A plugin written as a module object built at run time."""
    module = types.ModuleType("module_plugin")

    @hookimpl
    def ganrun_register_datasets(register: Callable) -> None:
        register("module-data", toy_factory)

    @hookimpl
    def ganrun_register_models(register: Callable) -> None:
        register("module-model", toy_factory)

    module.ganrun_register_datasets = ganrun_register_datasets
    module.ganrun_register_models = ganrun_register_models
    return module


@pytest.fixture(params=["class-instance", "module-object"])
def registered(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str, str, str]]:
    """A manager with one extra plugin registered under a name; unregistered afterwards."""
    pm = get_plugin_manager()
    if request.param == "class-instance":
        plugin, prefix = ClassPlugin(), "class"
    else:
        plugin, prefix = module_plugin(), "module"
    name = f"test-{request.param}"
    pm.register(plugin, name=name)
    try:
        yield pm, name, f"{prefix}-data", f"{prefix}-model"
    finally:
        pm.unregister(name=name)
        assert not pm.has_plugin(name)


# ------------------------------------------------------------------------------ managers


def test_each_call_returns_an_independent_manager() -> None:
    first, second = get_plugin_manager(), get_plugin_manager()
    assert first is not second
    first.register(ClassPlugin(), name="only-on-first")
    assert first.has_plugin("only-on-first")
    assert not second.has_plugin("only-on-first")
    assert "class-data" in Registries.collect(first).datasets
    assert "class-data" not in Registries.collect(second).datasets
    assert "class-data" not in Registries.collect(get_plugin_manager()).datasets


def test_builtins_register_the_core_names_as_plugin_registry_builtins() -> None:
    pm = get_plugin_manager()
    assert pm.has_plugin("registry.default_plugins.builtins")
    regs = Registries.collect(pm)
    assert {"digits", "mnist-idx", "image-folder"} <= set(regs.datasets.names())
    assert {"dcgan28", "dcgan64"} <= set(regs.models.names())
    assert {"nonsaturating", "hinge"} <= set(regs.gan_losses.names())
    assert regs.latent_codes.names() == [] and regs.q_losses.names() == [] and regs.commands.names() == []
    for registry_ in (regs.datasets, regs.models, regs.gan_losses):
        assert {entry.plugin for entry in registry_.entries.values()} == {"registry.default_plugins.builtins"}
        assert list(registry_.by_plugin()) == ["registry.default_plugins.builtins"]
    assert regs.datasets.get("mnist-idx") is datasets.load_mnist_idx
    assert regs.models.get("dcgan64") is models.dcgan64
    assert regs.gan_losses.get("hinge") is losses.HINGE
    assert hooks_of(pm, builtins) == [
        "ganrun_register_datasets",
        "ganrun_register_gan_losses",
        "ganrun_register_models",
    ]


def test_manager_without_defaults_registers_nothing() -> None:
    regs = Registries.collect(get_plugin_manager(defaults=False))
    assert regs.datasets.names() == [] and regs.models.names() == []


def test_registered_plugin_names_appear_with_their_owner(registered: tuple[Any, str, str, str]) -> None:
    pm, name, dataset, model = registered
    regs = Registries.collect(pm)
    assert dataset in regs.datasets and model in regs.models
    assert regs.datasets.entries[dataset].plugin == name
    assert regs.models.entries[model].plugin == name
    assert regs.datasets.get(dataset) is toy_factory
    assert regs.datasets.by_plugin()[name] == [dataset]
    assert regs.datasets.entries["digits"].plugin == "registry.default_plugins.builtins"  # built-ins stay


# ------------------------------------------------------------------------------ names


def test_duplicate_name_names_both_plugins() -> None:
    class Other:
        @hookimpl
        def ganrun_register_models(self, register: Callable) -> None:
            register("class-model", toy_factory)

    pm = get_plugin_manager()
    pm.register(ClassPlugin(), name="first-plugin")
    pm.register(Other(), name="second-plugin")
    with pytest.raises(DuplicateNameError) as info:
        Registries.collect(pm)
    message = str(info.value)
    assert "'class-model'" in message
    assert "'first-plugin'" in message and "'second-plugin'" in message
    assert isinstance(info.value, PluginError)


def test_registering_a_builtin_name_again_is_a_duplicate() -> None:
    class Shadow:
        @hookimpl
        def ganrun_register_datasets(self, register: Callable) -> None:
            register("digits", toy_factory)

    pm = get_plugin_manager()
    pm.register(Shadow(), name="shadow")
    with pytest.raises(DuplicateNameError) as info:
        Registries.collect(pm)
    assert "dataset 'digits'" in str(info.value)
    assert "is built in (ganrun (built-in))" in str(info.value) and "'shadow'" in str(info.value)
    assert "registry" not in str(info.value)  # the product's name, not the package layout


def test_unknown_name_lists_the_known_names() -> None:
    regs = Registries.collect(get_plugin_manager())
    with pytest.raises(UnknownNameError) as info:
        regs.models.get("dcgan999")
    assert str(info.value) == f"unknown model 'dcgan999'; known: {', '.join(regs.models.names())}"
    assert "dcgan28, dcgan64" in str(info.value)
    assert isinstance(info.value, KeyError)
    assert info.value.name == "dcgan999"
    with pytest.raises(UnknownNameError) as info:
        regs.datasets.get("cifar")
    assert str(info.value) == f"unknown dataset 'cifar'; known: {', '.join(regs.datasets.names())}"
    assert all(name in str(info.value) for name in ("digits", "image-folder", "mnist-idx"))
    with pytest.raises(UnknownNameError, match="none registered"):
        regs.latent_codes.get("categorical")


def test_invalid_registered_name_is_refused() -> None:
    class Blank:
        @hookimpl
        def ganrun_register_models(self, register: Callable) -> None:
            register("", toy_factory)

    pm = get_plugin_manager()
    pm.register(Blank(), name="blank")
    with pytest.raises(PluginError, match="'blank'.*invalid name"):
        Registries.collect(pm)


# ------------------------------------------------------------------------------ activate


def test_activate_a_dotted_module_path(make_plugin: Callable[..., str]) -> None:
    name = make_plugin(GOOD_SOURCE, "ganrun_test_pkg.sub.plugin")
    pm = get_plugin_manager()
    assert activate(pm, [name]) == {name: None}
    assert pm.has_plugin(name)
    regs = Registries.collect(pm)
    assert regs.datasets.entries["toy-data"].plugin == name
    assert regs.models.entries["toy-model"].plugin == name
    assert hooks_of(pm, pm.get_plugin(name)) == ["ganrun_register_datasets", "ganrun_register_models"]
    assert activate(pm, [name]) == {}  # already active: nothing to do
    host = Host.create([name])
    assert host.plugins == {name: None}
    assert "toy-model" in host.registries.models


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("raise RuntimeError('boom while importing')\n", "RuntimeError: boom while importing"),
        (
            "import ganrun_test_dependency_that_is_missing\n",
            "ModuleNotFoundError: No module named 'ganrun_test_dependency_that_is_missing'",
        ),
        ("def broken(:\n", "SyntaxError"),
    ],
    ids=["raises", "missing-dependency", "syntax-error"],
)
def test_activate_a_module_that_fails_to_import(make_plugin: Callable[..., str], source: str, cause: str) -> None:
    name = make_plugin(source)
    pm = get_plugin_manager()
    with pytest.raises(PluginError) as info:
        activate(pm, [name])
    message = str(info.value)
    assert f"plugin {name!r} failed to load" in message
    assert cause in message
    assert "\n" not in message
    assert not pm.has_plugin(name)


def test_activate_refuses_an_unknown_hook(make_plugin: Callable[..., str]) -> None:
    name = make_plugin(
        "from registry import hookimpl\n\n"
        "@hookimpl\n"
        "def ganrun_register_models(register):\n"
        "    register('never-seen', object)\n\n"
        "@hookimpl\n"
        "def ganrun_no_such_hook():\n"
        "    pass\n"
    )
    pm = get_plugin_manager()
    with pytest.raises(PluginError) as info:
        activate(pm, [name])
    assert f"plugin {name!r} is invalid" in str(info.value)
    assert "ganrun_no_such_hook" in str(info.value)
    assert not pm.has_plugin(name)  # the half-registered plugin was removed again
    assert "never-seen" not in Registries.collect(pm).models


def test_activate_refuses_an_argument_the_spec_lacks(make_plugin: Callable[..., str]) -> None:
    name = make_plugin(
        "from registry import hookimpl\n\n@hookimpl\ndef ganrun_step_end(trainer, step, wall_time):\n    pass\n"
    )
    pm = get_plugin_manager()
    with pytest.raises(PluginError) as info:
        activate(pm, [name])
    message = str(info.value)
    assert f"plugin {name!r} is invalid" in message
    assert "ganrun_step_end" in message and "wall_time" in message
    assert "\n" not in message  # one line, as the guide promises
    assert not pm.has_plugin(name)


def fake_entry_points(*points: md.EntryPoint) -> Callable[..., Any]:
    def entry_points(**params: Any) -> md.EntryPoints:
        assert params == {"group": "ganrun"}
        return md.EntryPoints(points)

    return entry_points


def test_activate_an_unknown_name_lists_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = md.EntryPoint(name="somegan", value="ganrun_test_not_imported", group="ganrun")
    monkeypatch.setattr(registry.plugins.md, "entry_points", fake_entry_points(installed))
    with pytest.raises(PluginError) as info:
        activate(get_plugin_manager(), ["ganrun_test_no_such_plugin"])
    message = str(info.value)
    assert "'ganrun_test_no_such_plugin'" in message
    assert "installed: somegan" in message
    with pytest.raises(PluginError, match="not an entry-point name or a module path"):
        activate(get_plugin_manager(), ["not a name!"])


def test_installed_entry_point_is_listed_and_activated(
    monkeypatch: pytest.MonkeyPatch, make_plugin: Callable[..., str]
) -> None:
    module = make_plugin(GOOD_SOURCE)
    point = md.EntryPoint(name="fake", value=module, group="ganrun")
    monkeypatch.setattr(registry.plugins.md, "entry_points", fake_entry_points(point))

    found = installed_plugins()
    assert list(found) == ["fake"]
    assert found["fake"].value == module
    assert found["fake"].distribution is None and found["fake"].version is None

    pm = get_plugin_manager()
    assert activate(pm, ["fake"]) == {"fake": None}
    assert pm.has_plugin("fake")
    regs = Registries.collect(pm)
    assert regs.models.entries["toy-model"].plugin == "fake"

    # The same module named by its path as well is not registered twice (no duplicate names).
    assert activate(pm, [module]) == {module: None}
    assert not pm.has_plugin(module)
    assert Registries.collect(pm).datasets.entries["toy-data"].plugin == "fake"


# ------------------------------------------------------------------------------ isolation (issue 19)

RAISING_SOURCE = """\
from registry import hookimpl


@hookimpl
def ganrun_register_q_losses(register):
    raise RuntimeError("the registry exploded")
"""


def test_a_registration_hook_that_raises_is_one_line_naming_plugin_hook_and_exception(
    make_plugin: Callable[..., str],
) -> None:
    name = make_plugin(RAISING_SOURCE)
    pm = get_plugin_manager()
    activate(pm, [name])
    with pytest.raises(HookError) as info:
        Registries.collect(pm)
    assert str(info.value) == f"plugin {name!r} failed in ganrun_register_q_losses: RuntimeError: the registry exploded"
    assert isinstance(info.value, PluginError)


def test_collect_for_a_listing_marks_the_raising_plugin_broken_and_keeps_the_others(
    make_plugin: Callable[..., str],
) -> None:
    half = make_plugin(
        GOOD_SOURCE + "\n\n@hookimpl\ndef ganrun_register_commands(register):\n    raise ValueError('no')\n"
    )
    pm = get_plugin_manager()
    activate(pm, [half])
    broken: dict[str, str] = {}
    regs = Registries.collect(pm, broken=broken)
    assert list(broken) == [half] and "ganrun_register_commands: ValueError: no" in broken[half]
    assert "toy-data" not in regs.datasets and "toy-model" not in regs.models  # nothing of a broken plugin
    assert "digits" in regs.datasets  # the built-ins are still there


def test_call_hook_isolates_each_plugin_and_keeps_pluggys_order(make_plugin: Callable[..., str]) -> None:
    first = make_plugin(
        "from registry import hookimpl\n\n@hookimpl\ndef ganrun_config_defaults():\n    return {'steps': 1}\n"
    )
    second = make_plugin(
        "from registry import hookimpl\n\n@hookimpl\ndef ganrun_config_defaults():\n    return {'steps': 2}\n"
    )
    pm = get_plugin_manager()
    activate(pm, [first, second])
    assert call_hook(pm, "ganrun_config_defaults") == pm.hook.ganrun_config_defaults()
    bad = make_plugin("from registry import hookimpl\n\n@hookimpl\ndef ganrun_train_options():\n    return 1 / 0\n")
    activate(pm, [bad])
    with pytest.raises(HookError, match=f"plugin '{bad}' failed in ganrun_train_options: ZeroDivisionError"):
        call_hook(pm, "ganrun_train_options")


# ------------------------------------------------------------------------------ contracts at register()


def _collect_one(make_plugin: Callable[..., str], body: str) -> tuple[str, PluginError]:
    name = make_plugin("from registry import hookimpl\n" + body)
    pm = get_plugin_manager()
    activate(pm, [name])
    with pytest.raises(PluginError) as info:
        Registries.collect(pm)
    assert "\n" not in str(info.value)
    return name, info.value


def test_a_q_loss_registered_as_an_instance_is_refused_at_register_time(make_plugin: Callable[..., str]) -> None:
    name, error = _collect_one(
        make_plugin,
        (
            "from infogan_plugin import CategoricalCE\n\n"
            "@hookimpl\ndef ganrun_register_q_losses(register):\n    register('mine', CategoricalCE())\n"
        ),
    )
    message = str(error)
    assert f"plugin {name!r} registered Q loss 'mine'" in message
    assert "an instance of CategoricalCE" in message and "register CategoricalCE itself" in message


def test_a_code_class_missing_required_members_is_refused_naming_them(make_plugin: Callable[..., str]) -> None:
    name, error = _collect_one(
        make_plugin,
        (
            "import torch\nfrom dataclasses import dataclass\nfrom infogan_plugin import LatentCode\n\n"
            "@dataclass(frozen=True, kw_only=True)\nclass Half(LatentCode):\n"
            "    default_q_loss = 'categorical_ce'\n"
            "    def sample(self, n, *, generator, device):\n        return torch.zeros(n, 1)\n\n"
            "@hookimpl\ndef ganrun_register_latent_codes(register):\n    register('half', Half)\n"
        ),
    )
    message = str(error)
    assert f"plugin {name!r} registered latent code type 'half' without" in message
    for missing in ("type_name", "default_lambda", "discrete", "entropy", "traversal_values"):
        assert f"member {missing}" in message
    assert "member sample" not in message and "member default_q_loss" not in message


@pytest.mark.parametrize(
    ("kind_hook", "value", "piece"),
    [
        ("ganrun_register_datasets", "'not callable'", "a callable factory"),
        ("ganrun_register_gan_losses", "lambda r, f: r", "a callable member d"),
        ("ganrun_register_commands", "print", "a click.Command"),
    ],
    ids=["dataset", "gan-loss", "command"],
)
def test_other_registrations_are_checked_too(
    make_plugin: Callable[..., str], kind_hook: str, value: str, piece: str
) -> None:
    args = f"{value}" if kind_hook == "ganrun_register_commands" else f"'x', {value}"
    name, error = _collect_one(make_plugin, f"\n@hookimpl\ndef {kind_hook}(register):\n    register({args})\n")
    assert f"plugin {name!r} registered" in str(error) and piece in str(error)


def test_registering_a_builtin_name_suggests_a_rename() -> None:
    class Shadow:
        @hookimpl
        def ganrun_register_datasets(self, register: Callable) -> None:
            register("digits", toy_factory)

    pm = get_plugin_manager()
    pm.register(Shadow(), name="my.shadow")
    with pytest.raises(DuplicateNameError) as info:
        Registries.collect(pm)
    message = str(info.value)
    assert "cannot be deactivated" in message and "rename" in message and "'shadow-digits'" in message
    assert "deactivate one of them" not in message


# ------------------------------------------------------------------------------ hooks pluggy never calls


def test_unmarked_and_misnamed_hooks_are_warned_about(make_plugin: Callable[..., str]) -> None:
    name = make_plugin(
        "from registry import hookimpl\n\n"
        "def ganrun_register_latent_codes(register):\n    register('lost', object)\n\n"
        "def ganrun_register_qlosses(register):\n    pass\n\n"
        "@hookimpl\ndef ganrun_register_models(register):\n    pass\n\n"
        "def ganrun_helper_constant():\n    pass\n"
    )
    with pytest.warns(PluginWarning) as caught:
        activate(get_plugin_manager(), [name])
    lines = sorted(str(w.message) for w in caught)
    assert len(lines) == 3, lines
    assert any("ganrun_register_latent_codes has no @hookimpl marker" in line and name in line for line in lines)
    assert any(
        "ganrun_register_qlosses matches no ganrun hook" in line and "did you mean ganrun_register_q_losses?" in line
        for line in lines
    )
    assert not any("ganrun_register_models" in line for line in lines)


def test_a_marked_plugin_gives_no_warning(make_plugin: Callable[..., str], recwarn: pytest.WarningsRecorder) -> None:
    activate(get_plugin_manager(), [make_plugin(GOOD_SOURCE)])
    assert not [w for w in recwarn if issubclass(w.category, PluginWarning)]


def test_name_clashes_lists_names_two_plugins_register() -> None:
    rows = [
        {"name": "a", "registers": {"latent_codes": ["poisson", "beta"]}},
        {"name": "b", "registers": {"latent_codes": ["poisson"], "q_losses": ["beta"]}},
        {"name": "c", "registers": {}},
    ]
    assert name_clashes(rows, "a") == ["latent codes 'poisson' is also registered by b"]
    assert name_clashes(rows, "b") == ["latent codes 'poisson' is also registered by a"]
    assert name_clashes(rows, "c") == []


def test_the_command_line_prints_a_plugin_warning_as_one_line(make_plugin: Callable[..., str]) -> None:
    """A real ``ganrun`` process: the unmarked hook is one ``warning:`` line on stderr, with no
    Python source location (``warnings.warn`` would print two lines pointing into ganrun)."""
    import os
    import subprocess
    import sys

    name = make_plugin("def ganrun_register_latent_codes(register):\n    register('lost', object)\n")
    env = dict(os.environ)
    folders = [p for p in sys.path if p.endswith("plugin-modules")]  # where make_plugin wrote it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*folders, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", "from registry.cli import main; main()", "--plugin", name, "train", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "ganrun_register_latent_codes" in line]
    assert lines and all(line.startswith("warning: plugin") for line in lines), result.stderr
    assert "PluginWarning" not in result.stderr and "warnings.warn" not in result.stderr
