"""One training step: D's update on real and detached fake images, then G's update through a
fresh pass of the just-updated D over the same fakes (``StepMixin.train_step``), and what
the loss hooks see of it (``Pass``, ``StepContext``).

Plugins add loss terms to either update and read the trunk features of the same D passes,
so an auxiliary head never costs another pass through D. Nothing here reads a tensor back
to the host: metrics are summed on the device and read once per ``log_every`` steps.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from registry.config import TrainConfig
from registry.data import uint8_to_float
from registry.errors import DivergenceError  # noqa: F401 - re-exported by registry.train

if TYPE_CHECKING:  # pragma: no cover - typing only
    from registry.train.trainer import Trainer


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
    trainer: "Trainer"

    def log(self, name: str, value: torch.Tensor) -> None:
        """Average ``value`` over the steps between log lines (no host sync)."""
        self.trainer.log_metric(name, value)


class StepMixin:
    """The update methods of ``Trainer`` (they read the modules, optimizers, data and
    sampler that ``Trainer.__init__`` builds)."""

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def _set_trainable(self, group: str, flag: bool) -> None:
        for p in self._params(group):
            p.requires_grad_(flag)

    # ------------------------------------------------------------------ one step
    def log_metric(self, name: str, value: torch.Tensor) -> None:
        if self._muted:
            return
        value = value.detach().float()
        self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()

    def _watch_loss(self, name: str, value: torch.Tensor) -> None:
        """Keep the largest magnitude of a loss term since the last check (no host sync; every
        update counts, also the unlogged ones of ``g_steps`` > 1)."""
        peak = value.detach().float().abs().max()
        self._peaks[name] = torch.maximum(self._peaks[name], peak) if name in self._peaks else peak

    def _log_balance(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """How well D tells real from fake on this step's batches (no host sync): its accuracy
        on each, the gap between mean logits and their spread (a D stuck at chance has a gap
        and a spread near 0; ``registry.train.balance`` watches them)."""
        real, fake = real.float(), fake.float()
        self.log_metric("balance/acc_real", (real > 0).float().mean())
        self.log_metric("balance/acc_fake", (fake < 0).float().mean())
        self.log_metric("balance/logit_gap", real.mean() - fake.mean())
        self.log_metric("balance/logit_std", torch.cat([real, fake]).std())

    def _terms(self, hook: str, ctx: StepContext, prefix: str) -> torch.Tensor | None:
        total = None
        for result in self.host.checked(hook, ctx=ctx):
            for name, value in result.items():
                self.log_metric(f"{prefix}/{name}", value)
                self._watch_loss(f"{prefix}/{name}", value)
                total = value if total is None else total + value
        return total

    def _update(self, group: str, phase: str, adversarial: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """Log the adversarial term, add the plugins' terms, take one optimizer step; returns
        the detached total loss."""
        self.log_metric(f"{phase}/adv", adversarial)
        self._watch_loss(f"{phase}/adv", adversarial)
        loss = adversarial if extra is None else adversarial + extra
        self.optimizers[group].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[group].step()
        return loss.detach()

    def lr_factor(self, step: int | None = None) -> float:
        """The learning-rate multiplier for a step (default: the next one): 1 until the last
        ``lr_decay`` fraction of ``steps``, then falling linearly so that the final step is
        taken at ``1 / n`` of the base rates for a decay of ``n`` steps."""
        step = self.step if step is None else step
        span = round(self.config.lr_decay * self.config.steps)
        start = self.config.steps - span
        if span <= 0 or step < start:
            return 1.0
        return max(self.config.steps - step, 0) / span

    def _apply_lr(self) -> None:
        factor = self.lr_factor()
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self._base_lr[name]):
                group["lr"] = base * factor

    def real_batch(self) -> torch.Tensor:
        """This step's real images ``(B, C, H, W)`` in [-1, 1] on the device: freshly drawn
        for a dataset that draws its batches (a pure function of seed, rank and step, so a
        resumed run draws the same ones), else the epoch sampler's slice of the stored set."""
        if self.dataset.draw is not None:
            images = self.dataset.draw(self.config.batch_size, self.step_generator("data"), self.device)
            return uint8_to_float(images, self.device)
        idx = self.batches.indices(self.step).to(self.device, non_blocking=True)
        return self.data.index_select(0, idx)

    def train_step(self) -> None:
        cfg, B = self.config, self.config.batch_size
        if cfg.lr_decay > 0:
            self._apply_lr()
        real_x = self.real_batch()  # (B, C, H, W)
        g_input, latent = self.sampler.sample(B, generator=self.latent_gen, device=self.device)

        with self._autocast():
            fake_x = self.generator(g_input)  # (B, C, H, W), one G pass

        # D step: D-group modules learn to tell real from (detached) fake.
        self._set_trainable("D", True)
        D = self.d_phase["D"]
        with self._autocast():
            real = Pass(*D(real_x), images=real_x)
            fake_detached = fake_x.detach()
            fake = Pass(*D(fake_detached), images=fake_detached)
            loss_d = self.gan_loss.d(real.logits, fake.logits)
            self._log_balance(real.logits.detach(), fake.logits.detach())
            # plugin heads run under the same autocast as D; losses cast to fp32 themselves
            ctx = StepContext(self.step, "d", cfg, self.d_phase, latent, real, fake, self)
            extra = self._terms("ganrun_d_loss_terms", ctx, "d")
        loss_d = self._update("D", "d", loss_d, extra)

        # G step: a fresh pass of the updated, frozen D over the same fakes. With g_steps > 1
        # each further update regenerates the fakes from the same input through the updated
        # G; metrics are logged for the first update only, so they mean the same for any N.
        self._set_trainable("D", False)
        for k in range(cfg.g_steps):
            if k > 0:
                with self._autocast():
                    fake_x = self.generator(g_input)
            self._muted = k > 0
            with self._autocast():
                fake = Pass(*self.g_phase["D"](fake_x), images=fake_x)
                loss_g = self.gan_loss.g(fake.logits)
                ctx = StepContext(self.step, "g", cfg, self.g_phase, latent, None, fake, self)
                extra = self._terms("ganrun_g_loss_terms", ctx, "g")
            loss_g = self._update("G", "g", loss_g, extra)
            self._finite &= torch.isfinite(loss_g)
        self._muted = False
        self._set_trainable("D", True)

        self._finite &= torch.isfinite(loss_d) & torch.isfinite(loss_g)
        self._count += 1
