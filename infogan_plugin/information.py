"""The information term of the D and G steps: Q's reading of this phase's fakes, with
``--q-augment``'s transformed pass, and the disentanglement scores of ``--eval-every``."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch

from infogan_plugin.augment import AffineAugment, parse_augment
from infogan_plugin.codes import Categorical
from infogan_plugin.latent import LatentSpec
from infogan_plugin.options import DISENTANGLEMENT_KEYS

__all__ = [
    "augment_of",
    "information",
    "probe_only",
    "real_agreement",
    "real_cluster_loss",
    "score_disentanglement",
    "spec_of",
]

DEFAULT_REAL_AUGMENT = "affine"  # --q-real's transforms when --q-augment is none


def spec_of(sampler: Any) -> LatentSpec:
    if not isinstance(sampler, LatentSpec):
        raise ValueError(
            f"the infogan plugin needs its own latent sampler, but another plugin supplied {type(sampler).__name__}"
        )
    return sampler


def probe_only(spec: LatentSpec) -> bool:
    """All lambdas zero: a plain GAN with Q learning to read the codes on the side."""
    return all(slot.lam == 0 for slot in spec.slots)


@functools.lru_cache(maxsize=8)
def augment_of(text: str | None) -> AffineAugment | None:
    return parse_augment(text)


def information(ctx, spec: LatentSpec, weights: list[float], *, detach: bool):
    """Information loss and per-slot NLL of this phase's fakes; with ``--q-augment`` the
    codes whose ``augment_invariant`` is true (the discrete ones by default) are read from
    transformed fakes through one more pass of D's trunk."""
    features = ctx.fake.features.detach() if detach else ctx.fake.features
    q_out = ctx.modules["Q"](features)
    augment = augment_of(ctx.config.extra.get("q_augment"))
    invariant = [slot.code.augment_invariant for slot in spec.slots]
    if augment is None or not any(invariant):
        loss, nll = spec.information_loss(q_out, ctx.latent, weights=weights)
        return loss, nll, q_out
    gen = ctx.trainer.step_generator(f"q-augment-{ctx.phase}")
    # detached (probe mode): Q alone learns from this pass, so it records no graph through D
    with torch.no_grad() if detach else contextlib.nullcontext():
        _, moved = ctx.modules["D"](augment(ctx.fake.images, gen))
    q_moved = ctx.modules["Q"](moved)
    # each slot's Q output from the pass it is read from: moved fakes for discrete codes
    chunks = [m if d else p for p, m, d in zip(spec.split_q(q_out), spec.split_q(q_moved), invariant)]
    loss, nll = spec.information_loss(torch.cat(chunks, dim=1), ctx.latent, weights=weights)
    return loss, nll, q_out


def real_agreement(p: torch.Tensor, p_moved: torch.Tensor) -> torch.Tensor:
    """Mutual information (nats) between two readings of the same images, ``p`` and
    ``p_moved`` ``(B, K)`` probabilities: IIC's objective (Ji et al. 2019). It is ln K only
    when both readings agree, are confident and use every value equally often over the
    batch, so maximising it asks for a balanced partition that the transforms do not move."""
    joint = p.T @ p_moved / p.shape[0]  # (K, K)
    joint = ((joint + joint.T) / 2).clamp_min(torch.finfo(joint.dtype).tiny)
    rows, cols = joint.sum(dim=1, keepdim=True), joint.sum(dim=0, keepdim=True)
    return (joint * (joint.log() - rows.log() - cols.log())).sum()


def real_cluster_loss(ctx, spec: LatentSpec, weight: float) -> torch.Tensor | None:
    """``--q-real``: for every categorical code, minus ``weight`` times the agreement between
    Q's reading of this step's real batch and of a transformed copy (one more pass of D's
    trunk); logs ``q_real/NAME`` in nats (ln K at best). None when no code is categorical."""
    slots = [i for i, slot in enumerate(spec.slots) if isinstance(slot.code, Categorical)]
    if not slots or ctx.real is None:
        return None
    augment = augment_of(ctx.config.extra.get("q_augment") or DEFAULT_REAL_AUGMENT)
    gen = ctx.trainer.step_generator("q-real")
    _, moved = ctx.modules["D"](augment(ctx.real.images, gen))
    plain = spec.split_q(ctx.modules["Q"](ctx.real.features).float())
    shifted = spec.split_q(ctx.modules["Q"](moved).float())
    total = torch.zeros((), device=ctx.real.features.device)
    for i in slots:
        slot = spec.slots[i]
        agreement = real_agreement(plain[i].softmax(dim=1), shifted[i].softmax(dim=1))
        ctx.log(f"q_real/{slot.name}", agreement.detach())
        total = total - weight * agreement
    return total


def score_disentanglement(trainer, samples: int) -> dict[str, float]:
    """MIG, FactorVAE, DCI and SAP of Q's estimates now, at ``samples``; every module is left
    in the mode it was in (the metrics put them in eval mode)."""
    from infogan_plugin.evaluate import disentanglement_metrics

    modes = {name: module.training for name, module in trainer.modules.items()}
    try:
        report = disentanglement_metrics(trainer, num_samples=samples, seed=0)
    finally:
        for name, module in trainer.modules.items():
            module.train(modes[name])
    return {f"disent/{key}": float(report[key]["score"]) for key in DISENTANGLEMENT_KEYS}
