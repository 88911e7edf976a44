"""The generic GAN training loop. It knows nothing about any particular plugin.

One step is: draw a real batch (resident on the device) and the generator input, run G
once, update D (and every module in D's optimizer group) on the real batch and the
detached fakes, then update G through a fresh pass of the just-updated D on the same
fakes. Plugins add loss terms to either update and read the trunk features of the same
D passes, so an auxiliary head never costs another pass through D.

The loop never reads a tensor back to the host on an ordinary step: metrics are summed on
the device and read once per ``log_every`` steps.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from registry import checkpoint as ckpt
from registry.cpu import allocator as perf
from registry.train import distributed
from registry.config import TrainConfig
from registry.data import EpochSampler, ImageDataset, to_training_tensor
from registry.report.images import save_grid
from registry.plugins import Host

SAMPLE_GRID = 64  # pictures show an 8x8 grid from a fixed latent batch


class DivergenceError(RuntimeError):
    """A loss or weight became NaN/Inf; the last good checkpoint is kept."""


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a checkpoint was written before stopping."""

    def __init__(self, signum: int, step: int, path: Path | None):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")


def seed_for(seed: int, stream: str, rank: int = 0) -> int:
    """Independent, reproducible seeds for each random stream and rank."""
    offsets = {"init": 0, "latent": 1, "fixed": 2, "plugin": 3}
    return (seed * 1_000_003 + offsets[stream] * 7_919 + rank * 104_729) & ((1 << 63) - 1)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA when present, else CPU; ``cuda`` under torchrun means this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    return device


class NoiseSampler:
    """The plain GAN's generator input: ``noise_dim`` noise values per sample."""

    def __init__(self, noise_dim: int, noise: str = "normal"):
        self.input_dim = noise_dim
        self.noise = noise

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, None]:
        if self.noise == "uniform":
            z = torch.rand(n, self.input_dim, generator=generator, device=device) * 2 - 1
        else:
            z = torch.randn(n, self.input_dim, generator=generator, device=device)
        return z, None


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

    step: int                      # completed steps before this one
    phase: str                     # "d" or "g"
    config: TrainConfig
    modules: dict[str, Callable]   # callables for this phase (data-parallel wrappers in "d")
    latent: Any                    # what the latent sampler returned with the G input
    real: Pass | None
    fake: Pass
    trainer: "Trainer"

    def log(self, name: str, value: torch.Tensor) -> None:
        """Average ``value`` over the steps between log lines (no host sync)."""
        self.trainer.log_metric(name, value)


def _make_adam(params: list[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device):
    """Adam with the fused kernel where available (one kernel for all tensors), else foreach."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


class Trainer:
    """Builds everything a run needs from a config and the active plugins, then trains."""

    def __init__(self, config: TrainConfig, host: Host, run_dir: Path,
                 dist: distributed.DistInfo | None = None, dataset: ImageDataset | None = None):
        self.config, self.host, self.run_dir = config, host, Path(run_dir)
        self.dist = dist or distributed.DistInfo()
        self.device = resolve_device(config.device, self.dist.local_rank)
        distributed.init(self.dist, self.device)
        if self.device.type == "cpu":
            perf.tune_allocator()
        self.step = 0
        # bf16 autocast on CUDA, and on CPUs with native bf16 (AVX512-BF16/AMX) where it is
        # about 2x faster; elsewhere --amp is ignored rather than emulated slowly.
        self.amp = config.amp and (self.device.type == "cuda" or perf.cpu_bf16())

        reg = host.registries
        self.dataset = dataset or reg.datasets.get(config.dataset)(
            data_dir=config.data_dir, image_size=config.image_size)
        if config.batch_size * self.dist.world_size > len(self.dataset):
            raise ValueError(
                f"--batch-size {config.batch_size} x {self.dist.world_size} process(es) exceeds the "
                f"{len(self.dataset)} images of dataset {config.dataset!r}; use a smaller batch")
        self.data = to_training_tensor(self.dataset, self.device)          # (N, C, H, W) in [-1, 1]
        self.batches = EpochSampler(len(self.dataset), config.batch_size, seed=config.seed,
                                    rank=self.dist.rank, world_size=self.dist.world_size)

        self.sampler = host.hook.ganrun_latent_sampler(config=config, registries=reg) or NoiseSampler(config.noise_dim, config.noise)
        self.model_name = config.model or ("dcgan28" if self.dataset.image_size == 28 else "dcgan64")
        factory = reg.models.get(self.model_name)
        torch.manual_seed(seed_for(config.seed, "init"))  # identical init on every rank
        G, D = factory(latent_dim=self.sampler.input_dim, channels=self.dataset.channels,
                       image_size=self.dataset.image_size)
        self.modules: dict[str, nn.Module] = {"G": G, "D": D}
        self.groups: dict[str, list[str]] = {"G": ["G"], "D": ["D"]}
        for extra in host.hook.ganrun_build_modules(config=config, models=dict(self.modules), sampler=self.sampler):
            for name, (module, group) in (extra or {}).items():
                if name in self.modules:
                    raise ValueError(f"two plugins build a module named {name!r}")
                if group not in self.groups:
                    raise ValueError(f"module {name!r}: optimizer group must be 'D' or 'G', got {group!r}")
                self.modules[name] = module
                self.groups[group].append(name)
        for module in self.modules.values():
            module.to(self.device)
        self.optimizers = {
            "G": _make_adam(self._params("G"), config.lr_g, (config.beta1, config.beta2), self.device),
            "D": _make_adam(self._params("D"), config.lr_d, (config.beta1, config.beta2), self.device),
        }
        self._base_lr = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.optimizers.items()}
        self.gan_loss = reg.gan_losses.get(config.gan_loss)
        self._build_callables()

        self.latent_gen = torch.Generator(device=self.device).manual_seed(
            seed_for(config.seed, "latent", self.dist.rank))
        fixed_gen = torch.Generator(device=self.device).manual_seed(seed_for(config.seed, "fixed"))
        self.fixed_input, _ = self.sampler.sample(SAMPLE_GRID, generator=fixed_gen, device=self.device)

        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        self._stop_signal: int | None = None
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ building
    def _params(self, group: str) -> list[nn.Parameter]:
        return [p for name in self.groups[group] for p in self.modules[name].parameters()]

    def _build_callables(self) -> None:
        """Per-phase callables: D-group modules train in the D phase (wrapped for data
        parallelism there); in the G phase they run unwrapped and frozen, so no gradient
        is computed or all-reduced for weights nobody updates. The G phase also holds the
        generator as ``"G"`` and the plugins' G-group modules, which train there (wrapped)."""
        wrap: Callable[[nn.Module], Callable] = lambda m: m
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrap = lambda m: DDP(m, device_ids=ids) if any(p.requires_grad for p in m.parameters()) else m
        comp: Callable[[Callable], Callable] = torch.compile if self.config.compile else (lambda m: m)
        self.d_phase = {n: comp(wrap(self.modules[n])) for n in self.groups["D"]}
        self.g_phase = {n: comp(self.modules[n]) for n in self.groups["D"]}
        self.generator = comp(wrap(self.modules["G"]))
        self.g_phase.update({n: comp(wrap(self.modules[n])) for n in self.groups["G"] if n != "G"})
        self.g_phase["G"] = self.generator

    def step_generator(self, stream: str) -> torch.Generator:
        """A fresh ``torch.Generator`` on the training device for this step's draws of one
        named random stream (e.g. a plugin's pairs or transforms). Seeded by the run seed,
        the stream name, the rank and the current step, so a run is reproducible and
        resumes exactly without saving generator state, and ranks draw differently."""
        base = seed_for(self.config.seed, "plugin", self.dist.rank)
        mixed = base + zlib.crc32(stream.encode()) * 2_654_435_761 + self.step * 6_700_417
        return torch.Generator(device=self.device).manual_seed(mixed & ((1 << 63) - 1))

    def release_distributed(self) -> None:
        """Drop the DistributedDataParallel wrappers (each holds the process group), so leaving
        the group tears gloo/NCCL down at once rather than in the interpreter's final cleanup."""
        if not self.dist.enabled:
            return
        self.d_phase = {n: self.modules[n] for n in self.groups["D"]}
        self.g_phase = dict(self.modules)
        self.generator = self.modules["G"]
        gc.collect()

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def _set_trainable(self, group: str, flag: bool) -> None:
        for p in self._params(group):
            p.requires_grad_(flag)

    # ------------------------------------------------------------------ one step
    def log_metric(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().float()
        self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()

    def _terms(self, hook, ctx: StepContext, prefix: str) -> torch.Tensor | None:
        total = None
        for result in hook(ctx=ctx):
            for name, value in (result or {}).items():
                self.log_metric(f"{prefix}/{name}", value)
                total = value if total is None else total + value
        return total

    def _update(self, group: str, phase: str, adversarial: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """Log the adversarial term, add the plugins' terms, take one optimizer step; returns
        the detached total loss."""
        self.log_metric(f"{phase}/adv", adversarial)
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

    def train_step(self) -> None:
        cfg, B = self.config, self.config.batch_size
        if cfg.lr_decay > 0:
            self._apply_lr()
        idx = self.batches.indices(self.step).to(self.device, non_blocking=True)
        real_x = self.data.index_select(0, idx)                              # (B, C, H, W)
        g_input, latent = self.sampler.sample(B, generator=self.latent_gen, device=self.device)

        with self._autocast():
            fake_x = self.generator(g_input)                                  # (B, C, H, W), one G pass

        # D step: D-group modules learn to tell real from (detached) fake.
        self._set_trainable("D", True)
        D = self.d_phase["D"]
        with self._autocast():
            real = Pass(*D(real_x), images=real_x)
            fake_detached = fake_x.detach()
            fake = Pass(*D(fake_detached), images=fake_detached)
            loss_d = self.gan_loss.d(real.logits, fake.logits)
            # plugin heads run under the same autocast as D; losses cast to fp32 themselves
            ctx = StepContext(self.step, "d", cfg, self.d_phase, latent, real, fake, self)
            extra = self._terms(self.host.hook.ganrun_d_loss_terms, ctx, "d")
        loss_d = self._update("D", "d", loss_d, extra)

        # G step: a fresh pass of the updated, frozen D over the same fakes.
        self._set_trainable("D", False)
        with self._autocast():
            fake = Pass(*self.g_phase["D"](fake_x), images=fake_x)
            loss_g = self.gan_loss.g(fake.logits)
            ctx = StepContext(self.step, "g", cfg, self.g_phase, latent, None, fake, self)
            extra = self._terms(self.host.hook.ganrun_g_loss_terms, ctx, "g")
        loss_g = self._update("G", "g", loss_g, extra)
        self._set_trainable("D", True)

        self._finite &= torch.isfinite(loss_d) & torch.isfinite(loss_g)
        self._count += 1

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Path | None:
        """Train until ``config.steps``; return the last checkpoint written."""
        cfg, main = self.config, self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.run_dir / "config.json", json.dumps(self.describe(), indent=2, sort_keys=True))
        last_path = None
        bar = None
        if main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True, mininterval=0.5)
        # A graceful stop checkpoints at the end of the current step. Under torchrun the ranks
        # could receive the signal in different steps and would deadlock in the save's
        # collectives (or wait on a dead peer), so there the default handlers stay: the job
        # ends at once and --auto-resume continues from the newest periodic checkpoint.
        signals = () if self.dist.enabled else (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.getsignal(s) for s in signals}
        for s in previous:
            signal.signal(s, self._on_signal)
        try:
            self._t0, self._t_step = time.perf_counter(), self.step
            while self.step < cfg.steps:
                self.train_step()
                self.step += 1
                self.host.hook.ganrun_step_end(trainer=self, step=self.step)
                last = self.step == cfg.steps
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.log_every == 0 or last:
                    postfix = self._log()
                    if bar is not None and postfix:
                        bar.set_postfix(postfix, refresh=False)
                if self.step % cfg.sample_every == 0 or last:
                    self.sample()
                if self.step % cfg.save_every == 0 or last or self._stop_signal is not None:
                    last_path = self.save()
                if self._stop_signal is not None:
                    raise Interrupted(self._stop_signal, self.step, last_path)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if bar is not None:
                bar.close()
        return last_path

    def _on_signal(self, signum, frame) -> None:
        if self._stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum

    def _check_finite(self) -> None:
        if not bool(self._finite):
            raise DivergenceError(
                f"a loss became NaN or Inf before step {self.step}; the last good checkpoint is kept. "
                f"Try a lower learning rate, or resume from that checkpoint with another seed")

    def _log(self) -> dict[str, str]:
        """Read the summed metrics back once, write a JSONL line, return progress-bar text."""
        self._check_finite()
        names = sorted(self._sums)
        values = torch.stack([self._sums[n] for n in names]).div_(max(self._count, 1)).tolist() if names else []
        metrics = dict(zip(names, values))
        now = time.perf_counter()
        metrics["steps_per_sec"] = (self.step - self._t_step) / max(now - self._t0, 1e-9)
        if self.config.lr_decay > 0:
            metrics["lr_factor"] = self.lr_factor(self.step - 1)  # of the last step taken
        self._t0, self._t_step = now, self.step
        self._sums, self._count = {}, 0
        self.last_metrics = metrics
        postfix = {"D": f"{metrics.get('d/adv', math.nan):.3f}", "G": f"{metrics.get('g/adv', math.nan):.3f}"}
        for extra in self.host.hook.ganrun_log(trainer=self, step=self.step, metrics=metrics):
            postfix.update(extra or {})
        if self.dist.is_main:
            line = json.dumps({"step": self.step, **{k: round(v, 6) for k, v in metrics.items()}})
            with open(self.run_dir / "metrics.jsonl", "a") as fh:
                fh.write(line + "\n")
        return postfix

    @torch.no_grad()
    def sample(self) -> None:
        """Write the fixed-latent sample grid and let plugins add their pictures."""
        if not self.dist.is_main:
            return
        training = {n: m.training for n, m in self.modules.items()}
        for m in self.modules.values():
            m.eval()
        try:
            with self._autocast():
                images = self.modules["G"](self.fixed_input).float()
            save_grid(images, self.run_dir / "samples" / f"step-{self.step:09d}.png", nrow=8)
            self.host.hook.ganrun_sample(trainer=self, step=self.step, run_dir=self.run_dir)
        finally:
            for n, m in self.modules.items():
                m.train(training[n])

    # ------------------------------------------------------------------ checkpoints
    def describe(self) -> dict[str, Any]:
        """The effective configuration and what was resolved from it."""
        return {
            "config": json.loads(self.config.to_json()),
            "model": self.model_name,
            "generator_input": self.sampler.input_dim,
            "image_shape": list(self.data.shape[1:]),
            "plugins": self.host.plugins,
            "world_size": self.dist.world_size,
            "versions": _versions(),
        }

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, str] = {}
        for name, module in self.modules.items():
            tensors.update(ckpt.module_state(module, f"model.{name}"))
        for name, opt in self.optimizers.items():
            t, meta[f"optim.{name}"] = ckpt.optimizer_state(opt, f"optim.{name}")
            tensors.update(t)
        for rank, state in enumerate(distributed.gather_bytes(self.dist, torch.get_rng_state())):
            tensors[f"rng.torch_cpu.{rank}"] = state
        for rank, state in enumerate(distributed.gather_bytes(self.dist, self.latent_gen.get_state())):
            tensors[f"rng.latent.{rank}"] = state
        if self.device.type == "cuda":
            for rank, state in enumerate(distributed.gather_bytes(self.dist, torch.cuda.get_rng_state(self.device))):
                tensors[f"rng.cuda.{rank}"] = state
        for extra in self.host.hook.ganrun_checkpoint_state(trainer=self):
            for key, value in (extra or {}).items():
                if f"plugin.{key}" in tensors:
                    raise ValueError(f"two plugins save checkpoint state under {key!r}")
                tensors[f"plugin.{key}"] = value
        meta.update(step=str(self.step), config=self.config.to_json(),
                    run=json.dumps(self.describe(), sort_keys=True))
        return tensors, meta

    def save(self) -> Path | None:
        """Write ``checkpoints/ckpt-<step>.safetensors`` atomically (rank 0); refuse to save
        NaN/Inf so a poisoned checkpoint never replaces a good one."""
        self._check_finite()
        finite = {n: torch.stack([torch.isfinite(p).all() for p in m.parameters()]).all()
                  for n, m in self.modules.items() if any(True for _ in m.parameters())}
        flags = torch.stack(list(finite.values())).tolist()  # one device sync for every module
        bad = [n for n, ok in zip(finite, flags) if not ok]
        if bad:
            raise DivergenceError(f"weights of {sorted(set(bad))} became NaN or Inf at step {self.step}; "
                                  f"the last good checkpoint is kept")
        tensors, meta = self.state_tensors()
        path = self.run_dir / "checkpoints" / ckpt.checkpoint_name(self.step)
        if self.dist.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            ckpt.save_checkpoint(path, tensors, meta)
            self._prune_checkpoints()
        distributed.barrier(self.dist)
        return path

    def _prune_checkpoints(self) -> None:
        """Keep the newest ``keep_checkpoints`` of this run's timeline (steps up to now), so the
        file just written is never the one deleted, whatever else lies in the folder."""
        keep = self.config.keep_checkpoints
        if keep <= 0:
            return
        ours = sorted((step, path) for path in (self.run_dir / "checkpoints").glob("ckpt-*.safetensors")
                      if (step := _step_of(path)) is not None and step <= self.step)
        for _, old in ours[:-keep]:
            old.unlink(missing_ok=True)

    @classmethod
    def from_checkpoint(cls, path: Path, host: Host, *, device: str | None = None) -> "Trainer":
        """A trainer restored from a checkpoint file or a run folder's newest one, for
        evaluation and pictures (the run's logs are left untouched)."""
        path = Path(path)
        if path.is_dir():
            found = ckpt.find_latest(path / "checkpoints") or ckpt.find_latest(path)
            if found is None:
                raise ckpt.CheckpointError(f"{path}: no complete checkpoint in this run folder")
            path = found
        tensors, meta = ckpt.read_checkpoint(path)
        try:
            config = TrainConfig.from_dict(json.loads(meta["config"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise ckpt.CheckpointError(f"{path}: configuration metadata is missing or malformed ({exc})") from None
        if device is not None:
            config.device = device
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        trainer = cls(config, host, run_dir)
        trainer.restore(path, loaded=(tensors, meta), truncate_logs=False)
        return trainer

    def _check_plugins(self, path: Path, meta: dict[str, str]) -> None:
        """Refuse a checkpoint written with plugins that are not active now, naming them."""
        try:
            recorded = json.loads(meta.get("run", "{}")).get("plugins") or {}
        except (ValueError, AttributeError):
            return  # older or foreign metadata: the module and optimizer checks still apply
        missing = [name for name in recorded if name not in self.host.plugins]
        if missing:
            flags = " ".join(f"--plugin {name}" for name in recorded)
            raise ckpt.CheckpointError(
                f"{path}: the run was trained with plugin(s) {', '.join(missing)}, which are not active; "
                f"run the command as 'ganrun {flags} ...'")

    def restore(self, path: Path, *, loaded: tuple[dict, dict] | None = None, truncate_logs: bool = True) -> None:
        """Continue exactly from a checkpoint: weights, optimizers, RNGs, step, plugin state."""
        tensors, meta = loaded if loaded is not None else ckpt.read_checkpoint(path)
        self._check_plugins(path, meta)
        for name, module in self.modules.items():
            ckpt.load_module_state(module, tensors, f"model.{name}", path=path)
        for name, opt in self.optimizers.items():
            if f"optim.{name}" not in meta:
                raise ckpt.CheckpointError(f"{path}: missing optimizer entry 'optim.{name}' in the metadata")
            ckpt.load_optimizer_state(opt, tensors, f"optim.{name}", meta[f"optim.{name}"], path=path)
        rank = self.dist.rank
        keys = [f"rng.torch_cpu.{rank}", f"rng.latent.{rank}"]
        if self.device.type == "cuda":
            keys.append(f"rng.cuda.{rank}")
        ckpt.require_keys(tensors, keys, path=path, what="RNG")
        try:
            torch.set_rng_state(tensors[f"rng.torch_cpu.{rank}"])
            self.latent_gen.set_state(tensors[f"rng.latent.{rank}"])
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{rank}"], self.device)
        except (RuntimeError, ValueError) as exc:
            raise ckpt.CheckpointError(f"{path}: RNG state is malformed ({exc})") from None
        plugin_state = {k[len("plugin."):]: v for k, v in tensors.items() if k.startswith("plugin.")}
        self.host.hook.ganrun_load_checkpoint_state(trainer=self, tensors=plugin_state)
        try:
            self.step = int(meta["step"])
        except (KeyError, ValueError):
            raise ckpt.CheckpointError(f"{path}: metadata 'step' is missing or not an integer") from None
        if truncate_logs and self.dist.is_main:
            _truncate_after(self.run_dir, self.step)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"torch": torch.__version__}
    try:
        out["ganrun"] = md.version("ganrun")
    except md.PackageNotFoundError:
        out["ganrun"] = "unknown"
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _step_of(path: Path) -> int | None:
    try:
        return int(path.name.split(".")[0].split("-")[1])
    except (IndexError, ValueError):
        return None


def _truncate_after(run_dir: Path, step: int) -> None:
    """Drop metric lines and host pictures from steps after ``step`` (a resumed run redoes
    them), so logs never repeat a step number. Checkpoints from after ``step`` belong to an
    abandoned timeline: they move to ``checkpoints/superseded/`` (kept, but never picked by
    ``--resume RUN``)."""
    later = [p for p in (run_dir / "checkpoints").glob("ckpt-*.safetensors")
             if (s := _step_of(p)) is not None and s > step]
    if later:
        aside = run_dir / "checkpoints" / "superseded"
        aside.mkdir(exist_ok=True)
        for path in later:
            os.replace(path, aside / path.name)
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        kept = []
        for line in metrics.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
        _atomic_write(metrics, "".join(f"{line}\n" for line in kept))
    for png in (run_dir / "samples").glob("step-*.png"):
        try:
            if int(png.stem.split("-")[1]) > step:
                png.unlink()
        except (IndexError, ValueError):
            pass
