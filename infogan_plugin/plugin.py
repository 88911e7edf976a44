"""InfoGAN as a ganrun plugin (entry point ``infogan``): hook implementations only.

Everything goes through public hooks. The latent sampler is a ``LatentSpec`` built from
``--code`` specs; ``ganrun_build_modules`` puts the Q head on D's trunk in D's optimizer
group; the information loss is added to the D step (training Q and the shared trunk)
and to the G step (training G through the fakes), both reading the trunk features of
passes the trainer makes anyway.
"""

from __future__ import annotations

import math

import click

from infogan_plugin import commands, encode, explore, generate, sweep_select
from infogan_plugin.bounds import progress_text, reachable_max
from infogan_plugin.codes import Categorical, Gaussian, Uniform
from infogan_plugin.head import NORMS, QHead
from infogan_plugin.information import (
    augment_of,
    information,
    probe_only,
    real_cluster_loss,
    score_disentanglement,
    spec_of,
)
from infogan_plugin.latent import LatentSpec, build_latent_spec
from infogan_plugin.options import (
    DEFAULT_STEPS,
    EVAL_DEFAULTS,
    PAPER_MNIST_CODES,
    Q_HEAD_DEFAULTS,
    eval_options,
    has_ground_truth,
    q_head_options,
    q_real_weight,
    train_options,
)
from infogan_plugin.qlosses import CategoricalCE, GaussianNLL, GaussianNLLFixed
from infogan_plugin.traversals import traversal_grids
from registry.plugins import hookimpl


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
    register(sweep_select.select_command)


@hookimpl
def ganrun_train_options():
    return train_options()


@hookimpl
def ganrun_config_defaults():
    # Paper defaults for MNIST: Adam 2e-4 for D/Q and 1e-3 for G, beta1 0.5, batch 128,
    # 62 noise variables drawn from U(-1, 1) as in the reference implementation.
    return {
        "noise_dim": 62,
        "noise": "uniform",
        "lr_d": 2e-4,
        "lr_g": 1e-3,
        "batch_size": 128,
        "steps": DEFAULT_STEPS,
        "save_every": 500,
        "sample_every": 500,
        "log_every": 50,
        "code": list(PAPER_MNIST_CODES),
        "info_lambda": None,
        "q_augment": None,
        "q_real": None,
        **Q_HEAD_DEFAULTS,
        **EVAL_DEFAULTS,
    }


@hookimpl
def ganrun_resume_mutable_options():
    # how often and how finely training is scored changes no weight: the metrics draw from
    # their own seeded generators and leave every module in the mode it was in
    return list(EVAL_DEFAULTS)


@hookimpl
def ganrun_configure(config, registries):
    codes = config.extra.get("code")
    if not codes:
        config.extra["code"] = list(PAPER_MNIST_CODES)
    elif isinstance(codes, str):  # a single string in the TOML file
        config.extra["code"] = [codes]
    lam = config.extra.get("info_lambda")
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam < math.inf):
        raise click.BadParameter(f"must be a finite number >= 0, got {lam!r}", param_hint="--lambda")
    try:
        build_latent_spec(config, registries)  # validate now, before anything is built
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--code") from None
    try:
        augment = augment_of(config.extra.get("q_augment"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--q-augment") from None
    check_options_apply(config, build_latent_spec(config, registries), augment)
    real = config.extra.get("q_real")
    if real is not None and (isinstance(real, bool) or not isinstance(real, (int, float)) or not 0 <= real < math.inf):
        raise click.BadParameter(f"must be a finite number >= 0, got {real!r}", param_hint="--q-real")
    every, samples = eval_options(config.extra)
    for name, value, least in (("--eval-every", every, 0), ("--eval-samples", samples, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise click.BadParameter(f"must be an integer >= {least}, got {value!r}", param_hint=name)
    if every and every % config.log_every:
        raise click.BadParameter(
            f"must be a multiple of --log-every ({config.log_every}), got {every}; the scores are written on log lines",
            param_hint="--eval-every",
        )
    if not every and samples != EVAL_DEFAULTS["eval_samples"]:  # sizes a scoring that never runs
        click.echo(
            f"warning: --eval-samples {samples} is unused: it sizes --eval-every's scoring, which is off (0); "
            f"set --eval-every N to score during training, or drop --eval-samples",
            err=True,
        )
    if every and not has_ground_truth(config, registries):
        raise click.BadParameter(
            f"needs a dataset with ground-truth factors (such as shapes); {config.dataset!r} declares none",
            param_hint="--eval-every",
        )
    head = q_head_options(config.extra)
    hidden = head["q_hidden"]
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise click.BadParameter(f"must be a positive integer, got {hidden!r}", param_hint="--q-hidden")
    if head["q_norm"] not in NORMS:
        raise click.BadParameter(f"must be one of {', '.join(NORMS)}, got {head['q_norm']!r}", param_hint="--q-norm")
    slope = head["q_slope"]
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0 <= slope < float("inf"):
        raise click.BadParameter(f"must be a number >= 0, got {slope!r}", param_hint="--q-slope")


def check_options_apply(config, spec: LatentSpec, augment) -> None:
    """Refuse an option that no code of this run would use (it would be silently ignored), and
    warn about ``--lambda`` when every code carries its own ``lambda=`` (harmless but unused)."""
    codes = ", ".join(f"{slot.name} ({slot.code.type_name})" for slot in spec.slots)
    if augment is not None and not any(slot.code.augment_invariant for slot in spec.slots):
        raise click.BadParameter(
            f"no code of this run is read through the transforms (they apply to discrete codes; the codes are "
            f"{codes}), so it would be ignored; drop it or add a discrete code such as --code categorical:10",
            param_hint="--q-augment",
        )
    real = config.extra.get("q_real")
    if real and not any(isinstance(slot.code, Categorical) for slot in spec.slots):
        raise click.BadParameter(
            f"the term clusters real images with a categorical code and the run has none ({codes}), so it would "
            f"be ignored; drop it or add --code categorical:K",
            param_hint="--q-real",
        )
    if config.extra.get("info_lambda") is not None and all(
        "lambda=" in str(text).replace(" ", "") for text in config.extra.get("code") or []
    ):
        click.echo("warning: --lambda is unused: every --code sets its own lambda=, which takes precedence", err=True)


@hookimpl
def ganrun_latent_sampler(config, registries):
    return build_latent_spec(config, registries)


@hookimpl
def ganrun_build_modules(config, models, sampler):
    spec = spec_of(sampler)
    opts = q_head_options(config.extra)
    head = QHead(
        in_features=models["D"].feature_dim,
        out_dim=spec.q_dim,
        hidden=opts["q_hidden"],
        negative_slope=float(opts["q_slope"]),
        norm=opts["q_norm"],
    )
    return {"Q": (head, "D")}


@hookimpl
def ganrun_d_loss_terms(ctx):
    spec = spec_of(ctx.trainer.sampler)
    # In probe mode Q reads detached features, so D's trunk trains on the GAN loss alone.
    # Q and the trunk maximise L_I for every code; a code with lambda 0 still trains Q (weight 1).
    weights = [slot.lam if slot.lam > 0 else 1.0 for slot in spec.slots]
    loss, nll, q_out = information(ctx, spec, weights, detach=probe_only(spec))
    entropies = spec.entropies()
    for slot, chunk in zip(spec.slots, spec.split_q(q_out)):
        ctx.log(f"L_I/{slot.name}", entropies[slot.name] - nll[slot.name].detach())
        for key, value in slot.q_loss.stats(chunk).items():
            ctx.log(f"{key}/{slot.name}", value)
    terms = {"info": loss}
    weight = q_real_weight(ctx.config.extra)
    if weight > 0 and not probe_only(spec):
        real = real_cluster_loss(ctx, spec, weight)
        if real is not None:
            terms["q_real"] = real
    return terms


@hookimpl
def ganrun_g_loss_terms(ctx):
    spec = spec_of(ctx.trainer.sampler)
    if probe_only(spec):
        return None  # no information gradient into G
    loss, _, _ = information(ctx, spec, [slot.lam for slot in spec.slots], detach=False)
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
            ceiling = reachable_max(slot)
            metrics[f"H/{slot.name}"] = h
            if h > 0:  # kept for every code with H > 0: scripts read it
                metrics[f"L_I_over_H/{slot.name}"] = metrics[key] / h
            if ceiling is not None:  # what L_I is read against (infogan_plugin.bounds)
                metrics[f"L_I_max/{slot.name}"] = ceiling
            if slot.code.show_progress:
                label, text = progress_text(slot.name, metrics[key], h, ceiling)
                shown[label] = text
    every, samples = eval_options(trainer.config.extra)
    if every and step % every == 0 and trainer.dist.is_main:
        metrics.update(score_disentanglement(trainer, samples))
        shown["FactorVAE"] = f"{metrics['disent/factor_vae']:.2f}"
    return shown


@hookimpl
def ganrun_sample(trainer, step, run_dir):
    traversal_grids(trainer, run_dir / "traversals", step)


@hookimpl
def ganrun_report_sections(run_dir, metrics, baseline_metrics):
    from infogan_plugin.report import sections

    return sections(run_dir, metrics, baseline_metrics)


@hookimpl
def ganrun_run_summary(run_dir, config, metrics):
    from infogan_plugin.report import run_summary

    return run_summary(run_dir, config, metrics)
