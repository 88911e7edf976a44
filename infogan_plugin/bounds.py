"""How an ``L_I`` figure reads: against what its code and Q loss can reach, not against ``H(c)``
alone.

``L_I = H(c) + E[log Q(c|x)]`` is at most ``H(c) + sup E[log Q]``, the reachable maximum a Q
loss states (``QLoss.reachable_max``). For a categorical code with cross-entropy that is ``H(c)``
itself (a perfect Q has ``log Q = 0``), and ``L_I / H`` is the share of the code's information Q
reads back: 0 for none, 100% for all of it. For a continuous code with Q's fixed unit-variance
Gaussian it is ``H(c) - (1/2) ln(2 pi)``: -0.226 nats for a U(-1, 1) code whose ``H`` is 0.693, so
``L_I -0.270`` is close to the best possible although ``L_I / H`` is -39%. A share is therefore
shown only where the reachable maximum is ``H(c) > 0``; elsewhere the reachable maximum (or why
there is none) is shown next to ``L_I``. A code whose ``H(c) <= 0`` never gets a share.

The metrics keep ``L_I_over_H/cN`` (scripts read it) and add ``L_I_max/cN`` where the loss
states its reachable maximum; ``eval.json`` has ``L_I_max`` (or null) next to ``L_I`` and ``H``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["NO_MAX", "NO_RATIO", "bound_text", "progress_text", "reachable_max", "shows_share"]

NO_MAX = "its Q loss states no reachable maximum, so no share of H"
# Why a code has no L_I/H: the ratio is a share of H(c) only where H(c) > 0. A discrete code's
# entropy always is; a continuous code's differential entropy can be zero or negative (Beta(2, 2):
# -0.125 nats, a uniform code on a width below 1), and then L_I, still a lower bound of
# I(c; G(z, c)) in nats, is shown beside H(c) alone (docs/plugins.md, "What L_I/H means").
NO_RATIO = "no L_I/H: H <= 0, a differential entropy, so L_I is not a share of it"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def reachable_max(slot: Any) -> float | None:
    """The reachable maximum of ``L_I`` for a code slot (``slot.q_loss.reachable_max()``), or
    ``None`` when the loss states none or states something that is not a finite number."""
    value = slot.q_loss.reachable_max()
    return float(value) if _finite(value) else None


def shows_share(h: Any, ceiling: Any) -> bool:
    """Whether ``L_I / H`` reads as a share: ``H > 0`` and the loss can reach exactly ``H``."""
    return _finite(h) and h > 0 and _finite(ceiling) and math.isclose(ceiling, h, rel_tol=1e-9, abs_tol=1e-12)


def bound_text(l_i: Any, h: Any, ceiling: Any, *, recorded: bool = True) -> str:
    """``L_I`` in words for eval, the report and the end of training:

    - ``L_I 2.270 nats of H 2.303 (98.6%)`` where the code can reach ``H`` (a categorical code);
    - ``L_I -0.270 nats (reachable max -0.226; H 0.693)`` where its Q loss states another maximum;
    - ``L_I 0.512 nats (H 1.419; its Q loss states no reachable maximum, so no share of H)`` else;
    - ``L_I -0.270 nats; H -0.125 nats (no L_I/H: ...)`` where ``H(c) <= 0`` (no share of it
      exists), with the reachable maximum when the loss states one;
    - ``L_I 0.512 nats (H 1.419)`` where the run did not record maxima (``recorded=False``: files
      written before ``L_I_max`` existed).

    A value that is missing or not finite (eval writes null for it) reads ``n/a``."""
    shown = f"{l_i:.3f}" if _finite(l_i) else "n/a"
    entropy = f"{h:.3f}" if _finite(h) else "n/a"
    if _finite(h) and h <= 0:
        reach = f"reachable max {ceiling:.3f}; " if recorded and _finite(ceiling) else ""
        return f"L_I {shown} nats; H {entropy} nats ({reach}{NO_RATIO})"
    if not recorded:
        return f"L_I {shown} nats (H {entropy})"
    if shows_share(h, ceiling):
        share = f" ({l_i / h:.1%})" if _finite(l_i) else ""
        return f"L_I {shown} nats of H {entropy}{share}"
    if _finite(ceiling):
        return f"L_I {shown} nats (reachable max {ceiling:.3f}; H {entropy})"
    return f"L_I {shown} nats (H {entropy}; {NO_MAX})"


def progress_text(name: str, l_i: float, h: float, ceiling: float | None) -> tuple[str, str]:
    """One progress-bar entry for a code: ``("I/H c1", "0.93")`` where the share is meaningful,
    else ``L_I`` in nats against the reachable maximum (``("L_I c1", "-0.27/-0.23")``) or alone."""
    if shows_share(h, ceiling):
        return f"I/H {name}", f"{l_i / h:.2f}"
    if _finite(ceiling):
        return f"L_I {name}", f"{l_i:.2f}/{ceiling:.2f}"
    return f"L_I {name}", f"{l_i:.2f}"
