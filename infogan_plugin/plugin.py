"""InfoGAN as a ganrun plugin (entry point ``infogan``): hook implementations only.

Everything goes through public hooks. The latent sampler is a ``LatentSpec`` built from
``--code`` specs; ``ganrun_build_modules`` puts the Q head on D's trunk in D's optimizer
group; the information loss is added to the D step (training Q and the shared trunk)
and to the G step (training G through the fakes), both reading the trunk features of
passes the trainer makes anyway.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import click
import torch

from infogan_plugin import commands
from infogan_plugin.augment import AffineAugment, parse_augment
from infogan_plugin.codes import Categorical, Gaussian, Uniform
from infogan_plugin.head import QHead
from infogan_plugin.latent import LatentSpec
from infogan_plugin.qlosses import CategoricalCE, GaussianNLL, GaussianNLLFixed
from infogan_plugin.traversals import build_latent_spec, traversal_grids
from registry.plugins import hookimpl

# The paper's MNIST experiment (Chen et al. 2016, section 7.1 and appendix C.1).
PAPER_MNIST_CODES = ["categorical:10", "uniform:2"]
DEFAULT_STEPS = 4000  # accuracy still creeps up from 3000; time and scores: benchmarks/README.md


@hookimpl
def ganrun_register_latent_codes(register):
    register("categorical", Categorical)
    register("uniform", Uniform)
    register("gaussian", Gaussian)


@hookimpl
def ganrun_register_q_losses(register):
    register("categorical_ce", CategoricalCE)
    register("gaussian_nll", GaussianNLL)
    register("gaussian_nll_fixed", GaussianNLLFixed)


@hookimpl
def ganrun_register_commands(register):
    register(commands.traverse_command)
    register(commands.eval_command)


@hookimpl
def ganrun_train_options():
    return [
        click.Option(
            ["--code", "code"], multiple=True, default=None, metavar="SPEC",
            help="A latent code, repeatable: TYPE[:N][,key=value...], e.g. categorical:10, uniform:2 "
                 "(two codes), gaussian:1,std=0.5,lambda=0.05,loss=gaussian_nll_fixed. "
                 f"[default: {' '.join(PAPER_MNIST_CODES)}]"),
        click.Option(
            ["--lambda", "info_lambda"], type=float, default=None,
            help="Weight of the information term for every code without its own lambda= "
                 "(default: 1 for discrete codes, 0.1 for continuous). 0 trains a plain GAN while Q "
                 "still learns to read the codes (the paper's Figure 1 baseline)."),
        click.Option(
            ["--q-augment", "q_augment"], default=None, metavar="SPEC",
            help="Read the discrete codes from randomly transformed fakes so they cannot be encoded "
                 "as a slant or a position (not in the paper; costs one more D pass per phase): "
                 "none | affine[,rotate=DEG][,scale=F][,shift=F][,width=F] (width: random stroke "
                 "thickening/thinning). 'affine' alone means "
                 f"{AffineAugment().spec()}. [default: none]"),
    ]


@hookimpl
def ganrun_config_defaults():
    # Paper defaults for MNIST: Adam 2e-4 for D/Q and 1e-3 for G, beta1 0.5, batch 128,
    # 62 noise variables drawn from U(-1, 1) as in the reference implementation.
    return {
        "noise_dim": 62, "noise": "uniform", "lr_d": 2e-4, "lr_g": 1e-3, "batch_size": 128,
        "steps": DEFAULT_STEPS, "save_every": 500, "sample_every": 500, "log_every": 50,
        "code": list(PAPER_MNIST_CODES), "info_lambda": None, "q_augment": None,
    }


@hookimpl
def ganrun_configure(config, registries):
    codes = config.extra.get("code")
    if not codes:
        config.extra["code"] = list(PAPER_MNIST_CODES)
    elif isinstance(codes, str):  # a single string in the TOML file
        config.extra["code"] = [codes]
    lam = config.extra.get("info_lambda")
    if lam is not None and not lam >= 0:
        raise click.BadParameter(f"must be >= 0, got {lam}", param_hint="--lambda")
    try:
        build_latent_spec(config, registries)  # validate now, before anything is built
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--code") from None
    try:
        _augment(config.extra.get("q_augment"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--q-augment") from None


@hookimpl
def ganrun_latent_sampler(config, registries):
    return build_latent_spec(config, registries)


@hookimpl
def ganrun_build_modules(config, models, sampler):
    spec = _spec(sampler)
    head = QHead(in_features=models["D"].feature_dim, out_dim=spec.q_dim)
    return {"Q": (head, "D")}


def _spec(sampler: Any) -> LatentSpec:
    if not isinstance(sampler, LatentSpec):
        raise ValueError(f"the infogan plugin needs its own latent sampler, but another plugin supplied "
                         f"{type(sampler).__name__}")
    return sampler


def _probe_only(spec: LatentSpec) -> bool:
    """All lambdas zero: a plain GAN with Q learning to read the codes on the side."""
    return all(slot.lam == 0 for slot in spec.slots)


@functools.lru_cache(maxsize=8)
def _augment(text: str | None) -> AffineAugment | None:
    return parse_augment(text)


def _information(ctx, spec: LatentSpec, weights: list[float], *, detach: bool):
    """Information loss and per-slot NLL of this phase's fakes; with ``--q-augment`` the
    discrete codes are read from transformed fakes through one more pass of D's trunk."""
    features = ctx.fake.features.detach() if detach else ctx.fake.features
    q_out = ctx.modules["Q"](features)
    augment = _augment(ctx.config.extra.get("q_augment"))
    discrete = [slot.code.discrete for slot in spec.slots]
    if augment is None or not any(discrete):
        loss, nll = spec.information_loss(q_out, ctx.latent, weights=weights)
        return loss, nll, q_out
    gen = ctx.trainer.step_generator(f"q-augment-{ctx.phase}")
    # detached (probe mode): Q alone learns from this pass, so it records no graph through D
    with torch.no_grad() if detach else contextlib.nullcontext():
        _, moved = ctx.modules["D"](augment(ctx.fake.images, gen))
    q_moved = ctx.modules["Q"](moved)
    # each slot's Q output from the pass it is read from: moved fakes for discrete codes
    chunks = [m if d else p for p, m, d in zip(spec.split_q(q_out), spec.split_q(q_moved), discrete)]
    loss, nll = spec.information_loss(torch.cat(chunks, dim=1), ctx.latent, weights=weights)
    return loss, nll, q_out


@hookimpl
def ganrun_d_loss_terms(ctx):
    spec = _spec(ctx.trainer.sampler)
    # In probe mode Q reads detached features, so D's trunk trains on the GAN loss alone.
    # Q and the trunk maximise L_I for every code; a code with lambda 0 still trains Q (weight 1).
    weights = [slot.lam if slot.lam > 0 else 1.0 for slot in spec.slots]
    loss, nll, q_out = _information(ctx, spec, weights, detach=_probe_only(spec))
    entropies = spec.entropies()
    for slot, chunk in zip(spec.slots, spec.split_q(q_out)):
        ctx.log(f"L_I/{slot.name}", entropies[slot.name] - nll[slot.name].detach())
        for key, value in slot.q_loss.stats(chunk).items():
            ctx.log(f"{key}/{slot.name}", value)
    return {"info": loss}


@hookimpl
def ganrun_g_loss_terms(ctx):
    spec = _spec(ctx.trainer.sampler)
    if _probe_only(spec):
        return None  # no information gradient into G
    loss, _, _ = _information(ctx, spec, [slot.lam for slot in spec.slots], detach=False)
    return {"info": loss}


@hookimpl
def ganrun_log(trainer, step, metrics):
    spec = trainer.sampler
    if not isinstance(spec, LatentSpec):
        return None
    shown = {}
    for slot in spec.slots:
        key = f"L_I/{slot.name}"
        if key in metrics:
            h = slot.code.entropy()
            metrics[f"H/{slot.name}"] = h
            if h > 0:
                metrics[f"L_I_over_H/{slot.name}"] = metrics[key] / h
            if slot.code.discrete and h > 0:
                shown[f"I/H {slot.name}"] = f"{metrics[key] / h:.2f}"
    return shown


@hookimpl
def ganrun_sample(trainer, step, run_dir):
    traversal_grids(trainer, run_dir / "traversals", step)


@hookimpl
def ganrun_report_sections(run_dir, metrics, baseline_metrics):
    from infogan_plugin.report import sections

    return sections(run_dir, metrics, baseline_metrics)
