"""Q head: the small network on top of D's shared features that parameterises Q(c|x).

Sharing D's body makes the mutual-information term almost free (paper, Sec. 5);
only this head is specific to Q.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from registry.cpu.linear import Linear

__all__ = ["NORMS", "QHead"]


NORMS = ("batch", "none")


class QHead(nn.Module):
    """Linear(F, hidden) -> [BatchNorm1d] -> LeakyReLU(slope) -> Linear(hidden, out_dim).

    The defaults are the paper's MNIST Q (hidden 128, batch norm, slope 0.1). InfoGAN-CR's
    dSprites Q is ``norm="none", negative_slope=0.2`` (with spectral norm from the trainer's
    ``--spectral-norm``): without batch norm, Q reads real images as it reads the fakes it
    was trained on, instead of through running statistics gathered on fakes only.

    ``out_dim`` is ``LatentSpec.q_dim``; the output is raw (logits, means, log-stds),
    each Q loss applies its own link.
    """

    def __init__(
        self, *, in_features: int, out_dim: int, hidden: int = 128, negative_slope: float = 0.1, norm: str = "batch"
    ) -> None:
        super().__init__()
        for arg, value in (("in_features", in_features), ("out_dim", out_dim), ("hidden", hidden)):
            if value < 1:
                raise ValueError(f"QHead: {arg} must be >= 1, got {value!r}")
        if norm not in NORMS:
            raise ValueError(f"QHead: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if not negative_slope >= 0:
            raise ValueError(f"QHead: negative_slope must be >= 0, got {negative_slope!r}")
        self.in_features = in_features
        self.out_dim = out_dim
        layers: list[nn.Module] = [Linear(in_features, hidden)]
        if norm == "batch":
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.LeakyReLU(negative_slope), Linear(hidden, out_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` or ``(B, C, H, W)`` with C*H*W == in_features -> ``(B, out_dim)``."""
        flat = rearrange(features, "b ... -> b (...)")
        if flat.shape[1] != self.in_features:
            raise ValueError(f"QHead: expected {self.in_features} features per sample, got {flat.shape[1]}")
        return self.net(flat)
