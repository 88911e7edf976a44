"""The errors that several layers raise or catch, in one module every layer can import.

Each message is one line that names the file, plugin or setting at fault, what is wrong and
what to do, so a command prints it as is instead of a traceback. They are re-exported where
they were first defined (``registry.checkpoint.CheckpointError``, ``registry.data.DatasetError``,
``registry.plugins.PluginError``, ``registry.train.DivergenceError``, ...), which stay valid.
"""

from __future__ import annotations

from typing import Iterable

import torch

__all__ = [
    "BUILTIN_LABELS",
    "CheckpointError",
    "DatasetError",
    "DivergenceError",
    "DuplicateNameError",
    "HookError",
    "PluginError",
    "UnknownNameError",
    "label",
    "is_out_of_memory",
]


class CheckpointError(Exception):
    """A checkpoint that cannot be used.

    ``str(err)`` is ONE line: ``'<path>: <cause>'`` plus, where useful, what
    to do, so it reads well in logs and in a CLI's final error line.
    """


class DatasetError(Exception):
    """Bad dataset input. str(err) is one line naming the file/folder, what is wrong and what to do."""


class DivergenceError(RuntimeError):
    """A loss or weight became NaN/Inf or exploded past ``--max-loss``; the last good
    checkpoint is kept."""


class PluginError(Exception):
    """A plugin that cannot be used: the message names it and says why."""


class DuplicateNameError(PluginError):
    """Two plugins registered the same name."""


# How messages and ``ganrun plugins`` name the default plugins: the product, not the package layout.
BUILTIN_LABELS = {
    "registry.default_plugins.builtins": "ganrun (built-in)",
    "registry.default_plugins.tensorboard": "ganrun tensorboard (built-in)",
    "ganrun": "ganrun (built-in)",  # the owner of the built-in command names
}


def label(name: str) -> str:
    """Plugin ``name`` as a user reads it: the built-ins by product name, others as ``'name'``."""
    return BUILTIN_LABELS.get(name, repr(name))


class HookError(PluginError):
    """A plugin's hook raised: ``plugin 'x' failed in ganrun_...: ValueError: ...``."""

    def __init__(self, plugin: str, hook: str, exc: BaseException):
        self.plugin, self.hook = plugin, hook
        super().__init__(f"plugin {label(plugin)} failed in {hook}: {type(exc).__name__}: {exc}")


class UnknownNameError(KeyError):
    """A name that no active plugin registered; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = ""):
        self.kind, self.name = kind, name
        known = sorted(known)
        listed = ", ".join(known) if known else "none registered"
        message = f"unknown {kind} {name!r}; known: {listed}"
        super().__init__(message + (f" ({hint})" if hint else ""))

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


# What the allocators say when they fail (the CPU allocator raises a plain RuntimeError).
OUT_OF_MEMORY_TEXTS = ("can't allocate memory", "defaultcpuallocator", "out of memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator's failure: ``MemoryError``, ``torch.OutOfMemoryError``
    (CUDA), or a ``RuntimeError`` whose message says an allocation failed (CPU allocator)."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in OUT_OF_MEMORY_TEXTS)
