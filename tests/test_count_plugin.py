"""The code / Q-loss contract with a parameterised count code (``tests/plugins/poisson_count.py``),
and the one message every run-loading command gives when a run's plugin is missing (issue 19).

The count code enters G's input standardised, so its Q loss can only score it through the code
bound to it; its support is infinite and its Q output one column. The plugin is imported from
a copy of its source (``make_plugin``), which the missing-plugin tests delete to uninstall it.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from infogan_plugin import CodeSlot, LatentSpec
from registry import MissingPluginError, load_run, recorded_plugins, require_run_plugins
from registry.plugins import Registries, activate, get_plugin_manager

if TYPE_CHECKING:
    from conftest import Ganrun

SOURCE = Path(__file__).parent / "plugins" / "poisson_count.py"
CODES = ["--code", "categorical:3", "--code", "poisson:1,rate=4"]


@pytest.fixture
def count(make_plugin) -> str:
    return make_plugin(SOURCE.read_text())


def _module(name: str):
    import importlib

    return importlib.import_module(name)


# ------------------------------------------------------------------------------ the contract in-process


def test_the_q_loss_decodes_the_code_it_is_bound_to(count: str) -> None:
    mod = _module(count)
    pm = get_plugin_manager()
    activate(pm, [count])
    regs = Registries.collect(pm)
    loss_type = regs.q_losses.get("poisson_nll")
    for rate in (2.0, 9.0):  # the same column means different counts under different rates
        code = mod.Poisson(rate=rate)
        slot = CodeSlot("c1", code, loss_type(), 0.1)
        assert slot.q_loss.code is code
        k = torch.tensor([[0.0], [3.0], [11.0]])
        log_rate = torch.tensor([[0.3], [1.1], [2.0]])
        expected = -torch.distributions.Poisson(log_rate.exp()).log_prob(k)[:, 0]
        assert torch.allclose(slot.q_loss.nll(log_rate, code.encode(k)), expected, atol=1e-5)
        assert slot.q_loss.point_estimate(log_rate).tolist() == [[1.0], [3.0], [7.0]]  # floor(e^log_rate)


def test_one_loss_instance_cannot_serve_two_codes(count: str) -> None:
    mod = _module(count)
    shared = mod.PoissonNLL()
    CodeSlot("c1", mod.Poisson(rate=2.0), shared, 0.1)
    with pytest.raises(ValueError, match="each code slot needs its own loss instance"):
        CodeSlot("c2", mod.Poisson(rate=5.0), shared, 0.1)


def test_defaults_for_an_infinite_discrete_code_with_one_q_column(count: str) -> None:
    mod = _module(count)
    code = mod.Poisson(rate=4.0)
    assert code.augment_invariant and code.show_progress  # from discrete, stated as members
    assert code.default_lambda == 0.1
    assert code.traversal_values().shape == (9, 1)  # 0..8: finitely many values of an infinite support
    assert code.value_of(code.input_for(25)).item() == 25.0  # beyond the traversal, still a value
    spec = LatentSpec(noise_dim=2, slots=[CodeSlot("c1", code, mod.PoissonNLL(), 0.1)])
    gen = torch.Generator().manual_seed(0)
    _, (values,) = spec.sample(4000, generator=gen, device="cpu")
    counts = code.value_of(values)
    assert abs(counts.mean().item() - 4.0) < 0.15 and (counts == counts.round()).all()
    assert code.entropy() == pytest.approx(
        -sum(math.exp(lp) * lp for lp in (k * math.log(4) - 4 - math.lgamma(k + 1) for k in range(80))), rel=1e-9
    )


# ------------------------------------------------------------------------------ trains, resumes, evaluates


@pytest.fixture
def count_run(ganrun: Ganrun, tiny: str, count: str, tmp_path: Path) -> Path:
    run = tmp_path / "count"
    ganrun.train(
        run,
        "--model",
        "tiny",
        "--steps",
        4,
        "--batch-size",
        16,
        "--save-every",
        2,
        *CODES,
        plugins=["infogan", tiny, count],
    )
    return run


def test_a_count_code_trains_resumes_exactly_and_evaluates(
    ganrun: Ganrun, tiny: str, count: str, count_run: Path, tmp_path: Path
) -> None:
    plugins = ["infogan", tiny, count]
    assert list(recorded_plugins(count_run)) == sorted(plugins)  # as the run records them
    half = tmp_path / "half"
    ganrun.train(half, "--model", "tiny", "--steps", 2, "--batch-size", 16, "--save-every", 2, *CODES, plugins=plugins)
    ganrun.train(half, "--resume", half, "--steps", 4, plugins=plugins)
    ganrun.assert_same_checkpoint(
        count_run / "checkpoints" / "ckpt-000000004.safetensors", half / "checkpoints" / "ckpt-000000004.safetensors"
    )
    metrics = ganrun.metrics(count_run)[-1]
    assert "L_I/c2" in metrics and "H/c2" in metrics
    evaluated = ganrun.invoke("eval", count_run, "--samples", 64, plugins=plugins)
    assert evaluated.exit_code == 0, ganrun.describe(evaluated)
    info = json.loads((count_run / "eval.json").read_text())["information"]
    assert info["c2"]["H"] == pytest.approx(_module(count).Poisson(rate=4.0).entropy())
    encoded = load_run(count_run, plugins=plugins)
    assert encoded.trainer.sampler.slots[1].q_loss.code.rate == 4.0  # bound again when the run is rebuilt


# ------------------------------------------------------------------------------ a run without its plugin


def _uninstall(name: str) -> None:
    import importlib
    import sys

    module = sys.modules.pop(name)
    Path(module.__file__).unlink()
    shutil.rmtree(Path(module.__file__).parent / "__pycache__", ignore_errors=True)
    importlib.invalidate_caches()


def test_every_command_that_loads_a_run_names_the_missing_plugin_the_same_way(
    ganrun: Ganrun, tiny: str, count: str, count_run: Path, tmp_path: Path
) -> None:
    fix = " ".join(f"--plugin {name}" for name in sorted(["infogan", tiny, count]))  # the run's order
    # importable but not named: the commands that use the active plugins say so
    for command in (["eval"], ["traverse"]):
        result = ganrun.invoke(*command, count_run, plugins=["infogan", tiny])
        assert result.exit_code == 1
        assert ganrun.error_line(result) == (
            f"Error: {count_run}: the run was trained with plugin {count!r}, which is not active; "
            f"run: ganrun {fix} {command[0]} {count_run}"
        )
    resumed = ganrun.invoke("train", "--resume", count_run, "--steps", 6, plugins=["infogan", tiny])
    assert ganrun.error_line(resumed).endswith(f"which is not active; run: ganrun {fix} train --resume {count_run}")
    assert "--code" not in resumed.output  # not a usage error about an option the user never typed

    _uninstall(count)
    not_installed = (
        f"{count_run}: the run was trained with plugin {count!r}, which is not installed; "
        f"pip install the package that provides {count!r}, then "
    )
    for command in ("generate", "encode", "export", "explore", "eval", "traverse"):
        extra = {
            "generate": ["--out", tmp_path / "g"],
            "encode": ["--images", tmp_path, "--out", tmp_path / "c.csv"],
            "export": ["--format", "safetensors", "--out", tmp_path / "g.st"],
            "explore": ["--port", 0],
        }.get(command, [])
        result = ganrun.invoke(command, count_run, *extra, plugins=["infogan", tiny])
        assert result.exit_code == 1, ganrun.describe(result)
        assert ganrun.error_line(result) == f"Error: {not_installed}run: ganrun {fix} {command} {count_run}"
    with pytest.raises(MissingPluginError) as info:
        load_run(count_run)
    assert str(info.value) == f"{not_installed}load_run({str(count_run)!r}) activates the run's plugins itself"
    assert info.value.missing == [count]
    report = ganrun.invoke("report", count_run, "--plots", "svg")
    assert report.exit_code == 0, ganrun.describe(report)
    assert f"warning: {not_installed}run: ganrun {fix} report {count_run}" in report.stderr


def test_require_run_plugins_passes_when_all_are_active(count_run: Path, tiny: str, count: str) -> None:
    assert sorted(require_run_plugins(count_run, ["infogan", tiny, count], "eval")) == sorted(["infogan", tiny, count])
    with pytest.raises(MissingPluginError, match="trained with plugins '"):
        require_run_plugins(count_run, [], "eval")


def test_the_explorer_offers_the_traversal_window_of_an_infinite_discrete_code(count: str) -> None:
    from infogan_plugin.explore import Explorer

    mod = _module(count)
    slot = CodeSlot("c2", mod.Poisson(rate=4.0), mod.PoissonNLL(), 0.1)
    control = Explorer._control(slot)  # value_range() is [0, inf): buttons for the counts 0..8
    assert control["kind"] == "buttons" and control["values"] == list(range(9))
