"""scikit-learn and scipy are the optional ``eval`` extra: without them the package imports,
trains and evaluates what needs neither, and what needs them fails with one line that names
``pip install 'ganrun[eval]'``.

"Not installed" is simulated by putting ``None`` into ``sys.modules`` for the package and every
submodule already imported, which makes any import of them raise ``ImportError``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from registry.eval import disentanglement as dis
from registry.eval.optional import EVAL_INSTALL, MissingEvalDependency
from registry.eval.assignment import cluster_accuracy, hungarian
from registry.data import shapes
from registry.cli import build_cli

INSTALL = "pip install 'ganrun[eval]'"
SIZES = (3, 4)


def uninstall(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``import PACKAGE`` (and of any submodule) fail for the rest of the test."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.setitem(sys.modules, name, None)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


def encode(factors: torch.Tensor) -> torch.Tensor:
    return factors.double() + 0.01 * torch.randn(factors.shape, dtype=torch.float64)


def identity(factors: torch.Tensor) -> torch.Tensor:
    return factors


def one_clear_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert INSTALL in lines[0] and "Traceback" not in text
    return lines[0]


def test_install_command_is_the_extra_in_pyproject():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert EVAL_INSTALL == INSTALL
    assert extras["eval"] == ["scikit-learn>=1.3", "scipy>=1.10"]
    assert set(extras["eval"]) <= set(extras["test"])


def test_the_package_imports_without_scikit_learn_and_scipy():
    """In a fresh interpreter: every module of both packages imports, and nothing imports them."""
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = sys.modules['scipy'] = None\n"
        "import importlib, pkgutil, registry, infogan_plugin\n"
        "for package in (registry, infogan_plugin):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("missing", ["sklearn", "scipy"])
def test_metrics_that_need_them_say_how_to_install_them(monkeypatch, missing):
    uninstall(monkeypatch, missing)
    sampler = dis.uniform_factor_sampler(SIZES)
    needs = {"sklearn": [dis.mig, dis.dci, dis.sap_score], "scipy": [dis.dci]}[missing]
    for metric in needs:
        with pytest.raises(MissingEvalDependency) as caught:
            metric(encode, SIZES, sampler, identity, num_train=50)
        line = one_clear_line(str(caught.value))
        assert ("scikit-learn" if missing == "sklearn" else "scipy") in line
        assert isinstance(caught.value, ImportError)
    # evaluate_all refuses before running anything, not after the slow FactorVAE score
    started = []
    with pytest.raises(MissingEvalDependency, match="disentanglement metrics"):
        dis.evaluate_all(encode, SIZES, sampler, identity, num_samples=50, on_metric=started.append)
    assert started == []
    # the FactorVAE score needs neither
    result = dis.factor_vae_score(
        encode, SIZES, sampler, identity, num_train=20, num_eval=10, num_variance_estimate=100, batch_size=8
    )
    assert 0.0 <= result.score <= 1.0
    assert list(dis.evaluate_all(encode, SIZES, sampler, identity, num_samples=50, metrics=["factor_vae"]))


def test_the_hungarian_matching_needs_scipy(monkeypatch):
    uninstall(monkeypatch, "scipy")
    with pytest.raises(MissingEvalDependency) as caught:
        cluster_accuracy(torch.tensor([0, 1, 1]), torch.tensor([1, 0, 0]))
    assert "scipy" in one_clear_line(str(caught.value))
    with pytest.raises(MissingEvalDependency):
        hungarian(np.eye(2))


@pytest.fixture
def shapes_run(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(shapes, "SUBSET_SIZE", 256)
    run = tmp_path / "shapes"
    result = CliRunner().invoke(
        build_cli(),
        [
            "--plugin",
            tiny,
            "--plugin",
            "infogan",
            "train",
            "--dataset",
            "shapes",
            "--code",
            "uniform:2",
            "--model",
            "tiny",
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--no-progress",
            "--out",
            str(run),
        ],
    )
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.parametrize("missing", ["sklearn", "scipy"])
def test_eval_on_a_dataset_with_factors_fails_with_one_line(monkeypatch, tiny, shapes_run, missing):
    uninstall(monkeypatch, missing)
    plugins = ["--plugin", tiny, "--plugin", "infogan"]
    result = CliRunner().invoke(
        build_cli(), [*plugins, "eval", str(shapes_run), "--samples", "8", "--metrics-samples", "16"]
    )
    assert result.exit_code == 1
    line = one_clear_line(result.output)
    assert line.startswith("Error: ") and "disentanglement metrics" in line
    assert "[eval] " not in result.output  # refused before the first stage
    assert not (shapes_run / "eval.json").exists()
    # without the disentanglement metrics nothing needs the extra
    result = CliRunner().invoke(
        build_cli(), [*plugins, "eval", str(shapes_run), "--samples", "8", "--no-disentanglement"]
    )
    assert result.exit_code == 0, result.output
    assert (shapes_run / "eval.json").exists()


def test_eval_of_a_categorical_code_on_labelled_data_needs_scipy(monkeypatch, tmp_path, tiny):
    plugins = ["--plugin", tiny, "--plugin", "infogan"]
    runs = {}
    for name, codes in (("categorical", ["categorical:3"]), ("uniform", ["uniform:1"])):
        runs[name] = tmp_path / name
        flags = [flag for code in codes for flag in ("--code", code)]
        result = CliRunner().invoke(
            build_cli(),
            [
                *plugins,
                "train",
                *flags,
                "--model",
                "tiny",
                "--steps",
                "2",
                "--batch-size",
                "16",
                "--no-progress",
                "--out",
                str(runs[name]),
            ],
        )
        assert result.exit_code == 0, result.output
    uninstall(monkeypatch, "sklearn", "scipy")
    result = CliRunner().invoke(build_cli(), [*plugins, "eval", str(runs["categorical"]), "--samples", "8"])
    assert result.exit_code == 1
    line = one_clear_line(result.output)
    assert "scipy" in line and "classification accuracy" in line
    # a run without a categorical code has no accuracy to compute: L_I alone, no extra needed
    result = CliRunner().invoke(build_cli(), [*plugins, "eval", str(runs["uniform"]), "--samples", "8"])
    assert result.exit_code == 0, result.output
    assert "c1: L_I" in result.output
