"""The generic GAN trainer: builds a run from a config and the active plugins (data,
generator input, G and D and the plugins' modules, Adam optimizers, data-parallel
wrappers), then loops: one step (``registry.train.step``), metrics, sample pictures,
checkpoints (``registry.checkpoint.run``) and a graceful stop on SIGINT/SIGTERM. It knows
nothing about any particular plugin.

The loop never reads a tensor back to the host on an ordinary step: metrics are summed on
the device and read once per ``log_every`` steps.
"""

from __future__ import annotations

import gc
import math
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from registry import runfiles
from registry.checkpoint.atomic import atomic_write
from registry.checkpoint.run import RunPersistence
from registry.config import TrainConfig
from registry.cpu import allocator as perf
from registry.data import ImageDataset, to_training_tensor
from registry.plugins import Host, IsolatedHooks
from registry.report.images import save_grid
from registry.nets.spectral import apply_spectral_norm
from registry.train import distributed
from registry.train.balance import BalanceWatch, balance_hint
from registry.train.noise import NoiseSampler
from registry.train.rng import EpochSampler, seed_for, step_seed
from registry.train.step import DivergenceError, StepMixin

SAMPLE_GRID = 64  # pictures show an 8x8 grid from a fixed latent batch


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a checkpoint was written before stopping."""

    def __init__(self, signum: int, step: int, path: Path | None):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")


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


def _make_adam(params: list[nn.Parameter], lr: float, betas: tuple[float, float]):
    """Adam with the fused kernel where available (one kernel for all tensors), else foreach."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


class Trainer(StepMixin, RunPersistence):
    """Builds everything a run needs from a config and the active plugins, then trains."""

    def __init__(
        self,
        config: TrainConfig,
        host: Host,
        run_dir: Path,
        dist: distributed.DistInfo | None = None,
        dataset: ImageDataset | None = None,
    ):
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
            data_dir=config.data_dir, image_size=config.image_size
        )
        if config.batch_size * self.dist.world_size > len(self.dataset):
            raise ValueError(
                f"--batch-size {config.batch_size} x {self.dist.world_size} process(es) exceeds the "
                f"{len(self.dataset)} images of dataset {config.dataset!r}; use a smaller batch"
            )
        self.data = to_training_tensor(self.dataset, self.device)  # (N, C, H, W) in [-1, 1]
        self.batches = EpochSampler(
            len(self.dataset), config.batch_size, seed=config.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )

        self.sampler = host.hook.ganrun_latent_sampler(config=config, registries=reg) or NoiseSampler(
            config.noise_dim, config.noise
        )
        self.model_name = config.model or ("dcgan28" if self.dataset.image_size == 28 else "dcgan64")
        factory = reg.models.get(self.model_name)
        torch.manual_seed(seed_for(config.seed, "init"))  # identical init on every rank
        G, D = factory(
            latent_dim=self.sampler.input_dim, channels=self.dataset.channels, image_size=self.dataset.image_size
        )
        self.modules: dict[str, nn.Module] = {"G": G, "D": D}
        self.groups: dict[str, list[str]] = {"G": ["G"], "D": ["D"]}
        for extra in _build_plugin_modules(host, config, dict(self.modules), self.sampler):
            for name, (module, group) in (extra or {}).items():
                if name in self.modules:
                    raise ValueError(f"two plugins build a module named {name!r}")
                if group not in self.groups:
                    raise ValueError(f"module {name!r}: optimizer group must be 'D' or 'G', got {group!r}")
                self.modules[name] = module
                self.groups[group].append(name)
        if config.spectral_norm:
            for name in self.groups["D"]:
                apply_spectral_norm(self.modules[name])
        for module in self.modules.values():
            module.to(self.device)
        self.optimizers = {
            "G": _make_adam(self._params("G"), config.lr_g, (config.beta1, config.beta2)),
            "D": _make_adam(self._params("D"), config.lr_d, (config.beta1, config.beta2)),
        }
        self._base_lr = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.optimizers.items()}
        self.gan_loss = reg.gan_losses.get(config.gan_loss)
        self._build_callables()

        self.latent_gen = torch.Generator(device=self.device).manual_seed(
            seed_for(config.seed, "latent", self.dist.rank)
        )
        fixed_gen = torch.Generator(device=self.device).manual_seed(seed_for(config.seed, "fixed"))
        self.fixed_input, _ = self.sampler.sample(SAMPLE_GRID, generator=fixed_gen, device=self.device)

        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        self._stop_signal: int | None = None
        self._stepping = False  # inside train_step: self.step counts the steps before this one
        self._muted = False
        self.balance = BalanceWatch(hint=balance_hint(config))
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
        seed = step_seed(self.config.seed, stream, self.dist.rank, self.step)
        return torch.Generator(device=self.device).manual_seed(seed)

    def release_distributed(self) -> None:
        """Drop the DistributedDataParallel wrappers (each holds the process group), so leaving
        the group tears gloo/NCCL down at once rather than in the interpreter's final cleanup."""
        if not self.dist.enabled:
            return
        self.d_phase = {n: self.modules[n] for n in self.groups["D"]}
        self.g_phase = dict(self.modules)
        self.generator = self.modules["G"]
        gc.collect()

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Path | None:
        """Train until ``config.steps``; return the last checkpoint written."""
        cfg, main = self.config, self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_dir / "config.json", runfiles.dumps(self.describe(), indent=2, sort_keys=True))
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
                self._stepping = True
                self.train_step()
                self.step += 1
                self._stepping = False
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

    @property
    def current_step(self) -> int:
        """The step being worked on: the one in progress inside ``train_step``, else the last one
        completed (its logging, pictures and checkpoint come after the step itself)."""
        return self.step + 1 if self._stepping else self.step

    def _on_signal(self, signum, frame) -> None:
        if self._stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum

    def _check_finite(self) -> None:
        if not bool(self._finite):
            raise DivergenceError(
                f"a loss became NaN or Inf before step {self.step}; {self.last_good_checkpoint_text()}. "
                f"Try a lower learning rate, or resume from that checkpoint with another seed"
            )

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
        warning = self.balance.update(self.step, metrics)
        if warning and self.dist.is_main:
            _warn(warning)
        postfix = {"D": f"{metrics.get('d/adv', math.nan):.3f}", "G": f"{metrics.get('g/adv', math.nan):.3f}"}
        for extra in self.host.checked("ganrun_log", trainer=self, step=self.step, metrics=metrics):
            postfix.update(extra)
        if self.dist.is_main:
            row, _ = runfiles.finite_json({"step": self.step, **{k: round(v, 6) for k, v in metrics.items()}})
            line = runfiles.dumps(row)
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


def _build_plugin_modules(host: Host, config: TrainConfig, models: dict[str, nn.Module], sampler) -> list:
    """``ganrun_build_modules`` of each plugin in turn (pluggy's call order), each under the
    global RNG seeded from the run seed and that plugin's name, and the RNG restored after:
    a plugin's initialisation is a function of the seed and its own name alone, so adding,
    removing or reordering another plugin never shifts it."""
    impls = list(reversed(host.pm.hook.ganrun_build_modules.get_hookimpls()))
    results = []
    for impl in impls:
        others = [other.plugin for other in impls if other is not impl]
        call = IsolatedHooks.wrap(
            host.pm.subset_hook_caller("ganrun_build_modules", remove_plugins=others), "ganrun_build_modules"
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(config.seed, f"build:{impl.plugin_name}", 0, 0))
            results.extend(call(config=config, models=models, sampler=sampler))
    return results


def _warn(text: str) -> None:
    """One line on stderr that does not tear the progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(f"warning: {text}", file=sys.stderr)
