"""Watching the balance between D and G.

A GAN learns only while D and G contest: a D that tells real from fake perfectly gives G
no useful gradient, and a D that sits at chance (equal logits for every image) teaches G
nothing either. The trainer logs D's accuracy on real and on fake images, the gap between
their mean logits and the logits' spread as ``balance/*`` metrics on every log line;
:class:`BalanceWatch` reads those lines and says so, once per episode, when D has been at
chance for :data:`CHANCE_STEPS` steps in a row. At chance means a balanced accuracy below
:data:`CHANCE_ACCURACY`, or a logit gap below :data:`CHANCE_GAP`: with logits nearly equal
for every image, the accuracies only say which side of zero that one value fell.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHANCE_ACCURACY", "CHANCE_GAP", "CHANCE_STEPS", "BalanceWatch", "balance_hint"]

CHANCE_ACCURACY = 0.55  # balanced accuracy (mean of real and fake accuracy) below this is chance
CHANCE_GAP = 0.05  # or mean real logit minus mean fake logit below this (logits all alike)
CHANCE_STEPS = 2000  # warn when D has been at chance this long


def balance_hint(config) -> str:
    """What to try when D sits at chance, given what a run already uses: G outpaces D when it
    takes several updates or a higher rate per D update, and spectral norm steadies D."""
    tries = []
    if not config.spectral_norm:
        tries.append("--spectral-norm")
    if config.g_steps > 1:
        tries.append("--g-steps 1")
    tries.append(f"a lower --lr-g than {config.lr_g:g} (D runs at {config.lr_d:g})")
    return "Try " + ", or ".join(tries) + " (docs/training.md, 'D/G balance')"


class BalanceWatch:
    """Counts the steps D has spent at chance; :meth:`update` returns a warning line the first
    time a stretch reaches ``steps``, else None. A log line where D is above chance ends the
    stretch. The count is recorded in the metrics as ``balance/chance_steps``."""

    def __init__(
        self,
        *,
        accuracy: float = CHANCE_ACCURACY,
        gap: float = CHANCE_GAP,
        steps: int = CHANCE_STEPS,
        hint: str = "see docs/training.md, 'D/G balance'",
    ) -> None:
        self.accuracy, self.gap, self.steps, self.hint = accuracy, gap, steps, hint
        self.since: int | None = None  # first step of the current stretch at chance
        self.warned = False

    def update(self, step: int, metrics: dict[str, float]) -> str | None:
        real, fake = metrics.get("balance/acc_real"), metrics.get("balance/acc_fake")
        if real is None or fake is None:
            return None
        balanced = (real + fake) / 2
        gap = metrics.get("balance/logit_gap", 0.0)
        if balanced >= self.accuracy and gap >= self.gap:
            self.since, self.warned = None, False
            metrics["balance/chance_steps"] = 0.0
            return None
        if self.since is None:
            self.since = step
        length = step - self.since
        metrics["balance/chance_steps"] = float(length)
        if length >= self.steps and not self.warned:
            self.warned = True
            return (
                f"D has been at chance since step {self.since} (balanced accuracy {balanced:.2f}, "
                f"logit gap {gap:.3f}): G gets no signal from it. "
                f"{self.hint}"
            )
        return None

    def replay(self, metrics_file: Path) -> None:
        """Rebuild the count from a resumed run's log lines, so ``balance/chance_steps`` and the
        warning continue as if the run had not stopped (the count is a function of the lines)."""
        from registry.runfiles import read_metrics

        for row in read_metrics(Path(metrics_file).parent, warn=None):  # the resume named any damage
            numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.update(row["step"], numbers)
