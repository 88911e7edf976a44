"""The generic GAN trainer: builds a run from a config and the active plugins (data,
generator input, G and D and the plugins' modules, Adam optimizers, data-parallel
wrappers), then loops: one step, metrics, sample pictures, checkpoints and a graceful stop on
SIGINT/SIGTERM. It knows nothing about any particular plugin.

``Trainer`` owns what it builds and hands the parts to its collaborators, each with a narrow
job: ``stepper`` (``registry.train.step.TrainStep``: one D and G update), ``metrics``
(``registry.train.metrics.MetricAccumulator``: sums and loss peaks on the device),
``check_divergence`` (``registry.train.divergence.DivergenceCheck``), ``persistence``
(``registry.train.persistence.RunPersistence``: the run folder's checkpoints) and ``balance``
(``registry.train.balance.BalanceWatch``).

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
from typing import Any, Callable

import torch
from torch import nn

from registry import runfiles
from registry.checkpoint.atomic import atomic_write
from registry.checkpoint import read_checkpoint
from registry.checkpoint.run import choose_checkpoint, run_dir_of, saved_config
from registry.config import TrainConfig
from registry.cpu import allocator as perf
from registry.data import DatasetError, ImageDataset, to_training_tensor, uint8_to_float
from registry.plugins import Host
from registry.report.images import save_grid
from registry.train import distributed, memory, persistence
from registry.train.balance import BalanceWatch, balance_hint
from registry.train.device import resolve_device
from registry.train.networks import (
    build_networks,
    build_plugin_modules,
    make_optimizers,
    make_sampler,
    model_name_for,
)
from registry.errors import DivergenceError  # noqa: F401 - re-exported by registry.train
from registry.train.rng import EpochSampler, seed_for, step_seed
from registry.train.divergence import DivergenceCheck
from registry.train.metrics import MetricAccumulator
from registry.train.persistence import RunPersistence
from registry.train.step import Phases, TrainStep, lr_factor

SAMPLE_GRID = 64  # pictures show an 8x8 grid from a fixed latent batch


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a checkpoint was written before stopping."""

    def __init__(self, signum: int, step: int, path: Path | None):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")


class Trainer:
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
        self.gan_loss = reg.gan_losses.get(config.gan_loss)
        self.phases = self._build_phases()

        self.latent_gen = torch.Generator(device=self.device).manual_seed(
            seed_for(config.seed, "latent", self.dist.rank)
        )
        fixed_gen = torch.Generator(device=self.device).manual_seed(seed_for(config.seed, "fixed"))
        self.fixed_input, _ = self.sampler.sample(SAMPLE_GRID, generator=fixed_gen, device=self.device)

        # the collaborators, each handed the parts it needs
        self.metrics = MetricAccumulator(self.device)
        self.stepper = TrainStep(
            config=config,
            host=host,
            modules=self.modules,
            groups=self.groups,
            phases=self.phases,
            optimizers=self.optimizers,
            sampler=self.sampler,
            latent_gen=self.latent_gen,
            gan_loss=self.gan_loss,
            metrics=self.metrics,
            device=self.device,
            amp=self.amp,
        )
        self.persistence = RunPersistence(self.run_dir, self.dist, config.keep_checkpoints)
        self.check_divergence = DivergenceCheck(
            config=config,
            dist=self.dist,
            device=self.device,
            modules=self.modules,
            optimizers=self.optimizers,
            metrics=self.metrics,
            last_good=self.persistence.last_good_checkpoint_text,
        )
        self.balance = BalanceWatch(hint=balance_hint(config))
        self._stop_signal: int | None = None
        self._stepping = False  # inside train_step: self.step counts the steps before this one
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

    def _build_phases(self) -> Phases:
        """Per-phase callables (see ``Phases``), wrapped for data parallelism under torchrun and
        compiled with ``--compile``."""
        wrap: Callable[[nn.Module], Callable] = lambda m: m
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrap = lambda m: DDP(m, device_ids=ids) if any(p.requires_grad for p in m.parameters()) else m
        comp: Callable[[Callable], Callable] = torch.compile if self.config.compile else (lambda m: m)
        d_phase = {n: comp(wrap(self.modules[n])) for n in self.groups["D"]}
        g_phase = {n: comp(self.modules[n]) for n in self.groups["D"]}
        generator = comp(wrap(self.modules["G"]))
        g_phase.update({n: comp(wrap(self.modules[n])) for n in self.groups["G"] if n != "G"})
        g_phase["G"] = generator
        return Phases(d=d_phase, g=g_phase, generator=generator)

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
        self.phases.d = {n: self.modules[n] for n in self.groups["D"]}
        self.phases.g = dict(self.modules)
        self.phases.generator = self.modules["G"]
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
            self.check_divergence.checked_step = self.step
            while self.step < cfg.steps:
                self._stepping = True
                self.train_step()
                self.step += 1
                self._stepping = False
                self.host.run("ganrun_step_end", trainer=self, step=self.step)
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

    def _log(self) -> dict[str, str]:
        """Read the summed metrics back once, write a JSONL line, return progress-bar text."""
        self.check_divergence(self.step)
        metrics = self.metrics.take()
        now = time.perf_counter()
        metrics["steps_per_sec"] = (self.step - self._t_step) / max(now - self._t0, 1e-9)
        if self.config.lr_decay > 0:
            metrics["lr_factor"] = self.lr_factor(self.step - 1)  # of the last step taken
        self._t0, self._t_step = now, self.step
        self.last_metrics = metrics
        warning = self.balance.update(self.step, metrics)
        if warning and self.dist.is_main:
            _warn(warning)
        postfix = {"D": f"{metrics.get('d/adv', math.nan):.3f}", "G": f"{metrics.get('g/adv', math.nan):.3f}"}
        for extra in self.host.run("ganrun_log", trainer=self, step=self.step, metrics=metrics):
            postfix.update(extra)
        if self.dist.is_main:
            row, _ = runfiles.finite_json({"step": self.step, **{k: round(v, 6) for k, v in metrics.items()}})
            line = runfiles.dumps(row)
            with open(self.run_dir / "metrics.jsonl", "a") as fh:
                fh.write(line + "\n")
        return postfix

    # ------------------------------------------------------------------ one step
    def train_step(self) -> None:
        """One D and G update (``stepper``) on this step's real batch."""
        if self.config.lr_decay > 0:
            self.stepper.apply_lr(self.step)
        self.stepper(self.step, self.real_batch(), self)

    def real_batch(self) -> torch.Tensor:
        """This step's real images ``(B, C, H, W)`` in [-1, 1] on the device: freshly drawn
        for a dataset that draws its batches (a pure function of seed, rank and step, so a
        resumed run draws the same ones), else the epoch sampler's slice of the stored set."""
        if self.dataset.draw is not None:
            images = self.dataset.draw(self.config.batch_size, self.step_generator("data"), self.device)
            return uint8_to_float(images, self.device)
        idx = self.batches.indices(self.step).to(self.device, non_blocking=True)
        return self.data.index_select(0, idx)

    def log_metric(self, name: str, value: torch.Tensor) -> None:
        """Average ``value`` over the steps between log lines (no host sync)."""
        self.metrics.log(name, value)

    def lr_factor(self, step: int | None = None) -> float:
        """The learning-rate multiplier for a step (default: the next one); see ``step.lr_factor``."""
        return lr_factor(self.config, self.step if step is None else step)

    # ------------------------------------------------------------------ checkpoints
    def describe(self) -> dict[str, Any]:
        """The effective configuration and what was resolved from it."""
        return persistence.describe(self)

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Everything a checkpoint holds now: tensors and string metadata."""
        return persistence.state_tensors(self)

    def plugin_state(self) -> dict[str, torch.Tensor]:
        """What the active plugins' ``ganrun_checkpoint_state`` returns now, merged (keys without
        the ``plugin.`` prefix); a key two plugins both use is a ValueError."""
        return persistence.collect_plugin_state(self.host, self)

    def last_good_checkpoint_text(self) -> str:
        """Where a stopped run can continue from, truthfully: the newest complete checkpoint of
        this run's timeline, or that none was written."""
        return self.persistence.last_good_checkpoint_text(self.step)

    def save(self) -> Path | None:
        """Write ``checkpoints/ckpt-<step>.safetensors`` atomically (rank 0); refuse to save
        NaN/Inf (weights, buffers, optimizer state) or exploded values (``--max-loss``) so a
        poisoned checkpoint never replaces a good one. A failed write (disk full) is a one-line
        CheckpointError saying the previous checkpoint is intact."""
        self.check_divergence(self.step)
        tensors, meta = self.state_tensors()
        return self.persistence.write(self.step, tensors, meta)

    def restore(self, path: Path, *, loaded: tuple[dict, dict] | None = None, truncate_logs: bool = True) -> None:
        """Continue exactly from a checkpoint: weights, optimizers, RNGs, step, plugin state.

        Everything the checkpoint carries is checked before the run folder is touched: the
        logs are set aside only once every entry has loaded."""
        persistence.restore(self, path, loaded=loaded, truncate_logs=truncate_logs)

    def restart_from_zero(self) -> None:
        """Start a run folder's run again from step 0 (``--auto-resume`` of a run that died before
        its first checkpoint): what the dead attempt logged and drew is set aside."""
        self.persistence.set_aside_after(0)

    @classmethod
    def from_checkpoint(cls, path: Path, host: Host, *, device: str | None = None) -> "Trainer":
        """A trainer restored from a checkpoint file or a run folder's newest one, for
        evaluation and pictures (the run's logs are left untouched)."""
        path = choose_checkpoint(Path(path))
        tensors, meta = read_checkpoint(path)
        config = saved_config(path, meta)
        if device is not None:
            config.device = device
        trainer = cls(config, host, run_dir_of(path))
        trainer.restore(path, loaded=(tensors, meta), truncate_logs=False)
        return trainer

    @torch.no_grad()
    def sample(self) -> None:
        """Write the fixed-latent sample grid and let plugins add their pictures, after the
        divergence check (on every rank: it is collective) unless this step was checked already
        by its log line, so no picture is ever drawn from a diverged model."""
        if self.check_divergence.checked_step != self.step:
            self.check_divergence(self.step)
        if not self.dist.is_main:
            return
        training = {n: m.training for n, m in self.modules.items()}
        for m in self.modules.values():
            m.eval()
        try:
            with self.stepper.autocast():
                images = self.modules["G"](self.fixed_input).float()
            save_grid(images, self.run_dir / "samples" / f"step-{self.step:09d}.png", nrow=8)
            self.host.run("ganrun_sample", trainer=self, step=self.step, run_dir=self.run_dir)
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
