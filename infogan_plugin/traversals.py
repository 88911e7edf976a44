"""Traversal pictures of a trained G: one grid per code dimension."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from infogan_plugin.latent import LatentSpec
from registry.report.images import save_grid

TRAVERSAL_ROWS = 10  # rows of fixed (z, other codes) per traversal grid, as in the paper's figures


@torch.no_grad()
def traversal_grids(trainer: Any, out_dir: Path, step: int, *, rows: int = TRAVERSAL_ROWS) -> list[Path]:
    """One PNG per code: each row fixes z and the other codes, columns sweep this code.

    The fixed inputs come from their own seeded generator, so grids from different steps
    (and from resumed runs) show the same rows and never disturb training's RNG streams.
    """
    from registry.train import seed_for

    spec: LatentSpec = trainer.sampler
    device = trainer.device
    gen = torch.Generator(device=device).manual_seed(seed_for(trainer.config.seed, "plugin"))
    base, _ = spec.sample(rows, generator=gen, device=device)  # (rows, input_dim)
    G = trainer.modules["G"]
    written = []
    for index, slot in enumerate(spec.slots):
        for dim_index in range(slot.code.dim):
            inputs = spec.traversal_inputs(
                index, n_rows=rows, generator=gen, device=device, base=base, dim_index=dim_index
            )  # (rows * V, input_dim)
            columns = inputs.shape[0] // rows
            images = G(inputs).float()  # (rows * V, C, H, W)
            suffix = f"-d{dim_index}" if slot.code.dim > 1 else ""
            path = out_dir / f"{slot.name}{suffix}-step-{step:09d}.png"
            written.append(save_grid(images, path, nrow=columns))
    return written
