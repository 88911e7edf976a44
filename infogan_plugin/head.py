"""Q head: the small network on top of D's shared features that parameterises Q(c|x).

Sharing D's body makes the mutual-information term almost free (paper, Sec. 5);
only this head is specific to Q.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from registry.cpu.linear import Linear

__all__ = ["QHead"]


class QHead(nn.Module):
    """The paper's MNIST Q: Linear(F, 128) -> BatchNorm1d -> LeakyReLU(0.1) -> Linear(128, out_dim).

    ``out_dim`` is ``LatentSpec.q_dim``; the output is raw (logits, means, log-stds),
    each Q loss applies its own link.
    """

    def __init__(self, *, in_features: int, out_dim: int, hidden: int = 128, negative_slope: float = 0.1) -> None:
        super().__init__()
        for arg, value in (("in_features", in_features), ("out_dim", out_dim), ("hidden", hidden)):
            if value < 1:
                raise ValueError(f"QHead: {arg} must be >= 1, got {value!r}")
        self.in_features = in_features
        self.out_dim = out_dim
        self.net = nn.Sequential(
            Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(negative_slope),
            Linear(hidden, out_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` or ``(B, C, H, W)`` with C*H*W == in_features -> ``(B, out_dim)``."""
        flat = rearrange(features, "b ... -> b (...)")
        if flat.shape[1] != self.in_features:
            raise ValueError(f"QHead: expected {self.in_features} features per sample, got {flat.shape[1]}")
        return self.net(flat)
