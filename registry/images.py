"""Deprecated alias of ``registry.report.images``, whose names ``registry`` exports (moved in
ganrun 0.2.0, removed in 0.3.0); every name warns with the import to use instead."""

from registry.deprecation import alias

_MOVED = {"make_grid": "registry", "save_grid": "registry"}
__all__ = sorted(_MOVED)
__getattr__, __dir__ = alias(__name__, _MOVED)
