"""The optional ``eval`` extra: scikit-learn and scipy, imported only where a metric needs them.

The disentanglement metrics fit scikit-learn's classifiers exactly as disentanglement_lib
does, and the unsupervised classification accuracy matches classes to labels with
``scipy.optimize.linear_sum_assignment``. Neither is needed to train, sample, traverse or
report, so both are imported lazily, and a missing one is a :class:`MissingEvalDependency`
whose message names the install command (the CLI prints it as one line).
"""

from __future__ import annotations

import importlib
from types import ModuleType

EVAL_INSTALL = "pip install 'ganrun[eval]'"


class MissingEvalDependency(ImportError):
    """scikit-learn or scipy is needed for an evaluation and is not installed."""


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (e.g. ``"sklearn.ensemble"``) for ``what`` (e.g. ``"DCI"``), or raise
    :class:`MissingEvalDependency` with a one-line message naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = "scikit-learn" if module.split(".")[0] == "sklearn" else module.split(".")[0]
        raise MissingEvalDependency(
            f"{package} is needed for {what} but could not be imported ({exc}); install it with: {EVAL_INSTALL}"
        ) from exc


def check_eval_dependencies(what: str) -> None:
    """Import scikit-learn and scipy up front, so a long evaluation fails at its start rather
    than after its first stages."""
    for module in ("sklearn.ensemble", "sklearn.svm", "sklearn.metrics", "scipy.optimize", "scipy.stats"):
        require(module, what)
