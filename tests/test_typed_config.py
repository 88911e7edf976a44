"""Typed configuration (issue 18): the whole configuration is validated up front against the
option types, TOML and flags alike (plugins' options included), and refused with a usage
error naming the key, before a run folder exists. TOML values are generated."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import Ganrun

# What each key takes, written out here independently of registry.config and the plugin.
INT = {
    "noise_dim",
    "steps",
    "batch_size",
    "seed",
    "save_every",
    "sample_every",
    "log_every",
    "keep_checkpoints",
    "g_steps",
    "image_size",
    "q_hidden",
    "eval_every",
    "eval_samples",
}
FLOAT = {"lr_g", "lr_d", "lr_decay", "beta1", "beta2", "info_lambda", "q_slope", "q_real"}
BOOL = {"spectral_norm", "amp", "compile", "progress", "tensorboard"}
STR = {"dataset", "data_dir", "model", "gan_loss", "noise", "device", "out", "q_norm", "q_augment"}
LIST_OF_STR = {"code"}
TOML_KEY: dict[str, str] = {}

SCALARS = st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=6)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.from_regex(r"[a-z]{1,4}", fullmatch=True), inner, max_size=2)
    ),
    max_leaves=5,
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def well_typed(key: str, value: Any) -> bool:
    if key in BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if key in INT:
        return isinstance(value, int)
    if key in FLOAT:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if key in STR:
        return isinstance(value, str)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(INT | FLOAT | BOOL | STR | LIST_OF_STR)), value=VALUES)
def test_a_wrongly_typed_toml_value_is_a_usage_error_naming_the_key(
    ganrun: Ganrun, tmp_path: Path, key: str, value: Any
) -> None:
    assume(not well_typed(key, value))
    name = TOML_KEY.get(key, key)
    config = tmp_path / "run.toml"
    config.write_text(f"{name} = {toml_value(value)}\n", encoding="utf-8")
    run = tmp_path / "run"
    result = ganrun.invoke("train", "--out", run, "--config", config, "--no-progress", plugins=["infogan"])
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "--config" in line and f"{name}:" in line and str(config) in line, line
    assert not run.exists()


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('amp = "no"', "amp"),
        ('keep_checkpoints = "3"', "keep_checkpoints"),
        ('lr_g = "fast"', "lr_g"),
        ('seed = "abc"', "seed"),
        ("code = 5", "code"),
        ("device = 3", "device"),
        ('info_lambda = "x"', "info_lambda"),
    ],
)
def test_the_reported_toml_cases(ganrun: Ganrun, tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "run.toml"
    config.write_text(toml + "\n")
    result = ganrun.invoke("train", "--out", tmp_path / "run", "--config", config, plugins=["infogan"])
    assert result.exit_code == 2, ganrun.describe(result)
    assert f"{key}:" in ganrun.error_line(result)


@pytest.mark.parametrize(
    ("args", "option", "detail"),
    [
        (["--device", "foo"], "--device", "cuda:N"),
        (["--device", "cuda:x"], "--device", "cuda:N"),
        (["--beta2", "1.5"], "--beta2", "[0, 1)"),
        (["--beta1", "-0.1"], "--beta1", "[0, 1)"),
        (["--keep-checkpoints", "-1"], "--keep-checkpoints", "0 (keep all)"),
        (["--lr-g", "inf"], "--lr-g", "finite"),
    ],
)
def test_bad_flags_are_reported_under_their_own_option(
    ganrun: Ganrun, tmp_path: Path, args: list[str], option: str, detail: str
) -> None:
    result = ganrun.invoke("train", "--out", tmp_path / "run", *args, plugins=["infogan"])
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert (f"for {option}:" in line or f"for '{option}':" in line) and detail in line, line
    assert not (tmp_path / "run").exists()
