"""Make the README's picture from a run on the digits (the README's is the digits recipe,
``--config examples/configs/mnist_digits.toml``, seed 3; any run with a categorical code works).

    python docs/make_figure.py RUN [--out docs/images/digits-recipe.png] [--rows 8] [--sample-columns 4]
                                   [--scale 2] [--seed 0]

Left: the categorical code's traversal, one column per code value. Each row is one draw of the
noise and of the other codes, the same draw in every column, so along a row only the code
changes. On a run trained on the built-in digits the columns are ordered by the digit Q reads
most often for each value on the 10,000 labelled digits (two values that hold the same digit sit
side by side); elsewhere they keep the code's order. Right: samples from the prior, ``rows``
high and ``sample-columns`` wide. Both are upscaled with nearest-neighbour (no smoothing that
would hide what G draws) and saved as one small 8-bit PNG; the defaults give 864 px across, so
GitHub shows it at its own size rather than shrinking (and smoothing) it. The script prints the
Markdown lines for the README.

Everything comes through the public ``infogan_plugin.load_run``: the newest checkpoint, on the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from PIL import Image

from infogan_plugin import Categorical, InfoGANRun, load_run
from registry import atomic_write, make_grid

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "images" / "digits-recipe.png"
GAP = 8  # pixels between the traversal and the samples, before upscaling


def categorical_code(run: InfoGANRun, name: str | None) -> str:
    """The code to traverse: ``name``, or the run's first categorical code."""
    categorical = [slot.name for slot in run.spec.slots if isinstance(slot.code, Categorical)]
    if name is None:
        if not categorical:
            raise ValueError(f"the run has no categorical code (its codes: {', '.join(run.code_names)})")
        return categorical[0]
    if name not in categorical:
        raise ValueError(f"{name!r} is not a categorical code of the run (categorical: {', '.join(categorical)})")
    return name


@torch.no_grad()
def column_order(run: InfoGANRun, code: str) -> list[int]:
    """The code's values, ordered by the digit Q reads most often for each (values Q never
    picks go last); the code's own order unless the run trained on the built-in digits."""
    k = run.spec.slots[run.spec.index(code)].code.k
    if run.config.dataset != "digits":
        return list(range(k))
    from registry.data import load_digits

    digits = load_digits()
    values = run.encode(digits.images)[code].value.long().cpu()  # (N,) class index per image
    labels = digits.labels.long().cpu()
    majority = {}
    for value in range(k):
        read = labels[values == value]
        majority[value] = int(read.mode().values) if len(read) else len(labels)  # unused values last
    return sorted(range(k), key=lambda value: (majority[value], value))


@torch.no_grad()
def make_figure(
    run: InfoGANRun, code: str, order: list[int], *, rows: int, sample_columns: int, seed: int, scale: int
) -> Image.Image:
    """The traversal of ``code`` (``rows`` x values, columns in ``order``) beside ``rows`` x
    ``sample_columns`` samples, upscaled ``scale`` times."""
    columns = [run.generate(rows, codes={code: value}, seed=seed) for value in order]  # each (rows, C, H, W)
    traversal = torch.stack(columns, dim=1).flatten(0, 1)  # (rows * values, C, H, W), row-major
    samples = run.generate(rows * sample_columns, seed=seed + 1)
    left = _picture(make_grid(traversal * 2 - 1, nrow=len(order)))  # make_grid takes [-1, 1]
    right = _picture(make_grid(samples * 2 - 1, nrow=sample_columns))
    figure = Image.new(left.mode, (left.width + GAP + right.width, max(left.height, right.height)), "white")
    figure.paste(left, (0, 0))
    figure.paste(right, (left.width + GAP, 0))
    return figure.resize((figure.width * scale, figure.height * scale), Image.Resampling.NEAREST)


def _picture(grid: torch.Tensor) -> Image.Image:
    """A (C, H, W) grid in [0, 1] as an 8-bit grayscale or RGB image."""
    pixels = grid.mul(255).round().clamp(0, 255).to(torch.uint8).cpu()
    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0].numpy())  # (H, W) uint8: mode "L"
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())  # (H, W, 3) uint8: "RGB"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder (or a checkpoint file) of the main job")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write (default: %(default)s)")
    parser.add_argument("--code", help="the categorical code to traverse (default: the run's first)")
    parser.add_argument("--rows", type=int, default=8, help="rows of the traversal and of the samples")
    parser.add_argument("--sample-columns", type=int, default=4, help="columns of samples beside the traversal")
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling factor")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and the other codes")
    args = parser.parse_args(argv)
    if not 1 <= args.rows <= 32 or not 1 <= args.sample_columns <= 32 or not 1 <= args.scale <= 8:
        parser.error("--rows must be 1 to 32, --sample-columns 1 to 32 and --scale 1 to 8")
    try:
        run = load_run(args.run)
        code = categorical_code(run, args.code)
        order = column_order(run, code)
        figure = make_figure(
            run, code, order, rows=args.rows, sample_columns=args.sample_columns, seed=args.seed, scale=args.scale
        )
    except Exception as exc:  # CheckpointError, PluginError, ValueError: one line each
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda fh: figure.save(fh, format="PNG", optimize=True))

    where = Path(os.path.relpath(args.out.resolve(), ROOT)).as_posix()
    ordered = "ordered by the digit Q reads most often for each" if run.config.dataset == "digits" else "in code order"
    size = f"{figure.width}x{figure.height}, {args.out.stat().st_size / 1024:.0f} KiB"
    print(f"wrote {args.out} ({size})", file=sys.stderr)
    print(f"![{run.run_dir.name} after {run.step} steps: code {code}, one column per value, beside samples]({where})")
    print()
    print(
        f"*Left: the categorical code `{code}` after {run.step} steps (seed {run.config.seed}); each column is one "
        f"of its values ({ordered}), each row one draw of the noise and the other codes. "
        f"Right: samples.*"
    )
    return args.out


if __name__ == "__main__":
    main()
