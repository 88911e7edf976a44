"""The procedural ``shapes`` dataset: factor bookkeeping, the renderer's geometry, the registered subset."""

from __future__ import annotations

import math

import pytest
import torch

from registry.data import shapes
from registry.plugins import Host

SQUARE, ELLIPSE, HEART = 0, 1, 2


def _combo(shape=SQUARE, scale=5, orientation=0, x=16, y=16) -> list[int]:
    return [shape, scale, orientation, x, y]


def _render(rows: list[list[int]], supersample: int = 1) -> torch.Tensor:
    return shapes.render(torch.tensor(rows), supersample=supersample)[:, 0].float() / 255.0


def _area(images: torch.Tensor) -> torch.Tensor:
    return images.sum(dim=(1, 2))


def _centroid(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(images.shape[-1], dtype=torch.float32)
    mass = _area(images)
    return (images.sum(dim=1) * r).sum(dim=1) / mass, (images.sum(dim=2) * r).sum(dim=1) / mass  # (x, y)


def _reference_render(factors: torch.Tensor, supersample: int) -> torch.Tensor:
    """The whole 64 x 64 canvas evaluated point by point, without the renderer's window."""
    values = shapes.factor_values()
    f = factors.long()
    scale = values["scale"].float()[f[:, 1]] * (shapes._HALF_SIZE * 64)
    theta = values["orientation"].float()[f[:, 2]]
    cx = values["x"].float()[f[:, 3]] * 64
    cy = values["y"].float()[f[:, 4]] * 64
    pos = (torch.arange(64 * supersample, dtype=torch.float32) + 0.5) / supersample
    inv = 1.0 / scale[:, None, None]
    dx = (pos[None, None, :] - cx[:, None, None]) * inv
    dy = (pos[None, :, None] - cy[:, None, None]) * inv
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    u, v = c * dx + s * dy, c * dy - s * dx
    covered = torch.empty(u.shape)
    for shape in range(3):
        rows = f[:, 0] == shape
        covered[rows] = shapes._inside(shape, u[rows], v[rows]).float()
    if supersample > 1:
        covered = torch.nn.functional.avg_pool2d(covered[:, None], supersample)[:, 0]
    return (covered * 255).round().to(torch.uint8)[:, None]


def test_factor_grid_and_flat_index_round_trip():
    assert shapes.factor_sizes() == (3, 6, 40, 32, 32)
    assert shapes.NUM_COMBINATIONS == 737_280
    assert shapes.index_to_factors(torch.tensor([0, 1, 32, shapes.NUM_COMBINATIONS - 1])).tolist() == [
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0],
        [2, 5, 39, 31, 31],
    ]
    index = torch.randint(shapes.NUM_COMBINATIONS, (1000,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(shapes.factors_to_index(shapes.index_to_factors(index)), index)
    values = shapes.factor_values()
    assert values["scale"].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert values["orientation"][1].item() == pytest.approx(2 * math.pi / 40)
    with pytest.raises(ValueError, match="out of range"):
        shapes.factors_to_index(torch.tensor([[3, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="out of range"):
        shapes.index_to_factors(torch.tensor([shapes.NUM_COMBINATIONS]))
    with pytest.raises(ValueError, match="shape"):
        shapes.render(torch.zeros(2, 4, dtype=torch.long))


def test_sample_factors_is_seeded_and_covers_each_range():
    a = shapes.sample_factors(4000, torch.Generator().manual_seed(7))
    b = shapes.sample_factors(4000, torch.Generator().manual_seed(7))
    assert a.dtype == torch.int64 and a.shape == (4000, 5) and torch.equal(a, b)
    assert a.min(dim=0).values.tolist() == [0] * 5
    assert a.max(dim=0).values.tolist() == [s - 1 for s in shapes.factor_sizes()]
    assert not torch.equal(a, shapes.sample_factors(4000, torch.Generator().manual_seed(8)))


@pytest.mark.parametrize("supersample", [1, 2])
def test_windowed_render_equals_the_whole_canvas_reference(supersample):
    extremes = [[s, 5, o, x, y] for s in range(3) for o in (0, 5, 13) for x in (0, 31) for y in (0, 31)]
    factors = torch.cat([torch.tensor(extremes), shapes.sample_factors(300, torch.Generator().manual_seed(1))])
    images = shapes.render(factors, supersample=supersample)
    assert images.dtype == torch.uint8 and images.shape == (factors.shape[0], 1, 64, 64)
    assert torch.equal(images, _reference_render(factors, supersample))
    if supersample == 1:
        assert set(images.unique().tolist()) == {0, 255}
    # nothing reaches the outermost rows and columns, even at the largest scale in the corners
    assert images[..., 0, :].max() == 0 and images[..., -1, :].max() == 0
    assert images[..., :, 0].max() == 0 and images[..., :, -1].max() == 0


def test_the_three_shapes_differ():
    for orientation in (0, 7):
        images = _render([_combo(shape=s, orientation=orientation) for s in range(3)])
        for i in range(3):
            for j in range(i + 1, 3):
                assert (images[i] != images[j]).sum() > 40, (orientation, i, j)
    square, ellipse, heart = _area(_render([_combo(shape=s) for s in range(3)], supersample=4)).tolist()
    side = 2 * shapes._HALF_SIZE * 64  # 17.92 px at scale 1
    assert square == pytest.approx(side**2, rel=0.02)
    assert ellipse == pytest.approx(math.pi * (side / 2) * (side / 4), rel=0.03)
    assert ellipse < heart < square


def test_area_grows_with_scale_for_every_shape():
    for shape in range(3):
        for orientation in (0, 11):
            areas = _area(_render([_combo(shape=shape, scale=k, orientation=orientation) for k in range(6)]))
            assert torch.all(areas[1:] > areas[:-1]), (shape, orientation, areas.tolist())
            # area goes with scale squared: scale 1 against scale 0.5
            assert (areas[-1] / areas[0]).item() == pytest.approx(4.0, rel=0.15)


def test_position_factors_move_the_centroid_monotonically():
    for shape in range(3):
        along_x = _render([_combo(shape=shape, x=k, orientation=3) for k in range(32)])
        cx, cy = _centroid(along_x)
        assert torch.all(cx[1:] > cx[:-1]), shape
        assert (cx[-1] - cx[0]).item() == pytest.approx(0.56 * 64, abs=1.5)  # 22% .. 78% of the width
        assert (cy.max() - cy.min()).item() < 1.0
        along_y = _render([_combo(shape=shape, y=k, orientation=3) for k in range(32)])
        cx, cy = _centroid(along_y)
        assert torch.all(cy[1:] > cy[:-1]), shape
        assert (cx.max() - cx.min()).item() < 1.0


def test_rotating_a_square_keeps_its_area_and_turns_it():
    images = _render([_combo(shape=SQUARE, orientation=k) for k in range(40)], supersample=4)
    areas = _area(images)
    assert (areas.max() / areas.min()).item() < 1.02
    turned = (images[5] - images[0]).abs().sum().item()  # 45 degrees
    assert turned > 0.15 * areas[0].item()
    assert (images[10] - images[0]).abs().sum().item() < 0.02 * areas[0].item()  # 90 degrees: same square
    ellipse = _render([_combo(shape=ELLIPSE, orientation=k) for k in (0, 10, 20)], supersample=4)
    assert (ellipse[1] - ellipse[0]).abs().sum() > 0.5 * _area(ellipse[:1]).item()  # 90 degrees: turned
    assert (ellipse[2] - ellipse[0]).abs().sum() < 0.02 * _area(ellipse[:1]).item()  # 180 degrees: same


def test_heart_has_its_lobes_up_and_turns_upside_down_at_pi():
    heart = _render([_combo(shape=HEART)])[0]
    rows = heart.sum(dim=1).nonzero().flatten()
    top_width, bottom_width = heart[rows[2]].sum(), heart[rows[-3]].sum()
    assert top_width > bottom_width  # the lobes are up, the tip is down
    flipped = _render([_combo(shape=HEART, orientation=20)])[0]  # turned by pi
    rows = flipped.sum(dim=1).nonzero().flatten()
    assert flipped[rows[2]].sum() < flipped[rows[-3]].sum()


def test_registered_dataset_is_a_seeded_subset_with_factors(monkeypatch):
    monkeypatch.setattr(shapes, "SUBSET_SIZE", 400)
    ds = Host.create([]).registries.datasets.get("shapes")(data_dir=None, image_size=None)
    again = shapes.load_shapes()
    assert ds.name == "shapes" and len(ds) == 400 and ds.images.shape == (400, 1, 64, 64)
    assert torch.equal(ds.images, again.images)
    assert list(ds.factors) == list(shapes.FACTOR_NAMES)
    factors = torch.stack([ds.factors[name] for name in shapes.FACTOR_NAMES], dim=1)
    assert torch.equal(ds.images, shapes.render(factors))
    assert torch.equal(ds.labels, ds.factors["shape"])
    index = shapes.factors_to_index(factors)
    assert index.unique().numel() == 400 and torch.all(index[1:] > index[:-1])
    small = shapes.load_shapes(image_size=32)
    assert small.images.shape == (400, 1, 32, 32) and small.image_size == 32
