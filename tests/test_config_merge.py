"""``registry.config.merge_config``: the configuration as a pure function of what the user gave
(no click.Context), with the precedence the CLI documents."""

from __future__ import annotations

import dataclasses

import pytest

from registry.config import ResumeConflict, TrainConfig, merge_config


def test_precedence_defaults_then_plugins_then_explicit() -> None:
    config = merge_config(
        {"steps": 7, "code": ["uniform:1"]},
        defaults={"steps": 3, "lr_g": 1e-3, "code": ["x"]},
        plugin_keys={"code", "info_lambda"},
    )
    assert config.steps == 7 and config.lr_g == 1e-3 and config.lr_d == TrainConfig().lr_d
    assert config.extra == {"code": ["uniform:1"], "info_lambda": None}


def test_resume_starts_from_the_saved_configuration_and_refuses_changes() -> None:
    saved = TrainConfig(seed=5, steps=10, out="old/place", extra={"code": ["uniform:1"]})
    config = merge_config({"steps": 20}, defaults={"seed": 9}, plugin_keys={"code"}, saved=saved)
    assert (config.seed, config.steps, config.out, config.extra) == (5, 20, None, {"code": ["uniform:1"]})
    with pytest.raises(ResumeConflict) as info:
        merge_config({"seed": 6, "code": ["uniform:2"]}, defaults={}, plugin_keys={"code"}, saved=saved)
    assert info.value.diffs == ["seed: 5 -> 6", "code: ['uniform:1'] -> ['uniform:2']"]
    assert dataclasses.asdict(saved)["seed"] == 5  # the saved configuration is not modified
