"""Every reader of a run folder's small files, every JSON ganrun writes, every numeric option and
a plugin's checkpoint state, against generated damage (reliability issue: eval and traverse).

* ``eval``, ``traverse``, ``generate``, ``export`` and ``train --resume`` on a run whose
  ``config.json``, ``metrics.jsonl`` or ``eval.json`` is truncated, of another shape, not UTF-8,
  nested absurdly deep, a folder or missing: a one-line error naming the file, or success with
  a ``warning:`` naming it where the file is only informative; never a traceback.
* What a run and ``eval`` write is strict JSON; a non-finite ``eval`` result is ``null``, named
  in a warning, and fails the command.
* A bad value of any numeric option is reported under that option.
* A plugin's checkpoint state is checked against what the plugin writes now.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.checkpoint import checkpoint_name, read_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from conftest import Ganrun

CODES = ["--code", "categorical:3", "--code", "uniform:1"]
TINY_ARGS = ["--model", "tiny", "--batch-size", 16, "--log-every", 2, "--save-every", 2, "--sample-every", 4]
GENERATED = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def strict_loads(text: str):
    def refuse(name: str):
        raise ValueError(f"{name} is not strict JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def infogan_run(ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny InfoGAN run of 4 steps with an eval.json; read-only."""
    run = tmp_path_factory.mktemp("readers") / "run"
    ganrun.train(run, *TINY_ARGS, "--steps", 4, *CODES, plugins=["infogan", tiny])
    result = ganrun.invoke("eval", run, "--samples", 20, "--no-disentanglement", plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    return run


# ------------------------------------------------------------------------------ damaged run files

FILES = ["config.json", "metrics.jsonl", "eval.json"]
COMMANDS = ["eval", "traverse", "generate", "export", "resume"]


@st.composite
def damage(draw, original: bytes) -> bytes | str:
    """Bytes for a damaged file, "folder" or "missing"."""
    kind = draw(st.sampled_from(["truncated", "shape", "bytes", "deep", "folder", "missing"]))
    if kind == "truncated":
        return original[: draw(st.integers(0, max(len(original) - 1, 0)))]
    if kind == "shape":
        value = draw(
            st.one_of(
                st.lists(st.integers(), max_size=3),
                st.text(max_size=5),
                st.none(),
                st.integers(),
                st.fixed_dictionaries({"plugins": st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2))}),
                st.fixed_dictionaries({"information": st.one_of(st.integers(), st.lists(st.integers(), max_size=2))}),
                st.fixed_dictionaries({"step": st.text(max_size=3)}),
            )
        )
        return json.dumps(value).encode()
    if kind == "bytes":
        at = draw(st.integers(0, len(original)))
        return original[:at] + draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\x00"])) + original[at:]
    if kind == "deep":
        return b"[" * draw(st.integers(1000, 60000))
    return kind


def _command(name: str, run: Path, out: Path) -> list:
    return {
        "eval": ["eval", run, "--samples", 10, "--no-disentanglement"],
        "traverse": ["traverse", run, "--out", out / "traversals"],
        "generate": ["generate", run, "--n", 2, "--out", out / "generated"],
        "export": ["export", run, "--format", "safetensors", "--out", out / "G.safetensors"],
        "resume": ["train", "--resume", run, "--steps", 6, "--no-progress"],
    }[name]


def _apply(path: Path, damaged: bytes | str) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if damaged == "folder":
        path.mkdir()
        (path / "inside").write_text("x")
    elif damaged != "missing":
        path.write_bytes(damaged)


def _check_outcome(ganrun: Ganrun, result, path: Path, damaged: bytes | str) -> None:
    assert "Traceback" not in result.output, ganrun.describe(result)
    assert result.exception is None or isinstance(result.exception, SystemExit), ganrun.describe(result)
    if result.exit_code != 0:
        line = ganrun.error_line(result)
        assert str(path) in line, line
        return
    if damaged == "missing" or path.name == "eval.json":
        return  # a missing informative file needs no word; eval.json is only ever written here
    # lines that name the file; the end of training's summary says where every metric is
    warnings = [line for line in result.stderr.splitlines() if str(path) in line and line != f"every metric: {path}"]
    if warnings:
        assert all(line.startswith("warning: ") for line in warnings), result.stderr


def _run_damaged(ganrun: Ganrun, tiny: str, base: Path, tmp: Path, name: str, command: str, damaged) -> None:
    work = tmp / "case"
    shutil.rmtree(work, ignore_errors=True)
    run = work / "run"
    shutil.copytree(base, run)
    path = run / name
    _apply(path, damaged)
    result = ganrun.invoke(*_command(command, run, work), plugins=["infogan", tiny])
    _check_outcome(ganrun, result, path, damaged)
    if command == "eval" and name == "eval.json" and damaged == "folder":
        assert result.exit_code != 0
    if command == "resume" and name != "eval.json" and damaged == "folder":
        assert result.exit_code != 0  # training (re)writes these two files


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("name", "damaged"),
    [
        ("config.json", b"[" * 50000),
        ("config.json", "folder"),
        ("metrics.jsonl", "folder"),
        ("eval.json", "folder"),
        ("metrics.jsonl", b'{"step": 1}\n\xff\xfe\n{"step": 2, "d/adv": "x"}\n[1]\n'),
    ],
)
def test_commands_name_a_damaged_run_file(
    ganrun: Ganrun, tiny: str, infogan_run: Path, tmp_path: Path, command: str, name: str, damaged
) -> None:
    _run_damaged(ganrun, tiny, infogan_run, tmp_path, name, command, damaged)


@GENERATED
@given(data=st.data(), name=st.sampled_from(FILES), command=st.sampled_from(COMMANDS))
def test_generated_damage_never_ends_in_a_traceback(
    ganrun: Ganrun, tiny: str, infogan_run: Path, tmp_path: Path, data, name: str, command: str
) -> None:
    damaged = data.draw(damage((infogan_run / name).read_bytes()))
    _run_damaged(ganrun, tiny, infogan_run, tmp_path, name, command, damaged)


def test_resume_warns_about_damaged_metric_lines_and_keeps_the_good_ones(
    ganrun: Ganrun, tiny: str, infogan_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(infogan_run, run)
    good = (run / "metrics.jsonl").read_bytes().splitlines()
    (run / "metrics.jsonl").write_bytes(b"\n".join([good[0], b"\xff{", b"[1, 2]", good[1]]) + b"\n")
    result = ganrun.invoke("train", "--resume", run, "--steps", 6, "--no-progress", plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    assert f"warning: {run / 'metrics.jsonl'}: skipped 2 damaged line(s), the first is line 2" in result.stderr
    steps = [strict_loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


def test_report_names_a_damaged_eval_json(ganrun: Ganrun, tiny: str, infogan_run: Path, tmp_path: Path) -> None:
    for i, damaged in enumerate([b"{trunc", b'{"information": 5}', b"\xff", b"[" * 50000, "folder"]):
        run = tmp_path / f"run{i}"
        shutil.copytree(infogan_run, run)
        _apply(run / "eval.json", damaged)
        result = ganrun.invoke("report", run, "--plots", "svg", plugins=["infogan", tiny])
        assert result.exit_code == 0, ganrun.describe(result)
        assert f"warning: {run / 'eval.json'}: " in result.stderr, result.stderr


# ------------------------------------------------------------------------------ strict JSON


def test_everything_a_run_and_eval_write_is_strict_json(ganrun: Ganrun, infogan_run: Path) -> None:
    files = sorted(p for p in infogan_run.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())
    assert {p.name for p in files} >= {"config.json", "metrics.jsonl", "eval.json"}
    for path in files:
        lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        for line in lines:
            strict_loads(line)


def test_a_non_finite_eval_result_is_null_named_and_fails(
    ganrun: Ganrun, tiny: str, infogan_run: Path, tmp_path: Path
) -> None:
    """Q's weights at the largest float32 (finite, so the checkpoint is valid) overflow its
    output to infinity, and L_I becomes NaN."""
    run = tmp_path / "run"
    shutil.copytree(infogan_run, run)
    path = run / "checkpoints" / checkpoint_name(4)
    tensors, meta = read_checkpoint(path)
    for key in [k for k in tensors if k.startswith("model.Q.") and k.endswith("weight")]:
        tensors[key] = torch.full_like(tensors[key], torch.finfo(torch.float32).max)
    save_checkpoint(path, tensors, meta)
    result = ganrun.invoke("eval", run, "--samples", 10, "--no-disentanglement", plugins=["infogan", tiny])
    assert result.exit_code == 1, ganrun.describe(result)
    written = strict_loads((run / "eval.json").read_text())
    assert all(info["L_I"] is None for info in written["information"].values()), written
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "information.c1.L_I" in warning[0] and "null" in warning[0], result.stderr
    assert "information.c1.L_I" in ganrun.error_line(result)


# ------------------------------------------------------------------------------ option values

NONFINITE = ["nan", "inf", "-inf", "1e400"]
REFUSED = {
    "--lambda": [*NONFINITE, "-1", "-1e-9"],
    "--q-slope": [*NONFINITE, "-1"],
    "--q-hidden": ["0", "-1", "nan"],
    "--eval-every": ["-1", "inf"],
    "--eval-samples": ["0", "-5"],
    "--lr-g": [*NONFINITE, "0", "-1"],
    "--lr-d": [*NONFINITE, "0", "-1"],
    "--lr-decay": [*NONFINITE, "-0.5", "1.5"],
    "--beta1": [*NONFINITE, "-0.1", "1"],
    "--beta2": [*NONFINITE, "-0.1", "1", "2"],
    "--steps": ["0", "-1", "inf"],
    "--batch-size": ["0", "-1"],
    "--noise-dim": ["0", "-1"],
    "--save-every": ["0", "-3"],
    "--sample-every": ["0", "-3"],
    "--log-every": ["0", "-3"],
    "--g-steps": ["0", "-1"],
    "--keep-checkpoints": ["-1"],
    "--image-size": ["0", "3", "-1"],
    "--cr-weight": [*NONFINITE, "-1"],
    "--cr-start": ["-1"],
    "--cr-batch": ["0", "-2"],
}


def _refusal(ganrun: Ganrun, tiny: str, tmp_path: Path, option: str, value: str) -> str:
    plugins = ["infogan", tiny] + (["infogan_cr"] if option.startswith("--cr-") else [])
    # --eval-every on its own would also need a dataset with ground truth: the value is judged first
    result = ganrun.invoke(
        "train", "--out", tmp_path / "out", "--no-progress", "--model", "tiny", "--steps", 1, "--batch-size", 4,
        *CODES, f"{option}={value}", plugins=plugins,
    )  # fmt: skip
    assert result.exit_code == 2, ganrun.describe(result)
    return ganrun.error_line(result)


def _named(line: str) -> set[str]:
    """The options an error line names (click writes '--x' or --x: before the cause)."""
    return {flag for flag in REFUSED if f"'{flag}'" in line or f"{flag} " in line or f"{flag}:" in line}


@pytest.mark.parametrize(("option", "value"), [(o, v) for o, values in REFUSED.items() for v in values])
def test_a_bad_option_value_is_reported_under_that_option(
    ganrun: Ganrun, tiny: str, tmp_path: Path, option: str, value: str
) -> None:
    line = _refusal(ganrun, tiny, tmp_path, option, value)
    assert _named(line) == {option}, line


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    option=st.sampled_from(["--lambda", "--lr-g", "--beta2", "--q-slope"]),
    value=st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not (math.isfinite(v) and 0 <= v < 1)),
)
def test_generated_bad_floats_are_reported_under_their_option(
    ganrun: Ganrun, tiny: str, tmp_path: Path, option: str, value: float
) -> None:
    if option in ("--lambda", "--lr-g", "--q-slope") and math.isfinite(value) and value > 0:
        return  # allowed values for these (any finite positive number)
    line = _refusal(ganrun, tiny, tmp_path, option, repr(value))
    assert _named(line) == {option}, line


# ------------------------------------------------------------------------------ plugin checkpoint state

STATS_SOURCE = Path(__file__).parent / "plugins" / "running_stats.py"


@pytest.fixture
def stats_run(ganrun: Ganrun, tiny: str, make_plugin, tmp_path: Path) -> tuple[str, Path]:
    plugin = make_plugin(STATS_SOURCE.read_text())
    run = tmp_path / "stats-run"
    ganrun.train(run, *TINY_ARGS, "--steps", 4, "--keep-checkpoints", 0, plugins=[plugin, tiny])
    tensors, _ = read_checkpoint(run / "checkpoints" / checkpoint_name(4))
    assert tensors["plugin.running_stats.steps"].item() == 4
    return plugin, run


def test_plugin_state_round_trips(ganrun: Ganrun, tiny: str, stats_run: tuple[str, Path]) -> None:
    plugin, run = stats_run
    before, _ = read_checkpoint(run / "checkpoints" / checkpoint_name(4))
    result = ganrun.invoke("train", "--resume", run, "--steps", 6, "--no-progress", plugins=[plugin, tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    after, _ = read_checkpoint(run / "checkpoints" / checkpoint_name(6))
    assert after["plugin.running_stats.steps"].item() == 6
    assert after["plugin.running_stats.mean"][1].item() == before["plugin.running_stats.mean"][1].item() + 1


HOSTILE = {
    "wrong shape": lambda t: t.update({"plugin.running_stats.mean": torch.zeros(3)}),
    "wrong dtype": lambda t: t.update({"plugin.running_stats.mean": torch.zeros(2, dtype=torch.float64)}),
    "int dtype": lambda t: t.update({"plugin.running_stats.steps": torch.tensor(4, dtype=torch.int32)}),
    "NaN": lambda t: t.update({"plugin.running_stats.mean": torch.tensor([math.nan, 1.0])}),
    "Inf": lambda t: t.update({"plugin.running_stats.mean": torch.tensor([1.0, math.inf])}),
    "missing key": lambda t: t.pop("plugin.running_stats.steps"),
    "extra key": lambda t: t.update({"plugin.running_stats.other": torch.zeros(1)}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_plugin_state_is_refused_naming_the_entry(
    ganrun: Ganrun, tiny: str, stats_run: tuple[str, Path], case: str
) -> None:
    plugin, run = stats_run
    path = run / "checkpoints" / checkpoint_name(4)
    tensors, meta = read_checkpoint(path)
    HOSTILE[case](tensors)
    save_checkpoint(path, tensors, meta)
    before = ganrun.snapshot(run)
    entry = {"missing key": "plugin.running_stats.steps", "extra key": "plugin.running_stats.other"}.get(case)
    for args in (["train", "--resume", run, "--steps", 6, "--no-progress"], ["export", run, "--format", "safetensors"]):
        out = [] if args[0] == "train" else ["--out", run.parent / "G.safetensors"]
        result = ganrun.invoke(*args, *out, plugins=[plugin, tiny])
        assert result.exit_code == 1, ganrun.describe(result)
        line = ganrun.error_line(result)
        assert str(path) in line, line
        assert (entry or "plugin.running_stats.") in line, line
        assert ganrun.snapshot(run) == before
