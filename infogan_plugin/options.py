"""The InfoGAN plugin's training options: their click declarations, defaults and the
readers that give runs recorded before an option existed the value they were trained with."""

from __future__ import annotations

from typing import Any

import click

from infogan_plugin.augment import AffineAugment
from infogan_plugin.head import NORMS
from registry.cli.options import Option

# The paper's MNIST experiment (Chen et al. 2016, section 7.1 and appendix C.1).
PAPER_MNIST_CODES = ["categorical:10", "uniform:2"]
DEFAULT_STEPS = 4000  # accuracy still creeps up from 3000; time and scores: benchmarks/README.md

EVAL_DEFAULTS = {"eval_every": 0, "eval_samples": 1000}
DISENTANGLEMENT_KEYS = ("mig", "factor_vae", "dci", "sap")

Q_HEAD_DEFAULTS = {"q_hidden": 128, "q_norm": "batch", "q_slope": 0.1}


def train_options() -> list[click.Option]:
    """The options the plugin adds to ``ganrun train``."""
    return [
        Option(
            ["--code", "code"],
            multiple=True,
            default=None,
            metavar="SPEC",
            help="A latent code, repeatable: TYPE[:N][,key=value...], e.g. categorical:10, uniform:2 "
            "(two codes), gaussian:1,std=0.5,lambda=0.05,loss=gaussian_nll_fixed; name=digit names it in "
            "metrics (L_I/digit) and commands (unnamed codes are c1, c2, ...).",
            show_default=" ".join(PAPER_MNIST_CODES),
        ),
        Option(
            ["--lambda", "info_lambda"],
            type=float,
            default=None,
            show_default="each code type's default_lambda: 1 for categorical, 0.1 for uniform and gaussian",
            help="Weight of the information term for every code without its own lambda=. 0 trains a plain "
            "GAN while Q still learns to read the codes (the paper's Figure 1 baseline).",
        ),
        Option(
            ["--q-augment", "q_augment"],
            default=None,
            metavar="SPEC",
            help="Read the discrete codes from randomly transformed fakes so they cannot be encoded "
            "as a slant or a position (not in the paper; costs one more D pass per phase): "
            "none | affine[,rotate=DEG][,scale=F][,shift=F][,width=F] (width: random stroke "
            "thickening/thinning). 'affine' alone means "
            f"{AffineAugment().spec()}.",
            show_default="none",
        ),
        Option(
            ["--q-real", "q_real"],
            type=float,
            default=None,
            metavar="W",
            help="Weight of a clustering term on real images for every categorical code (not in the "
            "paper; costs one more D pass in the D step): Q's reading of each real batch and of a "
            "transformed copy (the --q-augment transforms, or 'affine' when none) must agree, be "
            "confident and use every value equally often (IIC's mutual information between the two "
            "readings), which ties the code's values to partitions of the real data that the "
            "transforms do not move. 0: off.",
            show_default="0",
        ),
        Option(
            ["--q-hidden", "q_hidden"],
            type=int,
            default=None,
            metavar="N",
            show_default=str(Q_HEAD_DEFAULTS["q_hidden"]),
            help="Width of the Q head's hidden layer.",
        ),
        Option(
            ["--q-norm", "q_norm"],
            type=click.Choice(NORMS),
            default=None,
            show_default=Q_HEAD_DEFAULTS["q_norm"],
            help="Normalisation in the Q head: batch (the paper's MNIST Q) or none (InfoGAN-CR's Q).",
        ),
        Option(
            ["--q-slope", "q_slope"],
            type=float,
            default=None,
            metavar="F",
            show_default=str(Q_HEAD_DEFAULTS["q_slope"]),
            help="Negative slope of the Q head's LeakyReLU.",
        ),
        Option(
            ["--eval-every", "eval_every"],
            type=int,
            default=None,
            metavar="N",
            help="On a dataset with ground-truth factors (shapes), score MIG, FactorVAE, DCI and SAP of "
            "Q's estimates every N steps (a multiple of --log-every) into metrics.jsonl as disent/*, "
            "at --eval-samples. 0: never.",
            show_default=str(EVAL_DEFAULTS["eval_every"]),
        ),
        Option(
            ["--eval-samples", "eval_samples"],
            type=int,
            default=None,
            metavar="N",
            help="Sample size of --eval-every: disentanglement_lib's sizes scaled by N / 10,000 (its own "
            "size, 10,000, takes minutes per evaluation on a CPU).",
            show_default=str(EVAL_DEFAULTS["eval_samples"]),
        ),
    ]


def q_head_options(extra: dict[str, Any]) -> dict[str, Any]:
    """The Q head's settings from the run's plugin options (runs recorded before these options
    existed hold none of them and get the defaults, which is what they were trained with)."""
    return {key: default if extra.get(key) is None else extra[key] for key, default in Q_HEAD_DEFAULTS.items()}


def q_real_weight(extra: dict[str, Any]) -> float:
    """``--q-real``'s weight; runs recorded before the option existed were trained without it."""
    value = extra.get("q_real")
    return 0.0 if value is None else value


def has_ground_truth(config, registries) -> bool:
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
