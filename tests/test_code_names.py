"""``name=`` on ``--code`` (issue 19): a code's name reaches every place that shows or reads codes
(metrics, ``eval``, ``encode``'s columns, ``generate --code NAME=VALUE``, ``load_run``), survives
a resume, and a bad or repeated name is refused in one line under ``--code``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infogan_plugin
from infogan_plugin.latent import build_latent_spec
from registry.config import TrainConfig
from registry.plugins import Host

if TYPE_CHECKING:
    from conftest import Ganrun

IG = ["infogan"]
NAMED = ("--code", "categorical:3,name=digit", "--code", "uniform:2,name=pose", "--code", "gaussian:1")
ARGS = ("--model", "tiny", "--batch-size", 16, "--log-every", 2, "--sample-every", 4, "--noise-dim", 4)


def _spec(*codes: str):
    host = Host.create(IG)
    config = TrainConfig(noise_dim=4, extra={"code": list(codes)})
    return build_latent_spec(config, host.registries)


def test_names_follow_the_spec_and_default_to_the_position():
    spec = _spec("categorical:3,name=digit", "uniform:2,name=pose", "gaussian:1", "uniform:1,name=x1")
    assert [slot.name for slot in spec.slots] == ["digit", "pose_1", "pose_2", "c4", "x1"]
    assert [slot.name for slot in _spec("categorical:3", "uniform:2").slots] == ["c1", "c2", "c3"]


def test_a_named_run_logs_evaluates_encodes_generates_and_resumes_under_its_names(
    ganrun: Ganrun, tiny: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    ganrun.train(run, *ARGS, *NAMED, "--steps", 4, "--save-every", 2, plugins=[*IG, tiny])
    logged = ganrun.metrics(run)[-1]
    for name in ("digit", "pose_1", "pose_2", "c4"):
        assert f"L_I/{name}" in logged and f"H/{name}" in logged, sorted(logged)
    assert not any(key.endswith("/c1") for key in logged)

    resumed = ganrun.invoke("train", "--resume", run, "--steps", 6, "--no-progress", plugins=[*IG, tiny])
    assert resumed.exit_code == 0, ganrun.describe(resumed)
    assert "L_I/digit" in ganrun.metrics(run)[-1] and ganrun.metrics(run)[-1]["step"] == 6

    result = ganrun.invoke("eval", run, "--samples", 32, plugins=[*IG, tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    report = json.loads((run / "eval.json").read_text())
    assert {"digit", "pose_1", "pose_2", "c4"} <= set(json.dumps(report).replace('"', " ").split()), report

    loaded = infogan_plugin.load_run(run)
    assert loaded.code_names == ["digit", "pose_1", "pose_2", "c4"]
    assert set(loaded.encode(loaded.generate(5, codes={"digit": 2, "pose_1": 0.5}, seed=1))) == set(loaded.code_names)
    out = tmp_path / "gen"
    result = ganrun.invoke(
        "generate", run, "--n", 5, "--code", "digit=2", "--npz", "--individual", "--out", out, plugins=[*IG, tiny]
    )
    assert result.exit_code == 0, ganrun.describe(result)
    assert (np.load(out / "samples.npz")["code_digit"] == 2).all()
    bad = ganrun.invoke("generate", run, "--code", "c1=2", "--out", tmp_path / "gen2", plugins=[*IG, tiny])
    assert bad.exit_code != 0 and "digit" in ganrun.error_line(bad)

    table = tmp_path / "codes.csv"
    result = ganrun.invoke("encode", run, "--images", out / "images", "--out", table, plugins=[*IG, tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    header = next(csv.reader(table.open()))
    assert {"digit", "pose_1", "pose_2", "c4"} <= set(header), header


@pytest.mark.parametrize(
    ("codes", "said"),
    [
        (["categorical:3,name=digit", "uniform:1,name=digit"], "a code is named 'digit' already"),
        (["categorical:3", "uniform:1,name=c1"], "a code is named 'c1' already"),
        (["uniform:2,name=p", "uniform:1,name=p_2"], "a code is named 'p_2' already"),
    ],
)
def test_a_repeated_name_is_refused_under_code(ganrun: Ganrun, tiny: str, tmp_path: Path, codes, said) -> None:
    args = [a for code in codes for a in ("--code", code)]
    result = ganrun.train(tmp_path / "run", *ARGS, *args, "--steps", 1, plugins=[*IG, tiny], expect=2)
    line = ganrun.error_line(result)
    assert said in line and "name=" in line, line
    assert not (tmp_path / "run").exists()


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda s: "," not in s and "=" not in s and s.strip() == s))
def test_every_name_is_either_a_code_name_or_refused_in_one_line(name: str) -> None:
    valid = name[0].isascii() and name[0].isalpha() and len(name) <= 32
    valid = valid and all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)
    try:
        spec = _spec(f"categorical:3,name={name}")
    except ValueError as exc:
        assert not valid, (name, exc)
        assert "\n" not in str(exc) and f"name={name!r} is not a code name" in str(exc)
    else:
        assert valid, name
        assert [slot.name for slot in spec.slots] == [name]
