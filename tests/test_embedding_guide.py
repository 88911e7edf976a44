"""docs/embedding.md runs as a script: its Python blocks, top to bottom in one namespace, in a
scratch folder, as a reader pasting them would run them. Then what the page promises is
checked on what the blocks built: the codes' bounds, the pictures, the accuracy report, the
checkpoint with generator states, and the layout rebuilt from its description."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "embedding.md"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def _blocks() -> list[tuple[str, str]]:
    return [(m["lang"], m["body"]) for m in FENCE.finditer(PAGE.read_text())]


def test_every_block_is_python() -> None:
    """Every block is one the test below runs; a shell block would need a runner of its own."""
    blocks = _blocks()
    assert len(blocks) >= 8
    assert [lang for lang, _ in blocks if lang != "python"] == []


def test_the_embedding_guide_runs_top_to_bottom(tmp_path: Path, monkeypatch) -> None:
    from registry import read_checkpoint

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict = {"__name__": "embedding_guide"}
    try:
        for index, (_, code) in enumerate(_blocks()):
            exec(compile(code, f"{PAGE.name} block {index + 1}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)

    spec = namespace["spec"]
    assert spec.noise == "normal" and spec.input_dim == 62 + 10 + 1
    assert set(namespace["bounds"]) == {"digit", "c2"}
    assert namespace["bounds"]["digit"] <= math.log(10)
    assert namespace["ceiling"] == spec.entropies()["c2"] - 0.5 * math.log(2 * math.pi)
    assert namespace["bounds"]["c2"] <= namespace["ceiling"] + 1e-6  # the bound the page explains
    assert {name: tuple(grid.shape) for name, grid in namespace["grids"].items()} == {
        "digit": (10, 10, 1, 16, 16),
        "c2": (10, 5, 1, 16, 16),
    }
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["traversal-c2.png", "traversal-digit.png"]
    assert 0.0 <= namespace["report"]["digit"]["accuracy"] <= 1.0
    assert namespace["G"].training and namespace["D"].training  # the page puts them back

    tensors, meta = read_checkpoint(tmp_path / "ckpt.safetensors")
    assert {"rng.torch", "rng.latent", "tensor.step"} <= set(tensors) and tensors["tensor.step"].item() == 6
    assert namespace["rebuilt"].describe() == spec.describe()
    assert namespace["trunk"].layer_name == "features"
