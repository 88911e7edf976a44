"""What a run measures between two log lines, kept on the device: the metric sums the loss hooks
and the step log (``MetricAccumulator.log``), the largest magnitude of each loss term
(``watch``, for ``--max-loss``) and whether every loss stayed finite. Nothing here reads a tensor
back to the host; ``take`` does, once per log line."""

from __future__ import annotations

import torch


class MetricAccumulator:
    """Sums of logged metrics, loss peaks and a finite flag since the last log line (no host
    sync until ``take``)."""

    def __init__(self, device: torch.device):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0  # steps summed since the last ``take``
        self.finite = torch.ones((), dtype=torch.bool, device=device)  # every loss so far was finite
        self.peaks: dict[str, torch.Tensor] = {}  # largest |loss term| since the last divergence check
        self.muted = False  # the further G updates of g_steps > 1 log nothing

    def log(self, name: str, value: torch.Tensor) -> None:
        """Add ``value`` to the sum of metric ``name`` (averaged over the steps at ``take``)."""
        if self.muted:
            return
        value = value.detach().float()
        self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()

    def watch(self, name: str, value: torch.Tensor) -> None:
        """Keep the largest magnitude of a loss term since the last check (every update counts,
        also the unlogged ones of ``g_steps`` > 1)."""
        peak = value.detach().float().abs().max()
        self.peaks[name] = torch.maximum(self.peaks[name], peak) if name in self.peaks else peak

    def log_balance(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """How well D tells real from fake on this step's batches: its accuracy on each, the gap
        between mean logits and their spread (a D stuck at chance has a gap and a spread near 0;
        ``registry.train.balance`` watches them)."""
        real, fake = real.float(), fake.float()
        self.log("balance/acc_real", (real > 0).float().mean())
        self.log("balance/acc_fake", (fake < 0).float().mean())
        self.log("balance/logit_gap", real.mean() - fake.mean())
        self.log("balance/logit_std", torch.cat([real, fake]).std())

    def end_step(self, finite: torch.Tensor) -> None:
        """Count one step; ``finite`` (a bool tensor) says whether its losses were finite."""
        self.finite &= finite
        self.count += 1

    def take(self) -> dict[str, float]:
        """The averages since the last call, read back to the host at once; the sums start over."""
        names = sorted(self.sums)
        values = torch.stack([self.sums[n] for n in names]).div_(max(self.count, 1)).tolist() if names else []
        self.sums, self.count = {}, 0
        return dict(zip(names, values))
