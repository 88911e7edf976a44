"""Watching the balance between D and G.

A GAN learns only while D and G contest: a D that tells real from fake perfectly gives G
no useful gradient, and a D that sits at chance (equal logits for every image) teaches G
nothing either. The trainer logs D's accuracy on real and on fake images, the gap between
their mean logits and the logits' spread as ``balance/*`` metrics on every log line;
:class:`BalanceWatch` reads those lines and says so, once per episode, when D has been at
chance for :data:`CHANCE_STEPS` steps in a row.
"""

from __future__ import annotations

__all__ = ["CHANCE_ACCURACY", "CHANCE_STEPS", "BalanceWatch"]

CHANCE_ACCURACY = 0.55  # balanced accuracy (mean of real and fake accuracy) below this is chance
CHANCE_STEPS = 2000     # warn when D has been at chance this long


class BalanceWatch:
    """Counts the steps D has spent at chance; :meth:`update` returns a warning line the first
    time a stretch reaches ``steps``, else None. A log line where D is above chance ends the
    stretch. The count is recorded in the metrics as ``balance/chance_steps``."""

    def __init__(self, *, accuracy: float = CHANCE_ACCURACY, steps: int = CHANCE_STEPS) -> None:
        self.accuracy, self.steps = accuracy, steps
        self.since: int | None = None  # first step of the current stretch at chance
        self.warned = False

    def update(self, step: int, metrics: dict[str, float]) -> str | None:
        real, fake = metrics.get("balance/acc_real"), metrics.get("balance/acc_fake")
        if real is None or fake is None:
            return None
        balanced = (real + fake) / 2
        if balanced >= self.accuracy:
            self.since, self.warned = None, False
            metrics["balance/chance_steps"] = 0
            return None
        if self.since is None:
            self.since = step
        length = step - self.since
        metrics["balance/chance_steps"] = length
        if length >= self.steps and not self.warned:
            self.warned = True
            return (f"D has been at chance since step {self.since} (balanced accuracy {balanced:.2f}, "
                    f"logit gap {metrics.get('balance/logit_gap', float('nan')):.3f}): G gets no signal from it. "
                    f"Try --spectral-norm, a different --lr-d/--lr-g ratio or --g-steps (README, 'D/G balance')")
        return None
