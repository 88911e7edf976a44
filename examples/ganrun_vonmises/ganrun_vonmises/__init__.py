"""ganrun plugin (entry point ``vonmises``): von Mises and Bernoulli latent codes for InfoGAN.

Activate it next to the InfoGAN plugin, which consumes the code types and Q losses it
registers::

    ganrun --plugin infogan --plugin vonmises train --code vonmises:1 --code bernoulli:2

This module is the plugin object: it only implements the two registration hooks.
"""

from __future__ import annotations

from registry import hookimpl

from ganrun_vonmises.codes import Bernoulli, VonMises
from ganrun_vonmises.qlosses import BernoulliBCE, VonMisesNLL

__all__ = ["Bernoulli", "BernoulliBCE", "VonMises", "VonMisesNLL"]
__version__ = "0.1.0"


@hookimpl
def ganrun_register_latent_codes(register):
    register("vonmises", VonMises)
    register("bernoulli", Bernoulli)


@hookimpl
def ganrun_register_q_losses(register):
    register("vonmises_nll", VonMisesNLL)
    register("bernoulli_bce", BernoulliBCE)
