"""The plain GAN's generator input: incompressible noise z, uniform on (-1, 1) or normal."""

from __future__ import annotations

import torch


class NoiseSampler:
    """The plain GAN's generator input: ``noise_dim`` noise values per sample."""

    def __init__(self, noise_dim: int, noise: str = "normal"):
        self.input_dim = noise_dim
        self.noise = noise

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, None]:
        if self.noise == "uniform":
            z = torch.rand(n, self.input_dim, generator=generator, device=device) * 2 - 1
        else:
            z = torch.randn(n, self.input_dim, generator=generator, device=device)
        return z, None
