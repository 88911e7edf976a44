"""Built-in DCGAN-style architectures.

``dcgan28`` is the InfoGAN paper's MNIST pair (Chen et al. 2016, appendix C.1):
G: FC1024-BN-ReLU, FC 7x7x128-BN-ReLU, 4x4 deconv 64 stride 2 BN-ReLU, 4x4 deconv C stride 2;
D: 4x4 conv 64 stride 2 LeakyReLU, 4x4 conv 128 stride 2 BN LeakyReLU, FC1024 BN LeakyReLU,
then the real/fake logit. ``dcgan64`` is the usual five-layer DCGAN for 64x64 images.
``conv64`` is the small 64x64 pair of the disentanglement literature (the encoder/decoder of
Locatello et al. 2019 as InfoGAN-CR, Lin et al. 2020, uses it on dSprites): about 1/200 of
``dcgan64``'s arithmetic, so a 64x64 ``shapes`` run fits a CPU.

Discriminators return ``(logits, features)``: the trunk features are what an auxiliary
head (InfoGAN's Q) reads, so it costs no second pass through D.
"""

from __future__ import annotations

import torch
from einops.layers.torch import Rearrange
from torch import nn

from registry.cpu.linear import Linear


def init_dcgan(module: nn.Module) -> None:
    """N(0, 0.02) weights as in DCGAN; BN scale N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Discriminator(nn.Module):
    """A trunk producing features (B, F) and a linear real/fake head on them."""

    def __init__(self, trunk: nn.Module, feature_dim: int):
        super().__init__()
        self.trunk = trunk
        self.head = Linear(feature_dim, 1)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x)  # (B, F)
        logits = self.head(features).squeeze(1)  # (B,)
        return logits, features


def dcgan28(
    *, latent_dim: int, channels: int = 1, image_size: int = 28, slope: float = 0.1
) -> tuple[nn.Module, nn.Module]:
    if image_size != 28:
        raise ValueError(
            f"model dcgan28 needs 28x28 images, got {image_size}x{image_size}; use dcgan64 or --image-size 28"
        )
    G = nn.Sequential(
        Linear(latent_dim, 1024),
        nn.BatchNorm1d(1024),
        nn.ReLU(True),
        Linear(1024, 128 * 7 * 7),
        nn.BatchNorm1d(128 * 7 * 7),
        nn.ReLU(True),
        Rearrange("b (c h w) -> b c h w", c=128, h=7, w=7),
        nn.ConvTranspose2d(128, 64, 4, 2, 1),
        nn.BatchNorm2d(64),
        nn.ReLU(True),  # 14x14
        nn.ConvTranspose2d(64, channels, 4, 2, 1),
        nn.Tanh(),  # 28x28
    )
    trunk = nn.Sequential(
        nn.Conv2d(channels, 64, 4, 2, 1),
        nn.LeakyReLU(slope, True),  # 14x14
        nn.Conv2d(64, 128, 4, 2, 1),
        nn.BatchNorm2d(128),
        nn.LeakyReLU(slope, True),  # 7x7
        Rearrange("b c h w -> b (c h w)"),
        Linear(128 * 7 * 7, 1024),
        nn.BatchNorm1d(1024),
        nn.LeakyReLU(slope, True),
    )
    D = Discriminator(trunk, 1024)
    init_dcgan(G), init_dcgan(D)
    return G, D


def dcgan64(
    *, latent_dim: int, channels: int = 3, image_size: int = 64, width: int = 64, slope: float = 0.2
) -> tuple[nn.Module, nn.Module]:
    if image_size != 64:
        raise ValueError(f"model dcgan64 needs 64x64 images, got {image_size}x{image_size}; pass --image-size 64")
    w = width
    G = nn.Sequential(
        Rearrange("b d -> b d 1 1"),
        nn.ConvTranspose2d(latent_dim, w * 8, 4, 1, 0),
        nn.BatchNorm2d(w * 8),
        nn.ReLU(True),  # 4x4
        nn.ConvTranspose2d(w * 8, w * 4, 4, 2, 1),
        nn.BatchNorm2d(w * 4),
        nn.ReLU(True),  # 8x8
        nn.ConvTranspose2d(w * 4, w * 2, 4, 2, 1),
        nn.BatchNorm2d(w * 2),
        nn.ReLU(True),  # 16x16
        nn.ConvTranspose2d(w * 2, w, 4, 2, 1),
        nn.BatchNorm2d(w),
        nn.ReLU(True),  # 32x32
        nn.ConvTranspose2d(w, channels, 4, 2, 1),
        nn.Tanh(),  # 64x64
    )
    trunk = nn.Sequential(
        nn.Conv2d(channels, w, 4, 2, 1),
        nn.LeakyReLU(slope, True),  # 32x32
        nn.Conv2d(w, w * 2, 4, 2, 1),
        nn.BatchNorm2d(w * 2),
        nn.LeakyReLU(slope, True),  # 16x16
        nn.Conv2d(w * 2, w * 4, 4, 2, 1),
        nn.BatchNorm2d(w * 4),
        nn.LeakyReLU(slope, True),  # 8x8
        nn.Conv2d(w * 4, w * 8, 4, 2, 1),
        nn.BatchNorm2d(w * 8),
        nn.LeakyReLU(slope, True),  # 4x4
        Rearrange("b c h w -> b (c h w)"),
    )
    D = Discriminator(trunk, w * 8 * 4 * 4)
    init_dcgan(G), init_dcgan(D)
    return G, D


def conv64(
    *, latent_dim: int, channels: int = 1, image_size: int = 64, slope: float = 0.2
) -> tuple[nn.Module, nn.Module]:
    """G: FC128-BN-ReLU, FC 4x4x64-BN-ReLU, 4x4 deconvs 64, 32, 32 stride 2 (BN, LeakyReLU), 4x4
    deconv C stride 2, Tanh. D: 4x4 convs 32, 32, 64, 64 stride 2 with LeakyReLU, FC128
    LeakyReLU (the trunk features), no batch norm in D."""
    if image_size != 64:
        raise ValueError(f"model conv64 needs 64x64 images, got {image_size}x{image_size}; pass --image-size 64")
    G = nn.Sequential(
        Linear(latent_dim, 128),
        nn.ReLU(True),
        nn.BatchNorm1d(128),
        Linear(128, 64 * 4 * 4),
        nn.ReLU(True),
        nn.BatchNorm1d(64 * 4 * 4),
        Rearrange("b (c h w) -> b c h w", c=64, h=4, w=4),
        nn.ConvTranspose2d(64, 64, 4, 2, 1),
        nn.LeakyReLU(slope, True),
        nn.BatchNorm2d(64),  # 8x8
        nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.LeakyReLU(slope, True),
        nn.BatchNorm2d(32),  # 16x16
        nn.ConvTranspose2d(32, 32, 4, 2, 1),
        nn.LeakyReLU(slope, True),
        nn.BatchNorm2d(32),  # 32x32
        nn.ConvTranspose2d(32, channels, 4, 2, 1),
        nn.Tanh(),  # 64x64
    )
    trunk = nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1),
        nn.LeakyReLU(slope, True),  # 32x32
        nn.Conv2d(32, 32, 4, 2, 1),
        nn.LeakyReLU(slope, True),  # 16x16
        nn.Conv2d(32, 64, 4, 2, 1),
        nn.LeakyReLU(slope, True),  # 8x8
        nn.Conv2d(64, 64, 4, 2, 1),
        nn.LeakyReLU(slope, True),  # 4x4
        Rearrange("b c h w -> b (c h w)"),
        Linear(64 * 4 * 4, 128),
        nn.LeakyReLU(slope, True),
    )
    D = Discriminator(trunk, 128)
    init_dcgan(G), init_dcgan(D)
    return G, D
