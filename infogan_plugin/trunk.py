"""D's trunk features for Q without changing what D returns: a forward hook on one layer.

InfoGAN's Q reads the same features as D's real/fake head (paper, Sec. 5). A discriminator
written for a plain GAN returns only its logits; instead of editing its ``forward`` and every
call site, hook the layer whose output Q should read::

    trunk = trunk_features(D, "model")        # the name from D.named_modules()
    fake_logits = D(fake)                       # D's return value is untouched
    q_out = q_head(trunk.output)                # (B, F): what "model" gave in that call

The hook keeps the output of D's most recent call, graph included, so read it right after the
call whose features you want (the fake batch, not a real batch drawn after it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["TrunkFeatures", "trunk_features"]


class TrunkFeatures:
    """Captures the output of one submodule of ``model`` on every forward pass.

    ``output`` is the latest capture, flattened to ``(B, F)`` unless ``flatten=False``;
    calling the object on images runs ``model`` and returns their features. Use it as a
    context manager, or call ``remove()``, to take the hook off again.
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module, *, flatten: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"trunk_features: model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layer_name, self.layer = _find_layer(model, layer)
        self.flatten = flatten
        self._output: torch.Tensor | None = None
        self._handle = self.layer.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"trunk_features: layer {self.layer_name!r} returned {type(output).__name__}, not a tensor; "
                f"hook a layer whose output is the feature tensor"
            )
        self._output = output.flatten(1) if self.flatten else output  # (B, C, H, W) -> (B, C*H*W)

    @property
    def output(self) -> torch.Tensor:
        """The hooked layer's output in the model's most recent forward pass."""
        if self._output is None:
            state = "was removed" if self._handle is None else "has seen no forward pass yet"
            raise RuntimeError(f"trunk_features: the hook on {self.layer_name!r} {state}; call the model first")
        return self._output

    @property
    def dim(self) -> int:
        """Features per sample (``QHead``'s ``in_features``), known after the first forward pass."""
        return self.output[0].numel()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Run the model on ``images`` and return their trunk features (its own output is dropped)."""
        self.model(images)
        return self.output

    def clear(self) -> None:
        """Drop the captured output (and the graph it holds)."""
        self._output = None

    def remove(self) -> None:
        """Take the hook off the layer and drop the capture; the model is as it was."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._output = None

    def __enter__(self) -> TrunkFeatures:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"TrunkFeatures({type(self.model).__name__}, {self.layer_name!r}, flatten={self.flatten})"


def trunk_features(model: nn.Module, layer: str | nn.Module, *, flatten: bool = True) -> TrunkFeatures:
    """Hook ``layer`` of ``model`` (a name from ``model.named_modules()``, e.g. ``"model"`` or
    ``"trunk.3"``, or the submodule itself) and capture its output on every forward pass:
    D's trunk features for Q, with D's code and return value unchanged. See ``TrunkFeatures``."""
    return TrunkFeatures(model, layer, flatten=flatten)


def _find_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    named = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in named.items():
            if module is layer:
                return name or "(the model itself)", module
        raise ValueError(f"trunk_features: layer {type(layer).__name__} is not a submodule of the model")
    if isinstance(layer, str) and layer in named and layer:
        return layer, named[layer]
    known = ", ".join(repr(name) for name in named if name) or "none"
    raise ValueError(
        f"trunk_features: layer {layer!r} is not a submodule name of {type(model).__name__}; "
        f"names from model.named_modules(): {known}"
    )
