"""The information term of the D and G steps: Q's reading of this phase's fakes, with
``--q-augment``'s transformed pass, and the disentanglement scores of ``--eval-every``."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch

from infogan_plugin.augment import AffineAugment, parse_augment
from infogan_plugin.latent import LatentSpec
from infogan_plugin.options import DISENTANGLEMENT_KEYS

__all__ = ["augment_of", "information", "probe_only", "score_disentanglement", "spec_of"]


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
