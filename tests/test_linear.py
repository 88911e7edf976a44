"""registry.cpu.linear: fp32 CPU linear layers through oneDNN, exactly F.linear in value and gradient."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from registry.cpu import linear as L
from registry.nets.models import dcgan28


def _pair(shape_x, out_features=11, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape_x, generator=gen)
    w = torch.randn(out_features, shape_x[-1], generator=gen)
    b = torch.randn(out_features, generator=gen) if bias else None
    return x, w, b


def _grads(fn, x, w, b, reduce):
    x, w = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True) if b is not None else None
    out = fn(x, w, b)
    reduce(out).backward()
    return out.detach(), x.grad, w.grad, (b.grad if b is not None else None)


def test_route_is_taken_where_onednn_exists():
    if not torch.backends.mkldnn.is_available():
        assert not L.onednn_linear_available()
        return
    assert L.onednn_linear_available()
    x, w, b = _pair((4, 8))
    calls = []
    original = L._OneDNNLinear.apply

    def counting(*args):
        calls.append(1)
        return original(*args)

    L._OneDNNLinear.apply = counting
    try:
        L.linear(x, w, b)
    finally:
        L._OneDNNLinear.apply = original
    assert calls == [1]


@pytest.mark.parametrize(
    "shape_x, bias, reduce",
    [
        ((64, 300), True, lambda y: y.sum()),  # a broadcast (zero-stride) gradient
        ((7, 5, 33), True, lambda y: (y.square() * 0.5).sum()),  # leading dimensions flattened and restored
        ((16, 40), False, lambda y: (y * torch.linspace(-1, 1, y.shape[-1])).sum()),
    ],
)
def test_values_and_gradients_match_f_linear(shape_x, bias, reduce):
    x, w, b = _pair(shape_x, bias=bias)
    got = _grads(L.linear, x, w, b, reduce)
    want = _grads(F.linear, x, w, b, reduce)
    for name, g, e in zip(("out", "grad x", "grad w", "grad b"), got, want):
        if e is None:
            assert g is None, name
            continue
        assert g.shape == e.shape, name
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_non_contiguous_input():
    x, w, b = _pair((30, 20))
    xt = x.t()  # (20, 30): a transposed view
    w2 = torch.randn(11, 30)
    torch.testing.assert_close(L.linear(xt, w2, b), F.linear(xt, w2, b), rtol=1e-5, atol=1e-5)


def test_double_backward_for_gradient_penalties():
    x, w, b = _pair((8, 12))

    def penalty(fn):
        xi = x.clone().requires_grad_(True)
        wi = w.clone().requires_grad_(True)
        out = torch.tanh(fn(xi, wi, b)).sum()
        (gx,) = torch.autograd.grad(out, xi, create_graph=True)
        gx.square().sum().backward()
        return wi.grad

    torch.testing.assert_close(penalty(L.linear), penalty(F.linear), rtol=1e-5, atol=1e-5)


def test_autocast_and_other_dtypes_use_f_linear():
    x, w, b = _pair((4, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert L.linear(x, w, b).dtype == torch.bfloat16  # autocast's own (oneDNN bf16) path
    out = L.linear(x.double(), w.double(), b.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, F.linear(x.double(), w.double(), b.double()))


def test_env_switch_turns_it_off():
    code = "from registry.cpu.linear import onednn_linear_available as a; print(a())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, L.ENV_DISABLE: "1"}
    )
    assert out.stdout.strip() == "False"


def test_use_onednn_linear_keeps_state_dict_and_outputs():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 6)
    want = model(x)
    assert L.use_onednn_linear(model) is model
    assert all(type(m) is L.Linear for m in (model[0], model[2]))
    assert list(model.state_dict()) == list(before)
    torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)
    model.load_state_dict(before)  # checkpoints of the plain model load unchanged


def test_builtin_models_use_it():
    G, D = dcgan28(latent_dim=74)
    linears = [m for m in [*G.modules(), *D.modules()] if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is L.Linear for m in linears)


def test_model_gradients_as_close_to_fp64_as_plain_f_linear():
    """Through the whole dcgan28 pair (G, then D, one loss): the oneDNN route's gradients are as
    close to an fp64 computation as F.linear's (MKL) are, to within a small factor."""
    import copy

    torch.manual_seed(0)
    G, D = dcgan28(latent_dim=74)
    z = torch.rand(16, 74) * 2 - 1

    def grads(G, D, dtype):
        G, D = copy.deepcopy(G).to(dtype), copy.deepcopy(D).to(dtype)
        logits, _ = D(G(z.to(dtype)))
        F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
        return {n: p.grad.double() for n, p in [*G.named_parameters("G"), *D.named_parameters("D")]}

    plain_G, plain_D = copy.deepcopy(G), copy.deepcopy(D)
    for m in (*plain_G.modules(), *plain_D.modules()):
        if isinstance(m, nn.Linear):
            m.__class__ = nn.Linear
    fast, plain, exact = (
        grads(G, D, torch.float32),
        grads(plain_G, plain_D, torch.float32),
        grads(plain_G, plain_D, torch.float64),
    )
    top = max(ref.abs().max().item() for ref in exact.values())
    checked = 0
    for name, ref in exact.items():
        err_fast = (fast[name] - ref).abs().max().item()
        err_plain = (plain[name] - ref).abs().max().item()
        if ref.abs().max().item() < 1e-4 * top:
            # a bias in front of BatchNorm: its exact gradient is 0, both give rounding noise
            assert err_fast < 1e-5 * top, (name, err_fast, top)
            continue
        scale = ref.abs().max().item()
        assert err_fast / scale < 1e-5 and err_fast <= 4 * err_plain + 1e-7 * scale, (name, err_fast, err_plain, scale)
        checked += 1
    assert checked >= 10
