"""Incompressible noise z for the generator input: uniform on (-1, 1) or standard normal.

``sample_noise`` is the one way the host and plugins draw z (the InfoGAN latent spec draws
its z through it too); ``NoiseSampler`` is the plain GAN's whole generator input.
"""

from __future__ import annotations

import torch

__all__ = ["NOISE_KINDS", "NoiseSampler", "sample_noise"]

NOISE_KINDS = ("normal", "uniform")


def sample_noise(
    kind: str, n: int, dim: int, *, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """``(n, dim)`` float32 noise from ``generator``: ``uniform`` is U(-1, 1) (as in the InfoGAN
    reference implementation), ``normal`` is N(0, 1)."""
    if kind == "uniform":
        return torch.rand((n, dim), generator=generator, device=device, dtype=torch.float32) * 2.0 - 1.0
    if kind == "normal":
        return torch.randn((n, dim), generator=generator, device=device, dtype=torch.float32)
    raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")


class NoiseSampler:
    """The plain GAN's generator input: ``noise_dim`` noise values per sample."""

    def __init__(self, noise_dim: int, noise: str = "normal"):
        self.input_dim = noise_dim
        self.noise = noise

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, None]:
        return sample_noise(self.noise, n, self.input_dim, generator=generator, device=device), None
