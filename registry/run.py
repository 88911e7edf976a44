"""A trained run, back in Python: ``load_run("runs/x")`` -> G and D in eval mode, ready to draw.

``load_run`` needs the run folder (or one checkpoint file) and the plugins the run was trained
with, nothing else: G, D and the plugins' modules are rebuilt from the configuration and image
shape the checkpoint records (``registry.train.inference``), with no dataset, no optimizers and
no run lock, so a run keeps working after its training data has moved or on another machine.
Every entry of the checkpoint is still checked as ``--resume`` checks it: a file that
``--resume`` would refuse (truncated, tampered with, from another configuration) is refused
here with the same one-line ``CheckpointError``. The plugins the run was trained with (recorded
in the checkpoint) are activated first, so a plugin's modules and latent sampler come back
with it.

This is the one module of the use-a-run features that reaches into the host's insides
(restoring, dataset helpers); ``registry.cli.export`` and the InfoGAN plugin's ``generate``,
``encode`` and ``explore`` go through ``Run`` and the helpers here.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import nn

from registry import checkpoint as ckpt
from registry.checkpoint.run import choose_checkpoint
from registry.plugins import Host
from registry.run_plugins import loadable, recorded_plugins, require_run_plugins

__all__ = ["Run", "atomic_output", "check_seed", "load_run", "resolve_checkpoint"]

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes any 64-bit value; keep to the signed range
GENERATE_BATCH = 500  # images per G pass in generate(): memory stays flat for any n


def resolve_checkpoint(path: str | os.PathLike[str], checkpoint: str | int | os.PathLike[str] | None = None) -> Path:
    """The checkpoint file ``load_run`` reads.

    ``path`` is a checkpoint file or a run folder; in a folder, ``checkpoint`` picks one: a step
    number (``4`` -> ``checkpoints/ckpt-000000004.safetensors``), a file name in
    ``checkpoints/``, or a path; ``None`` picks the newest usable one, as ``--resume RUN``
    does (a ``warning:`` line on stderr names newer ones it skipped and why). Raises
    ``CheckpointError`` (one line, saying why) when there is none.
    """
    path = Path(path)
    if not path.exists():
        raise ckpt.CheckpointError(f"{path}: no such run folder or checkpoint file")
    if path.is_file():
        if checkpoint is not None:
            raise ckpt.CheckpointError(
                f"{path}: is a checkpoint file already; name a checkpoint only with a run folder"
            )
        return path
    folder = path / "checkpoints"
    if checkpoint is None:  # the newest usable one; a newer one skipped is named on stderr
        return choose_checkpoint(path)
    if isinstance(checkpoint, int) and not isinstance(checkpoint, bool):
        candidate = folder / ckpt.checkpoint_name(checkpoint)
    else:
        candidate = Path(checkpoint)
        if not candidate.is_absolute() and not candidate.exists():
            candidate = folder / candidate
    if not candidate.is_file():
        have = sorted(p.name for p in folder.glob("ckpt-*.safetensors")) if folder.is_dir() else []
        raise ckpt.CheckpointError(f"{path}: no checkpoint {checkpoint!r}; the run has: {', '.join(have) or 'none'}")
    return candidate


def _recorded_plugins(path: Path) -> list[str]:
    """The plugins the checkpoint says its run was trained with (empty for foreign metadata)."""
    meta = ckpt.read_metadata(path)
    try:
        recorded = ckpt.json_entry(path, meta, "run", required=False).get("plugins") or {}
    except (ckpt.CheckpointError, AttributeError):
        return []
    return [name for name in recorded if isinstance(name, str)]


@contextlib.contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Rebuilding a trainer seeds and restores torch's global RNG; the caller's stream is kept."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def load_run(
    path: str | os.PathLike[str],
    checkpoint: str | int | os.PathLike[str] | None = None,
    device: str = "cpu",
    *,
    plugins: Iterable[str] = (),
    command: str = "load_run",
) -> "Run":
    """Load a trained run: its configuration and a checkpoint, validated as ``--resume`` does.

    ``path`` is a run folder or a checkpoint file; ``checkpoint`` is as in
    :func:`resolve_checkpoint`; ``device`` is ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. The
    plugins recorded in the checkpoint are activated, with ``plugins`` besides. Returns a
    :class:`Run` whose modules are in eval mode on ``device`` with gradients off. The run's
    dataset is not read (the image shape comes from the checkpoint), nor are optimizers built
    or the run folder locked.

    Raises ``CheckpointError`` for a missing, damaged or incompatible checkpoint,
    ``PluginError`` when a recorded plugin cannot be loaded (``MissingPluginError``, from
    ``registry.run_plugins``, when one is not installed: ``command`` is the command its message
    tells the user to run again), ``ValueError`` for a bad device. Torch's global random state
    is the same after the call as before.
    """
    from registry.train.inference import restore_for_inference

    file = resolve_checkpoint(path, checkpoint)
    recorded = _recorded_plugins(file)
    names = list(dict.fromkeys([*recorded, *plugins]))
    require_run_plugins(path, loadable(names), command, recorded=recorded_plugins(file))
    host = Host.create(names)
    with _global_rng_kept():
        state = restore_for_inference(file, host, device=device)
    return Run(state, file)


class Run:
    """A trained run in eval mode: ``G``, ``D`` (and any plugin module in ``modules``), the
    configuration, the step and the image shape, with ``generate`` for plain GANs.

    Built from ``state``: what ``registry.train.inference.restore_for_inference`` returns (as
    ``load_run`` does), or a ``Trainer``. Plugins subclass it for their own use
    (``infogan_plugin.InfoGANRun``): build one from another with ``Sub(run.state, run.checkpoint)``.
    """

    def __init__(self, state: Any, checkpoint: Path) -> None:
        self.state = state
        self.checkpoint = Path(checkpoint)
        self.run_dir: Path = state.run_dir
        self.config = state.config
        self.step: int = state.step
        self.device: torch.device = state.device
        self.model_name: str = state.model_name
        self.modules: dict[str, nn.Module] = dict(state.modules)
        self.sampler = state.sampler
        for module in self.modules.values():
            module.eval()
            module.requires_grad_(False)
        shape = getattr(state, "image_shape", None)
        if shape is None:  # a Trainer: the shape of its training data
            shape = state.data.shape[1:]
        c, h, w = (int(v) for v in shape)
        self.image_shape: tuple[int, int, int] = (c, h, w)
        self.plugins: dict[str, str | None] = dict(state.host.plugins)
        self.registries = state.host.registries
        self._trainer = state if hasattr(state, "optimizers") else None

    @property
    def trainer(self) -> Any:
        """A ``Trainer`` restored from the same checkpoint, with the run's dataset and optimizers
        (built on first use, its modules separate from ``modules``; the one ``Run`` was built
        from, if it was built from a trainer). Only what needs the training data should use it:
        raises ``DatasetError`` naming the missing data when the run's dataset cannot be read."""
        if self._trainer is None:
            from registry.data import DatasetError
            from registry.train.trainer import Trainer

            try:
                with _global_rng_kept():
                    self._trainer = Trainer.from_checkpoint(self.checkpoint, self.state.host, device=str(self.device))
            except DatasetError as exc:
                raise DatasetError(
                    f"run.trainer needs the run's dataset {self.config.dataset!r}, which cannot be read: {exc}; "
                    f"G, D and the plugins' modules (run.modules) need no dataset"
                ) from None
        return self._trainer

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.run_dir)!r}, step={self.step}, model={self.model_name!r}, "
            f"image_shape={self.image_shape}, device={str(self.device)!r})"
        )

    @property
    def G(self) -> nn.Module:
        """The generator: ``(B, input_dim)`` -> images ``(B, C, H, W)`` in [-1, 1]."""
        return self.modules["G"]

    @property
    def D(self) -> nn.Module:
        """The discriminator: images in [-1, 1] -> ``(logits (B,), trunk features (B, F))``."""
        return self.modules["D"]

    @property
    def input_dim(self) -> int:
        return int(self.sampler.input_dim)

    def input_layout(self) -> dict[str, Any]:
        """G's input columns: the sampler's ``input_layout()`` where it has one (InfoGAN's codes),
        else ``input_dim`` columns of ``config.noise`` noise."""
        describe = getattr(self.sampler, "input_layout", None)
        if callable(describe):
            return describe()
        return {"input_dim": self.input_dim, "noise_dim": self.input_dim, "noise": self.config.noise, "codes": []}

    # ------------------------------------------------------------------ generating
    def sample_inputs(self, n: int, *, seed: int = 0) -> tuple[torch.Tensor, Any]:
        """``n`` G inputs ``(n, input_dim)`` on the run's device, and the sampler's latent, drawn
        on the CPU from a generator seeded with ``seed`` (so the same seed gives the same
        inputs on every device)."""
        check_count(n)
        gen = torch.Generator().manual_seed(check_seed(seed))
        g_input, latent = self.sampler.sample(n, generator=gen, device="cpu")
        return g_input.to(self.device), latent

    @torch.no_grad()
    def render(self, g_input: torch.Tensor) -> torch.Tensor:
        """G on ``(n, input_dim)`` inputs, in batches: images ``(n, C, H, W)`` float32 in [0, 1]
        on the run's device."""
        if g_input.dim() != 2 or g_input.shape[1] != self.input_dim:
            raise ValueError(f"G input must have shape (n, {self.input_dim}), got {tuple(g_input.shape)}")
        out = [
            self.G(chunk.to(self.device, torch.float32)).float().add_(1.0).div_(2.0).clamp_(0.0, 1.0)
            for chunk in g_input.split(GENERATE_BATCH)
        ]
        return torch.cat(out)

    def generate(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` float32 in [0, 1] on the run's device, every input drawn
        from the prior with ``seed``; the same seed gives the same images."""
        return self.render(self.sample_inputs(n, seed=seed)[0])

    @staticmethod
    def grid_png(images: torch.Tensor, nrow: int) -> bytes:
        """Images ``(n, C, H, W)`` in [0, 1] tiled ``nrow`` to a row, as PNG bytes (for serving)."""
        import io

        from registry.report.images import make_grid, to_pil

        buffer = io.BytesIO()
        to_pil(make_grid(images.detach().cpu() * 2.0 - 1.0, nrow)).save(buffer, format="PNG")
        return buffer.getvalue()

    # ------------------------------------------------------------------ reading images
    def prepare_images(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """User images as D reads them: float32 ``(N, C, H, W)`` in [-1, 1] on the run's device.

        Accepts uint8 ``(N, C, H, W)`` (or ``(N, H, W)`` for a one-channel run) and float
        images in [0, 1] of the same layouts, as a tensor or a NumPy array. Square images of
        another size are resized as the datasets resize (bilinear with antialiasing, on uint8
        pixels, so float images are rounded to 8 bits first). Raises ``TypeError`` for another
        type or dtype and ``ValueError`` for a wrong layout, channel count or value range,
        each naming what was expected.
        """
        from registry.data import resize_uint8

        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor or numpy.ndarray, got {type(images).__name__}")
        c, size, _ = self.image_shape
        if images.dtype != torch.uint8 and not images.dtype.is_floating_point:
            raise TypeError(f"images must be uint8 (0..255) or float (0..1), got dtype {images.dtype}")
        if images.dim() == 3 and c == 1:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] != c:
            layouts = "(N, 1, H, W) or (N, H, W)" if c == 1 else f"(N, {c}, H, W)"
            raise ValueError(f"images must be {layouts} for this {c}-channel run, got shape {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError("images is empty: pass at least one image")
        if images.shape[2] != images.shape[3]:
            raise ValueError(
                f"images must be square like the run's {size}x{size}, got "
                f"{images.shape[2]}x{images.shape[3]}; crop them first"
            )
        if images.dtype.is_floating_point:
            low, high = float(images.min()), float(images.max())
            if not (0.0 <= low and high <= 1.0):  # also refuses NaN
                raise ValueError(
                    f"float images must lie in [0, 1], got values in [{low:g}, {high:g}]; divide 8-bit pixels by 255"
                )
            if images.shape[2] != size:
                images = images.mul(255.0).round_().to(torch.uint8)
        if images.dtype == torch.uint8:
            images = resize_uint8(images.cpu(), size).to(self.device, torch.float32).div_(127.5).sub_(1.0)
            return images
        return images.to(self.device, torch.float32).mul(2.0).sub_(1.0)

    def read_image_files(self, paths: Sequence[str | os.PathLike[str]]) -> torch.Tensor:
        """PNG/JPEG files as uint8 ``(N, C, H, W)`` at the run's size and channel count, read as the
        ``image-folder`` dataset reads them (centre crop to a square, bicubic resize). Raises
        ``DatasetError`` naming an unreadable file."""
        from PIL import Image

        from registry.data import DatasetError, load_image

        c, size, _ = self.image_shape
        mode = "L" if c == 1 else "RGB"
        arrays = []
        for path in paths:
            try:
                arrays.append(load_image(Path(path), mode, size))
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                raise DatasetError(
                    f"{path}: cannot read image ({type(err).__name__}: {err}); fix or remove the file"
                ) from err
        stacked = torch.from_numpy(np.stack(arrays))
        pattern = "n h w -> n 1 h w" if c == 1 else "n h w c -> n c h w"
        return rearrange(stacked, pattern).contiguous()

    def image_source(self, source: str | os.PathLike[str]) -> tuple[list[str], Any]:
        """Images to encode from a command line: a folder of PNG/JPEG files, a folder holding
        MNIST-style IDX files, an IDX images file, or a registered dataset name.

        Returns ``(names, read)``: one name per image (the file's path under the folder, or the
        index) and ``read(start, stop)`` -> uint8 ``(stop - start, C, H, W)``, so a caller can
        go through a large folder in batches. Raises ``DatasetError`` or ``ValueError`` (one line).
        """
        from registry.data import find_idx_images, find_images, read_idx

        c, size, _ = self.image_shape
        path = Path(source)
        if path.is_dir():
            idx = find_idx_images(path)
            if idx is None:
                files = find_images(path)
                if not files:
                    raise ValueError(f"{path}: no PNG/JPEG images and no IDX images file in this folder")
                names = [f.relative_to(path).as_posix() for f in files]
                return names, lambda start, stop: self.read_image_files(files[start:stop])
            path = idx
        if path.is_file():
            array = read_idx(path, expected_ndim=3)  # (N, H, W) uint8
            if c != 1:
                raise ValueError(f"{path}: IDX images have one channel, the run has {c}")
            images = torch.from_numpy(array)
            return [str(i) for i in range(images.shape[0])], lambda start, stop: images[start:stop]
        name = str(source)
        if name in self.registries.datasets:
            dataset = self.registries.datasets.get(name)(data_dir=None, image_size=size)
            if dataset.channels != c:
                raise ValueError(f"dataset {name!r} has {dataset.channels} channel(s), the run has {c}")
            images = dataset.images
            return [str(i) for i in range(images.shape[0])], lambda start, stop: images[start:stop]
        known = ", ".join(self.registries.datasets.names())
        raise ValueError(f"{source}: not a folder, an IDX images file or a dataset name (datasets: {known})")


# ------------------------------------------------------------------------------ validation


def check_seed(seed: Any) -> int:
    """``seed`` if it is an integer in ``0 .. 2**63 - 1``; else ``ValueError`` naming it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed {seed!r} is not allowed: expected an integer in 0..{MAX_SEED}")
    return int(seed)


def check_count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 1:
        raise ValueError(f"n {n!r} is not allowed: expected a positive number of images")
    return int(n)


# ------------------------------------------------------------------------------ outputs


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block ends without an error it
    replaces ``target`` in one ``os.replace``, so nobody ever reads half a file, and on an
    error it is deleted. An existing ``target`` raises ``FileExistsError`` unless
    ``overwrite``; missing parent folders are created."""
    target = Path(target)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; name a file")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it, or choose another name")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
