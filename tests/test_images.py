"""Tests for registry.report.images: grid tiling and atomic PNG writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from registry.report.images import make_grid, save_grid


@pytest.mark.parametrize(
    ("b", "nrow", "padding", "expected"),
    [
        (5, 3, 2, (3, 2 * (4 + 2) + 2, 3 * (6 + 2) + 2)),
        (6, 3, 0, (3, 2 * 4, 3 * 6)),
        (1, 4, 1, (3, 4 + 2, 4 * (6 + 1) + 1)),
        (8, 8, 2, (3, 4 + 4, 8 * (6 + 2) + 2)),
    ],
)
def test_grid_shape(b: int, nrow: int, padding: int, expected: tuple[int, int, int]) -> None:
    images = torch.zeros(b, 3, 4, 6)
    assert make_grid(images, nrow, padding=padding).shape == expected


def test_grid_places_tiles_in_row_major_order() -> None:
    # Tile i is a constant image; its value tells where it landed.
    values = torch.linspace(-1, 1, 5)
    images = values.view(5, 1, 1, 1).expand(5, 1, 2, 3).clone()
    grid = make_grid(images, 3, padding=1, pad_value=0.25)
    assert grid.shape == (1, 2 * 3 + 1, 3 * 4 + 1)
    for i, v in enumerate(values):
        row, col = divmod(i, 3)
        top, left = 1 + row * 3, 1 + col * 4
        tile = grid[0, top : top + 2, left : left + 3]
        torch.testing.assert_close(tile, torch.full((2, 3), (v.item() + 1) / 2))
    # The missing sixth cell and all padding are pad_value.
    torch.testing.assert_close(grid[0, 4:6, 9:12], torch.full((2, 3), 0.25))
    assert torch.all(grid[0, 0] == 0.25) and torch.all(grid[0, -1] == 0.25)
    assert torch.all(grid[0, :, 0] == 0.25) and torch.all(grid[0, :, -1] == 0.25)


def test_grid_maps_and_clamps_range() -> None:
    images = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]).view(5, 1, 1, 1)
    grid = make_grid(images, 5, padding=0)
    assert grid.flatten().tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_grid_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        make_grid(torch.zeros(3, 4, 4), 2)
    with pytest.raises(ValueError):
        make_grid(torch.zeros(2, 1, 4, 4), 0)


def test_save_grid_gray_pixels(tmp_path: Path) -> None:
    images = torch.tensor([[[[-1.0, 1.0], [0.0, 1.0]]], [[[1.0, -1.0], [-1.0, 0.0]]]])  # (2, 1, 2, 2)
    target = tmp_path / "nested" / "deeper" / "grid.png"
    returned = save_grid(images, target, nrow=2, padding=1, pad_value=0.0)
    assert returned == target
    with Image.open(target) as img:
        assert img.mode == "L"
        pixels = np.asarray(img)
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0],
            [0, 0, 255, 0, 255, 0, 0],
            [0, 128, 255, 0, 0, 128, 0],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(pixels, expected)
    assert sorted(p.name for p in target.parent.iterdir()) == ["grid.png"]


def test_save_grid_rgb_overwrites_atomically(tmp_path: Path) -> None:
    target = tmp_path / "samples.png"
    target.write_bytes(b"old contents")
    red_then_blue = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]]).view(2, 3, 1, 1)
    save_grid(red_then_blue, str(target), nrow=1, padding=0)
    with Image.open(target) as img:
        assert img.mode == "RGB"
        pixels = np.asarray(img)
    np.testing.assert_array_equal(pixels, np.array([[[255, 0, 0]], [[0, 0, 255]]], dtype=np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["samples.png"]


def test_save_grid_bad_channels_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channels"):
        save_grid(torch.zeros(2, 2, 4, 4), tmp_path / "x.png", nrow=2)
    assert list(tmp_path.iterdir()) == []
