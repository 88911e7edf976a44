"""Save and restore a hand-written training loop's modules and optimizers in one file.

For projects that embed pieces of ganrun in their own loop: the file is a ganrun
safetensors checkpoint (validated on read, written atomically, no pickle) with the same
layout the trainer uses, ``model.<name>.*`` for each module's parameters and buffers and
``optim.<name>.*`` plus an ``optim.<name>`` metadata entry for each optimizer::

    save_training_state("ckpt.safetensors", modules={"G": G, "D": D, "Q": q_head},
                        optimizers={"G": opt_g, "D": opt_d}, metadata={"step": str(step)})
    meta = load_training_state("ckpt.safetensors", modules={"G": G, "D": D, "Q": q_head},
                               optimizers={"G": opt_g, "D": opt_d})

Loading is strict: every module tensor must be present with its shape, and a file holding
state for a module or optimizer that was not passed is refused, so nothing is dropped
silently. Every problem is a one-line ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from typing import Union

import torch
from torch import nn

from registry.checkpoint import (
    CheckpointError,
    load_module_state,
    load_optimizer_state,
    module_state,
    optimizer_state,
    read_checkpoint,
    save_checkpoint,
)

__all__ = ["load_training_state", "save_training_state"]

PathLike = Union[str, "os.PathLike[str]"]

_NAME_RE = re.compile(r"[A-Za-z0-9_\-]+")
_RESERVED_PREFIXES = ("model.", "optim.")


def _check_names(kind: str, names: Mapping[str, object]) -> None:
    for name in names:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"{kind} name {name!r} must be letters, digits, '_' or '-' (no dots)")


def save_training_state(
    path: PathLike,
    *,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Atomically write ``modules`` and ``optimizers`` (and string ``metadata``) to ``path``.

    Module and optimizer names become the ``model.<name>`` / ``optim.<name>`` prefixes.
    Metadata keys starting with ``model.`` or ``optim.``, and ``format_version``, are reserved.
    """
    optimizers = optimizers or {}
    _check_names("module", modules)
    _check_names("optimizer", optimizers)
    meta: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or key == "format_version" or key.startswith(_RESERVED_PREFIXES):
            raise ValueError(f"metadata key {key!r} is reserved (model.*, optim.*, format_version)")
        if not isinstance(value, str):
            raise TypeError(f"metadata values must be strings; {key!r} is {type(value).__name__}")
        meta[key] = value
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        tensors.update(module_state(module, f"model.{name}"))
    for name, opt in optimizers.items():
        opt_tensors, meta[f"optim.{name}"] = optimizer_state(opt, f"optim.{name}")
        tensors.update(opt_tensors)
    save_checkpoint(path, tensors, meta)
    return pathlib.Path(path)


def load_training_state(
    path: PathLike,
    *,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
) -> dict[str, str]:
    """Restore what :func:`save_training_state` wrote into ``modules`` and ``optimizers``.

    Returns the caller's metadata (the optimizer entries and ``format_version`` removed).
    Raises ``CheckpointError`` for a missing, extra or mis-shaped tensor, a missing
    optimizer entry, or a file with state that was not asked for.
    """
    optimizers = optimizers or {}
    _check_names("module", modules)
    _check_names("optimizer", optimizers)
    tensors, meta = read_checkpoint(path)
    for name, module in modules.items():
        load_module_state(module, tensors, f"model.{name}", path=path)
    for name, opt in optimizers.items():
        key = f"optim.{name}"
        if key not in meta:
            raise CheckpointError(f"{os.fspath(path)}: missing optimizer entry {key!r} in the metadata")
        load_optimizer_state(opt, tensors, key, meta[key], path=path)

    claimed = tuple(f"model.{name}." for name in modules) + tuple(f"optim.{name}." for name in optimizers)
    unclaimed = sorted(key for key in tensors if not key.startswith(claimed))
    unclaimed_opts = sorted(key for key in meta if key.startswith("optim.") and key[len("optim.") :] not in optimizers)
    if unclaimed or unclaimed_opts:
        owners = sorted({".".join(key.split(".")[:2]) for key in [*unclaimed, *unclaimed_opts]})
        raise CheckpointError(
            f"{os.fspath(path)}: the file also holds state for {', '.join(owners)}, which was not passed; "
            f"pass every module and optimizer that was saved"
        )
    return {
        key: value for key, value in meta.items() if key != "format_version" and not key.startswith(_RESERVED_PREFIXES)
    }
