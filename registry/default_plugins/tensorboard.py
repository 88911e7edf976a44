"""TensorBoard logging, a built-in plugin that is off until ``--tensorboard`` (or
``tensorboard = true`` in the TOML config) turns it on; it needs the optional extra
``tensorboard`` (``pip install 'ganrun[tensorboard]'``).

On rank 0 it writes ``RUN/tensorboard/``: every metric of each log step as a scalar, and
every picture written for a sample step (``samples/step-XXXXXXXXX.png`` and each plugin's
``RUN/<folder>/<name>-step-XXXXXXXXX.png``, e.g. InfoGAN's traversals) as an image tagged
``<folder>/<name>``. Events are flushed at each log and sample step, so a crash loses
nothing already logged; a resumed run purges the events written after its checkpoint.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import click

from registry.plugins import hookimpl

OPTION = "tensorboard"
EXTRA_HINT = "pip install 'ganrun[tensorboard]'"
FOLDER = "tensorboard"

# Per trainer: the first step this process trained (to tell a resumed run) and its writer.
_first_step: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_writers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _summary_writer_class() -> type:
    import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it; checked by name first)
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


@hookimpl
def ganrun_train_options():
    return [
        click.Option(
            [f"--{OPTION}/--no-{OPTION}", OPTION],
            default=None,
            help=f"Also log metrics and sample pictures for TensorBoard, in RUN/{FOLDER}/ "
            f"(needs {EXTRA_HINT}). May be switched on or off on resume.",
            show_default="off",
        ),
    ]


@hookimpl
def ganrun_resume_mutable_options():
    return [OPTION]  # logging only: may be switched on or off when a run resumes


@hookimpl
def ganrun_config_defaults():
    return {OPTION: False}


@hookimpl
def ganrun_configure(config):
    value = config.extra.get(OPTION)
    if value is None:
        return
    if not isinstance(value, bool):
        raise click.BadParameter(f"must be true or false, got {value!r}", param_hint=f"--{OPTION}")
    if value:
        try:
            _summary_writer_class()
        except ImportError as exc:
            raise click.BadParameter(
                f"TensorBoard logging needs the tensorboard package ({exc}): {EXTRA_HINT}", param_hint=f"--{OPTION}"
            ) from None


def writer(trainer: Any) -> Any | None:
    """The trainer's ``SummaryWriter`` (created on first use), or ``None`` when TensorBoard
    logging is off or this is not rank 0."""
    if not trainer.config.extra.get(OPTION) or not trainer.dist.is_main:
        return None
    found = _writers.get(trainer)
    if found is None:
        first = _first_step.get(trainer)
        # A resumed run redoes the steps after its checkpoint: events from those steps (left
        # by the run that stopped) are dropped, as the host drops their metrics.jsonl lines.
        purge = first if first is not None and first > 1 else None
        found = _summary_writer_class()(log_dir=str(Path(trainer.run_dir) / FOLDER), purge_step=purge)
        _writers[trainer] = found
        weakref.finalize(trainer, found.close)  # also runs at interpreter exit
    return found


@hookimpl
def ganrun_step_end(trainer, step):
    if trainer not in _first_step:
        _first_step[trainer] = step


@hookimpl(trylast=True)  # after the plugins that add derived metrics
def ganrun_log(trainer, step, metrics):
    out = writer(trainer)
    if out is not None:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.add_scalar(name, value, global_step=step)
        out.flush()
    return None


def step_pictures(run_dir: Path, step: int) -> dict[str, Path]:
    """``{tag: path}`` of the PNGs written for ``step``: the host's sample grid (tag
    ``samples``) and every ``RUN/<folder>/<name>-step-XXXXXXXXX.png`` (tag ``<folder>/<name>``)."""
    run_dir = Path(run_dir)
    suffix = f"step-{step:09d}.png"
    found = {}
    grid = run_dir / "samples" / suffix
    if grid.is_file():
        found["samples"] = grid
    for path in sorted(run_dir.glob(f"*/*-{suffix}")):
        if path.is_file():
            found[f"{path.parent.name}/{path.name[: -len(suffix) - 1]}"] = path
    return found


@hookimpl(trylast=True)  # after the plugins that write pictures for this step
def ganrun_sample(trainer, step, run_dir):
    out = writer(trainer)
    if out is None:
        return
    import numpy as np
    from PIL import Image

    for tag, path in step_pictures(run_dir, step).items():
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        out.add_image(tag, pixels, global_step=step, dataformats="HWC")
    out.flush()
