"""Transform-invariant reading of the discrete codes (``--q-augment``).

On MNIST a categorical code can reach its full ``ln 10`` nats by encoding a style (slant,
stroke width) for some of its values instead of the digit: two values share the 4s and
9s, or split the 1s by slant. With ``--q-augment affine`` the information term of every
discrete code is computed on a randomly rotated, scaled and shifted copy of each fake
instead of the fake itself, in the G step and in the D/Q step. A value that G encodes
as a slant or a position is then unreadable to Q, so the term pushes G to encode the
discrete codes in what survives small affine changes: the shape of the digit. Continuous
codes keep reading the untransformed fakes (their job is precisely to hold rotation and
width). This is an addition to the paper (in the spirit of the invariance term of
Elastic-InfoGAN, Ojha et al. 2020), off by default; it costs one more pass of D's trunk
per phase.

The transform is differentiable (``affine_grid`` + ``grid_sample``), drawn per sample
from a ``torch.Generator`` seeded by the run seed and the step, so runs stay
reproducible and resume exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AffineAugment", "parse_augment"]


@dataclass(frozen=True)
class AffineAugment:
    """Random per-sample affine map: rotation in ``±rotate`` degrees, zoom in ``1 ± scale``,
    shift in ``±shift`` of the image half-width (0.1 = 1.4 pixels at 28x28); then, with
    ``width`` > 0, a stroke-width change: each image moves by a random fraction in
    ``±width`` towards its 3x3 grey dilation (thicker strokes) or erosion (thinner)."""

    rotate: float = 20.0
    scale: float = 0.1
    shift: float = 0.1
    width: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rotate", "scale", "shift", "width"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.scale >= 1:
            raise ValueError(f"scale must be < 1 (the zoom is drawn from 1 ± scale), got {self.scale!r}")
        if self.width > 1:
            raise ValueError(f"width must be <= 1 (a fraction of a 3x3 dilation or erosion), got {self.width!r}")

    def spec(self) -> str:
        text = f"affine,rotate={self.rotate:g},scale={self.scale:g},shift={self.shift:g}"
        return text + (f",width={self.width:g}" if self.width else "")

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(B, C, H, W)`` -> the same shape, each image moved by its own random map.

        Edges are padded by replicating the border (the background of centred digits and
        shapes). The map is computed in fp32; the output keeps the input's dtype.
        """
        b = images.shape[0]
        u = torch.rand(b, 5 if self.width else 4, generator=generator, device=generator.device, dtype=torch.float32)
        u = (u * 2 - 1).to(images.device)
        angle = u[:, 0] * math.radians(self.rotate)
        zoom = 1 + u[:, 1] * self.scale
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos, -sin, u[:, 2] * self.shift], dim=1),
                torch.stack([sin, cos, u[:, 3] * self.shift], dim=1),
            ],
            dim=1,
        )  # (B, 2, 3)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.width:
            t = (u[:, 4] * self.width).view(b, 1, 1, 1)
            thicker = F.max_pool2d(out, 3, stride=1, padding=1)
            thinner = -F.max_pool2d(-out, 3, stride=1, padding=1)
            out = out + t.clamp(min=0) * (thicker - out) + (-t).clamp(min=0) * (thinner - out)
        return out.to(images.dtype)


def parse_augment(text: str | None) -> AffineAugment | None:
    """``none`` | ``affine[,rotate=DEG][,scale=F][,shift=F][,width=F]`` -> the transform (``None`` for off)."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts or parts[0] == "none":
        if len(parts) > 1:
            raise ValueError(f"'none' takes no options, got {text!r}")
        return None
    if parts[0] != "affine":
        raise ValueError(f"unknown transform {parts[0]!r} in {text!r}; use 'affine' or 'none'")
    kwargs: dict[str, float] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or key not in ("rotate", "scale", "shift", "width"):
            raise ValueError(f"bad option {part!r} in {text!r}; options are rotate=DEG, scale=F, shift=F, width=F")
        try:
            kwargs[key] = float(value)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {value!r} in {text!r}") from None
    return AffineAugment(**kwargs)
