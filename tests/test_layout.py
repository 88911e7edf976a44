"""The layout contract: plugins, examples and benchmarks use the host's public names only
(what ``__all__`` exports and the docs describe), so ``registry/`` can change its insides
without breaking them; inside ``registry/`` the imports form no circle, no module imports
another's private name, and ``checkpoint/`` (files, tensors, locks) imports nothing above it."""

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


# ---------------------------------------------------------------------- inside registry/
PACKAGE = ROOT / "registry"
# checkpoint/ is the storage layer under training: files, tensors and locks.
STORAGE_MAY_NOT_IMPORT = ("registry.train", "registry.plugins", "registry.cli", "registry.report")
# The hook contract names the types its hooks receive (Trainer, StepContext) for type checkers
# only, as pytest's hookspec.py does; the host loads it, it loads nothing at run time.
TYPING_ONLY_ALLOWED = {"registry.hookspecs"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of a (possibly relative) ``from`` import's module."""
    if not level:
        return module
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _typing_only(tree: ast.AST) -> set[int]:
    """``id``s of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found |= {
                id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))
            }
    return found


def _imports(
    source: str, importer: str, known: set[str], is_package: bool = False, *, typing: bool = True
) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` for every ``registry`` import in a module's source, at any depth
    (a function's deferred import and an ``if TYPE_CHECKING:`` import are edges too: a circle
    through them is still two modules that need each other). ``name`` is the imported name of
    a ``from`` import ('' for a plain import); ``module`` is the registry module it loads: the
    submodule itself when ``name`` is one. ``typing=False`` leaves the typing-only imports out."""
    edges = []
    tree = ast.parse(source)
    skip = set() if typing else _typing_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            edges += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "registry"]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node.module or "", node.level, importer, is_package)
            if module.split(".")[0] != "registry":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                edges.append((sub, "", node.lineno) if sub in known else (module, alias.name, node.lineno))
    return edges


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the registry modules its import statements execute: the named module and each
    package above it that the importer is not itself inside (importing ``registry.train.x``
    runs ``registry/train/__init__.py`` first)."""
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        targets = set()
        typing = name not in TYPING_ONLY_ALLOWED
        for module, _, _ in _imports(path.read_text(), name, known, path.name == "__init__.py", typing=typing):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in known and target not in own:
                    targets.add(target)
        graph[name] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_registry() -> None:
    """The packages import downwards only (data -> nets -> checkpoint -> train -> cli/report,
    plugins beside them): no module needs, directly or through others, a module that needs it."""
    circles = _circles(_graph(_modules()))
    assert not circles, f"import circles in registry/: {circles}"


def test_no_module_imports_a_private_name_of_another() -> None:
    """A ``_name`` is its module's own; what another module needs is public and documented."""
    modules = _modules()
    found = []
    for name, path in modules.items():
        for uses in _private_uses(ast.parse(path.read_text(), filename=str(path))):
            found.append(f"{path.relative_to(ROOT)} {uses}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_checkpoint_knows_files_tensors_and_locks_only() -> None:
    modules = _modules()
    found = []
    for name, path in modules.items():
        if name != "registry.checkpoint" and not name.startswith("registry.checkpoint."):
            continue
        for module, _, line in _imports(path.read_text(), name, set(modules), path.name == "__init__.py"):
            if any(module == bad or module.startswith(bad + ".") for bad in STORAGE_MAY_NOT_IMPORT):
                found.append(f"{path.relative_to(ROOT)} line {line}: imports {module}")
    assert not found, "registry/checkpoint/ imports the layers above it:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "sources, circles",
    [
        ({"registry.a": "import registry.b", "registry.b": "from registry import a"}, [["registry.a", "registry.b"]]),
        ({"registry.a": "import registry.b", "registry.b": "import os"}, []),
        # a deferred or typing-only import still closes a circle
        (
            {
                "registry.a": "def f():\n    from registry.b import g",
                "registry.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from registry.a import f",
            },
            [["registry.a", "registry.b"]],
        ),
        # importing a submodule runs its package's __init__ first
        (
            {
                "registry.p": "from registry.p.x import y",
                "registry.p.x": "",
                "registry.q": "from registry.p.x import y",
            },
            [],
        ),
        (
            {
                "registry.p": "from registry.q import z",
                "registry.p.x": "",
                "registry.q": "from registry.p.x import y",
            },
            [["registry.p", "registry.q"]],
        ),
    ],
)
def test_the_circle_check_sees_circles(tmp_path: Path, sources: dict[str, str], circles: list) -> None:
    modules = {}
    for name, text in sources.items():
        is_package = any(other.startswith(name + ".") for other in sources)
        path = tmp_path.joinpath(*name.split("."), "__init__.py") if is_package else tmp_path / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        modules[name] = path
    assert _circles(_graph(modules)) == circles
