"""Spectral normalisation of a discriminator, for ``--spectral-norm``."""

from __future__ import annotations

from torch import nn

__all__ = ["apply_spectral_norm"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every convolution and linear layer of
    ``module``, in place, through ``torch.nn.utils.parametrizations.spectral_norm``: one
    power iteration per training-mode forward, its vectors ``u``/``v`` kept as buffers, so a
    checkpoint holds them and a resume continues exactly. Returns ``module``."""
    from torch.nn.utils.parametrizations import spectral_norm

    for layer in [m for m in module.modules() if isinstance(m, _LAYERS)]:
        spectral_norm(layer)
    return module
