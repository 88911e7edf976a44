"""Fully connected layers whose fp32 CPU matrix products run through oneDNN.

PyTorch sends an fp32 ``nn.Linear`` on the CPU to the BLAS it was built with (MKL in the
official wheels). On CPUs where that BLAS does not use the widest vector units (MKL on
AMD processors, for one), its sgemm can reach about half of what oneDNN, the library that
already runs PyTorch's CPU convolutions, gets from the same core (the measurement, for the
products of the paper's 6272 -> 1024 layer, is in benchmarks/README.md). The fully
connected layers are most of the paper's MNIST model, so this is the largest single CPU cost.

``linear(x, weight, bias)`` computes exactly ``torch.nn.functional.linear`` in fp32 and
differentiates like it (including double backward, for gradient penalties). It takes the
oneDNN route only for fp32 CPU tensors outside autocast and outside ``torch.compile``;
everything else goes to ``F.linear`` unchanged. Before first use the route is checked
against ``F.linear`` on a small problem, and it is skipped when the check fails, when
this PyTorch build has no oneDNN, or when ``GANRUN_NO_ONEDNN_LINEAR=1`` is set.

``Linear`` is a drop-in ``nn.Linear`` (same parameters, same state-dict keys) that uses
it; ``use_onednn_linear(model)`` switches the ``nn.Linear`` layers of an existing model.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

ENV_DISABLE = "GANRUN_NO_ONEDNN_LINEAR"

_available: bool | None = None


def _op():
    return torch.ops.mkldnn._linear_pointwise


def _mm(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """``a @ b_t.T`` through oneDNN (``b_t`` may be any strided view)."""
    return _op()(a, b_t, None, "none", [], "")


def onednn_linear_available() -> bool:
    """Whether fp32 CPU linear layers take the oneDNN route in this process (checked once)."""
    global _available
    if _available is None:
        _available = _self_test()
    return _available


def _self_test() -> bool:
    if os.environ.get(ENV_DISABLE):
        return False
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(5, 37, generator=gen)
        w = torch.randn(11, 37, generator=gen)
        b = torch.randn(11, generator=gen)
        g = torch.randn(5, 11, generator=gen)
        checks = [
            (_op()(x, w, b, "none", [], ""), F.linear(x, w, b)),
            (_mm(g, w.t()), g @ w),
            (_mm(g.t(), x.t()), g.t() @ x),
        ]
        return all(torch.allclose(got, want, rtol=1e-4, atol=1e-4) for got, want in checks)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _eligible(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.dim() >= 1
        and not _autocast_on()
        and not torch.compiler.is_compiling()
        and onednn_linear_available()
    )


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        return _op()(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()  # a broadcast gradient (from .sum()) has zero strides
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = grad_w = grad_b = None
        if torch.is_grad_enabled():
            # create_graph=True (a gradient penalty): plain ops, so autograd can go one level deeper
            grad_x = grad @ weight if need_x else None
            grad_w = grad.t() @ x if need_w else None
        else:
            grad_x = _mm(grad, weight.t()) if need_x else None
            grad_w = _mm(grad.t(), x.t()) if need_w else None
        if need_b:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` with fp32 CPU matrix products computed by oneDNN where that is checked to work."""
    if not _eligible(x, weight):
        return F.linear(x, weight, bias)
    if x.dim() == 2:
        return _OneDNNLinear.apply(x, weight, bias)
    lead = x.shape[:-1]
    out = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.reshape(*lead, weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear`; parameters and state-dict keys are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def use_onednn_linear(model: nn.Module) -> nn.Module:
    """Make every plain ``nn.Linear`` in ``model`` a :class:`Linear`, in place; returns ``model``.

    For models built elsewhere (your own GAN): parameters, buffers and state-dict keys stay as
    they were, so checkpoints load either way. Subclasses of ``nn.Linear`` are left alone.
    """
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = Linear
    return model
