"""InfoGAN (Chen et al. 2016) for ganrun, and as pieces for any GAN training loop.

Embedding API: build a ``LatentSpec`` from code types, sample ``(g_input, codes)``, put a
``QHead`` on your discriminator's features (``trunk_features`` hooks them without changing
D), add ``spec.information_loss`` to both updates, draw ``traversals`` and score
``categorical_accuracy`` on labelled images. A trained run comes back with
``load_run("runs/x")``: ``generate`` images for chosen code values, ``encode`` images through Q.
Names in ``__all__`` are stable; the CHANGELOG records changes to them.
"""

from infogan_plugin.augment import AffineAugment
from infogan_plugin.codes import DEFAULT_TRAVERSAL_STEPS, Categorical, ContinuousCode, Gaussian, LatentCode, Uniform
from infogan_plugin.contrastive import ContrastiveClassifier, contrastive_loss
from infogan_plugin.evaluate import categorical_accuracy
from infogan_plugin.head import QHead
from infogan_plugin.latent import CodeSlot, LatentSpec, parse_code_spec
from registry.eval.assignment import cluster_accuracy, hungarian
from infogan_plugin.qlosses import (
    CategoricalCE,
    GaussianNLL,
    GaussianNLLFixed,
    QLoss,
    categorical_nll,
    gaussian_nll,
    gaussian_nll_fixed,
)
from infogan_plugin.run import CodeEstimate, InfoGANRun, load_run
from infogan_plugin.traversals import traversals
from infogan_plugin.trunk import TrunkFeatures, trunk_features

__all__ = [
    "DEFAULT_TRAVERSAL_STEPS",
    "AffineAugment",
    "Categorical",
    "CategoricalCE",
    "CodeEstimate",
    "CodeSlot",
    "ContinuousCode",
    "ContrastiveClassifier",
    "Gaussian",
    "GaussianNLL",
    "GaussianNLLFixed",
    "InfoGANRun",
    "LatentCode",
    "LatentSpec",
    "QHead",
    "QLoss",
    "TrunkFeatures",
    "Uniform",
    "categorical_accuracy",
    "categorical_nll",
    "cluster_accuracy",
    "contrastive_loss",
    "gaussian_nll",
    "gaussian_nll_fixed",
    "hungarian",
    "load_run",
    "parse_code_spec",
    "traversals",
    "trunk_features",
]
