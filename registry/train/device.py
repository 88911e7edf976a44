"""The device a command runs on: one check of a ``--device`` value for every command (and for
``load_run``), so a bad one is one line naming the value and the accepted forms, never a
PyTorch traceback."""

from __future__ import annotations

import re

import torch

#: The forms ``--device`` accepts, as every message about it spells them.
DEVICE_FORMS = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N"

_FORM = re.compile(r"auto|cpu|cuda(?::([0-9]{1,3}))?")


def device_problem(name: object) -> str:
    """Why ``name`` cannot be used as a device on this machine ("" when it can): a value of
    another form, CUDA on a machine without it, or ``cuda:N`` past the GPUs it has."""
    if not isinstance(name, str):
        return f"{name!r} is not a device name; use {DEVICE_FORMS}"
    match = _FORM.fullmatch(name.strip())
    if match is None:
        kind = name.split(":", 1)[0].strip().lower()
        if kind in {"mps", "xpu", "hip", "tpu", "xla", "ipu", "vulkan", "meta"}:
            return f"{name!r}: ganrun runs on CPU and CUDA devices only, not {kind}; use {DEVICE_FORMS}"
        return f"{name!r} is not a device; use {DEVICE_FORMS}"
    if not name.strip().startswith("cuda"):
        return ""
    if not torch.cuda.is_available():
        return f"{name!r}: CUDA is not available on this machine; use cpu or auto"
    index = match.group(1)
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        return (
            f"{name!r}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
            f"(cuda:0 to cuda:{count - 1}); use one of them, cuda or auto"
        )
    return ""


def check_device(name: object) -> str:
    """``name`` stripped when it is usable here; else ``ValueError`` with :func:`device_problem`."""
    problem = device_problem(name)
    if problem:
        raise ValueError(problem)
    return str(name).strip()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA when present, else CPU; ``cuda`` under torchrun means this rank's GPU.
    A value :func:`device_problem` refuses raises ``ValueError`` naming ``--device``."""
    problem = device_problem(name)
    if problem:
        raise ValueError(f"--device {problem}")
    name = name.strip()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device
