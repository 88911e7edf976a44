"""Import aliases for modules that moved when ``registry/`` became subpackages (ganrun 0.2.0).

``registry.datasets``, ``registry.trainer`` and ``registry.images`` keep working for one release:
each old name is looked up on first use (PEP 562) from its public new home and warns with a
``DeprecationWarning`` that says the import to write instead. The aliases are removed in 0.3.0.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

REMOVED_IN = "0.3.0"


def alias(old: str, moved: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the alias module ``old``; ``moved`` maps each name it
    exported to the public module that has it now."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(
                f"module {old!r} has no attribute {name!r}; {old} moved in ganrun 0.2.0 and keeps only "
                f"{', '.join(sorted(moved))} until {REMOVED_IN} (see the CHANGELOG)"
            )
        new = moved[name]
        warnings.warn(
            f"{old}.{name} moved to {new}.{name}: write 'from {new} import {name}' "
            f"({old} is removed in ganrun {REMOVED_IN})",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new), name)

    def __dir__() -> list[str]:
        return sorted(moved)

    return __getattr__, __dir__
