"""``ganrun --plugin infogan encode RUN --images SRC --out codes.csv``: Q's reading of every image."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from infogan_plugin.generate import (
    check_fits,
    checkpoint_opt,
    device_opt,
    image_bytes,
    load_for_command,
    overwrite_opt,
    run_arg,
)
from infogan_plugin.run import CodeEstimate, InfoGANRun
from registry import atomic_output
from registry.cli.options import POSITIVE, OutputPath, option

PROGRESS_FROM = 2_000  # images; smaller inputs finish before a bar would tell anything


def csv_header(run: InfoGANRun) -> list[str]:
    """``image``, then per code its value (``cN`` or ``cN[j]`` per dimension) and, for a code
    whose Q loss gives probabilities, ``cN_prob``: the probability of the value in ``cN``."""
    header = ["image"]
    for slot in run.spec.slots:
        header += [slot.name] if slot.code.dim == 1 else [f"{slot.name}[{j}]" for j in range(slot.code.dim)]
        if _has_probabilities(run, slot.name):
            header.append(f"{slot.name}_prob")
    return header


def _has_probabilities(run: InfoGANRun, name: str) -> bool:
    import torch

    slot = run.spec.slots[run.spec.index(name)]
    return slot.q_loss.probabilities(torch.zeros(1, slot.q_loss.num_outputs(slot.code))) is not None


def _format(value: float, discrete: bool) -> str:
    return str(int(value)) if discrete else f"{value:.6g}"


def csv_rows(run: InfoGANRun, names: list[str], estimates: dict[str, CodeEstimate]) -> list[list[str]]:
    columns: list[list[str]] = [[name] for name in names]
    for slot in run.spec.slots:
        estimate = estimates[slot.name]
        values = estimate.value.reshape(len(names), -1).cpu().tolist()
        probs = None
        if estimate.probabilities is not None:
            # the probability of the chosen value (a categorical's argmax), one per image
            index = estimate.value.reshape(len(names), -1)[:, :1].long()
            probs = estimate.probabilities.gather(1, index)[:, 0].cpu().tolist()
        for i, row in enumerate(columns):
            row += [_format(v, slot.code.discrete) for v in values[i]]
            if probs is not None:
                row.append(f"{probs[i]:.6f}")
    return columns


@click.command("encode")
@run_arg
@option(
    "--images",
    "source",
    required=True,
    metavar="DIR|IDX|DATASET",
    help="What to encode: a folder of PNG/JPEG files (searched recursively), a folder with "
    "MNIST-style IDX files or an IDX images file, or a registered dataset name (digits, shapes).",
)
@option(
    "--out",
    type=OutputPath("file"),
    required=True,
    help="The CSV file to write: one row per image.",
)
@option(
    "--batch-size",
    type=POSITIVE,
    default=500,
    show_default=True,
    help="Images read and encoded at a time (memory stays flat for any number of images).",
)
@option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help=f"A progress bar on stderr for inputs of {PROGRESS_FROM} images or more.",
)
@checkpoint_opt
@device_opt
@overwrite_opt
@click.pass_context
def encode_command(
    ctx: click.Context,
    run: Path,
    source: str,
    out: Path,
    batch_size: int,
    progress: bool,
    checkpoint: str | None,
    device: str,
    overwrite: bool,
) -> None:
    """Read the codes of images with Q: writes a CSV with one row per image (its file name or
    index, each code's point estimate, and for a categorical code the chosen class's probability).

    \b
    ganrun --plugin infogan encode RUN --images my_digits/ --out codes.csv
    """
    from registry.data import DatasetError

    if out.exists() and not overwrite:
        raise click.BadParameter(
            f"{out} exists; pass --overwrite to replace it, or choose another name", param_hint="--out"
        )
    loaded = load_for_command(ctx, run, checkpoint, device)
    # a batch as read (uint8 counted as float32) and as D's input
    per_image = 2 * image_bytes(loaded)
    check_fits(loaded.device, "--batch-size", batch_size, f"a batch of {batch_size} images", per_image)
    try:
        names, read = loaded.image_source(source)
    except (DatasetError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--images") from None
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(names),
        unit="img",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not progress or len(names) < PROGRESS_FROM,
    )
    try:
        with atomic_output(out, overwrite=overwrite) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(csv_header(loaded))
            for start in range(0, len(names), batch_size):
                stop = min(start + batch_size, len(names))
                try:
                    batch = read(start, stop)
                    estimates = loaded.encode(batch)
                except (DatasetError, ValueError, TypeError) as exc:
                    raise click.BadParameter(str(exc), param_hint="--images") from None
                writer.writerows(csv_rows(loaded, names[start:stop], estimates))
                bar.update(stop - start)
    finally:
        bar.close()
    click.echo(f"{out}: {len(names)} images")
