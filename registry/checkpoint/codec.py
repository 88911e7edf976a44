"""The tensors of modules and optimizers as checkpoint entries, and back.

A module's parameters and buffers become ``prefix.name`` tensors, loaded back strictly
(every entry present, the right shape, nothing extra). An optimizer's ``state_dict()``
becomes tensors plus a JSON string for the metadata. The file these live in is
``registry.checkpoint.file``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from registry.checkpoint.file import PathLike, _error, _is_int, _listing, require_keys

__all__ = ["module_state", "load_module_state", "optimizer_state", "load_optimizer_state"]


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


def load_module_state(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, *, path: PathLike
) -> None:
    """Copy ``prefix.*`` tensors into ``module`` strictly.

    Every parameter and buffer must be present with the right shape and no
    extra entries may exist under the prefix; values are copied into the
    existing tensors, which keep their dtype and device.
    """
    _check_prefix(prefix)
    target = _unwrap(module)
    expected = target.state_dict()
    missing = [f"{prefix}.{key}" for key in expected if f"{prefix}.{key}" not in tensors]
    if missing:
        raise _error(
            path,
            f"missing tensors {_listing(missing)} (file is from a different model configuration?)",
        )
    wanted = {f"{prefix}.{key}" for key in expected}
    extra = sorted(k for k in tensors if k.startswith(f"{prefix}.") and k not in wanted)
    if extra:
        raise _error(
            path,
            f"unexpected tensors {_listing(extra)} (file is from a different model configuration?)",
        )
    incoming: dict[str, torch.Tensor] = {}
    for key, current in expected.items():
        value = tensors[f"{prefix}.{key}"]
        if value.shape != current.shape:
            raise _error(
                path,
                f"tensor '{prefix}.{key}' has shape {list(value.shape)} in the file "
                f"but the model expects {list(current.shape)}",
            )
        incoming[key] = value
    try:
        target.load_state_dict(incoming, strict=True)
    except RuntimeError as exc:
        raise _error(path, f"cannot load {prefix!r}: {' '.join(str(exc).split())}") from None


# --------------------------------------------------------------------------
# Optimizers
#
# opt.state_dict() is nested Python data with tensors inside.  Tensors go to
# the checkpoint under stable names; everything else becomes JSON in which
# each non-JSON value is tagged (tuples stay tuples, dicts keep their shape,
# tensors become references), so the decoded state_dict compares equal to the
# original.


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
        raise _error(path, "optimizer state JSON has an unrecognised entry")
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
    raise _error(path, f"optimizer state JSON has an unrecognised entry {tag!r}")


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
) -> None:
    """Restore state saved by :func:`optimizer_state` into ``opt``.

    The optimizer must have the same parameter-group layout as when saved;
    torch itself moves state onto each parameter's device and dtype.
    """
    _check_prefix(prefix)
    try:
        meta = json.loads(meta_json)
    except (TypeError, ValueError, RecursionError):
        raise _error(path, f"optimizer state for {prefix!r} is not valid JSON") from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("state"), list)
        or not isinstance(meta.get("param_groups"), list)
        or not all(isinstance(g, dict) for g in meta["param_groups"])
    ):
        raise _error(path, f"optimizer state for {prefix!r} has an unexpected structure")

    groups = [{k: _decode(v, tensors, path) for k, v in g.items()} for g in meta["param_groups"]]
    for group in groups:
        params = group.get("params")
        if not isinstance(params, list) or not all(_is_int(i) for i in params):
            raise _error(path, f"optimizer state for {prefix!r} has an unexpected structure")
    saved_sizes = [len(g["params"]) for g in groups]
    current_sizes = [len(g["params"]) for g in opt.param_groups]
    if saved_sizes != current_sizes:
        raise _error(
            path,
            f"optimizer layout differs: file has parameter groups of sizes {saved_sizes}, "
            f"optimizer has {current_sizes}",
        )
    known_indices = {i for g in groups for i in g["params"]}
    state: dict[int, dict[str, Any]] = {}
    for item in meta["state"]:
        if not (isinstance(item, list) and len(item) == 2 and _is_int(item[0]) and isinstance(item[1], dict)):
            raise _error(path, f"optimizer state for {prefix!r} has an unexpected structure")
        index, entry = item
        if index not in known_indices:
            raise _error(path, f"optimizer layout differs: state for unknown parameter index {index}")
        state[index] = {k: _decode(v, tensors, path) for k, v in entry.items()}

    referenced: set[str] = set()
    _collect_refs(meta, referenced)
    extra = sorted(k for k in tensors if k.startswith(f"{prefix}.") and k not in referenced)
    if extra:
        raise _error(path, f"unexpected optimizer tensors {_listing(extra)}")
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise _error(path, f"cannot load optimizer {prefix!r}: {' '.join(str(exc).split())}") from None


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
