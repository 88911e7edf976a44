"""The layout contract: plugins, examples and benchmarks use the host's public names only
(what ``__all__`` exports and the docs describe), so ``registry/`` can change its insides
without breaking them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = sorted(p for folder in ("infogan_plugin", "examples", "benchmarks") for p in (ROOT / folder).rglob("*.py"))


def _private_uses(tree: ast.AST) -> list[str]:
    """``from registry.x import _y``, ``import registry._x`` and ``registry.x._y`` in a module."""
    found = []
    aliases = {}  # local name -> the registry module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "registry":
            parts = node.module.split(".")
            found += [f"line {node.lineno}: from {node.module} import ..." for p in parts if p.startswith("_")]
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "registry":
                    if any(p.startswith("_") for p in alias.name.split(".")):
                        found.append(f"line {node.lineno}: import {alias.name}")
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", CLIENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_clients_import_no_private_registry_name(path: Path) -> None:
    uses = _private_uses(ast.parse(path.read_text(), filename=str(path)))
    assert not uses, f"{path.relative_to(ROOT)} uses private names of registry: {uses}"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from registry.data.base import _resize_uint8", 1),
        ("from registry.data import resize_uint8", 0),
        ("from registry import data\ndata._epoch_seed(0, 1)", 1),
        ("import registry.train.rng\nregistry.train.rng._SEED_MASK", 1),
        ("from registry import train\ntrain.seed_for(0, 'init')", 0),
        ("import torch\ntorch._C", 0),
    ],
)
def test_the_checker_sees_private_uses(source: str, expected: int) -> None:
    assert len(_private_uses(ast.parse(source))) == expected


def test_public_names_are_exported() -> None:
    """What plugins need is in ``__all__`` of the package they import it from."""
    import registry
    from registry import checkpoint, data, report, train

    for module, names in (
        (
            registry,
            [
                "seed_for",
                "step_seed",
                "save_grid",
                "resize_uint8",
                "uint8_to_float",
                "atomic_write",
                "ImageDataset",
                "find_checkpoint",
                "run_dir_of",
            ],
        ),
        (train, ["seed_for", "step_seed", "Trainer", "Pass", "StepContext"]),
        (checkpoint, ["atomic_write", "find_latest", "step_of"]),
        (data, ["resize_uint8", "uint8_to_float", "ImageDataset"]),
        (report, ["line_chart", "image_tag", "newest", "series"]),
    ):
        missing = [name for name in names if name not in module.__all__ or not hasattr(module, name)]
        assert not missing, f"{module.__name__} does not export {missing}"
