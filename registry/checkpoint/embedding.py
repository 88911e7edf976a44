"""Save and restore a hand-written training loop's state in one file.

For projects that embed pieces of ganrun in their own loop: the file is a ganrun
safetensors checkpoint (validated on read, written atomically, no pickle) with the same
layout the trainer uses, ``model.<name>.*`` for each module's parameters and buffers and
``optim.<name>.*`` plus an ``optim.<name>`` metadata entry for each optimizer; random
generators' states go in as uint8 tensors ``rng.<name>`` and any other tensor of the loop
(the step, an EMA, fixed sample noise) as ``tensor.<name>``::

    state = dict(modules={"G": G, "D": D, "Q": q_head}, optimizers={"G": opt_g, "D": opt_d},
                 generators={"torch": torch.default_generator, "latent": rng},
                 tensors={"step": step})  # step: an int64 tensor, updated in place
    save_training_state("ckpt.safetensors", **state)
    load_training_state("ckpt.safetensors", **state)  # the same objects, restored in place

Loading is strict: every tensor must be present with its shape and dtype, and a file holding
state for a module, optimizer, generator or tensor that was not passed is refused, so nothing
is dropped silently. Every problem is a one-line ``CheckpointError`` naming the file.
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
    check_entries,
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


def _check_values(kind: str, values: Mapping[str, object], cls: type) -> None:
    for name, value in values.items():
        if not isinstance(value, cls):
            raise TypeError(f"{kind}s: {name!r} is a {type(value).__name__}, not a {cls.__module__}.{cls.__name__}")


def _checked_arguments(modules, optimizers, generators, tensors):
    """The optional groups as dicts, each name and value checked for its kind (save and load
    take the same arguments)."""
    optimizers, generators, tensors = optimizers or {}, generators or {}, tensors or {}
    for kind, named, cls in (
        ("module", modules, nn.Module),
        ("optimizer", optimizers, torch.optim.Optimizer),
        ("generator", generators, torch.Generator),
        ("tensor", tensors, torch.Tensor),
    ):
        _check_names(kind, named)
        _check_values(kind, named, cls)
    return optimizers, generators, tensors


def save_training_state(
    path: PathLike,
    *,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    tensors: Mapping[str, torch.Tensor] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Atomically write ``modules``, ``optimizers``, ``generators``, ``tensors`` and string
    ``metadata`` to ``path``; returns the path.

    Module and optimizer names become the ``model.<name>`` / ``optim.<name>`` prefixes. Each
    generator's state (``get_state()``, a uint8 tensor) is stored as ``rng.<name>``: pass
    ``torch.default_generator`` for the global CPU stream (``torch.randn`` without a generator,
    dropout, a shuffling ``DataLoader``), ``torch.cuda.default_generators[i]`` for a GPU's, and
    your own ``torch.Generator`` objects. Each tensor is stored as a CPU copy ``tensor.<name>``.
    Metadata keys starting with ``model.`` or ``optim.``, and ``format_version``, are reserved.
    """
    optimizers, generators, tensors = _checked_arguments(modules, optimizers, generators, tensors)
    meta: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or key == "format_version" or key.startswith(_RESERVED_PREFIXES):
            raise ValueError(f"metadata key {key!r} is reserved (model.*, optim.*, format_version)")
        if not isinstance(value, str):
            raise TypeError(f"metadata values must be strings; {key!r} is {type(value).__name__}")
        meta[key] = value
    out: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        out.update(module_state(module, f"model.{name}"))
    for name, opt in optimizers.items():
        opt_tensors, meta[f"optim.{name}"] = optimizer_state(opt, f"optim.{name}")
        out.update(opt_tensors)
    for name, gen in generators.items():
        out[f"rng.{name}"] = gen.get_state()  # uint8, on the CPU for every device's generator
    for name, value in tensors.items():
        out[f"tensor.{name}"] = value.detach().cpu().clone()
    save_checkpoint(path, out, meta)
    return pathlib.Path(path)


def load_training_state(
    path: PathLike,
    *,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, str]:
    """Restore what :func:`save_training_state` wrote into the same kinds of objects, in place.

    ``generators`` get their saved state back (``set_state``); ``tensors`` are overwritten
    with the saved values (``copy_``), keeping their device, so pass tensors of the saved shape
    and dtype (``step = torch.zeros((), dtype=torch.int64)``). Returns the caller's metadata
    (the optimizer entries and ``format_version`` removed). Raises ``CheckpointError`` for a
    missing, extra, mis-shaped or mis-typed tensor (a CPU generator's state where a CUDA one's
    is due), a missing optimizer entry, or a file with state that was not asked for.
    """
    optimizers, generators, tensors = _checked_arguments(modules, optimizers, generators, tensors)
    stored, meta = read_checkpoint(path)
    # everything is checked before anything is restored, so a refused file changes nothing
    prefixes = tuple(f"model.{name}." for name in modules) + tuple(f"optim.{name}." for name in optimizers)
    unclaimed = sorted(key for key in stored if key.startswith(("model.", "optim.")) and not key.startswith(prefixes))
    unclaimed += sorted(key for key in meta if key.startswith("optim.") and key[len("optim.") :] not in optimizers)
    foreign = sorted(key for key in stored if not key.startswith(("model.", "optim.", "rng.", "tensor.")))
    if foreign:
        raise CheckpointError(
            f"{os.fspath(path)}: holds tensors save_training_state does not write ({', '.join(foreign[:3])}); "
            f"a ganrun run's checkpoint is loaded with load_run or --resume"
        )
    if unclaimed:
        owners = sorted({".".join(key.split(".")[:2]) for key in unclaimed})
        raise CheckpointError(
            f"{os.fspath(path)}: the file also holds state for {', '.join(owners)}, which was not passed; "
            f"pass every module and optimizer that was saved"
        )
    states = check_entries(
        stored,
        {name: gen.get_state() for name, gen in generators.items()},
        "rng",
        path=path,
        holder="the generator passed",
        cause="pass every generator that was saved, each on the device it was saved from",
    )
    values = check_entries(
        stored,
        {name: value.detach().cpu() for name, value in tensors.items()},
        "tensor",
        path=path,
        holder="the tensor passed",
        cause="pass every tensor that was saved",
    )
    for name, module in modules.items():
        load_module_state(module, stored, f"model.{name}", path=path)
    for name, opt in optimizers.items():
        key = f"optim.{name}"
        if key not in meta:
            raise CheckpointError(f"{os.fspath(path)}: missing optimizer entry {key!r} in the metadata")
        load_optimizer_state(opt, stored, key, meta[key], path=path)
    for name, gen in generators.items():
        gen.set_state(states[name])
    with torch.no_grad():
        for name, value in tensors.items():
            value.copy_(values[name])
    return {
        key: value for key, value in meta.items() if key != "format_version" and not key.startswith(_RESERVED_PREFIXES)
    }
