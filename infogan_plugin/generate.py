"""``ganrun --plugin infogan generate RUN``: images for chosen code values, as a grid, one PNG each
and/or an npz. Also the loading and ``--code NAME=VALUE`` parsing the other use-a-run commands share."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from infogan_plugin.run import CodeValue, InfoGANRun, load_run
from registry import CheckpointError, PluginError, atomic_output
from registry import save_grid
from registry.cli.options import POSITIVE, OutputPath, device_option, option, run_argument

run_arg = run_argument()
device_opt = device_option("Device G, D and Q run on")
checkpoint_opt = option(
    "--checkpoint",
    default=None,
    metavar="STEP|FILE",
    show_default="the newest",
    help="A step number or a checkpoint file of the run.",
)
overwrite_opt = option("--overwrite", is_flag=True, default=False, help="Replace outputs that exist.")


def load_for_command(ctx: click.Context, run: Path, checkpoint: str | None, device: str) -> InfoGANRun:
    """``load_run`` with every failure as a one-line ``Error:`` (the run's recorded plugins
    and those named with --plugin are active)."""
    from registry.data import DatasetError

    chosen: str | int | None = int(checkpoint) if checkpoint is not None and checkpoint.isdigit() else checkpoint
    plugins = ctx.obj.plugin_names if ctx.obj is not None else ()
    try:
        return load_run(run, chosen, device, plugins=plugins, command=ctx.info_name or "load_run")
    except (CheckpointError, PluginError, DatasetError) as exc:
        raise click.ClickException(str(exc)) from None
    except (ValueError, KeyError) as exc:
        raise click.ClickException(f"{run}: cannot rebuild the run ({exc})") from None


def check_fits(device: torch.device, option: str, count: int, what: str, per_item: int) -> None:
    """Refuse, as a usage error naming ``option``, a ``count`` whose ``count * per_item`` bytes
    cannot fit in the memory ``device`` has available (checked before allocating)."""
    from registry.train import memory

    needs = memory.Needs(device)
    needs.add(count * per_item, what, option)
    try:
        needs.check()
    except memory.TooBig as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[1], param_hint=option) from None


def image_bytes(run: InfoGANRun) -> int:
    """Bytes of one float32 image of the run's shape."""
    c, h, w = run.image_shape
    return c * h * w * 4


def parse_code_values(texts: tuple[str, ...], run: InfoGANRun, param_hint: str = "--code") -> dict[str, CodeValue]:
    """``NAME=VALUE`` (VALUE a number, or ``a,b`` for a multi-dimensional code) -> ``{name: value}``,
    checked against the run's codes so a bad one is a usage error naming it."""
    values: dict[str, CodeValue] = {}
    for text in texts:
        name, eq, raw = (part.strip() for part in text.partition("="))
        if not eq or not name or not raw:
            raise click.BadParameter(f"{text!r} is not NAME=VALUE, e.g. c1=3", param_hint=param_hint)
        if name in values:
            raise click.BadParameter(f"code {name!r} is given twice", param_hint=param_hint)
        numbers = []
        for item in raw.split(","):
            try:
                number: float | int = int(item) if item.strip().lstrip("+-").isdigit() else float(item)
            except ValueError:
                raise click.BadParameter(f"{text!r}: {item.strip()!r} is not a number", param_hint=param_hint) from None
            numbers.append(number)
        values[name] = numbers[0] if len(numbers) == 1 else numbers
    try:
        run.code_columns(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None
    return values


def code_values(run: InfoGANRun, g_input: torch.Tensor) -> dict[str, np.ndarray]:
    """Each code's value per image (a categorical's class index), read back from G's input."""
    _, columns = run.spec.split_input(g_input)
    out = {}
    for slot, chunk in zip(run.spec.slots, columns):
        value = slot.code.value_of(chunk)  # (N, dim)
        out[slot.name] = (value[:, 0] if slot.code.dim == 1 else value).cpu().numpy()
    return out


def _targets(out: Path, n: int, individual: bool, npz: bool) -> list[Path]:
    paths = [out / "grid.png"]
    if individual:
        paths += [out / "images" / f"{i:06d}.png" for i in range(n)]
    if npz:
        paths.append(out / "samples.npz")
    return paths


@click.command("generate")
@run_arg
@option("--n", "n", type=POSITIVE, default=64, show_default=True, help="Number of images.")
@option(
    "--code",
    "codes",
    multiple=True,
    metavar="NAME=VALUE",
    help="Fix a code for every image, repeatable: c1=3 (class 3 of a categorical), c2=1.5 (a "
    "continuous code, within its traversal range), c4=0.5,-1 (a 2-dimensional code). "
    "Codes not given are drawn from their priors.",
)
@option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=0,
    show_default=True,
    help="Seed of the noise and of the codes not given: the same seed gives the same images.",
)
@option(
    "--out",
    type=OutputPath("folder"),
    default=None,
    show_default="RUN/generated",
    help="Folder for grid.png (and images/, samples.npz).",
)
@option("--nrow", type=POSITIVE, default=None, show_default="a square grid", help="Images per grid row.")
@option("--individual", is_flag=True, default=False, help="Also write one PNG per image into OUT/images/.")
@option(
    "--npz",
    is_flag=True,
    default=False,
    help="Also write OUT/samples.npz: images (N, C, H, W) float32 in [0, 1], g_input and each code's values.",
)
@checkpoint_opt
@device_opt
@overwrite_opt
@click.pass_context
def generate_command(
    ctx: click.Context,
    run: Path,
    n: int,
    codes: tuple[str, ...],
    seed: int,
    out: Path | None,
    nrow: int | None,
    individual: bool,
    npz: bool,
    checkpoint: str | None,
    device: str,
    overwrite: bool,
) -> None:
    """Generate images from a trained run with chosen code values.

    \b
    ganrun --plugin infogan generate RUN --n 64 --code c1=3 --code c2=1.5 --seed 0 --out DIR
    """
    loaded = load_for_command(ctx, run, checkpoint, device)
    values = parse_code_values(codes, loaded)
    out = out or loaded.run_dir / "generated"
    if out.exists() and not out.is_dir():
        raise click.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
    existing = [p for p in _targets(out, n, individual, npz) if p.exists()]
    if existing and not overwrite:
        raise click.BadParameter(
            f"{existing[0]} exists; pass --overwrite to replace it, or choose another --out", param_hint="--out"
        )
    # the images three times (float32 on the device, on the host, in [-1, 1]) and G's input
    per_image = 3 * image_bytes(loaded) + 4 * loaded.spec.input_dim
    check_fits(loaded.device, "--n", n, f"{n} generated images", per_image)
    g_input = loaded.inputs(n, codes=values, seed=seed)
    images = loaded.render(g_input).cpu()  # (n, C, H, W) in [0, 1]
    signed = images * 2.0 - 1.0  # save_grid reads [-1, 1]
    written = [save_grid(signed, out / "grid.png", nrow=nrow or math.ceil(math.sqrt(n)))]
    if individual:
        for i in range(n):
            save_grid(signed[i : i + 1], out / "images" / f"{i:06d}.png", nrow=1, padding=0)
        written.append(out / "images")
    if npz:
        arrays: dict[str, Any] = {"images": images.numpy(), "g_input": g_input.cpu().numpy()}
        arrays.update({f"code_{name}": value for name, value in code_values(loaded, g_input).items()})
        with atomic_output(out / "samples.npz", overwrite=True) as tmp:
            np.savez(tmp, **arrays)
        written.append(out / "samples.npz")
    for path in written:
        click.echo(str(path))
