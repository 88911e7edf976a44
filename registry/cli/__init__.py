"""The ``ganrun`` command line; ``main`` is the console script (``ganrun = "registry.cli:main"``)."""

from registry.cli.group import build_cli, main

__all__ = ["build_cli", "main"]
