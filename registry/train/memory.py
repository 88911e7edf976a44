"""Memory a run needs, checked before it is allocated, and allocator failures told in one line.

``Needs`` collects lower bounds of the largest allocations a command will make (the training
tensor, a batch's activations, the weights with their gradients and Adam's moments, ...), each
with the options that set its size. ``Needs.check`` refuses when their sum exceeds the memory
the device has available, naming the largest and its options, before anything of that size is
allocated. The figures are lower bounds, so a run that fits is never refused; what they miss
is caught when it happens (``registry.errors.is_out_of_memory``) and reported by the command as one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

FLOAT = 4  # bytes of a float32
TRAINED = 4  # a trained float32 weight lives four times: itself, its gradient, Adam's two moments


class TooBig(ValueError):
    """A command would need more memory than the device has; ``options`` names what sets it."""

    def __init__(self, message: str, options: tuple[str, ...]):
        self.options = options
        super().__init__(message)


def human(n: float) -> str:
    """Bytes as ``12.3 GB`` (powers of 1000)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} EB"  # pragma: no cover - the loop returns


def _cgroup_room() -> int | None:
    """What the cgroup (v2) memory limit of this process still allows, if there is one."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((base / "memory.current").read_text().strip()), 0)
    except (OSError, ValueError):
        return None


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory a new allocation on ``device`` can get: free CUDA memory on a GPU; on the CPU
    psutil's figure when it is installed, else ``MemAvailable`` of /proc/meminfo, else
    the free pages sysconf reports, capped by a cgroup limit. None when nothing says."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except (RuntimeError, AssertionError):
            return None
    found: int | None = None
    try:
        import psutil  # type: ignore[import-not-found]

        found = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError, IndexError):
            pass
        if found is None:
            try:
                found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                found = None
    room = _cgroup_room()
    if room is not None:
        found = room if found is None else min(found, room)
    return found


@dataclass
class Needs:
    """Lower bounds of a command's largest allocations on one device."""

    device: torch.device
    items: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)  # (bytes, what, options)

    def add(self, nbytes: float, what: str, *options: str) -> None:
        self.items.append((int(nbytes), what, options))

    @property
    def total(self) -> int:
        return sum(n for n, _, _ in self.items)

    def check(self, available: int | None = None) -> None:
        """Raise ``TooBig`` (one line: the largest need, its options, the total against what is
        available, what to lower) when the needs cannot fit."""
        available = available_bytes(self.device) if available is None else available
        if available is None or not self.items or self.total <= available:
            return
        nbytes, what, options = max(self.items)
        place = "GPU" if self.device.type == "cuda" else "machine"
        raise TooBig(
            f"{' / '.join(options)}: {what} alone needs {human(nbytes)} (at least {human(self.total)} in all) "
            f"but the {place} has {human(available)} available; lower {' or '.join(options)}",
            options,
        )


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's floating-point parameters (meta tensors included)."""
    return sum(p.numel() * p.element_size() for p in module.parameters() if p.is_floating_point())


def largest_dims(module: torch.nn.Module) -> list[int]:
    """The dimensions of a module's largest parameter, largest first."""
    params = [p for p in module.parameters()]
    if not params:
        return []
    biggest = max(params, key=lambda p: p.numel())
    return sorted(biggest.shape, reverse=True)


def input_width_options(noise_dim: int, input_dim: int) -> tuple[str, ...]:
    """The options that set the generator's input width: the noise's, or a plugin's codes when
    they make up most of it (InfoGAN's --code)."""
    return ("--noise-dim",) if noise_dim >= input_dim - noise_dim else ("--code",)


def module_options(name: str, module: torch.nn.Module, sizes: dict[int, tuple[str, ...]]) -> tuple[str, ...]:
    """The options behind a module's size: those whose value is a dimension of its largest
    weight (``sizes`` maps a value to its options), else the model's (G, D) or its plugin's."""
    for dim in largest_dims(module):
        if dim in sizes:
            return sizes[dim]
    return ("--model",) if name in ("G", "D") else (f"the options of the plugin that builds module {name}",)
