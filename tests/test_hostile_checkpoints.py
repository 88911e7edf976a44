"""Hostile state inside well-formed safetensors files (issue 18): every value a checkpoint
carries is checked against what this build would have written before any of it is used, and
the refusal is one line naming the file, the entry and the cause, the same whether the file is
restored to resume training or to use the trained model. Cases are generated."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from registry.checkpoint import CheckpointError, checkpoint_name, read_checkpoint, save_checkpoint
from registry.checkpoint.lock import LOCK_NAME
from registry.plugins import Host
from registry.train import Trainer, restore_for_inference

if TYPE_CHECKING:
    from conftest import Ganrun

ARGS = ["--model", "tiny", "--batch-size", 16, "--steps", 4, "--save-every", 4, "--keep-checkpoints", 0]
GENERATED = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def good(ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a tiny run (BatchNorm included, so int64 buffers too); read-only."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    ganrun.train(run, *ARGS, plugins=[tiny])
    return run / "checkpoints" / checkpoint_name(4)


@pytest.fixture(scope="module")
def host(tiny: str) -> Host:
    return Host.create([tiny])


def refusal(path: Path, host: Host) -> str:
    """The one-line refusal of restoring ``path`` as ``--resume`` does; restoring it for use
    (``load_run`` and the commands that use a trained model, with no dataset or optimizers)
    must refuse it with the same message."""
    with pytest.raises(CheckpointError) as info:
        Trainer.from_checkpoint(path, host, device="cpu")
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    with pytest.raises(CheckpointError) as for_use:
        restore_for_inference(path, host, device="cpu")
    assert str(for_use.value) == message
    return message


def test_the_untouched_checkpoint_restores(good: Path, host: Host) -> None:
    assert Trainer.from_checkpoint(good, host, device="cpu").step == 4
    assert restore_for_inference(good, host, device="cpu").step == 4


# ------------------------------------------------------------------------------ tensors

DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.float32, torch.int64, torch.int32, torch.uint8]


@st.composite
def tensor_damage(draw, names: list[str], tensors: dict[str, torch.Tensor]) -> tuple[str, str, torch.Tensor]:
    name = draw(st.sampled_from(names))
    value = tensors[name]
    kinds = ["dtype", "shape"] + (["nonfinite"] if value.is_floating_point() and value.numel() else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "dtype":
        dtype = draw(st.sampled_from([d for d in DTYPES if d != value.dtype]))
        return name, kind, value.to(dtype)
    if kind == "shape":
        how = draw(st.sampled_from(["leading", "flat-extra", "drop"] if value.numel() else ["leading"]))
        if how == "leading":
            return name, kind, value.unsqueeze(0)
        if how == "flat-extra":
            return name, kind, torch.cat([value.reshape(-1), value.reshape(-1)[:1]])
        return name, kind, value.reshape(-1)[1:].clone()
    damaged = value.clone().reshape(-1)
    damaged[draw(st.integers(0, damaged.numel() - 1))] = draw(
        st.sampled_from([float("nan"), float("inf"), -float("inf")])
    )
    return name, kind, damaged.reshape(value.shape)


@GENERATED
@given(data=st.data())
def test_any_damaged_tensor_is_refused_naming_it(good: Path, host: Host, tmp_path: Path, data) -> None:
    tensors, meta = read_checkpoint(good)
    names = sorted(k for k in tensors if k.split(".")[0] in ("model", "optim", "rng"))
    name, kind, damaged = data.draw(tensor_damage(names, tensors))
    bad = tmp_path / f"{hashlib.sha1(name.encode()).hexdigest()[:8]}-{kind}" / checkpoint_name(4)
    bad.parent.mkdir(exist_ok=True)
    save_checkpoint(bad, {**tensors, name: damaged}, meta)
    message = refusal(bad, host)
    assert f"'{name}'" in message, (kind, message)


# ------------------------------------------------------------------------------ optimizer settings

SCALARS = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=8)
OPTIMIZER_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _valid_setting(key: str, value: Any, original: Any) -> bool:
    if key == "lr":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")
    if key in ("fused", "foreach"):
        return value is None or isinstance(value, bool)
    if isinstance(original, dict):  # a tuple, as the codec tags it
        original = original["tuple"]
    return json.dumps(value) == json.dumps(original)


@GENERATED
@given(data=st.data())
def test_any_hostile_optimizer_setting_is_refused_naming_it(good: Path, host: Host, tmp_path: Path, data) -> None:
    tensors, meta = read_checkpoint(good)
    which = data.draw(st.sampled_from(["optim.G", "optim.D"]))
    state = json.loads(meta[which])
    group = state["param_groups"][0]
    key = data.draw(st.sampled_from(sorted(k for k in group if k != "params")))
    value = data.draw(OPTIMIZER_VALUES)
    assume(not _valid_setting(key, value, group[key]))
    group[key] = value
    bad = tmp_path / checkpoint_name(4)
    save_checkpoint(bad, tensors, {**meta, which: json.dumps(state)})
    message = refusal(bad, host)
    assert f"{which}.param_groups.0.{key}" in message or f"optimizer state for '{which}'" in message, message


def test_adam_state_the_trainer_never_writes_is_refused(good: Path, host: Host, tmp_path: Path) -> None:
    tensors, meta = read_checkpoint(good)
    state = json.loads(meta["optim.G"])
    state["state"][0][1]["momentum_buffer"] = None
    save_checkpoint(tmp_path / checkpoint_name(4), tensors, {**meta, "optim.G": json.dumps(state)})
    assert "'optim.G.state.0.momentum_buffer' is not state Adam keeps" in refusal(tmp_path / checkpoint_name(4), host)


def test_a_negative_or_fractional_adam_step_is_refused(good: Path, host: Host, tmp_path: Path) -> None:
    tensors, meta = read_checkpoint(good)
    name = next(k for k in sorted(tensors) if k.startswith("optim.D.state.") and k.endswith(".step"))
    for value in (-1.0, 2.5):
        save_checkpoint(tmp_path / checkpoint_name(4), {**tensors, name: torch.tensor(value)}, meta)
        assert f"'{name}' is {value!r}, not a step count" in refusal(tmp_path / checkpoint_name(4), host)


# ------------------------------------------------------------------------------ configuration and JSON

# What each configuration key holds, written out here independently of registry.config.
OPTIONAL = {"data_dir": str, "image_size": int, "model": str, "out": str}


@GENERATED
@given(data=st.data())
def test_a_wrongly_typed_configuration_value_is_refused_naming_the_key(
    good: Path, host: Host, tmp_path: Path, data
) -> None:
    tensors, meta = read_checkpoint(good)
    config = json.loads(meta["config"])
    key = data.draw(st.sampled_from(sorted(k for k in config if k != "extra")))
    value = data.draw(JSON_VALUES)
    kind = OPTIONAL.get(key) or type(config[key])
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < float("inf")
    else:
        ok = type(value) is kind or (value is None and key in OPTIONAL)
    assume(not ok)
    config[key] = value
    bad = tmp_path / checkpoint_name(4)
    save_checkpoint(bad, tensors, {**meta, "config": json.dumps(config)})
    message = refusal(bad, host)
    assert "'config'" in message, message
    assert f"{key}:" in message or "not a value this build writes" in message, message  # NaN, Infinity


@pytest.mark.parametrize("entry", ["config", "run", "optim.G"])
def test_deeply_nested_json_metadata_is_refused_not_a_recursion_error(
    good: Path, host: Host, tmp_path: Path, entry: str
) -> None:
    tensors, meta = read_checkpoint(good)
    save_checkpoint(tmp_path / checkpoint_name(4), tensors, {**meta, entry: "[" * 100000 + "]" * 100000})
    message = refusal(tmp_path / checkpoint_name(4), host)
    assert entry in message and ("deeper" in message or "not valid JSON" in message), message


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entry=st.sampled_from(["config", "run"]),
    value=st.one_of(
        st.lists(st.integers(), max_size=3),
        st.integers(),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
        st.floats(0, 1),
    ),
)
def test_a_json_entry_of_another_type_than_this_build_writes_is_refused(
    good: Path, host: Host, tmp_path: Path, entry: str, value: Any
) -> None:
    tensors, meta = read_checkpoint(good)
    path = tmp_path / checkpoint_name(4)
    save_checkpoint(path, tensors, {**meta, entry: json.dumps(value)})
    message = refusal(path, host)
    kind = {list: "array", int: "number", float: "number", str: "string", bool: "boolean", type(None): "null"}
    assert f"metadata entry {entry!r} is a JSON {kind[type(value)]}; this build writes a JSON object" in message


# ------------------------------------------------------------------------------ through the command line


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def _damage(kind: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """Damage one entry the way the adversarial test did; return the entry's name."""
    if kind == "f16-weight":
        name = next(k for k in sorted(tensors) if k.startswith("model.G.") and k.endswith("weight"))
        tensors[name] = tensors[name].half()
    elif kind == "int64-weight":
        name = next(k for k in sorted(tensors) if k.startswith("model.D.") and k.endswith("weight"))
        tensors[name] = tensors[name].long()
    elif kind == "adam-step-shape":
        name = next(k for k in sorted(tensors) if k.startswith("optim.G.state.") and k.endswith(".step"))
        tensors[name] = tensors[name].reshape(1)
    elif kind == "exp-avg-shape":
        name = next(k for k in sorted(tensors) if k.startswith("optim.D.state.") and k.endswith(".exp_avg"))
        tensors[name] = torch.zeros(7)
    elif kind == "string-lr":
        state = json.loads(meta["optim.G"])
        state["param_groups"][0]["lr"] = "fast"
        meta["optim.G"] = json.dumps(state)
        name = "optim.G.param_groups.0.lr"
    elif kind == "rng-dtype":
        name = "rng.torch_cpu.0"
        tensors[name] = tensors[name].to(torch.int32)
    elif kind == "config-string-number":
        config = json.loads(meta["config"])
        config["noise_dim"] = "100"
        meta["config"] = json.dumps(config)
        name = "config"
    elif kind == "step-beyond":
        meta["step"] = str(10**12)
        name = "step"
    else:  # pragma: no cover
        raise AssertionError(kind)
    return name


@pytest.mark.parametrize(
    "kind",
    [
        "f16-weight",
        "int64-weight",
        "adam-step-shape",
        "exp-avg-shape",
        "string-lr",
        "rng-dtype",
        "config-string-number",
        "step-beyond",
    ],
)
def test_resume_refuses_hostile_state_with_the_run_folder_untouched(
    ganrun: Ganrun, tiny: str, good: Path, tmp_path: Path, kind: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(good.parent.parent, run)
    path = run / "checkpoints" / checkpoint_name(4)
    tensors, meta = read_checkpoint(path)
    name = _damage(kind, tensors, meta)
    save_checkpoint(path, tensors, meta)
    before = _snapshot(run)
    result = ganrun.invoke("train", "--resume", run, "--steps", 6, plugins=[tiny])
    assert result.exit_code == 1, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert str(path) in line and f"'{name}'" in line, line
    assert _snapshot(run) == before
    # using the trained model (no dataset, no optimizers) refuses the file, naming the same entry
    exported = ganrun.invoke("export", run, "--format", "safetensors", "--out", tmp_path / "G.st", plugins=[tiny])
    assert exported.exit_code == 1, ganrun.describe(exported)
    used = ganrun.error_line(exported)
    assert str(path) in used and f"'{name}'" in used and "--steps" not in used, used  # export has no --steps
    assert _snapshot(run) == before and not (tmp_path / "G.st").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_given_as_checkpoint_is_refused_not_waited_on(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    fifo = tmp_path / checkpoint_name(4)
    os.mkfifo(fifo)
    result = ganrun.run("train", "--resume", fifo, "--steps", 6, plugins=[tiny], timeout=60)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(fifo) in errors[0] and "not a regular file" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
