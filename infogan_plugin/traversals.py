"""Traversal pictures of a trained G: one grid per code dimension.

``traversals(G, spec)`` is the one call for any loop: G in eval mode without gradients, the
rows drawn from their own seeded generator, G's mode restored afterwards. ``traversal_grids``
is the trainer's use of it (every ``--sample-every`` steps and ``ganrun traverse``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import nn

from infogan_plugin.codes import DEFAULT_TRAVERSAL_STEPS
from infogan_plugin.latent import LatentSpec
from registry.report.images import save_grid

__all__ = ["TRAVERSAL_ROWS", "traversal_grids", "traversals"]

TRAVERSAL_ROWS = 10  # rows of fixed (z, other codes) per traversal grid, as in the paper's figures


def traversals(
    G: nn.Module,
    spec: LatentSpec,
    *,
    rows: int = TRAVERSAL_ROWS,
    seed: int = 0,
    steps: int = DEFAULT_TRAVERSAL_STEPS,
    device: torch.device | str | None = None,
    out_dir: str | Path | None = None,
    file_name: str = "traversal-{code}.png",
) -> dict[str, torch.Tensor]:
    """One traversal grid per code dimension: ``{key: images (rows, V, C, H, W)}``.

    Row ``r`` of every grid keeps the same z and other codes (drawn from a generator seeded
    with ``seed``, so grids at different steps show the same rows); its ``V`` columns sweep
    the code over its traversal values (every class of a categorical code, ``steps`` values of
    a continuous one). ``key`` is the slot name, ``name-dK`` for dimension K of a
    multi-dimensional code. G runs in eval mode (batch norm's running statistics, no dropout)
    under ``torch.no_grad()`` and is put back in the mode it was in; nothing draws from the
    global RNG or from your training generators, so calling this mid-training changes nothing
    that follows. ``device`` defaults to that of G's first parameter. With ``out_dir``, each
    grid is also written there as a PNG named ``file_name.format(code=key)``.
    """
    if rows < 1:
        raise ValueError(f"traversals: rows must be >= 1, got {rows!r}")
    if device is None:
        device = next((p.device for p in G.parameters()), torch.device("cpu"))
    gen = torch.Generator(device=device).manual_seed(seed)
    training = G.training
    G.eval()
    grids: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            base, _ = spec.sample(rows, generator=gen, device=device)  # (rows, input_dim)
            for index, slot in enumerate(spec.slots):
                for dim_index in range(slot.code.dim):
                    inputs = spec.traversal_inputs(
                        index, n_rows=rows, generator=gen, device=device, base=base, dim_index=dim_index, steps=steps
                    )  # (rows * V, input_dim)
                    images = G(inputs).float()  # (rows * V, C, H, W)
                    key = f"{slot.name}-d{dim_index}" if slot.code.dim > 1 else slot.name
                    grids[key] = rearrange(images, "(r v) c h w -> r v c h w", r=rows)
    finally:
        G.train(training)
    if out_dir is not None:
        for key, grid in grids.items():
            save_grid(
                rearrange(grid, "r v c h w -> (r v) c h w"),
                Path(out_dir) / file_name.format(code=key),
                nrow=grid.shape[1],
            )
    return grids


def traversal_grids(trainer: Any, out_dir: Path, step: int, *, rows: int = TRAVERSAL_ROWS) -> list[Path]:
    """The trainer's traversal pictures: ``out_dir/<code>-step-<step>.png`` per code dimension,
    the rows drawn from the run's ``plugin`` seed stream, so grids from different steps (and
    from resumed runs) show the same rows and never disturb training's RNG streams."""
    from registry.train import seed_for

    name = f"{{code}}-step-{step:09d}.png"
    grids = traversals(
        trainer.modules["G"],
        trainer.sampler,
        rows=rows,
        seed=seed_for(trainer.config.seed, "plugin"),
        device=trainer.device,
        out_dir=out_dir,
        file_name=name,
    )
    return [out_dir / name.format(code=key) for key in grids]
