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

from infogan_plugin import commands, encode, explore, generate
from infogan_plugin.augment import AffineAugment, parse_augment
from infogan_plugin.codes import Categorical, Gaussian, Uniform
from infogan_plugin.head import NORMS, QHead
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
    register(generate.generate_command)
    register(encode.encode_command)
    register(explore.explore_command)


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
        click.Option(
            ["--q-hidden", "q_hidden"], type=int, default=None, metavar="N",
            help="Width of the Q head's hidden layer. [default: 128]"),
        click.Option(
            ["--q-norm", "q_norm"], type=click.Choice(NORMS), default=None,
            help="Normalisation in the Q head: batch (the paper's MNIST Q) or none (InfoGAN-CR's Q). "
                 "[default: batch]"),
        click.Option(
            ["--q-slope", "q_slope"], type=float, default=None, metavar="F",
            help="Negative slope of the Q head's LeakyReLU. [default: 0.1]"),
        click.Option(
            ["--eval-every", "eval_every"], type=int, default=None, metavar="N",
            help="On a dataset with ground-truth factors (shapes), score MIG, FactorVAE, DCI and SAP of "
                 "Q's estimates every N steps (a multiple of --log-every) into metrics.jsonl as disent/*, "
                 "at --eval-samples. 0: never. [default: 0]"),
        click.Option(
            ["--eval-samples", "eval_samples"], type=int, default=None, metavar="N",
            help="Sample size of --eval-every: disentanglement_lib's sizes scaled by N / 10,000 (its own "
                 "size, 10,000, takes minutes per evaluation on a CPU). [default: 1000]"),
    ]


EVAL_DEFAULTS = {"eval_every": 0, "eval_samples": 1000}
DISENTANGLEMENT_KEYS = ("mig", "factor_vae", "dci", "sap")

Q_HEAD_DEFAULTS = {"q_hidden": 128, "q_norm": "batch", "q_slope": 0.1}


def q_head_options(extra: dict[str, Any]) -> dict[str, Any]:
    """The Q head's settings from the run's plugin options (runs recorded before these options
    existed hold none of them and get the defaults, which is what they were trained with)."""
    return {key: default if extra.get(key) is None else extra[key] for key, default in Q_HEAD_DEFAULTS.items()}


@hookimpl
def ganrun_config_defaults():
    # Paper defaults for MNIST: Adam 2e-4 for D/Q and 1e-3 for G, beta1 0.5, batch 128,
    # 62 noise variables drawn from U(-1, 1) as in the reference implementation.
    return {
        "noise_dim": 62, "noise": "uniform", "lr_d": 2e-4, "lr_g": 1e-3, "batch_size": 128,
        "steps": DEFAULT_STEPS, "save_every": 500, "sample_every": 500, "log_every": 50,
        "code": list(PAPER_MNIST_CODES), "info_lambda": None, "q_augment": None, **Q_HEAD_DEFAULTS,
        **EVAL_DEFAULTS,
    }


@hookimpl
def ganrun_resume_mutable_options():
    # how often and how finely training is scored changes no weight: the metrics draw from
    # their own seeded generators and leave every module in the mode it was in
    return list(EVAL_DEFAULTS)


def _has_ground_truth(config, registries) -> bool:
    """Whether the run's dataset declares ground-truth factors: loaded once here, only when
    --eval-every asks (a dataset that fails to load is reported by the trainer, not here)."""
    try:
        dataset = registries.datasets.get(config.dataset)(data_dir=config.data_dir, image_size=config.image_size)
    except Exception:  # noqa: BLE001 - the trainer loads it again and reports the error properly
        return True
    return dataset.ground_truth is not None


def eval_options(extra: dict[str, Any]) -> tuple[int, int]:
    """(every, samples) of ``--eval-every``, defaults for runs recorded without them."""
    every, samples = (EVAL_DEFAULTS[k] if extra.get(k) is None else extra[k] for k in EVAL_DEFAULTS)
    return every, samples


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
    every, samples = eval_options(config.extra)
    for name, value, least in (("--eval-every", every, 0), ("--eval-samples", samples, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise click.BadParameter(f"must be an integer >= {least}, got {value!r}", param_hint=name)
    if every and every % config.log_every:
        raise click.BadParameter(f"must be a multiple of --log-every ({config.log_every}), got {every}; "
                                 f"the scores are written on log lines", param_hint="--eval-every")
    if every and not _has_ground_truth(config, registries):
        raise click.BadParameter(f"needs a dataset with ground-truth factors (such as shapes); "
                                 f"{config.dataset!r} declares none", param_hint="--eval-every")
    head = q_head_options(config.extra)
    hidden = head["q_hidden"]
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise click.BadParameter(f"must be a positive integer, got {hidden!r}", param_hint="--q-hidden")
    if head["q_norm"] not in NORMS:
        raise click.BadParameter(f"must be one of {', '.join(NORMS)}, got {head['q_norm']!r}", param_hint="--q-norm")
    slope = head["q_slope"]
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0 <= slope < float("inf"):
        raise click.BadParameter(f"must be a number >= 0, got {slope!r}", param_hint="--q-slope")


@hookimpl
def ganrun_latent_sampler(config, registries):
    return build_latent_spec(config, registries)


@hookimpl
def ganrun_build_modules(config, models, sampler):
    spec = _spec(sampler)
    opts = q_head_options(config.extra)
    head = QHead(in_features=models["D"].feature_dim, out_dim=spec.q_dim, hidden=opts["q_hidden"],
                 negative_slope=float(opts["q_slope"]), norm=opts["q_norm"])
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
    every, samples = eval_options(trainer.config.extra)
    if every and step % every == 0 and trainer.dist.is_main:
        metrics.update(_score_disentanglement(trainer, samples))
        shown["FactorVAE"] = f"{metrics['disent/factor_vae']:.2f}"
    return shown


def _score_disentanglement(trainer, samples: int) -> dict[str, float]:
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


@hookimpl
def ganrun_sample(trainer, step, run_dir):
    traversal_grids(trainer, run_dir / "traversals", step)


@hookimpl
def ganrun_report_sections(run_dir, metrics, baseline_metrics):
    from infogan_plugin.report import sections

    return sections(run_dir, metrics, baseline_metrics)
