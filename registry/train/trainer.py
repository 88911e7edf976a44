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
from registry.data import DatasetError, ImageDataset, to_training_tensor
from registry.plugins import Host
from registry.report.images import save_grid
from registry.train import distributed, memory
from registry.train.balance import BalanceWatch, balance_hint
from registry.train.device import resolve_device
from registry.train.networks import (
    build_networks,
    build_plugin_modules,
    make_optimizers,
    make_sampler,
    model_name_for,
)
from registry.train.rng import EpochSampler, seed_for, step_seed
from registry.train.step import DivergenceError, StepMixin

SAMPLE_GRID = 64  # pictures show an 8x8 grid from a fixed latent batch


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a checkpoint was written before stopping."""

    def __init__(self, signum: int, step: int, path: Path | None):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")


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
        if dataset is None and config.image_size is not None:  # before the loader resizes anything
            _batch_needs(memory.Needs(self.device), config, 1, config.image_size).check()
        self.dataset = dataset or reg.datasets.get(config.dataset)(
            data_dir=config.data_dir, image_size=config.image_size
        )
        if len(self.dataset) == 0:  # no batch size fits: the data is what is missing
            raise DatasetError(
                f"dataset {config.dataset!r} holds no images"
                + (f" (read from {config.data_dir})" if config.data_dir else "")
                + "; check the data (a folder of images, IDX files with N > 0) and the --data-dir path"
            )
        if config.batch_size * self.dist.world_size > len(self.dataset):
            raise ValueError(
                f"--batch-size {config.batch_size} x {self.dist.world_size} process(es) exceeds the "
                f"{len(self.dataset)} images of dataset {config.dataset!r}; use a smaller batch"
            )
        needs = _batch_needs(memory.Needs(self.device), config, self.dataset.channels, self.dataset.image_size)
        stored = getattr(self.dataset, "images", None)
        if torch.is_tensor(stored):
            needs.add(
                stored.numel() * memory.FLOAT,
                f"the {len(self.dataset)} training images as float32",
                "--image-size" if config.image_size is not None else "--dataset",
            )
        needs.check()
        self.data = to_training_tensor(self.dataset, self.device)  # (N, C, H, W) in [-1, 1]
        self.batches = EpochSampler(
            len(self.dataset), config.batch_size, seed=config.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )

        self.sampler = make_sampler(config, host)
        self.model_name = model_name_for(config, self.dataset.image_size)
        self._model_needs(needs, reg.models.get(self.model_name)).check()
        self.memory_needs = needs  # the lower bounds just checked; a sweep sizes its parallelism by them
        networks = build_networks(
            config,
            host,
            self.sampler,
            channels=self.dataset.channels,
            image_size=self.dataset.image_size,
            device=self.device,
        )
        self.modules: dict[str, nn.Module] = networks.modules
        self.groups: dict[str, list[str]] = networks.groups
        self.optimizers = make_optimizers(config, networks)
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
        self._peaks: dict[str, torch.Tensor] = {}  # largest |loss term| since the last check
        self._checked_step = 0
        self._stop_signal: int | None = None
        self._stepping = False  # inside train_step: self.step counts the steps before this one
        self._muted = False
        self.balance = BalanceWatch(hint=balance_hint(config))
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ building
    def _model_needs(self, needs: memory.Needs, factory: Callable) -> memory.Needs:
        """Add the generator input and every module's weights (with gradients and Adam's
        moments) to ``needs``, sized by building the modules on the meta device (no memory,
        no random draws that count: the real build reseeds)."""
        config, width = self.config, self.sampler.input_dim
        width_options = memory.input_width_options(config.noise_dim, width)
        needs.add(config.batch_size * width * memory.FLOAT * 2, f"the generator input ({width} wide)", *width_options)
        sizes: dict[int, tuple[str, ...]] = {width: width_options, width - config.noise_dim: ("--code",)}
        sizes[config.noise_dim] = ("--noise-dim",)
        if config.image_size is not None:
            sizes.setdefault(config.image_size, ("--image-size",))
        for key, value in config.extra.items():
            if isinstance(value, int) and not isinstance(value, bool) and value > 1:
                sizes.setdefault(value, (f"--{key.replace('_', '-')}",))
        try:
            with torch.device("meta"):
                G, D = factory(latent_dim=width, channels=self.dataset.channels, image_size=self.dataset.image_size)
                built = {"G": G, "D": D}
                for extra in build_plugin_modules(self.host, config, dict(built), self.sampler):
                    built.update({name: module for name, (module, _) in (extra or {}).items()})
        except Exception:  # noqa: BLE001 - a factory that cannot build on meta is sized when really built
            return needs
        for name, module in built.items():
            count = memory.parameter_bytes(module) // memory.FLOAT
            needs.add(
                memory.parameter_bytes(module) * memory.TRAINED,
                f"module {name}'s {count:,} weights with their gradients and Adam's moments",
                *memory.module_options(name, module, sizes),
            )
        return needs

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
            self._checked_step = self.step
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
        """Stop a diverged run before anything of it is logged or saved: a loss that became NaN
        or Inf, a loss term whose magnitude passed ``--max-loss`` on any step since the last
        check, weights or buffers that hold NaN/Inf or passed the bound, optimizer state that
        holds NaN/Inf. Runs at every log line, before every save and before every picture: one device sync (and one
        all-reduce under torchrun, so every rank stops together)."""
        bound = self.config.max_loss
        names = list(self._peaks)
        state_names, state_flags = self._state_flags(bound)
        flags = torch.stack(
            [(~self._finite).float(), *(self._peaks[n].to(self.device) for n in names), *state_flags]
        ).nan_to_num(nan=math.inf)
        flags = distributed.all_max(self.dist, flags).tolist()
        first = self._checked_step + 1
        when = f"at step {self.step}" if first >= self.step else f"between steps {first} and {self.step}"
        if flags[0]:
            raise DivergenceError(
                f"a loss became NaN or Inf {when}; {self.last_good_checkpoint_text()}. {self._divergence_advice(False)}"
            )
        peaks = dict(zip(names, flags[1 : 1 + len(names)]))
        over = {name: value for name, value in peaks.items() if bound > 0 and value > bound}
        if over:
            worst = max(over, key=over.__getitem__)
            raise DivergenceError(
                f"loss term {worst} reached {over[worst]:.3g} {when}, above --max-loss {bound:g}: the run "
                f"diverged; {self.last_good_checkpoint_text()}. {self._divergence_advice(True)}"
            )
        bad = [(name, kind) for (name, kind), flag in zip(state_names, flags[1 + len(names) :]) if flag]
        if bad:
            non_finite = [name for name, kind in bad if kind == "non-finite"]
            grown = [name for name, kind in bad if kind == "exploded" and name not in non_finite]
            what = f"{', '.join(non_finite)} became NaN or Inf" if non_finite else ""
            if grown:
                what += ("; " if what else "") + f"{', '.join(grown)} grew past --max-loss {bound:g} in magnitude"
            advice = self._divergence_advice(bool(grown))
            raise DivergenceError(f"{what} at step {self.step}; {self.last_good_checkpoint_text()}. {advice}")
        self._peaks = {}
        self._checked_step = self.step

    @staticmethod
    def _divergence_advice(bound: bool) -> str:
        """What to do about a diverged run, truthfully: a resume replays the same steps with
        the same settings (learning rates, seed and loss weights cannot change on resume)."""
        text = (
            "Lower the learning rates (--lr-d, --lr-g) or the loss weights and train again (--overwrite or a new --out)"
        )
        return text + ("; --max-loss 0 turns the magnitude bound off" if bound else "")

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
        """Write the fixed-latent sample grid and let plugins add their pictures, after the
        divergence check (on every rank: it is collective) unless this step was checked already
        by its log line, so no picture is ever drawn from a diverged model."""
        if getattr(self, "_checked_step", None) != self.step:
            self._check_finite()
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


def _batch_needs(needs: memory.Needs, config: TrainConfig, channels: int, size: int) -> memory.Needs:
    """A step's real and generated batches (float32) and the gradient of the generated one."""
    options = ("--batch-size", "--image-size") if config.image_size is not None else ("--batch-size",)
    shape = f"{channels}x{size}x{size}"
    needs.add(
        config.batch_size * channels * size * size * memory.FLOAT * 3,
        f"a batch of {config.batch_size} images of {shape}",
        *options,
    )
    return needs


def _warn(text: str) -> None:
    """One line on stderr that does not tear the progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(f"warning: {text}", file=sys.stderr)
