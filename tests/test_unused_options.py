"""An option the run would not use is refused (or, where harmless, warned about), naming the
option and why, never silently accepted (issue 28, class 1)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from registry.cli.train import reads_data_dir
from registry.cpu.allocator import cpu_bf16
from registry.plugins import Host

if TYPE_CHECKING:
    from conftest import Ganrun

BUILT_IN_DATASETS = sorted(Host.create([]).registries.datasets.names())


@pytest.mark.parametrize("dataset", BUILT_IN_DATASETS)
@pytest.mark.parametrize("model", ["dcgan28", "conv64"])
def test_data_dir_is_refused_exactly_where_the_dataset_reads_no_folder(
    ganrun: Ganrun, tmp_path: Path, dataset: str, model: str
) -> None:
    factory = Host.create([]).registries.datasets.get(dataset)
    run = tmp_path / "run"
    result = ganrun.invoke(
        "train", "--dataset", dataset, "--model", model, "--data-dir", tmp_path / "nowhere", "--out", run,
        "--steps", 1, plugins=["infogan"],
    )  # fmt: skip
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "--data-dir" in line, line
    if reads_data_dir(factory):  # refused because the folder is missing, not because it is unused
        assert "reads no folder" not in line, line
    else:
        assert f"dataset {dataset!r} reads no folder" in line and "drop --data-dir" in line, line
    assert not run.exists()


def test_the_built_in_generated_and_packaged_datasets_declare_it() -> None:
    datasets = Host.create([]).registries.datasets
    assert {name for name in datasets.names() if not reads_data_dir(datasets.get(name))} == {"digits", "shapes"}


@pytest.mark.parametrize(
    ("args", "option", "why"),
    [
        (["--code", "uniform:2", "--q-augment", "affine"], "--q-augment", "no code of this run is read through"),
        (["--code", "gaussian:1", "--q-real", "1"], "--q-real", "the run has none"),
    ],
)
def test_plugin_options_no_code_would_use_are_refused(
    ganrun: Ganrun, tmp_path: Path, args: list[str], option: str, why: str
) -> None:
    run = tmp_path / "run"
    result = ganrun.invoke("train", *args, "--out", run, "--steps", 1, plugins=["infogan"])
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert option in line and why in line, line
    assert not run.exists()


def test_lambda_unused_by_every_code_is_warned_about(ganrun: Ganrun, tmp_path: Path) -> None:
    result = ganrun.invoke(
        "train", "--code", "categorical:3,lambda=1", "--code", "uniform:1,lambda=0.1", "--lambda", "2",
        "--noise-dim", 4, "--batch-size", 8, "--steps", 1, "--no-progress", "--out", tmp_path / "run",
        plugins=["infogan"],
    )  # fmt: skip
    assert result.exit_code == 0, ganrun.describe(result)
    assert "warning: --lambda is unused" in result.output


def test_amp_says_when_this_cpu_trains_in_fp32(ganrun: Ganrun, tmp_path: Path) -> None:
    result = ganrun.invoke(
        "train", "--amp", "--device", "cpu", "--noise-dim", 4, "--batch-size", 8, "--steps", 1, "--no-progress",
        "--out", tmp_path / "run", plugins=["infogan"],
    )  # fmt: skip
    assert result.exit_code == 0, ganrun.describe(result)
    assert ("warning: --amp: this CPU has no native bf16" in result.output) == (not cpu_bf16())


def test_an_empty_dataset_is_named_as_empty_not_as_a_batch_too_large(ganrun: Ganrun, tmp_path: Path) -> None:
    data = ganrun.write_idx(tmp_path / "idx", 0)
    run = tmp_path / "run"
    result = ganrun.invoke(
        "train", "--dataset", "mnist-idx", "--data-dir", data, "--batch-size", 1, "--steps", 1, "--out", run,
        plugins=["infogan"],
    )  # fmt: skip
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "holds no images" in line and str(data) in line and "smaller" not in line, line
    assert not run.exists()
