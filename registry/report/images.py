"""Tile generator samples into one image and write it as a PNG."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

from registry.checkpoint.atomic import atomic_write

__all__ = ["make_grid", "save_grid", "to_pil"]


def make_grid(images: torch.Tensor, nrow: int, *, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile (B, C, H, W) images in [-1, 1] into one (C, rows*(H+p)+p, nrow*(W+p)+p) image in [0, 1].

    ``nrow`` is the number of images per row (as in torchvision). When B is not
    a multiple of ``nrow`` the empty cells of the last row are filled with
    ``pad_value`` (given in the [0, 1] output scale), so the grid size depends
    only on B and ``nrow``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if nrow < 1:
        raise ValueError(f"nrow must be at least 1, got {nrow}")
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    b = images.shape[0]
    if b == 0:
        raise ValueError("cannot make a grid of zero images")

    x = (images.detach().float() + 1.0).div_(2.0).clamp_(0.0, 1.0)
    rows = math.ceil(b / nrow)
    missing = rows * nrow - b
    if missing:
        x = torch.cat([x, x.new_full((missing, *x.shape[1:]), pad_value)])
    # Pad each tile on its top and left; the grid's bottom and right border is added after tiling.
    x = F.pad(x, (padding, 0, padding, 0), value=pad_value)
    grid = rearrange(x, "(row col) c h w -> c (row h) (col w)", row=rows, col=nrow)
    return F.pad(grid, (0, padding, 0, padding), value=pad_value)


def to_pil(grid: torch.Tensor) -> Image.Image:
    """A ``(C, H, W)`` float picture in [0, 1] (say a ``make_grid`` result mapped from [-1, 1]) as an
    8-bit Pillow image: "L" for one channel, "RGB" for three (rounded, so 0.5 is 128)."""
    channels = grid.shape[0]
    if channels not in (1, 3):
        raise ValueError(f"can only save 1- or 3-channel images, got {channels} channels")
    # Round to nearest so 0.5 grey becomes 128, not the truncated 127.
    pixels = grid.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).cpu()
    # Pillow infers the mode from the array: (H, W) uint8 is "L", (H, W, 3) uint8 is "RGB".
    if channels == 1:
        return Image.fromarray(rearrange(pixels, "1 h w -> h w").numpy())
    return Image.fromarray(np.ascontiguousarray(rearrange(pixels, "c h w -> h w c").numpy()))


def save_grid(images: torch.Tensor, path: str | os.PathLike[str], nrow: int, **kw: Any) -> Path:
    """Write :func:`make_grid` of ``images`` as a PNG at ``path`` and return the path.

    The PNG is written with ``atomic_write``, so an image viewer or web page
    refreshing during training never reads half a file.
    Missing parent folders are created. ``kw`` goes to :func:`make_grid`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    picture = to_pil(make_grid(images, nrow, **kw))

    return atomic_write(target, lambda fh: picture.save(fh, format="PNG"))
