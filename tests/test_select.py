"""``ganrun --plugin infogan select SWEEP``: the pure selection functions on synthetic models with a
known centre, and the command on a sweep of tiny trained runs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

import infogan_plugin
from infogan_plugin.selection import (
    centrality,
    config_differences,
    model_centrality,
    ordinal,
    partition_agreement,
    pick,
    rank_of,
)
from registry.eval.disentanglement import uniform_factor_sampler
from registry.eval.optional import MissingEvalDependency
from registry.report import heat_map

if TYPE_CHECKING:
    from conftest import Ganrun

IG = ["infogan"]


# ------------------------------------------------------------------------------ categorical


def _noisy_copy(truth: np.ndarray, rng: np.random.Generator, fraction: float, k: int) -> np.ndarray:
    """``truth`` with its own random ``fraction`` of the items relabelled at random, and every
    label renamed: a failure of its own, under names of its own."""
    out = truth.copy()
    hit = rng.random(truth.shape[0]) < fraction
    out[hit] = rng.integers(0, k, hit.sum())
    return rng.permutation(k)[out]


def test_the_pick_is_the_partition_the_idiosyncratic_failures_share():
    rng = np.random.default_rng(0)
    k, n = 6, 3000
    truth = rng.integers(0, k, n)
    partitions = [_noisy_copy(truth, rng, 0.4, k) for _ in range(4)]
    partitions.insert(2, truth)  # not first, so a pick that ignores the scores fails
    matrix = partition_agreement(partitions)
    assert matrix.shape == (5, 5) and np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    scores = centrality(matrix)
    assert pick(scores) == 2
    assert scores[2] > scores[[0, 1, 3, 4]].max() + 0.05


def test_agreement_does_not_depend_on_the_names_of_the_clusters():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, 2000)
    b = _noisy_copy(a, rng, 0.5, 5)
    renamed = np.array([7, 3, 9, 0, 4])[a]  # the same partition under other names
    matrix = partition_agreement([a, renamed, b])
    assert matrix[0, 1] == pytest.approx(1.0)
    assert matrix[0, 2] == pytest.approx(matrix[1, 2]) and 0.05 < matrix[0, 2] < 0.9
    independent = partition_agreement([a, rng.integers(0, 5, 2000)])
    assert abs(independent[0, 1]) < 0.01  # adjusted for chance: unrelated partitions score about 0


def test_partition_agreement_refuses_what_it_cannot_compare():
    with pytest.raises(ValueError, match="at least 2"):
        partition_agreement([np.zeros(4)])
    with pytest.raises(ValueError, match="same non-empty set"):
        partition_agreement([np.zeros(4), np.zeros(5)])


def test_centrality_is_the_mean_off_the_diagonal_and_ties_go_to_the_first():
    matrix = [[np.nan, 0.2, 0.4], [0.6, np.nan, 0.0], [0.9, 0.9, 7.0]]
    assert centrality(matrix).tolist() == pytest.approx([0.3, 0.3, 0.9])
    assert pick([0.3, 0.9, 0.9]) == 1
    with pytest.raises(ValueError, match="at least 2 x 2"):
        centrality([[1.0]])
    with pytest.raises(ValueError, match="off the diagonal"):
        centrality([[1.0, np.nan], [0.5, 1.0]])


def test_rank_and_ordinal():
    assert rank_of([0.5, 0.9, 0.7, 0.9], 2) == 3 and rank_of([0.5, 0.9, 0.7, 0.9], 1) == 1
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
    ]  # fmt: skip


# ------------------------------------------------------------------------------ continuous


F, LEVELS = 4, 10
SIZES = (LEVELS,) * F


def _generator(lost: int | None):
    """Factor indices -> observations in [-1, 1]; observation ``lost`` is noise (the factor is lost)."""

    def generate(indices: torch.Tensor, nuisance: torch.Generator) -> torch.Tensor:
        x = indices.double() / (LEVELS - 1) * 2 - 1
        noise = torch.rand(indices.shape[0], F, generator=nuisance, dtype=torch.float64) * 2 - 1
        if lost is not None:
            x[:, lost] = noise[:, lost]
        return x + 0.01 * noise.roll(1, 1)

    return generate


def _encoder(lost: int | None):
    """Observations -> representation; dimension ``lost`` is constant (the encoder cannot read it)."""

    def encode(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        if lost is not None:
            x[:, lost] = 0.0
        return x

    return encode


def test_model_centrality_picks_the_model_the_failures_have_in_common():
    lost = [0, 1, None, 2, 3]  # model 2 is whole; each other model fails on a factor of its own
    matrix, scores = model_centrality(
        [_encoder(a) for a in lost],
        [_generator(a) for a in lost],
        SIZES,
        uniform_factor_sampler(SIZES),
        num_samples=60,
    )
    assert np.isnan(np.diag(matrix)).all()
    assert np.isfinite(matrix[~np.eye(5, dtype=bool)]).all() and ((0 <= matrix) | np.isnan(matrix)).all()
    assert scores.tolist() == pytest.approx(centrality(matrix).tolist())
    assert pick(scores) == 2
    assert scores[2] > np.delete(scores, 2).max() + 0.1


def test_model_centrality_rows_are_encoders_and_columns_generators():
    # model 0 reads everything but its generator loses two factors; model 1 is whole
    encoders = [_encoder(None), _encoder(None)]
    generators = [_generator(None), _generator(None)]

    def lossy(indices: torch.Tensor, nuisance: torch.Generator) -> torch.Tensor:
        x = generators[1](indices, nuisance)
        x[:, :2] = torch.rand(indices.shape[0], 2, generator=nuisance, dtype=torch.float64)
        return x

    seen = []
    matrix, _ = model_centrality(
        encoders, [lossy, generators[1]], SIZES, uniform_factor_sampler(SIZES), num_samples=40, progress=seen.append
    )
    assert matrix[0, 1] == pytest.approx(1.0)  # encoder 0 on generator 1: every factor readable
    assert matrix[1, 0] < 0.8  # encoder 1 on generator 0: two factors are noise
    # every rendered observation is counted, in the pieces the metric renders
    from infogan_plugin.selection import images_per_pair

    assert sum(seen) == 2 * images_per_pair(40)


# ------------------------------------------------------------------------------ configurations


def test_config_differences_names_the_key_and_the_seeds():
    base = {"lr_g": 0.001, "seed": 0, "out": "a", "extra": {"code": ["categorical:3"], "eval_every": 0}}
    configs = {
        0: base,
        1: {**base, "seed": 1, "out": "b", "extra": {**base["extra"], "eval_every": 50}},
        2: {**base, "seed": 2, "lr_g": 0.002, "extra": {"code": ["categorical:4"]}},
    }
    lines = config_differences(configs, {"seed", "out", "eval_every"})
    assert lines == [
        "code: ['categorical:3'] (seeds 0, 1), ['categorical:4'] (seed 2)",
        "lr_g: 0.001 (seeds 0, 1), 0.002 (seed 2)",
    ]
    assert config_differences({0: base, 1: {**base, "seed": 1}}, {"seed"}) == []


def test_heat_map_colours_cells_by_value_and_marks_missing_ones():
    table = heat_map([[None, 1.0], [0.0, float("nan")]], ["a", "b"], title="t <x>", mark=1)
    assert table.count("&ndash;") == 2  # the missing diagonal
    assert "rgb(8,69,148)" in table and "rgb(255,255,255)" in table  # 1.0 deep blue, 0.0 white
    assert "<b>b</b>" in table and "t &lt;x&gt;" in table


# ------------------------------------------------------------------------------ the command

CODES = ["--code", "categorical:3", "--code", "uniform:1", "--code", "uniform:1"]


@pytest.fixture(scope="module")
def sweep(ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tiny runs, seeds 0..2, 60 steps each; seed 2 logs at another period (which a sweep
    may do). Read-only: tests that change it copy it."""
    folder = tmp_path_factory.mktemp("select") / "sweep"
    for seed in range(3):
        ganrun.train(
            folder / f"seed-{seed}",
            "--seed",
            seed,
            "--model",
            "tiny",
            "--steps",
            60,
            "--batch-size",
            32,
            "--log-every",
            30 if seed == 2 else 60,
            *CODES,
            plugins=["infogan", tiny],
        )
    return folder


def _copy(sweep: Path, target: Path, *, configs_only: bool = False) -> Path:
    if configs_only:
        for run in sweep.glob("seed-*"):
            (target / run.name).mkdir(parents=True)
            shutil.copy(run / "config.json", target / run.name / "config.json")
        return target
    return Path(shutil.copytree(sweep, target))


def test_select_writes_the_matrices_and_the_pick_loads_as_a_run(ganrun: Ganrun, sweep: Path, tmp_path: Path):
    sweep = _copy(sweep, tmp_path / "sweep")
    result = ganrun.invoke("select", sweep, "--samples", 20, plugins=IG)
    assert result.exit_code == 0, ganrun.describe(result)
    written = json.loads((sweep / "select.json").read_text())
    assert written["seeds"] == [0, 1, 2] and written["runs"] == ["seed-0", "seed-1", "seed-2"]
    assert written["method"] == "categorical" and written["skipped"] == []

    cat = np.array(written["categorical"]["matrix"])
    assert cat.shape == (3, 3) and np.allclose(cat, cat.T) and np.allclose(np.diag(cat), 1.0)
    assert ((-1 <= cat) & (cat <= 1)).all() and written["categorical"]["images"] == 10_000
    assert written["categorical"]["centrality"] == pytest.approx(centrality(cat).tolist())

    con = written["continuous"]
    assert con["factors"] == ["c2", "c3"] and con["samples"] == 20
    matrix = np.array(con["matrix"], dtype=float)  # null -> NaN
    assert np.isnan(np.diag(matrix)).all() and ((0 <= matrix[~np.eye(3, dtype=bool)]) <= 1).all()
    assert con["centrality"] == pytest.approx(centrality(matrix).tolist())

    chosen = pick(written["centrality"]["categorical"])
    assert written["pick"]["seed"] == chosen and written["pick"]["run"] == f"seed-{chosen}"
    run = infogan_plugin.load_run(sweep / written["pick"]["run"])
    assert run.step == 60 and run.config.seed == chosen

    accuracy = written["labels"]["accuracy"]  # digits are labelled
    assert len(accuracy["values"]) == 3 and accuracy["pick_rank"] == rank_of(accuracy["values"], chosen)

    lines = result.stdout.splitlines()
    assert lines[0] == f"pick: seed {chosen}, centrality {written['pick']['centrality']:.3f} (categorical), " + (
        f"run {sweep / f'seed-{chosen}'}"
    )
    assert any(line.startswith("the pick is ") and " of 3 by accuracy" in line for line in lines)
    assert f"  ganrun --plugin infogan generate {sweep / f'seed-{chosen}'} --n 64" in lines
    page = (sweep / "select.html").read_text()
    assert page.count('class="heat-map"') == 2 and "http" not in page.replace("http://www.w3.org", "")
    assert not list(sweep.glob(".*tmp*"))  # atomic writes leave nothing behind


def test_select_by_categorical_alone_without_labels(ganrun: Ganrun, sweep: Path, tmp_path: Path):
    sweep = _copy(sweep, tmp_path / "sweep")
    result = ganrun.invoke("select", sweep, "--by", "categorical", "--no-labels", plugins=IG)
    assert result.exit_code == 0, ganrun.describe(result)
    written = json.loads((sweep / "select.json").read_text())
    assert "continuous" not in written and "labels" not in written
    assert list(written["centrality"]) == ["categorical"]
    assert "ModelCentrality" not in result.stderr


def test_select_refuses_runs_of_different_configurations(ganrun: Ganrun, sweep: Path, tmp_path: Path):
    folder = _copy(sweep, tmp_path / "sweep", configs_only=True)
    path = folder / "seed-1" / "config.json"
    described = json.loads(path.read_text())
    described["config"]["lr_g"] = 0.5
    path.write_text(json.dumps(described))
    result = ganrun.invoke("select", folder, plugins=IG)
    assert result.exit_code == 1
    line = ganrun.error_line(result)
    assert "not seeds of one configuration" in line and "lr_g: 0.001 (seeds 0, 2), 0.5 (seed 1)" in line
    assert not (folder / "select.json").exists()


def test_select_without_scikit_learn_says_what_to_install(
    ganrun: Ganrun, sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for name in [n for n in sys.modules if n.split(".")[0] == "sklearn"] + ["sklearn"]:
        monkeypatch.setitem(sys.modules, name, None)  # any import of scikit-learn now fails
    with pytest.raises(MissingEvalDependency, match="pip install 'ganrun\\[eval\\]'"):
        partition_agreement([np.zeros(3), np.ones(3)])
    folder = _copy(sweep, tmp_path / "sweep", configs_only=True)
    line = ganrun.error_line(ganrun.invoke("select", folder, plugins=IG))
    assert "scikit-learn is needed for select's agreement of partitions" in line
    assert "pip install 'ganrun[eval]'" in line


def test_select_refuses_two_folders_of_one_seed(ganrun: Ganrun, sweep: Path, tmp_path: Path):
    folder = _copy(sweep, tmp_path / "sweep", configs_only=True)
    shutil.copytree(folder / "seed-1", folder / "seed-1-again")
    line = ganrun.error_line(ganrun.invoke("select", folder, plugins=IG))
    assert "seed-1 and seed-1-again both hold seed 1" in line


def test_select_refuses_fewer_than_two_runs(ganrun: Ganrun, sweep: Path, tmp_path: Path):
    folder = tmp_path / "sweep"
    shutil.copytree(sweep / "seed-0", folder / "seed-0")
    (folder / "notes").mkdir()  # not a run folder
    result = ganrun.invoke("select", folder, plugins=IG)
    assert result.exit_code == 1
    assert "select needs at least 2 runs of one configuration, found 1" in ganrun.error_line(result)


def test_select_skips_damaged_and_missing_checkpoints_in_one_line_each(ganrun: Ganrun, sweep: Path, tmp_path: Path):
    folder = _copy(sweep, tmp_path / "sweep")
    shutil.copytree(sweep / "seed-2", folder / "seed-3")
    described = json.loads((folder / "seed-3" / "config.json").read_text())
    described["config"]["seed"] = 3
    (folder / "seed-3" / "config.json").write_text(json.dumps(described))
    (ckpt,) = (folder / "seed-1" / "checkpoints").glob("ckpt-*.safetensors")
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # cut short
    shutil.rmtree(folder / "seed-3" / "checkpoints")

    for chosen, damaged, missing in (
        (
            (),
            "no usable checkpoint: the newest, ckpt-000000060.safetensors, is truncated",
            "no checkpoint in this run folder",
        ),
        (("--checkpoint", 60), "ckpt-000000060.safetensors: truncated", "no checkpoint 60; the run has: none"),
    ):
        result = ganrun.invoke("select", folder, "--by", "categorical", "--no-labels", *chosen, plugins=IG)
        assert result.exit_code == 0, ganrun.describe(result)
        assert "Traceback" not in result.output
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 2, result.stderr
        assert warnings[0].startswith("warning: seed-1: skipped, ") and damaged in warnings[0]
        assert warnings[1].startswith("warning: seed-3: skipped, ") and missing in warnings[1]
        written = json.loads((folder / "select.json").read_text())
        assert written["seeds"] == [0, 2]
        assert [line.split(":")[0] for line in written["skipped"]] == ["seed-1", "seed-3"]

    shutil.rmtree(folder / "seed-2" / "checkpoints")  # one usable run left
    result = ganrun.invoke("select", folder, "--by", "categorical", "--no-labels", plugins=IG)
    assert "select needs at least 2 usable runs, 1 of 4 could be loaded" in ganrun.error_line(result)
