"""``docs/make_figure.py`` makes the README's picture from a run: checked on the tiny trained run
(a categorical code with 3 values, trained on the built-in digits), so the script works when the
lead runs it on the main job."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def make_figure():
    spec = importlib.util.spec_from_file_location("make_figure", ROOT / "docs" / "make_figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_figure_shows_every_code_value_beside_samples(
    make_figure, trained_infogan_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "images" / "main-job.png"
    make_figure.main([str(trained_infogan_run), "--out", str(out), "--rows", "4", "--sample-columns", "5"])

    picture = Image.open(out)
    tile = 28 + 2  # a 28 px digit and make_grid's 2 px padding
    traversal_width, samples_width = 3 * tile + 2, 5 * tile + 2  # c1 has 3 values; 4 x 5 samples
    assert picture.mode == "L"
    assert picture.size == (2 * (traversal_width + make_figure.GAP + samples_width), 2 * (4 * tile + 2))  # scale 2
    assert out.stat().st_size < 100_000
    # Nearest-neighbour upscaling: every 2 x 2 block is one source pixel.
    pixels = torch.from_numpy(np.array(picture))
    assert torch.equal(pixels[::2, ::2].repeat_interleave(2, 0).repeat_interleave(2, 1), pixels)

    printed = capsys.readouterr().out
    assert f"]({Path(os.path.relpath(out, ROOT)).as_posix()})" in printed
    assert "after 200 steps" in printed and "`c1`" in printed


def test_columns_are_the_code_values_in_digit_order(make_figure, trained_infogan_run: Path) -> None:
    from infogan_plugin import load_run

    run = load_run(trained_infogan_run)
    order = make_figure.column_order(run, "c1")
    assert sorted(order) == [0, 1, 2]
    picture = make_figure.make_figure(run, "c1", order, rows=2, sample_columns=1, seed=5, scale=1)
    # The first column is the first value of the order, drawn with the figure's seed.
    first = (run.generate(2, codes={"c1": order[0]}, seed=5)[:, 0] * 255).round().to(torch.uint8)
    pixels = torch.from_numpy(np.array(picture))
    assert torch.equal(pixels[2:30, 2:30], first[0]) and torch.equal(pixels[32:60, 2:30], first[1])


def test_a_run_without_a_categorical_code_is_one_line(
    make_figure, trained_plain_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        make_figure.main([str(trained_plain_run), "--out", str(tmp_path / "x.png")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err, err
    assert not (tmp_path / "x.png").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
