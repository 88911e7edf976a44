"""Stopping a diverged run before anything of it is logged or saved (``DivergenceCheck``): a loss
that became NaN or Inf, a loss term whose magnitude passed ``--max-loss`` on any step since the
last check, weights or buffers that hold NaN/Inf or passed the bound, optimizer state that holds
NaN/Inf. One device sync per check (and one all-reduce under torchrun, so every rank stops
together); the trainer checks at every log line, before every save and before every picture."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from registry.config import TrainConfig
from registry.errors import DivergenceError
from registry.train import distributed
from registry.train.metrics import MetricAccumulator


def divergence_advice(bound: bool) -> str:
    """What to do about a diverged run, truthfully: a resume replays the same steps with
    the same settings (learning rates, seed and loss weights cannot change on resume)."""
    text = "Lower the learning rates (--lr-d, --lr-g) or the loss weights and train again (--overwrite or a new --out)"
    return text + ("; --max-loss 0 turns the magnitude bound off" if bound else "")


class DivergenceCheck:
    """Checks the metric flags and the state a checkpoint would hold; raises ``DivergenceError``
    naming what diverged, when, and where the run can continue from (``last_good(step)``)."""

    def __init__(
        self,
        *,
        config: TrainConfig,
        dist: distributed.DistInfo,
        device: torch.device,
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        metrics: MetricAccumulator,
        last_good: Callable[[int], str],
    ):
        self.config, self.dist, self.device = config, dist, device
        self.modules, self.optimizers, self.metrics, self.last_good = modules, optimizers, metrics, last_good
        self.checked_step = 0  # the step the last check passed at

    def __call__(self, step: int) -> None:
        """Check the run as it stands after ``step`` completed steps."""
        bound, peaks_now = self.config.max_loss, self.metrics.peaks
        names = list(peaks_now)
        state_names, state_flags = self.state_flags(bound)
        flags = torch.stack(
            [(~self.metrics.finite).float(), *(peaks_now[n].to(self.device) for n in names), *state_flags]
        ).nan_to_num(nan=math.inf)
        flags = distributed.all_max(self.dist, flags).tolist()
        first = self.checked_step + 1
        when = f"at step {step}" if first >= step else f"between steps {first} and {step}"
        if flags[0]:
            raise DivergenceError(
                f"a loss became NaN or Inf {when}; {self.last_good(step)}. {divergence_advice(False)}"
            )
        peaks = dict(zip(names, flags[1 : 1 + len(names)]))
        over = {name: value for name, value in peaks.items() if bound > 0 and value > bound}
        if over:
            worst = max(over, key=over.__getitem__)
            raise DivergenceError(
                f"loss term {worst} reached {over[worst]:.3g} {when}, above --max-loss {bound:g}: the run "
                f"diverged; {self.last_good(step)}. {divergence_advice(True)}"
            )
        bad = [(name, kind) for (name, kind), flag in zip(state_names, flags[1 + len(names) :]) if flag]
        if bad:
            non_finite = [name for name, kind in bad if kind == "non-finite"]
            grown = [name for name, kind in bad if kind == "exploded" and name not in non_finite]
            what = f"{', '.join(non_finite)} became NaN or Inf" if non_finite else ""
            if grown:
                what += ("; " if what else "") + f"{', '.join(grown)} grew past --max-loss {bound:g} in magnitude"
            raise DivergenceError(f"{what} at step {step}; {self.last_good(step)}. {divergence_advice(bool(grown))}")
        self.metrics.peaks = {}
        self.checked_step = step

    def state_flags(self, bound: float) -> tuple[list[tuple[str, str]], list[torch.Tensor]]:
        """``(what, kind)`` and a flag on the device (1: bad) per check of the state a checkpoint
        holds: each module's parameters and buffers (BatchNorm statistics, spectral-norm
        vectors) for NaN/Inf and, with a ``bound`` above 0, for a magnitude above it; each
        optimizer's state (Adam's moments, squared gradients: not bounded) for NaN/Inf."""
        names: list[tuple[str, str]] = []
        flags: list[torch.Tensor] = []
        for name, module in self.modules.items():
            values = [t.detach() for t in module.state_dict().values() if torch.is_tensor(t) and t.is_floating_point()]
            values = [t for t in values if t.numel()]
            if values:
                what = f"module {name} (weights or buffers)"
                names.append((what, "non-finite"))
                flags.append(~torch.stack([torch.isfinite(t).all() for t in values]).all())
                if bound > 0:
                    names.append((what, "exploded"))
                    flags.append(torch.stack([t.abs().max().float() for t in values]).max() > bound)
        for name, opt in self.optimizers.items():
            values = [
                t
                for state in opt.state.values()
                for t in state.values()
                if torch.is_tensor(t) and t.is_floating_point()
            ]
            if values:
                names.append((f"the {name} optimizer's state", "non-finite"))
                flags.append(~torch.stack([torch.isfinite(t).all().to(self.device) for t in values]).all())
        return names, [flag.float().to(self.device) for flag in flags]
