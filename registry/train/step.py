"""One training step: D's update on real and detached fake images, then G's update through a
fresh pass of the just-updated D over the same fakes (``TrainStep``), and what the loss hooks see
of it (``Pass``, ``StepContext``).

Plugins add loss terms to either update and read the trunk features of the same D passes,
so an auxiliary head never costs another pass through D. Nothing here reads a tensor back
to the host: metrics are summed on the device (``MetricAccumulator``) and read once per
``log_every`` steps.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from registry.config import TrainConfig
from registry.errors import DivergenceError  # noqa: F401 - re-exported by registry.train
from registry.plugins import Host
from registry.train.metrics import MetricAccumulator


@dataclass
class Pass:
    """One pass of D over a batch: real/fake logits (B,), trunk features (B, F), and the
    images ``(B, C, H, W)`` D read (the fakes are not detached in the G step)."""

    logits: torch.Tensor
    features: torch.Tensor
    images: torch.Tensor | None = None


@dataclass
class StepContext:
    """What the loss hooks see on each step (see ``ganrun_d_loss_terms``)."""

    step: int  # completed steps before this one
    phase: str  # "d" or "g"
    config: TrainConfig
    modules: dict[str, Callable]  # callables for this phase (data-parallel wrappers in "d")
    latent: Any  # what the latent sampler returned with the G input
    real: Pass | None
    fake: Pass
    trainer: Any  # the registry.train.Trainer taking the step

    def log(self, name: str, value: torch.Tensor) -> None:
        """Average ``value`` over the steps between log lines (no host sync)."""
        self.trainer.log_metric(name, value)


@dataclass
class Phases:
    """The callables each update runs: D-group modules train in the D phase (wrapped for data
    parallelism there); in the G phase they run unwrapped and frozen, so no gradient is computed
    or all-reduced for weights nobody updates. The G phase also holds the generator as ``"G"``
    and the plugins' G-group modules, which train there (wrapped)."""

    d: dict[str, Callable]
    g: dict[str, Callable]
    generator: Callable


def lr_factor(config: TrainConfig, step: int) -> float:
    """The learning-rate multiplier for ``step``: 1 until the last ``lr_decay`` fraction of
    ``steps``, then falling linearly so that the final step is taken at ``1 / n`` of the base
    rates for a decay of ``n`` steps."""
    span = round(config.lr_decay * config.steps)
    start = config.steps - span
    if span <= 0 or step < start:
        return 1.0
    return max(config.steps - step, 0) / span


class TrainStep:
    """One D update and ``g_steps`` G updates of a run's networks. It owns nothing but the
    learning-rate schedule's base rates: the networks, optimizers, latent sampler and metric sums
    are the trainer's, handed over at construction (``phases`` may be replaced later, when the
    data-parallel wrappers are dropped)."""

    def __init__(
        self,
        *,
        config: TrainConfig,
        host: Host,
        modules: dict[str, nn.Module],
        groups: dict[str, list[str]],
        phases: Phases,
        optimizers: dict[str, torch.optim.Optimizer],
        sampler: Any,
        latent_gen: torch.Generator,
        gan_loss: Any,
        metrics: MetricAccumulator,
        device: torch.device,
        amp: bool,
    ):
        self.config, self.host, self.modules, self.groups = config, host, modules, groups
        self.phases, self.optimizers, self.sampler, self.latent_gen = phases, optimizers, sampler, latent_gen
        self.gan_loss, self.metrics, self.device, self.amp = gan_loss, metrics, device, amp
        self.base_lr = {name: [g["lr"] for g in opt.param_groups] for name, opt in optimizers.items()}

    def autocast(self):
        """bf16 autocast when ``amp`` is on, else nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def _set_trainable(self, group: str, flag: bool) -> None:
        for name in self.groups[group]:
            for p in self.modules[name].parameters():
                p.requires_grad_(flag)

    def _terms(self, hook: str, ctx: StepContext, prefix: str) -> torch.Tensor | None:
        total = None
        for result in self.host.run(hook, ctx=ctx):
            for name, value in result.items():
                self.metrics.log(f"{prefix}/{name}", value)
                self.metrics.watch(f"{prefix}/{name}", value)
                total = value if total is None else total + value
        return total

    def _update(self, group: str, phase: str, adversarial: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """Log the adversarial term, add the plugins' terms, take one optimizer step; returns
        the detached total loss."""
        self.metrics.log(f"{phase}/adv", adversarial)
        self.metrics.watch(f"{phase}/adv", adversarial)
        loss = adversarial if extra is None else adversarial + extra
        self.optimizers[group].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[group].step()
        return loss.detach()

    def apply_lr(self, step: int) -> None:
        """Set every optimizer's learning rates for ``step`` (``lr_factor`` of the base rates)."""
        factor = lr_factor(self.config, step)
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self.base_lr[name]):
                group["lr"] = base * factor

    def __call__(self, step: int, real_x: torch.Tensor, trainer: Any) -> None:
        """Take step ``step`` (the number of steps completed before it) on the real images
        ``real_x`` ``(B, C, H, W)``; ``trainer`` is what the loss hooks see as ``ctx.trainer``."""
        cfg, B, metrics = self.config, self.config.batch_size, self.metrics
        g_input, latent = self.sampler.sample(B, generator=self.latent_gen, device=self.device)

        with self.autocast():
            fake_x = self.phases.generator(g_input)  # (B, C, H, W), one G pass

        # D step: D-group modules learn to tell real from (detached) fake.
        self._set_trainable("D", True)
        D = self.phases.d["D"]
        with self.autocast():
            real = Pass(*D(real_x), images=real_x)
            fake_detached = fake_x.detach()
            fake = Pass(*D(fake_detached), images=fake_detached)
            loss_d = self.gan_loss.d(real.logits, fake.logits)
            metrics.log_balance(real.logits.detach(), fake.logits.detach())
            # plugin heads run under the same autocast as D; losses cast to fp32 themselves
            ctx = StepContext(step, "d", cfg, self.phases.d, latent, real, fake, trainer)
            extra = self._terms("ganrun_d_loss_terms", ctx, "d")
        loss_d = self._update("D", "d", loss_d, extra)

        # G step: a fresh pass of the updated, frozen D over the same fakes. With g_steps > 1
        # each further update regenerates the fakes from the same input through the updated
        # G; metrics are logged for the first update only, so they mean the same for any N.
        self._set_trainable("D", False)
        for k in range(cfg.g_steps):
            if k > 0:
                with self.autocast():
                    fake_x = self.phases.generator(g_input)
            metrics.muted = k > 0
            with self.autocast():
                fake = Pass(*self.phases.g["D"](fake_x), images=fake_x)
                loss_g = self.gan_loss.g(fake.logits)
                ctx = StepContext(step, "g", cfg, self.phases.g, latent, None, fake, trainer)
                extra = self._terms("ganrun_g_loss_terms", ctx, "g")
            loss_g = self._update("G", "g", loss_g, extra)
            metrics.finite &= torch.isfinite(loss_g)
        metrics.muted = False
        self._set_trainable("D", True)

        metrics.end_step(torch.isfinite(loss_d) & torch.isfinite(loss_g))
