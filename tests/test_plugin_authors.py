"""What a plugin author meets (issue 28, class 6): a code whose differential entropy is negative,
a plugin that fails to load, a name clash with infogan, a code class without ``@dataclass``, a
misspelt hook, the modules that moved, and the names ganrun shows for its built-ins.

The plugins here are real modules (``make_plugin``) activated with ``--plugin`` as a user would,
or fake entry points (``importlib.metadata.EntryPoint`` with a distribution) where what matters is
what the entry-point metadata says.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

# A continuous code with a negative differential entropy: Beta(2, 2) on [0, 1], drawn as the
# median of three uniforms (which is Beta(2, 2)), so it needs only the generator.
# H = ln B(2, 2) - 2 psi(2) + 2 psi(4) = -ln 6 + 5/3 = -0.1251 nats.
BETA_SOURCE = """
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from infogan_plugin import ContinuousCode
from registry import hookimpl


@dataclass(frozen=True, kw_only=True)
class Beta22(ContinuousCode):
    type_name: ClassVar[str] = "beta22"
    default_q_loss: ClassVar[str] = "gaussian_nll"

    @property
    def show_progress(self):
        return True  # asks for the progress bar, where L_I/H has no meaning for this code

    def sample(self, n, *, generator, device):
        u = torch.rand((n, self.dim, 3), generator=generator, device=device)
        return u.median(dim=2).values

    def entropy(self):
        return self.dim * (5.0 / 3.0 - math.log(6.0))

    def traversal_range(self):
        return 0.05, 0.95


@hookimpl
def ganrun_register_latent_codes(register):
    register("beta22", Beta22)
"""
BETA_H = 5.0 / 3.0 - math.log(6.0)


@pytest.fixture
def beta_run(ganrun, tiny, make_plugin, tmp_path):
    """A tiny InfoGAN run with a categorical code c1 and a Beta(2, 2) code c2, and its plugins."""
    plugins = ["infogan", tiny, make_plugin(BETA_SOURCE)]
    run = tmp_path / "beta"
    ganrun.train(
        run,
        "--model",
        "tiny",
        "--steps",
        4,
        "--batch-size",
        16,
        "--log-every",
        2,
        "--code",
        "categorical:3",
        "--code",
        "beta22:1",
        plugins=plugins,
    )
    return run, plugins


def test_a_negative_entropy_code_has_no_ratio_anywhere_and_no_warning(ganrun, beta_run):
    run, plugins = beta_run
    assert BETA_H == pytest.approx(-0.1251, abs=1e-4)
    # metrics.jsonl: L_I and H for every code, the ratio only for the code whose H > 0
    last = ganrun.metrics(run)[-1]
    assert last["H/c2"] == pytest.approx(BETA_H, abs=1e-5) and math.isfinite(last["L_I/c2"])
    assert "L_I_over_H/c2" not in last and last["L_I_over_H/c1"] == pytest.approx(
        last["L_I/c1"] / math.log(3), abs=1e-5
    )

    # eval: exit 0, no "not finite" warning, the ratio null by design, L_I and H printed alone
    done = ganrun.invoke("eval", run, "--samples", 64, plugins=plugins)
    assert done.exit_code == 0, ganrun.describe(done)
    assert "not finite" not in done.output and "warning" not in done.stderr.lower(), done.output
    information = json.loads((run / "eval.json").read_text())["information"]
    assert information["c2"]["ratio"] is None and information["c2"]["H"] == pytest.approx(BETA_H)
    assert information["c1"]["ratio"] == pytest.approx(information["c1"]["L_I"] / math.log(3))
    [line] = [line for line in done.stdout.splitlines() if line.startswith("c2:")]
    assert line == f"c2: L_I {information['c2']['L_I']:.3f} nats; H -0.125 nats (no L_I/H: H <= 0, a " + (
        "differential entropy, so L_I is not a share of it)"
    )
    [line] = [line for line in done.stdout.splitlines() if line.startswith("c1: L_I")]
    assert line.endswith(f"nats of H 1.099 ({information['c1']['ratio']:.1%})"), line

    # report: the same words, no n/a for a value that is absent on purpose
    done = ganrun.invoke("report", run, plugins=plugins)
    assert done.exit_code == 0, ganrun.describe(done)
    page = (run / "report.html").read_text()
    assert "H -0.125 nats (no L_I/H: H &lt;= 0" in page and "n/a" not in page


def test_the_progress_bar_shows_l_i_for_a_code_without_a_ratio(make_plugin):
    """``ganrun_log`` returns the progress-bar text: ``I/H`` where H > 0, ``L_I`` itself where not."""
    import importlib

    from infogan_plugin import CategoricalCE, CodeSlot, GaussianNLL, LatentSpec
    from infogan_plugin.codes import Categorical
    from infogan_plugin.plugin import ganrun_log

    beta = importlib.import_module(make_plugin(BETA_SOURCE)).Beta22()
    spec = LatentSpec(
        noise_dim=2,
        slots=[CodeSlot("c1", Categorical(k=4), CategoricalCE(), 1.0), CodeSlot("c2", beta, GaussianNLL(), 0.1)],
    )
    trainer = SimpleNamespace(sampler=spec, config=SimpleNamespace(extra={}), dist=SimpleNamespace(is_main=True))
    metrics = {"L_I/c1": 0.7, "L_I/c2": -0.4}
    shown = ganrun_log(trainer=trainer, step=1, metrics=metrics)
    assert shown == {"I/H c1": f"{0.7 / math.log(4):.2f}", "L_I c2": "-0.40"}
    assert metrics["H/c2"] == pytest.approx(BETA_H) and "L_I_over_H/c2" not in metrics
    assert all(math.isfinite(value) for value in metrics.values())


# ------------------------------------------------------------------------------ installed plugins


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(dist, version, {entry point: module source})``: a distribution installed the way
    pip leaves it (``NAME-VERSION.dist-info`` with ``METADATA`` and ``entry_points.txt`` beside the
    modules, on ``sys.path``), so ``importlib.metadata`` finds its entry points and their
    distribution for real."""
    import importlib
    import sys

    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def make(dist: str, version: str, plugins: dict[str, str]) -> None:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = ["[ganrun]"]
        for entry_point, source in plugins.items():
            module = f"ganrun_test_{dist.replace('-', '_')}_{entry_point}"
            (site / f"{module}.py").write_text(source)
            lines.append(f"{entry_point} = {module}")
            modules.append(module)
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        importlib.invalidate_caches()

    yield make
    for module in modules:
        sys.modules.pop(module, None)


def test_a_plugin_that_fails_to_load_is_named_with_its_distribution_in_help(ganrun, install):
    install("ganrun-exploding", "0.3.1", {"exploding": "raise RuntimeError('the plugin exploded on import')\n"})
    cause = "plugin 'exploding' (entry point 'exploding' of ganrun-exploding 0.3.1) failed to load: "
    cause += "RuntimeError: the plugin exploded on import"
    helped = ganrun.invoke("train", "--help", plugins=["exploding"])
    assert helped.exit_code == 0, ganrun.describe(helped)
    assert f"Train a GAN: unavailable, because {cause}" in " ".join(helped.stdout.split())
    listed = ganrun.invoke("--help", plugins=["exploding"])
    assert listed.exit_code == 0, ganrun.describe(listed)
    assert "Train a GAN (unavailable: plugin 'exploding' (entry point 'exploding' of" in " ".join(listed.stdout.split())
    failed = ganrun.invoke("train", "--steps", 1, plugins=["exploding"])
    assert failed.exit_code == 1 and ganrun.error_line(failed) == f"Error: {cause}"


def test_a_missing_plugin_names_what_is_installed_and_what_to_install(ganrun, install):
    install("ganrun-poisson", "0.2.0", {"poisson": "", "poisson_extra": ""})
    for typed, expected in [
        (
            "poison",  # a typo: the nearest installed name
            "plugin 'poison' is neither an installed plugin (installed: infogan, infogan_cr (from ganrun ",
        ),
        ("ganrun-poisson", "plugin 'ganrun-poisson' is the name of the distribution ganrun-poisson, not of a plugin; "),
        ("ganrun_poisson", "plugin 'ganrun_poisson' is the name of the distribution ganrun-poisson, not of a plugin; "),
    ]:
        line = ganrun.error_line(ganrun.invoke("train", plugins=[typed]))
        assert line.startswith(f"Error: {expected}"), line
    line = ganrun.error_line(ganrun.invoke("train", plugins=["poison"]))
    assert "poisson, poisson_extra (from ganrun-poisson 0.2.0)" in line and "did you mean 'poisson'?" in line
    assert "pip install the distribution that declares entry point 'poison' in group 'ganrun'" in line
    line = ganrun.error_line(ganrun.invoke("train", plugins=["ganrun-poisson"]))
    assert line.endswith("it installs 'poisson', 'poisson_extra': use --plugin poisson"), line


# ------------------------------------------------------------------------------ name clashes

CLASHING_SOURCE = """
from dataclasses import dataclass
from typing import ClassVar

from infogan_plugin import Uniform
from registry import hookimpl


@dataclass(frozen=True, kw_only=True)
class WideUniform(Uniform):
    type_name: ClassVar[str] = "uniform"
    low: float = -2.0
    high: float = 2.0


@hookimpl
def ganrun_register_latent_codes(register):
    register("uniform", WideUniform)
"""


@pytest.mark.parametrize("order", [["infogan", "wide"], ["wide", "infogan"]], ids=["infogan-first", "infogan-last"])
def test_a_clash_with_infogan_advises_renaming_the_third_party_name(ganrun, install, order):
    """A code type for InfoGAN needs infogan active, so "deactivate one of them" is no advice:
    whichever order they load in, the third-party plugin is told to rename its name."""
    install("ganrun-wide", "1.2.0", {"wide": CLASHING_SOURCE})
    line = ganrun.error_line(ganrun.invoke("train", "--steps", 1, plugins=order))
    first, second = [
        "plugin 'infogan' (entry point 'infogan' of ganrun "
        if name == "infogan"
        else "plugin 'wide' (entry point 'wide' of ganrun-wide 1.2.0)"
        for name in order
    ]
    assert line.startswith(f"Error: latent code type 'uniform' is registered by both {first}"), line
    assert f" and {second}" in line
    assert line.endswith(
        "each name is registered once: rename the one plugin 'wide' registers in its "
        "ganrun_register_latent_codes, e.g. 'wide-uniform', and use that name"
    ), line
    assert "deactivate" not in line


# ------------------------------------------------------------------------------ a code class without @dataclass


@pytest.mark.parametrize(
    "future", ["", "from __future__ import annotations\n"], ids=["annotations", "string-annotations"]
)
def test_a_code_class_without_dataclass_is_refused_when_it_registers(ganrun, make_plugin, tmp_path, future):
    """The class subclasses a dataclass, so it looks like one; without its own decorator its
    fields are class attributes that --code cannot set. Refused at once, saying what to add."""
    source = future + BETA_SOURCE.replace("@dataclass(frozen=True, kw_only=True)\n", "").replace(
        '    default_q_loss: ClassVar[str] = "gaussian_nll"\n',
        '    default_q_loss: ClassVar[str] = "gaussian_nll"\n    a: float = 2.0\n    b: float = 2.0\n',
    )
    name = make_plugin(source)
    result = ganrun.invoke("train", "--out", tmp_path / "run", "--code", "beta22:1,a=3", plugins=["infogan", name])
    assert ganrun.error_line(result) == (
        f"Error: plugin {name!r} registered latent code type 'beta22' without the "
        "@dataclass(frozen=True, kw_only=True) decorator on class Beta22: without it the annotated a, b stay "
        "plain class attributes, not fields, so --code options cannot set them and runs do not record them "
        "(annotate constants ClassVar) (docs/plugins.md lists what each registration needs)"
    )
    assert not (tmp_path / "run").exists()
    # decorated, the same class registers, and its fields are --code options
    from registry.plugins import Host

    fixed = make_plugin(future + BETA_SOURCE.replace("    def sample", "    a: float = 2.0\n\n    def sample"))
    code_type = Host.create(["infogan", fixed]).registries.latent_codes.get("beta22")
    assert code_type.from_spec(1, {"a": "3"})[0].a == 3.0


def test_a_code_type_that_is_no_dataclass_at_all_is_refused():
    from registry.contracts import check_registration

    class Plain:
        type_name = "plain"
        default_q_loss = "gaussian_nll"
        default_lambda = 0.1
        discrete = False

        def sample(self, n, *, generator, device): ...
        def entropy(self): ...
        def traversal_values(self, *, steps=5): ...
        def from_spec(cls, size, options): ...

        input_width = 1

    assert check_registration("latent code type", Plain) == [
        "the @dataclass(frozen=True, kw_only=True) decorator on class Plain (a code type is a frozen keyword-only "
        "dataclass; its fields are the --code options)"
    ]


# ------------------------------------------------------------------------------ a misspelt hook


def test_a_marked_hook_with_a_misspelt_name_gets_the_nearest_hook(ganrun, install):
    install(
        "ganrun-typo",
        "0.1.0",
        {"typo": "from registry import hookimpl\n\n@hookimpl\ndef ganrun_register_latent_code(register):\n    pass\n"},
    )
    line = ganrun.error_line(ganrun.invoke("train", "--steps", 1, plugins=["typo"]))
    assert line == (
        "Error: plugin 'typo' is invalid: ganrun_register_latent_code is marked @hookimpl but matches no ganrun "
        "hook; did you mean ganrun_register_latent_codes?"
    )
    # the same words in ganrun plugins, which keeps listing the others
    listed = ganrun.invoke("plugins")
    assert listed.exit_code == 0, ganrun.describe(listed)
    assert "  BROKEN: " + line.removeprefix("Error: ") in listed.stdout.splitlines()
    assert "infogan (" in listed.stdout


# ------------------------------------------------------------------------------ modules that moved

# What the modules exported before registry/ became subpackages, and where each name lives now.
MOVED = {
    "registry.datasets": {
        "DatasetError": "registry.data",
        "EpochSampler": "registry.train",
        "ImageDataset": "registry.data",
        "load_digits": "registry.data",
        "load_image_folder": "registry.data",
        "load_mnist_idx": "registry.data",
        "to_training_tensor": "registry.data",
    },
    "registry.trainer": {
        name: "registry.train"
        for name in ("DivergenceError", "Interrupted", "NoiseSampler", "Pass", "StepContext", "Trainer")
        + ("resolve_device", "seed_for")
    },
    "registry.images": {"make_grid": "registry", "save_grid": "registry"},
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_still_imports_and_warns_with_the_new_path(old):
    import importlib
    import warnings

    module = importlib.import_module(old)
    assert sorted(module.__all__) == sorted(MOVED[old]) == dir(module)
    for name, new in MOVED[old].items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(module, name)
        assert value is getattr(importlib.import_module(new), name)
        [warning] = caught
        assert warning.category is DeprecationWarning and warning.filename == __file__
        assert str(warning.message) == (
            f"{old}.{name} moved to {new}.{name}: write 'from {new} import {name}' ({old} is removed in ganrun 0.3.0)"
        )
    with pytest.raises(AttributeError, match=f"module '{old}' has no attribute 'nothing_here'; {old} moved in"):
        module.nothing_here


def test_a_third_party_script_with_the_old_imports_runs_and_sees_the_warnings(tmp_path):
    """As a user's script (``__main__``) sees them: Python shows its DeprecationWarnings by default."""
    import subprocess
    import sys

    script = tmp_path / "old_plugin_script.py"
    script.write_text(
        "from registry.datasets import load_digits, to_training_tensor\n"
        "from registry.trainer import Trainer\n"
        "from registry.images import save_grid\n"
        "import registry, registry.data, registry.train\n"
        "assert (load_digits, Trainer, save_grid) == (registry.data.load_digits, registry.train.Trainer, "
        "registry.save_grid)\n"
        "print('ran')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "ran\n", done.stderr
    warned = [line for line in done.stderr.splitlines() if "DeprecationWarning" in line]
    assert len(warned) == 4, done.stderr
    assert "DeprecationWarning: registry.trainer.Trainer moved to registry.train.Trainer: " in done.stderr
    assert "write 'from registry import save_grid'" in done.stderr


def test_the_version_is_the_minor_after_the_move():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"] == "0.2.0"


# ------------------------------------------------------------------------------ the product's name


def test_ganrun_plugins_names_the_built_ins_by_the_product_not_the_package(ganrun):
    listed = ganrun.invoke("plugins", plugins=["infogan"])
    assert listed.exit_code == 0, ganrun.describe(listed)
    lines = listed.stdout.splitlines()
    assert lines[:1] == ["ganrun (built-in, active)"]
    assert "ganrun tensorboard (built-in, active)" in lines and "infogan (" in listed.stdout
    assert "registry" not in listed.stdout  # the package layout stays out of what a user reads
    rows = json.loads(ganrun.invoke("plugins", "--json").stdout)  # machines keep the module paths
    assert [row["name"] for row in rows if row["builtin"]] == [
        "registry.default_plugins.builtins",
        "registry.default_plugins.tensorboard",
    ]


def test_a_built_in_plugins_failure_is_named_by_the_product():
    from registry.plugins import HookError

    error = HookError("registry.default_plugins.tensorboard", "ganrun_log", OSError("disk full"))
    assert str(error) == "plugin ganrun tensorboard (built-in) failed in ganrun_log: OSError: disk full"
    assert str(HookError("mine", "ganrun_log", OSError("x"))) == "plugin 'mine' failed in ganrun_log: OSError: x"
