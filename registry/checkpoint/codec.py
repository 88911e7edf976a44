"""The tensors of modules and optimizers as checkpoint entries, and back.

A module's parameters and buffers become ``prefix.name`` tensors, loaded back strictly
(every entry present, the right shape, nothing extra). An optimizer's ``state_dict()``
becomes tensors plus a JSON string for the metadata. The file these live in is
``registry.checkpoint.file``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from registry.checkpoint.file import (
    PathLike,
    checkpoint_error,
    is_int,
    listing,
    nesting_problem,
    require_keys,
)

__all__ = [
    "OptimizerSettings",
    "check_optimizer_state",
    "module_state",
    "load_module_state",
    "optimizer_state",
    "load_optimizer_state",
]


# --------------------------------------------------------------------------
# Modules


def _unwrap(module: nn.Module) -> nn.Module:
    """The user's module beneath DDP/DataParallel and torch.compile wrappers.

    The wrappers add ``module.`` / ``_orig_mod.`` to every key; unwrapping
    keeps keys identical whether or not a run used them.
    """
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
            continue
        inner = getattr(module, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            module = inner
            continue
        return module


def _check_prefix(prefix: str) -> None:
    # An empty prefix would make "every key in the file" count as this
    # module's, breaking the unexpected-key check.
    if not prefix:
        raise ValueError("prefix must be a non-empty string")


def module_state(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """Parameters and buffers of ``module`` as CPU copies keyed ``prefix.name``."""
    _check_prefix(prefix)
    result: dict[str, torch.Tensor] = {}
    for key, value in _unwrap(module).state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state entry {key!r} is not a tensor; extra state is not supported")
        result[f"{prefix}.{key}"] = value.detach().cpu().clone()
    return result


def load_module_state(module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, *, path: PathLike) -> None:
    """Copy ``prefix.*`` tensors into ``module`` strictly.

    Every parameter and buffer must be present with the right shape and no
    extra entries may exist under the prefix; values are copied into the
    existing tensors, which keep their dtype and device.
    """
    _check_prefix(prefix)
    target = _unwrap(module)
    incoming = check_entries(tensors, target.state_dict(), prefix, path=path)
    try:
        target.load_state_dict(incoming, strict=True)
    except RuntimeError as exc:
        raise checkpoint_error(path, f"cannot load {prefix!r}: {' '.join(str(exc).split())}") from None


# --------------------------------------------------------------------------
# Optimizers
#
# opt.state_dict() is nested Python data with tensors inside.  Tensors go to
# the checkpoint under stable names; everything else becomes JSON in which
# each non-JSON value is tagged (tuples stay tuples, dicts keep their shape,
# tensors become references), so the decoded state_dict compares equal to the
# original.


def check_entries(
    tensors: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    prefix: str,
    *,
    path: PathLike,
    holder: str = "the model",
    cause: str = "file is from a different model configuration?",
) -> dict[str, torch.Tensor]:
    """The ``prefix.*`` entries of ``tensors`` (prefix removed), checked against ``expected``
    (what this build writes under ``prefix`` now): the same keys, each of the same shape and
    dtype, floating values finite. Anything else is a one-line ``CheckpointError`` naming the
    file and the entry; ``holder`` names what expects the entries, ``cause`` the likely reason
    for missing or unexpected ones."""
    missing = [f"{prefix}.{key}" for key in expected if f"{prefix}.{key}" not in tensors]
    if missing:
        raise checkpoint_error(path, f"missing tensors {listing(missing)} ({cause})")
    wanted = {f"{prefix}.{key}" for key in expected}
    extra = sorted(k for k in tensors if k.startswith(f"{prefix}.") and k not in wanted)
    if extra:
        raise checkpoint_error(path, f"unexpected tensors {listing(extra)} ({cause})")
    incoming: dict[str, torch.Tensor] = {}
    for key, current in expected.items():
        value = tensors[f"{prefix}.{key}"]
        if value.shape != current.shape:
            raise checkpoint_error(
                path,
                f"tensor '{prefix}.{key}' has shape {list(value.shape)} in the file "
                f"but {holder} expects {list(current.shape)}",
            )
        if value.dtype != current.dtype:  # load_state_dict would cast it silently
            raise checkpoint_error(
                path,
                f"tensor '{prefix}.{key}' is {str(value.dtype).removeprefix('torch.')} in the file "
                f"but {holder} holds {str(current.dtype).removeprefix('torch.')}",
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise checkpoint_error(path, f"tensor '{prefix}.{key}' holds NaN or Inf")
        incoming[key] = value
    return incoming


def _encode(value: Any, name: str, out: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        out[name] = value.detach().cpu().clone()
        return {"tensor": name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, f"{name}.{i}", out) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{name}.{i}", out) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v, f"{name}.{k}", out) for k, v in value.items()}}
    raise TypeError(f"optimizer state value at {name!r} has unsupported type {type(value).__name__}")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor], path: PathLike) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, path) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise checkpoint_error(path, "optimizer state JSON has an unrecognised entry")
    [(tag, inner)] = value.items()
    if tag == "tensor" and isinstance(inner, str):
        require_keys(tensors, [inner], path=path, what="optimizer")
        # torch keeps tensors it is given as optimizer state and updates them
        # in place; a copy stops that from leaking into the caller's dict.
        return tensors[inner].clone()
    if tag == "tuple" and isinstance(inner, list):
        return tuple(_decode(v, tensors, path) for v in inner)
    if tag == "dict" and isinstance(inner, dict):
        return {k: _decode(v, tensors, path) for k, v in inner.items()}
    raise checkpoint_error(path, f"optimizer state JSON has an unrecognised entry {tag!r}")


def optimizer_state(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """Split ``opt.state_dict()`` into tensors and a JSON string.

    Per-parameter tensors are named ``prefix.state.<param index>.<key>``
    (e.g. Adam's ``step``, ``exp_avg``); store the JSON in the checkpoint
    metadata and pass both back to :func:`load_optimizer_state`.
    """
    _check_prefix(prefix)
    full = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state = [
        [index, {key: _encode(v, f"{prefix}.state.{index}.{key}", tensors) for key, v in entry.items()}]
        for index, entry in full["state"].items()
    ]
    groups = [
        {key: _encode(v, f"{prefix}.param_groups.{g}.{key}", tensors) for key, v in group.items()}
        for g, group in enumerate(full["param_groups"])
    ]
    # allow_nan keeps values such as an infinite max_grad_norm round-trippable.
    meta = json.dumps({"state": state, "param_groups": groups}, allow_nan=True, separators=(",", ":"))
    return tensors, meta


def load_optimizer_state(
    opt: torch.optim.Optimizer,
    tensors: Mapping[str, torch.Tensor],
    prefix: str,
    meta_json: str,
    *,
    path: PathLike,
    strict: bool = False,
) -> None:
    """Restore state saved by :func:`optimizer_state` into ``opt``.

    Every value is checked first: per-parameter tensors must have the parameter's shape and
    dtype (Adam's ``step`` a whole non-negative float32 scalar) and be finite; each setting the
    kind and range of the live optimizer's. Like torch's ``load_state_dict`` the file's settings
    replace the live ones; ``strict=True`` (what a training run uses) also requires them equal
    to the live ones, the learning rate aside.

    The optimizer must have the same parameter-group layout as when saved;
    torch itself moves state onto each parameter's device and dtype.
    """
    groups, state = check_optimizer_state(opt, tensors, prefix, meta_json, path=path, strict=strict)
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise checkpoint_error(path, f"cannot load optimizer {prefix!r}: {' '.join(str(exc).split())}") from None


class OptimizerSettings:
    """What :func:`check_optimizer_state` reads of an optimizer, without constructing one: its
    type and its ``param_groups`` (the parameters and the settings). Constructing a
    ``torch.optim`` optimizer imports ``torch._dynamo``, seconds of work that checking a
    checkpoint for inference would spend on an optimizer it then drops."""

    def __init__(self, kind: type[torch.optim.Optimizer], param_groups: list[dict[str, Any]]) -> None:
        self.kind = kind
        self.param_groups = param_groups


def check_optimizer_state(
    opt: torch.optim.Optimizer | OptimizerSettings,
    tensors: Mapping[str, torch.Tensor],
    prefix: str,
    meta_json: str,
    *,
    path: PathLike,
    strict: bool = False,
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Every check of :func:`load_optimizer_state`, loading nothing: returns the decoded
    ``(param_groups, state)``. ``opt`` is only read (its parameters and settings), so a fresh
    optimizer with no state, or its ``OptimizerSettings``, serves to validate a checkpoint that
    will not be trained further."""
    _check_prefix(prefix)
    too_deep = nesting_problem(meta_json) if isinstance(meta_json, str) else ""
    if too_deep:
        raise checkpoint_error(path, f"optimizer state for {prefix!r} is {too_deep}")
    try:
        meta = json.loads(meta_json)
    except (TypeError, ValueError, RecursionError):
        raise checkpoint_error(path, f"optimizer state for {prefix!r} is not valid JSON") from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("state"), list)
        or not isinstance(meta.get("param_groups"), list)
        or not all(isinstance(g, dict) for g in meta["param_groups"])
    ):
        raise checkpoint_error(path, f"optimizer state for {prefix!r} has an unexpected structure")

    groups = [{k: _decode(v, tensors, path) for k, v in g.items()} for g in meta["param_groups"]]
    for group in groups:
        params = group.get("params")
        if not isinstance(params, list) or not all(is_int(i) for i in params):
            raise checkpoint_error(path, f"optimizer state for {prefix!r} has an unexpected structure")
    saved_sizes = [len(g["params"]) for g in groups]
    current_sizes = [len(g["params"]) for g in opt.param_groups]
    if saved_sizes != current_sizes:
        raise checkpoint_error(
            path,
            f"optimizer layout differs: file has parameter groups of sizes {saved_sizes}, "
            f"optimizer has {current_sizes}",
        )
    known_indices = {i for g in groups for i in g["params"]}
    state: dict[int, dict[str, Any]] = {}
    for item in meta["state"]:
        if not (isinstance(item, list) and len(item) == 2 and is_int(item[0]) and isinstance(item[1], dict)):
            raise checkpoint_error(path, f"optimizer state for {prefix!r} has an unexpected structure")
        index, entry = item
        if index not in known_indices:
            raise checkpoint_error(path, f"optimizer layout differs: state for unknown parameter index {index}")
        state[index] = {k: _decode(v, tensors, path) for k, v in entry.items()}

    referenced: set[str] = set()
    _collect_refs(meta, referenced)
    extra = sorted(k for k in tensors if k.startswith(f"{prefix}.") and k not in referenced)
    if extra:
        raise checkpoint_error(path, f"unexpected optimizer tensors {listing(extra)}")
    _check_optimizer_values(opt, groups, state, prefix, path, strict)
    return groups, state


# Per-parameter state entries of the optimizers this build makes, and which must be >= 0.
_ADAM_STATE = {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
_NON_NEGATIVE = {"step", "exp_avg_sq", "max_exp_avg_sq"}


def _check_optimizer_values(
    opt: torch.optim.Optimizer | OptimizerSettings,
    groups: list[dict[str, Any]],
    state: dict[int, dict[str, Any]],
    prefix: str,
    path: PathLike,
    strict: bool,
) -> None:
    """Every value against what this build would have written, before torch sees any of it:
    hyperparameters of the type (and range) the live optimizer holds, per-parameter tensors of
    the parameter's shape and dtype (a scalar float32 ``step``), all finite."""
    params = [p for group in opt.param_groups for p in group["params"]]
    for g, (saved, current) in enumerate(zip(groups, opt.param_groups)):
        for key, value in saved.items():
            if key == "params":
                continue
            where = f"{prefix}.param_groups.{g}.{key}"
            if key not in current:
                raise checkpoint_error(path, f"optimizer entry {where!r} is not a setting of this optimizer")
            cause = _value_mismatch(value, current[key], key, strict)
            if cause:
                raise checkpoint_error(path, f"optimizer entry {where!r} {cause}")
    adam = (
        issubclass(opt.kind, torch.optim.Adam)
        if isinstance(opt, OptimizerSettings)
        else isinstance(opt, torch.optim.Adam)
    )
    for g, saved in enumerate(groups):  # amsgrad without its state would fail at the next step
        if adam and saved.get("amsgrad") is True:
            lacking = [i for i in saved["params"] if i in state and "max_exp_avg_sq" not in state[i]]
            if lacking:
                raise checkpoint_error(
                    path,
                    f"optimizer entry '{prefix}.param_groups.{g}.amsgrad' is true but parameter "
                    f"{lacking[0]} has no max_exp_avg_sq state",
                )
    for index, entry in state.items():
        if index >= len(params):
            raise checkpoint_error(path, f"optimizer layout differs: state for unknown parameter index {index}")
        param = params[index]
        for key, value in entry.items():
            where = f"{prefix}.state.{index}.{key}"
            if adam and key not in _ADAM_STATE:
                raise checkpoint_error(path, f"optimizer entry {where!r} is not state Adam keeps")
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise checkpoint_error(path, f"optimizer entry {where!r} is a {type(value).__name__}, not a tensor")
            if key == "step":
                if value.shape != () or value.dtype != torch.float32:
                    raise checkpoint_error(
                        path, f"optimizer entry {where!r} is {_describe(value)}; expected a scalar float32"
                    )
                if not (math.isfinite(value.item()) and value.item() >= 0 and value.item() == int(value.item())):
                    raise checkpoint_error(path, f"optimizer entry {where!r} is {value.item()!r}, not a step count")
                continue
            if value.shape != param.shape or value.dtype != param.dtype:
                raise checkpoint_error(
                    path, f"optimizer entry {where!r} is {_describe(value)}; the parameter is {_describe(param)}"
                )
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise checkpoint_error(path, f"optimizer entry {where!r} holds NaN or Inf")
            if key in _NON_NEGATIVE and bool((value < 0).any()):
                raise checkpoint_error(path, f"optimizer entry {where!r} holds negative values")


def _describe(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} of shape {list(t.shape)}"


def _value_mismatch(saved: Any, current: Any, key: str, strict: bool) -> str:
    """Why ``saved`` cannot be setting ``key`` of an optimizer that now has ``current``, or ''.

    Always: the kind of value the live optimizer holds (a flag for a flag, a finite number for
    a number, non-negative where torch requires it, betas in [0, 1), as many values for a tuple).
    ``strict`` (a training run, whose optimizer was built from the configuration the resume has
    checked): equal to the live value, except the learning rate (a schedule changes it) and
    ``fused``/``foreach`` (torch chooses them per machine)."""
    if key in ("fused", "foreach") or current is None:
        ok = saved is None or isinstance(saved, bool)
        if ok and strict and key not in ("fused", "foreach") and saved is not current:
            return f"is {saved!r}, but this run's optimizer has {current!r}"
        return "" if ok else f"is {saved!r}, expected a flag or none"
    if saved is None:
        return f"is None, expected a {type(current).__name__}"
    if isinstance(current, bool):
        if not isinstance(saved, bool):
            return f"is {saved!r}, expected true or false"
    elif isinstance(current, (int, float)):
        if isinstance(saved, bool) or not isinstance(saved, (int, float)):
            return f"is {saved!r}, expected a number"
        if not math.isfinite(saved):
            return f"is {saved!r}, expected a finite number"
        if key.split(".")[0] in ("lr", "initial_lr", "eps", "weight_decay") and saved < 0:
            return f"is {saved!r}, expected a non-negative number"
        if key.startswith("betas") and not 0 <= saved < 1:
            return f"is {saved!r}, expected a number in [0, 1)"
    elif isinstance(current, (tuple, list)):
        if not isinstance(saved, (tuple, list)) or len(saved) != len(current):
            return f"is {saved!r}, expected {len(current)} values"
        for i, (a, b) in enumerate(zip(saved, current)):
            cause = _value_mismatch(a, b, f"{key}.{i}", strict=False)
            if cause:
                return f"[{i}] {cause}"
    elif type(saved) is not type(current):
        return f"is {saved!r}, expected a {type(current).__name__}"
    if strict and key not in ("lr", "initial_lr") and _plain(saved) != _plain(current):
        return f"is {saved!r}, but this run's optimizer has {current!r}"
    return ""


def _plain(value: Any) -> Any:
    """Lists and tuples alike, and the type of each number kept, for an exact comparison."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return (type(value).__name__, value)


def _collect_refs(value: Any, out: set[str]) -> None:
    """All tensor names the JSON refers to, to spot stray tensors in the file."""
    if isinstance(value, list):
        for v in value:
            _collect_refs(v, out)
    elif isinstance(value, dict):
        if set(value) == {"tensor"} and isinstance(value["tensor"], str):
            out.add(value["tensor"])
        else:
            for v in value.values():
                _collect_refs(v, out)
