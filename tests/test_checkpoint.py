"""Tests for registry.checkpoint: round trips, atomic writes and hostile files.

Hostile files are built byte by byte so each test exercises exactly one
defect, and every refusal must be a one-line CheckpointError naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

from registry.checkpoint import atomic
from registry.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_name,
    find_latest,
    load_module_state,
    load_optimizer_state,
    module_state,
    optimizer_state,
    read_checkpoint,
    require_keys,
    save_checkpoint,
)

# --------------------------------------------------------------------------
# Helpers


def raw_safetensors(header: dict[str, Any] | bytes, data: bytes = b"", *, header_len: int | None = None) -> bytes:
    """Hand-built safetensors bytes: 8-byte LE header length, header, data."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(body) if header_len is None else header_len
    return struct.pack("<Q", length) + body + data


def good_header(**tensors: dict[str, Any]) -> dict[str, Any]:
    return {"__metadata__": {"format_version": FORMAT_VERSION}, **tensors}


def f32(begin: int, end: int, shape: list[int]) -> dict[str, Any]:
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def expect_error(path: Path, *causes: str) -> str:
    """Read ``path``, asserting a one-line CheckpointError naming it and each cause."""
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    return assert_message(info.value, path, *causes)


def assert_message(err: Exception, path: Path, *causes: str) -> str:
    message = str(err)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    for cause in causes:
        assert cause in message, message
    return message


def tiny_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()


def assert_same_state(a: Any, b: Any) -> None:
    """Deep equality that treats tensors bit-exactly, dtype and device included."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.device == b.device and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_state(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_state(x, y)
    else:
        assert a == b


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A small valid checkpoint."""
    path = tmp_path / checkpoint_name(1)
    save_checkpoint(path, {"w": torch.arange(6.0).reshape(2, 3)}, {"step": "1"})
    return path


# --------------------------------------------------------------------------
# Naming and basic round trip


def test_checkpoint_name_is_zero_padded_and_sorts_by_step() -> None:
    assert checkpoint_name(1234) == "ckpt-000001234.safetensors"
    names = [checkpoint_name(s) for s in (10, 9, 100, 2)]
    assert sorted(names) == [checkpoint_name(s) for s in (2, 9, 10, 100)]


def test_save_read_round_trip_handles_shared_views_and_dtypes(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {
        "base": base,
        "view": base[1],  # shares storage with base
        "transposed": base.t(),  # non-contiguous
        "flag": torch.tensor([True, False]),
        "half": torch.ones(2, dtype=torch.bfloat16),
        "count": torch.tensor(7),
        "empty": torch.empty(0, 3),
    }
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, tensors, {"note": "hello"})
    loaded, meta = read_checkpoint(path)
    assert meta == {"note": "hello", "format_version": FORMAT_VERSION}
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype
        assert torch.equal(loaded[name], value)


def test_save_rejects_non_string_metadata(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "c.safetensors", {}, {"step": 5})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_dtype_it_could_not_read_back(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unsupported dtype"):
        save_checkpoint(tmp_path / "c.safetensors", {"z": torch.zeros(2, dtype=torch.complex64)}, {})


# --------------------------------------------------------------------------
# Model + optimizer round trip


@pytest.mark.parametrize("variant", ["plain", "foreach", "fused"])
def test_model_and_adam_round_trip_resumes_identically(tmp_path: Path, variant: str) -> None:
    options = {"plain": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[variant]
    model = tiny_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.9), weight_decay=1e-4, **options)
    torch.manual_seed(1)
    batches = [torch.randn(8, 4) for _ in range(4)]
    for x in batches[:3]:
        train_step(model, opt, x)

    opt_tensors, opt_json = optimizer_state(opt, "opt.G")
    path = tmp_path / checkpoint_name(3)
    save_checkpoint(path, {**module_state(model, "model.G"), **opt_tensors}, {"opt.G": opt_json})

    tensors, meta = read_checkpoint(path)
    fresh = tiny_model(123)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.5, **options)
    load_module_state(fresh, tensors, "model.G", path=path)
    load_optimizer_state(fresh_opt, tensors, "opt.G", meta["opt.G"], path=path)

    # Parameters and buffers (BatchNorm running stats, num_batches_tracked).
    assert_same_state(fresh.state_dict(), model.state_dict())
    assert_same_state(fresh_opt.state_dict(), opt.state_dict())
    assert fresh_opt.state_dict()["state"][0]["step"].dtype == torch.float32

    train_step(model, opt, batches[3])
    train_step(fresh, fresh_opt, batches[3])
    assert_same_state(fresh.state_dict(), model.state_dict())


def test_optimizer_state_does_not_alias_loaded_tensors(tmp_path: Path) -> None:
    model = tiny_model(0)
    opt = torch.optim.Adam(model.parameters())
    train_step(model, opt, torch.randn(8, 4))
    tensors, meta_json = optimizer_state(opt, "opt")
    snapshot = {k: v.clone() for k, v in tensors.items()}
    load_optimizer_state(opt, tensors, "opt", meta_json, path=tmp_path / "x")
    train_step(model, opt, torch.randn(8, 4))
    for key, value in snapshot.items():
        assert torch.equal(tensors[key], value)


class _CompiledLike(nn.Module):
    """Stands in for torch.compile's wrapper, which keeps the module as _orig_mod."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner


def test_module_state_unwraps_wrappers_so_keys_are_stable() -> None:
    model = tiny_model(0)
    plain = module_state(model, "m")
    assert "m.1.running_mean" in plain and "m.1.num_batches_tracked" in plain
    for wrapped in (_CompiledLike(model), nn.DataParallel(_CompiledLike(model))):
        assert list(module_state(wrapped, "m")) == list(plain)


def test_load_module_state_missing_tensor(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    tensors = module_state(tiny_model(0), "model.D")
    del tensors["model.D.0.weight"]
    with pytest.raises(CheckpointError) as info:
        load_module_state(tiny_model(1), tensors, "model.D", path=path)
    assert_message(info.value, path, "missing tensors model.D.0.weight", "different model configuration")


def test_load_module_state_shape_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    tensors = module_state(tiny_model(0), "model.D")
    tensors["model.D.0.weight"] = torch.zeros(3, 4)
    with pytest.raises(CheckpointError) as info:
        load_module_state(tiny_model(1), tensors, "model.D", path=path)
    assert_message(info.value, path, "model.D.0.weight", "[3, 4]", "[6, 4]")


def test_load_module_state_unexpected_tensor(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    tensors = module_state(tiny_model(0), "model.D")
    tensors["model.D.extra"] = torch.zeros(1)
    tensors["model.G.other"] = torch.zeros(1)  # another prefix: not our business
    with pytest.raises(CheckpointError) as info:
        load_module_state(tiny_model(1), tensors, "model.D", path=path)
    message = assert_message(info.value, path, "unexpected tensors model.D.extra")
    assert "model.G.other" not in message


def _adam_after_one_step() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = tiny_model(0)
    opt = torch.optim.Adam(model.parameters())
    train_step(model, opt, torch.randn(8, 4))
    return model, opt


def test_load_optimizer_state_missing_entry(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    model, opt = _adam_after_one_step()
    tensors, meta_json = optimizer_state(opt, "opt.G")
    del tensors["opt.G.state.0.exp_avg"]
    with pytest.raises(CheckpointError) as info:
        load_optimizer_state(torch.optim.Adam(model.parameters()), tensors, "opt.G", meta_json, path=path)
    assert_message(info.value, path, "missing optimizer entry 'opt.G.state.0.exp_avg'")


def test_load_optimizer_state_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    model, opt = _adam_after_one_step()
    tensors, _ = optimizer_state(opt, "opt")
    with pytest.raises(CheckpointError) as info:
        load_optimizer_state(opt, tensors, "opt", "{not json", path=path)
    assert_message(info.value, path, "not valid JSON")


def test_load_optimizer_state_layout_differs(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    model, opt = _adam_after_one_step()
    tensors, meta_json = optimizer_state(opt, "opt")
    smaller = torch.optim.Adam(list(model.parameters())[:2])
    with pytest.raises(CheckpointError) as info:
        load_optimizer_state(smaller, tensors, "opt", meta_json, path=path)
    assert_message(info.value, path, "optimizer layout differs")


def test_require_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    require_keys({"a": torch.zeros(1)}, ["a"], path=path, what="rng")
    with pytest.raises(CheckpointError) as info:
        require_keys({"a": torch.zeros(1)}, ["a", "rng.torch_cpu"], path=path, what="rng")
    assert_message(info.value, path, "missing rng entry 'rng.torch_cpu'")


# --------------------------------------------------------------------------
# Atomic writes and find_latest


def test_failed_rename_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / checkpoint_name(10)
    save_checkpoint(path, {"w": torch.ones(3)}, {"step": "10"})
    before = path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(atomic, "_replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"step": "10"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_find_latest_picks_highest_valid_step(tmp_path: Path) -> None:
    assert find_latest(tmp_path / "missing") is None
    assert find_latest(tmp_path) is None
    for step in (5, 20):
        save_checkpoint(tmp_path / checkpoint_name(step), {"w": torch.ones(4)}, {})
    # A leftover temporary file and a torn newest checkpoint must be ignored.
    full = (tmp_path / checkpoint_name(20)).read_bytes()
    write(tmp_path / f".{checkpoint_name(90)}.123.tmp", full)
    write(tmp_path / f"{checkpoint_name(80)}.tmp", full)
    write(tmp_path / checkpoint_name(30), full[:-3])
    write(tmp_path / "ckpt-final.safetensors", full)
    assert find_latest(tmp_path) == tmp_path / checkpoint_name(20)


# --------------------------------------------------------------------------
# Hostile and damaged files


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.safetensors", "not found")


def test_empty_and_tiny_files_are_truncated(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "empty.safetensors", b""), "truncated")
    expect_error(write(tmp_path / "tiny.safetensors", b"\x01\x00\x00"), "truncated")


def test_truncated_data(saved: Path) -> None:
    write(saved, saved.read_bytes()[:-5])
    expect_error(saved, "truncated")


def test_truncated_header(tmp_path: Path) -> None:
    content = raw_safetensors(good_header())
    expect_error(write(tmp_path / "c.safetensors", content[:-4]), "truncated")


def test_trailing_bytes(saved: Path) -> None:
    write(saved, saved.read_bytes() + b"xyz")
    expect_error(saved, "3 trailing bytes after the tensor data")


@pytest.mark.parametrize("claimed", [2**63, 200 * 1024 * 1024])
def test_header_length_over_limit(tmp_path: Path, claimed: int) -> None:
    # Only the 8-byte prefix exists; nothing of the claimed size is allocated.
    path = write(tmp_path / "c.safetensors", struct.pack("<Q", claimed))
    expect_error(path, f"header length {claimed} exceeds the 100 MB limit")


def test_header_not_json(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "c.safetensors", raw_safetensors(b"{nope!")), "header is not valid JSON")
    expect_error(write(tmp_path / "d.safetensors", raw_safetensors(b"[1, 2]")), "header is not valid JSON")
    expect_error(write(tmp_path / "e.safetensors", raw_safetensors(b"{\xff}")), "header is not valid JSON")


def test_duplicate_header_entry(tmp_path: Path) -> None:
    body = b'{"__metadata__":{"format_version":"1"},"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'
    body += b'"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'
    expect_error(write(tmp_path / "c.safetensors", raw_safetensors(body)), "duplicate entry 'a'")


def test_overlapping_offsets(tmp_path: Path) -> None:
    header = good_header(a=f32(0, 8, [2]), b=f32(4, 12, [2]))
    path = write(tmp_path / "c.safetensors", raw_safetensors(header, bytes(12)))
    expect_error(path, "'b' overlaps")


def test_gap_between_tensors(tmp_path: Path) -> None:
    header = good_header(a=f32(0, 8, [2]), b=f32(12, 20, [2]))
    path = write(tmp_path / "c.safetensors", raw_safetensors(header, bytes(20)))
    expect_error(path, "gap of 4 bytes before tensor 'b'")


@pytest.mark.parametrize(
    ("entry", "cause"),
    [
        ({"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}, "unsupported dtype 'C64'"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "non-negative integers"),
        ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "non-negative integers"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "begin <= end"),
        ({"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}, "spans 4 bytes"),
        ({"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}, "spans 4 bytes"),
        ({"dtype": "F32", "shape": [1]}, "exactly dtype, shape and data_offsets"),
    ],
)
def test_bad_tensor_entry(tmp_path: Path, entry: dict[str, Any], cause: str) -> None:
    path = write(tmp_path / "c.safetensors", raw_safetensors(good_header(t=entry), bytes(4)))
    expect_error(path, cause)


def test_metadata_with_non_string_value(tmp_path: Path) -> None:
    header = {"__metadata__": {"format_version": FORMAT_VERSION, "step": 5}}
    path = write(tmp_path / "c.safetensors", raw_safetensors(header))
    expect_error(path, "metadata value for 'step' is not a string")


def test_no_format_version(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, path, metadata={"step": "3"})
    expect_error(path, "not a ganrun checkpoint (no format_version)")


def test_incompatible_format_version(tmp_path: Path) -> None:
    path = tmp_path / "future.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, path, metadata={"format_version": "999"})
    expect_error(path, "written in checkpoint format version")


@pytest.fixture
def no_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to unpickle fail the test loudly."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)


@pytest.mark.usefixtures("no_torch_load")
def test_torch_save_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / checkpoint_name(1)
    torch.save({"w": torch.ones(2)}, path)
    expect_error(path, "looks like a pickle/torch.save file", "unpickling can run code")
    assert find_latest(tmp_path) is None


@pytest.mark.usefixtures("no_torch_load")
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_pickle_is_refused(tmp_path: Path, protocol: int) -> None:
    path = write(tmp_path / "c.safetensors", pickle.dumps({"w": [1.0, 2.0]}, protocol=protocol))
    expect_error(path, "looks like a pickle/torch.save file")


def test_header_length_resembling_pickle_magic_still_reads(tmp_path: Path) -> None:
    # A header of 0x280 bytes starts with b"\x80\x02", like pickle protocol 2.
    header = good_header(a={"dtype": "U8", "shape": [1], "data_offsets": [0, 1]})
    body = json.dumps(header).encode()
    body += b" " * (0x280 - len(body))
    path = write(tmp_path / "c.safetensors", raw_safetensors(body, b"\x07"))
    assert path.read_bytes()[:2] == b"\x80\x02"
    tensors, _ = read_checkpoint(path)
    assert tensors["a"].tolist() == [7]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    folder = tmp_path / checkpoint_name(1)
    os.mkdir(folder)
    expect_error(folder, "directory")
