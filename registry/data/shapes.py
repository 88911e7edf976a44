"""``shapes``: a procedural ground-truth dataset in the spirit of dSprites.

dSprites (Matthey, Higgins, Hassabis and Lerchner, 2017) holds every combination of five
generative factors of a white sprite on a black 64x64 canvas. This module draws the same
factor grid procedurally, so the ground truth needed by disentanglement metrics is
available for any factor combination without a download:

=============  ======  ==========================================================
factor         values  meaning
=============  ======  ==========================================================
shape          3       0 square, 1 ellipse, 2 heart
scale          6       ``linspace(0.5, 1, 6)`` (as dSprites)
orientation    40      ``2 pi k / 40`` for k = 0..39
x              32      centre column from 22% to 78% of the width, evenly spaced
y              32      centre row from 22% to 78% of the height (grows downwards)
=============  ======  ==========================================================

3 * 6 * 40 * 32 * 32 = 737,280 combinations; flat indices enumerate them in that order
with ``y`` varying fastest (:func:`factors_to_index`, :func:`index_to_factors`).

Rendering (:func:`render`) is vectorised in torch and runs on the device of its input:
every pixel centre is mapped into the shape's own frame (translate, rotate by ``-theta``,
divide by the scale) and tested against an implicit curve ``f(u, v) <= 0``:

- square: ``max(|u|, |v|) <= 1``; half side 0.14 of the image at scale 1 (18 px wide);
- ellipse: ``u^2 + (v / 0.5)^2 <= 1``, a 2:1 ellipse whose long axis is the square's side;
- heart: two discs of radius 0.5 centred at ``(+-0.5, -0.4)`` over a triangle from
  ``v = -0.4`` to a point at ``v = 0.95``, less the wedge ``|u| < 0.6 (-0.3 - v)``: lobes up
  and point down at orientation 0, with a notch a third of the heart's height deep, so it
  shows at the smallest scale too.

Every shape at every scale, orientation and position lies inside the canvas and leaves
the outermost rows and columns empty. Pixels are
0 or 255 by default; ``supersample=k`` averages a k x k grid of samples per pixel for
anti-aliased edges.

How this differs from the original dSprites file:

- the sprites are drawn from the implicit curves above, not the original bitmaps, so
  sizes, the ellipse's aspect ratio and the heart's outline differ;
- orientations are ``2 pi k / 40`` (no repeated endpoint; dSprites uses
  ``linspace(0, 2 pi, 40)``, whose first and last orientations coincide), and all 40 are
  applied to every shape, so symmetric shapes repeat: the square looks the same every 10
  steps and the ellipse every 20; the metrics still treat them as different values, as
  disentanglement_lib does with dSprites;
- positions are centres spread over the middle 56% of the canvas rather than the
  original sprite offsets;
- there is no colour factor (dSprites has a constant one), and pixels are 0/255 uint8
  with optional anti-aliasing instead of a 0/1 bit mask;
- training draws every batch fresh from the whole grid (:func:`draw_batch`, a pure
  function of the step's generator, so a resumed run sees the same batches), since the
  full grid stored would take 737,280 * 4,096 bytes = 3 GB; the registered dataset's
  stored images are a seeded random subset (:data:`SUBSET_SIZE` images, seed
  :data:`SUBSET_SEED`) for evaluation and pictures, and the metrics draw fresh
  combinations from the full grid through :func:`sample_factors`.
"""

from __future__ import annotations

import functools
import math
import os

import torch

from registry.data.base import GroundTruth, ImageDataset, check_image_size, resize_uint8

__all__ = [
    "FACTOR_NAMES",
    "IMAGE_SIZE",
    "NUM_COMBINATIONS",
    "SUBSET_SEED",
    "SUBSET_SIZE",
    "factor_sizes",
    "factor_values",
    "factors_to_index",
    "index_to_factors",
    "draw_batch",
    "load_shapes",
    "render",
    "sample_factors",
]

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "x", "y")
_FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
SHAPE_NAMES: tuple[str, ...] = ("square", "ellipse", "heart")
IMAGE_SIZE = 64
NUM_COMBINATIONS = math.prod(_FACTOR_SIZES)  # 737,280

SUBSET_SIZE = 50_000  # images in the registered dataset
SUBSET_SEED = 0

# Geometry in units of the image side.
_HALF_SIZE = 0.14  # half side of the square at scale 1; the rotated square's corners reach 0.198
_POSITION_RANGE = (0.22, 0.78)  # centres; keeps every shape off the outermost pixel rows and columns
_ELLIPSE_MINOR = 0.5
# The heart: two discs (centres (+-0.5, -0.4), radius 0.5) over a triangle from their centre line
# to a point at v = 0.95, less a wedge between the lobes down to v = -0.3. The notch is 0.6
# units deep and 0.7 wide at the top, so it shows at every scale (about 2.7 x 3 px at the
# smallest), where the sextic curve used before left a notch of about 1 px that vanished.
_HEART_LOBE_X, _HEART_LOBE_Y, _HEART_LOBE_R = 0.5, -0.4, 0.5
_HEART_TIP = 0.95
_HEART_HALF_WIDTH = 0.97  # half width of the triangle at the centre line (just inside the discs' outer edge)
_HEART_NOTCH_BOTTOM, _HEART_NOTCH_SLOPE = -0.3, 0.6
# Pixels evaluated per image: a 29 x 29 window from floor(centre) - 14. A shape reaches at
# most 0.198 * 64 = 12.7 px from its centre (the rotated square's corners; the heart 10.2,
# the ellipse 9), so every covered pixel centre is within [centre - 13.2, centre + 12.2].
_WINDOW = 29
_RENDER_CHUNK = 1 << 22  # samples per rendering chunk (about 16 MB per float32 temporary)


def factor_sizes() -> tuple[int, ...]:
    """Number of values of each factor, in :data:`FACTOR_NAMES` order: (3, 6, 40, 32, 32)."""
    return _FACTOR_SIZES


def factor_values() -> dict[str, torch.Tensor]:
    """The physical value behind each factor index (float64): shape ids, scales, angles
    in radians and centre coordinates as fractions of the image side."""
    lo, hi = _POSITION_RANGE
    return {
        "shape": torch.arange(3, dtype=torch.float64),
        "scale": torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
        "orientation": torch.arange(40, dtype=torch.float64) * (2 * math.pi / 40),
        "x": torch.linspace(lo, hi, 32, dtype=torch.float64),
        "y": torch.linspace(lo, hi, 32, dtype=torch.float64),
    }


def _strides() -> torch.Tensor:
    strides = [1] * len(_FACTOR_SIZES)
    for i in range(len(_FACTOR_SIZES) - 2, -1, -1):
        strides[i] = strides[i + 1] * _FACTOR_SIZES[i + 1]
    return torch.tensor(strides, dtype=torch.int64)


def _check_factors(factor_indices: torch.Tensor) -> None:
    if factor_indices.ndim != 2 or factor_indices.shape[1] != len(_FACTOR_SIZES):
        raise ValueError(f"factor indices must have shape (N, {len(_FACTOR_SIZES)}), got {tuple(factor_indices.shape)}")
    if factor_indices.dtype.is_floating_point or factor_indices.dtype == torch.bool:
        raise ValueError(f"factor indices must be integers, got {factor_indices.dtype}")
    if factor_indices.numel():
        sizes = torch.tensor(_FACTOR_SIZES, device=factor_indices.device)
        if bool((factor_indices < 0).any()) or bool((factor_indices >= sizes).any()):
            raise ValueError(f"factor indices out of range; sizes are {dict(zip(FACTOR_NAMES, _FACTOR_SIZES))}")


def factors_to_index(factor_indices: torch.Tensor) -> torch.Tensor:
    """Flat index in [0, 737,280) of each row of factor indices ``(N, 5)``; ``y`` varies fastest."""
    _check_factors(factor_indices)
    return (factor_indices.long() * _strides().to(factor_indices.device)).sum(dim=1)


def index_to_factors(index: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`factors_to_index`: flat indices ``(N,)`` -> factor indices ``(N, 5)``."""
    index = torch.as_tensor(index).long()
    if index.ndim != 1:
        raise ValueError(f"index must be one-dimensional, got shape {tuple(index.shape)}")
    if index.numel() and (bool((index < 0).any()) or bool((index >= NUM_COMBINATIONS).any())):
        raise ValueError(f"index out of range [0, {NUM_COMBINATIONS})")
    strides = _strides().to(index.device)
    sizes = torch.tensor(_FACTOR_SIZES, device=index.device)
    return (index[:, None] // strides) % sizes


def sample_factors(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` factor combinations drawn uniformly and independently per factor, ``(n, 5)`` int64 (CPU).

    Draws one ``randint`` per factor, in factor order, from ``generator`` only.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    columns = [torch.randint(size, (n,), generator=generator, dtype=torch.int64) for size in _FACTOR_SIZES]
    return torch.stack(columns, dim=1)


def draw_batch(
    n: int, generator: torch.Generator, device: torch.device | str, *, image_size: int | None = None
) -> torch.Tensor:
    """``n`` images of factor combinations drawn uniformly from the whole grid, uint8
    ``(n, 1, S, S)`` on ``device``: one ``randint`` per factor from ``generator`` (on the
    generator's own device), then :func:`render`; ``image_size`` resizes from 64 px."""
    columns = [
        torch.randint(size, (n,), generator=generator, device=generator.device, dtype=torch.int64)
        for size in _FACTOR_SIZES
    ]
    images = render(torch.stack(columns, dim=1).to(device))
    return images if image_size is None else resize_uint8(images, image_size)


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the points (u, v) of the shape's own frame that lie inside it."""
    if shape == 0:
        return torch.maximum(u.abs(), v.abs()) <= 1.0
    if shape == 1:
        return u.square() + (v / _ELLIPSE_MINOR).square() <= 1.0
    # two lobes and a point below them; v grows downwards, so the notch is at the top
    au = u.abs()
    lobes = (au - _HEART_LOBE_X).square() + (v - _HEART_LOBE_Y).square() <= _HEART_LOBE_R**2
    point = (
        (v >= _HEART_LOBE_Y)
        & (v <= _HEART_TIP)
        & (au <= _HEART_HALF_WIDTH * (_HEART_TIP - v) / (_HEART_TIP - _HEART_LOBE_Y))
    )
    notch = au < _HEART_NOTCH_SLOPE * (_HEART_NOTCH_BOTTOM - v)  # a wedge cut between the lobes
    return (lobes | point) & ~notch


def render(factor_indices: torch.Tensor, *, supersample: int = 1) -> torch.Tensor:
    """Draw the images of factor combinations ``(N, 5)`` as uint8 ``(N, 1, 64, 64)``.

    Runs on the device of ``factor_indices``. With ``supersample=1`` a pixel is 255 when
    its centre lies inside the shape, else 0; ``supersample=k`` samples a k x k grid per
    pixel and stores the covered fraction, rounded. Only a :data:`_WINDOW`-pixel square
    around each centre is evaluated: no shape reaches further (see the module constants).
    """
    _check_factors(factor_indices)
    if not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    device = factor_indices.device
    n = factor_indices.shape[0]
    out = torch.zeros((n, IMAGE_SIZE * IMAGE_SIZE), dtype=torch.uint8, device=device)
    if n == 0:
        return out.view(n, 1, IMAGE_SIZE, IMAGE_SIZE)
    k, w = supersample, _WINDOW
    values = {name: v.to(device=device, dtype=torch.float32) for name, v in factor_values().items()}
    idx = factor_indices.to(device).long()
    scale = values["scale"][idx[:, 1]] * (_HALF_SIZE * IMAGE_SIZE)  # in pixels
    theta = values["orientation"][idx[:, 2]]
    cx, cy = values["x"][idx[:, 3]] * IMAGE_SIZE, values["y"][idx[:, 4]] * IMAGE_SIZE
    # first column/row of each image's window, so that the window covers every pixel
    # whose centre is within the largest shape extent of the sprite's centre
    col0 = (cx.floor().long() - w // 2).clamp(0, IMAGE_SIZE - w)
    row0 = (cy.floor().long() - w // 2).clamp(0, IMAGE_SIZE - w)
    offsets = (torch.arange(w * k, device=device, dtype=torch.float32) + 0.5) / k  # sample positions in a window
    cos, sin = torch.cos(theta), torch.sin(theta)
    pixel = torch.arange(w, device=device)
    chunk = max(1, _RENDER_CHUNK // (w * w * k * k))
    for shape in range(len(SHAPE_NAMES)):
        rows = torch.nonzero(idx[:, 0] == shape).flatten()
        for start in range(0, rows.numel(), chunk):
            sel = rows[start : start + chunk]
            inv = 1.0 / scale[sel, None, None]
            # sample coordinates in pixels (exact in float32), then relative to the centre
            dx = ((col0[sel, None, None].float() + offsets[None, None, :]) - cx[sel, None, None]) * inv  # (b, 1, wk)
            dy = ((row0[sel, None, None].float() + offsets[None, :, None]) - cy[sel, None, None]) * inv  # (b, wk, 1)
            c, s = cos[sel, None, None], sin[sel, None, None]
            u = c * dx + s * dy  # rotate by -theta into the shape's frame
            v = c * dy - s * dx
            covered = _inside(shape, u, v).to(torch.float32)  # (b, wk, wk)
            if k > 1:
                covered = torch.nn.functional.avg_pool2d(covered[:, None], k)[:, 0]
            target = (row0[sel, None, None] + pixel[None, :, None]) * IMAGE_SIZE + col0[sel, None, None] + pixel
            block = torch.zeros((sel.numel(), IMAGE_SIZE * IMAGE_SIZE), dtype=torch.uint8, device=device)
            block.scatter_(1, target.flatten(1), (covered * 255.0).round_().to(torch.uint8).flatten(1))
            out[sel] = block
    return out.view(n, 1, IMAGE_SIZE, IMAGE_SIZE)


def load_shapes(*, data_dir: str | os.PathLike[str] | None = None, image_size: int | None = None) -> ImageDataset:
    """The registered ``shapes`` dataset: training batches drawn fresh from the whole grid
    (``draw``); stored images for evaluation: :data:`SUBSET_SIZE` distinct factor combinations
    drawn without replacement with seed :data:`SUBSET_SEED`, in flat-index order, rendered
    with 0/255 pixels.

    ``labels`` are the shape indices (so an InfoGAN categorical code can be scored against
    them) and ``factors`` holds all five factor indices. ``data_dir`` is ignored (nothing is
    read from disk); ``image_size`` resizes from 64 px.
    """
    del data_dir  # drawn, not read
    check_image_size(image_size)
    count = min(SUBSET_SIZE, NUM_COMBINATIONS)
    gen = torch.Generator().manual_seed(SUBSET_SEED)
    index = torch.randperm(NUM_COMBINATIONS, generator=gen)[:count].sort().values
    factors = index_to_factors(index)
    images = render(factors)
    if image_size is not None:
        images = resize_uint8(images, image_size)
    return ImageDataset(
        images=images.contiguous(),
        labels=factors[:, 0].clone(),
        name="shapes",
        factors={name: factors[:, i].clone() for i, name in enumerate(FACTOR_NAMES)},
        draw=functools.partial(draw_batch, image_size=image_size),
        ground_truth=GroundTruth(
            names=FACTOR_NAMES,
            sizes=factor_sizes(),
            sample=sample_factors,
            render=functools.partial(_render_at, image_size=image_size),
        ),
    )


def _render_at(factor_indices: torch.Tensor, *, image_size: int | None) -> torch.Tensor:
    """:func:`render`, resized like the registered dataset's images."""
    images = render(factor_indices)
    return images if image_size is None else resize_uint8(images, image_size)


load_shapes.reads_data_dir = False  # drawn, not read: train --data-dir is refused for it
