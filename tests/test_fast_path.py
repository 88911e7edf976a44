"""The trainer's fast step computes exactly what a plain InfoGAN step computes.

``Trainer.train_step`` runs G once, reuses the fakes for both updates, freezes D's weights
during the G update (``requires_grad`` off) and lets the Q head read D's trunk features from
the passes it makes anyway. Here a plain step, written without any of those tricks, starts
from copies of the same weights with the same real batch and the same latent draw:

    D step: separate passes D(real) and D(G(z).detach()); BCE real/fake plus the weighted
            information loss of Q(D_trunk(fake.detach())); one backward.
    G step: a fresh pass of the updated D over the fakes; non-saturating loss plus the
            information loss of Q(D_trunk(fake)); D's weight gradients are computed and ignored.

Both must agree on every loss, on the gradient of every parameter of G, D and Q (captured
just before each optimizer step), on the weights after both updates and on BatchNorm's
running statistics (which also shows D ran exactly three passes in train mode).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from infogan_plugin import plugin as infogan
from registry.config import TrainConfig
from registry.plugins import Host
from registry.train import Trainer

BATCH = 16
NOISE_DIM = 62
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@pytest.fixture(scope="module")
def host() -> Host:
    return Host.create(["infogan"])


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: many small ops stay fast even when other jobs load the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(host: Host, tmp_path, info_lambda: float | None) -> Trainer:
    cfg = TrainConfig(
        noise_dim=NOISE_DIM,
        noise="uniform",
        lr_g=1e-3,
        lr_d=2e-4,
        batch_size=BATCH,
        device="cpu",
        progress=False,
        extra={"code": ["categorical:10", "uniform:2"], "info_lambda": info_lambda},
    )
    infogan.ganrun_configure(cfg, host.registries)
    return Trainer(cfg, host, tmp_path / "run")


def _latent(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """z ~ U(-1, 1)^62, then the Cat(10) class, then two U(-1, 1) codes, in that drawing order."""
    z = torch.rand(n, NOISE_DIM, generator=gen) * 2 - 1
    cls = torch.randint(10, (n,), generator=gen)
    c2 = torch.rand(n, 1, generator=gen) * 2 - 1
    c3 = torch.rand(n, 1, generator=gen) * 2 - 1
    return torch.cat([z, F.one_hot(cls, 10).float(), c2, c3], dim=1), cls, c2, c3


def _info(q_out: torch.Tensor, cls, c2, c3, lam_cat: float, lam_cont: float) -> torch.Tensor:
    """Categorical cross-entropy + fixed-std (1) Gaussian NLL of each continuous code."""
    ce = F.cross_entropy(q_out[:, :10], cls)
    nll2 = (0.5 * (c2 - q_out[:, 10:11]) ** 2).sum(1).mean() + HALF_LOG_2PI
    nll3 = (0.5 * (c3 - q_out[:, 11:12]) ** 2).sum(1).mean() + HALF_LOG_2PI
    return lam_cat * ce + lam_cont * (nll2 + nll3)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _close(name: str, got: torch.Tensor, want: torch.Tensor, scale: float, rtol: float = 1e-5) -> None:
    """Agreement to float tolerance: |got - want| <= rtol * |want| + 1e-5 * scale, where
    ``scale`` is the largest magnitude in the whole network (so gradients that are zero up
    to rounding, such as biases in front of BatchNorm, are compared on that scale)."""
    assert got.shape == want.shape, name
    torch.testing.assert_close(got, want, rtol=rtol, atol=1e-5 * scale + 1e-12, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("info_lambda", [None, 0.0], ids=["paper-lambdas", "lambda0-probe"])
def test_train_step_matches_plain_step(host, tmp_path, info_lambda):
    torch.manual_seed(1234)
    trainer = _trainer(host, tmp_path, info_lambda)
    probe = info_lambda == 0.0  # every lambda 0: Q still learns (weight 1) on detached features, G gets no term
    weights = (1.0, 0.1)  # paper: 1 for the categorical code, 0.1 for the continuous ones
    d_weights = (1.0, 1.0) if probe else weights
    cfg = trainer.config

    # Plain copies of the initial weights, and what the trainer will draw.
    G, D, Q = (copy.deepcopy(trainer.modules[n]) for n in ("G", "D", "Q"))
    # The copies keep the trainer's linear layers (registry.cpu.linear: oneDNN on CPU). Their rounding
    # differs from MKL's in the last bits, and Adam's first step turns noise-level gradients (biases
    # in front of BatchNorm) into +-lr moves of either sign, which the G step then reads through D;
    # so backends are compared where that cannot happen: against fp64 in tests/test_linear.py.
    gen = torch.Generator().manual_seed(0)
    gen.set_state(trainer.latent_gen.get_state())
    real_x = trainer.data.index_select(0, trainer.batches.indices(trainer.step))
    g_input, cls, c2, c3 = _latent(gen, BATCH)

    # Record what the trainer computes: losses, gradients before each update, D after its update.
    metrics: dict[str, torch.Tensor] = {}
    original_log = trainer.metrics.log

    def log_metric(name, value):
        metrics.setdefault(name, value.detach().clone())
        original_log(name, value)

    trainer.metrics.log = log_metric
    grads: dict[str, dict[int, torch.Tensor]] = {}
    d_after_update: dict[str, dict[str, torch.Tensor]] = {}
    for group, opt in trainer.optimizers.items():
        step = opt.step

        def recording_step(*args, _group=group, _opt=opt, _step=step, **kwargs):
            grads[_group] = {id(p): p.grad.clone() for g in _opt.param_groups for p in g["params"]}
            out = _step(*args, **kwargs)
            if _group == "D":
                d_after_update.update({n: copy.deepcopy(trainer.modules[n].state_dict()) for n in ("D", "Q")})
            return out

        opt.step = recording_step

    same = torch.Generator().manual_seed(0)
    same.set_state(trainer.latent_gen.get_state())
    sampled, _ = trainer.sampler.sample(BATCH, generator=same, device="cpu")
    torch.testing.assert_close(sampled, g_input, rtol=0, atol=0)  # the plain draw is the trainer's
    trainer.train_step()

    # ---- the plain step
    fake = G(g_input)
    # D step
    d_real, _ = D(real_x)
    d_fake, feats = D(fake.detach())
    q_out = Q(feats.detach() if probe else feats)
    info_d = _info(q_out, cls, c2, c3, *d_weights)
    adv_d = _bce(d_real, 1.0) + _bce(d_fake, 0.0)
    for m in (G, D, Q):
        m.zero_grad(set_to_none=True)
    (adv_d + info_d).backward()
    plain_d_grads = {n: [p.grad.clone() for p in m.parameters()] for n, m in (("D", D), ("Q", Q))}
    assert all(p.grad is None for p in G.parameters())
    opt_d = torch.optim.Adam(
        [*D.parameters(), *Q.parameters()], lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), foreach=False
    )
    opt_d.step()
    # G step: a fresh forward through the updated D; D's gradients are computed but unused.
    for m in (G, D, Q):
        m.zero_grad(set_to_none=True)
    d_g, feats_g = D(fake)
    adv_g = _bce(d_g, 1.0)
    info_g = None if probe else _info(Q(feats_g), cls, c2, c3, *weights)
    (adv_g if probe else adv_g + info_g).backward()
    plain_g_grads = [p.grad.clone() for p in G.parameters()]
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), foreach=False)
    opt_g.step()

    # ---- losses
    _close("d/adv", metrics["d/adv"], adv_d.detach(), 1.0)
    _close("d/info", metrics["d/info"], info_d.detach(), 1.0)
    _close("g/adv", metrics["g/adv"], adv_g.detach(), 1.0)
    if probe:
        assert "g/info" not in metrics
    else:
        _close("g/info", metrics["g/info"], info_g.detach(), 1.0)

    # ---- gradients of every parameter, in each optimizer's order
    d_group = [*trainer.modules["D"].parameters(), *trainer.modules["Q"].parameters()]
    plain_d = [*plain_d_grads["D"], *plain_d_grads["Q"]]
    assert [id(p) for p in d_group] == [id(p) for g in trainer.optimizers["D"].param_groups for p in g["params"]]
    scale_d = max(g.abs().max().item() for g in plain_d)
    for (name, p), want in zip(
        [*trainer.modules["D"].named_parameters(prefix="D"), *trainer.modules["Q"].named_parameters(prefix="Q")],
        plain_d,
    ):
        _close(f"grad {name}", grads["D"][id(p)], want, scale_d)
    scale_g = max(g.abs().max().item() for g in plain_g_grads)
    g_params = list(trainer.modules["G"].named_parameters(prefix="G"))
    assert len(grads["G"]) == len(g_params)  # G's optimizer holds G alone
    for (name, p), want in zip(g_params, plain_g_grads):
        _close(f"grad {name}", grads["G"][id(p)], want, scale_g)

    # ---- the updates: weights after D's update (which the G step read) and after the whole step
    lr = {"G": cfg.lr_g, "D": cfg.lr_d, "Q": cfg.lr_d}
    trainer_grads = {
        (n, key): grads["G" if n == "G" else "D"][id(p)]
        for n in ("G", "D", "Q")
        for key, p in trainer.modules[n].named_parameters()
    }
    plain_grads = {
        **{("D", key): g for (key, _), g in zip(D.named_parameters(), plain_d_grads["D"])},
        **{("Q", key): g for (key, _), g in zip(Q.named_parameters(), plain_d_grads["Q"])},
        **{("G", key): g for (key, _), g in zip(G.named_parameters(), plain_g_grads)},
    }
    for n, plain in (("D", D), ("Q", Q), ("G", G)):
        after_d = d_after_update.get(n)
        final = trainer.modules[n].state_dict()
        for key, want in plain.state_dict().items():
            got = final[key]
            if key.endswith("num_batches_tracked"):
                assert int(got) == int(want), f"{n}.{key}: {int(got)} passes, want {int(want)}"
            elif "running" in key:
                # BatchNorm statistics include the bias in front of the norm layer, whose update is
                # noise-driven (see _check_update); momentum 0.1 of a +-lr move enters the mean.
                atol = 1e-6 + (0.1 * 2 * lr[n] if n != "G" else 0.0)
                torch.testing.assert_close(got, want, rtol=1e-4, atol=atol, msg=lambda m: f"{n}.{key}: {m}")
            else:
                g_got, g_want = trainer_grads[(n, key)], plain_grads[(n, key)]
                _check_update(f"{n}.{key}", got, want, g_got, g_want, lr[n])
                if after_d is not None:
                    _check_update(f"{n}.{key} after D's update", after_d[key], want, g_got, g_want, lr[n])


def _check_update(name, got, want, grad_got, grad_want, lr) -> None:
    """Weights after Adam's first step agree, except where both gradients are rounding noise
    (zero in exact arithmetic, e.g. a bias in front of BatchNorm; the two disagree by more than
    0.1%): Adam normalises them to an update of +-lr of arbitrary sign, so there the weights
    may differ by up to 2 lr."""
    noisy = (grad_got - grad_want).abs() > 1e-3 * grad_want.abs()
    tol = torch.where(noisy, torch.full_like(want, 2 * lr * 1.001), 1e-4 * want.abs() + 1e-6)
    bad = (got - want).abs() > tol
    assert not bad.any(), (
        f"{name}: {int(bad.sum())} of {want.numel()} weights differ, max {(got - want).abs()[bad].max().item():.3g}"
    )


def test_train_step_under_bf16_autocast(host, tmp_path):
    """The step under bf16 autocast (what ``--amp`` turns on), forced on whatever this CPU is:
    the Q head runs inside the autocast region and the losses come out finite fp32."""
    trainer = _trainer(host, tmp_path, None)
    trainer.amp = True
    trainer.stepper.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    trainer.train_step()
    trainer.step += 1
    losses = {name: value.item() for name, value in trainer.metrics.sums.items() if name.endswith(("adv", "info"))}
    assert set(losses) == {"d/adv", "d/info", "g/adv", "g/info"}
    assert all(math.isfinite(v) for v in losses.values()), losses
