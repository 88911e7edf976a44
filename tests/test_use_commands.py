"""``generate``, ``encode`` and ``export`` on a real run, writing real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import infogan_plugin

if TYPE_CHECKING:
    from conftest import Ganrun

IG = ["infogan"]


def test_generate_writes_grid_individual_pngs_and_npz(ganrun: Ganrun, trained_infogan_run: Path, tmp_path: Path):
    out = tmp_path / "gen"
    result = ganrun.invoke(
        "generate",
        trained_infogan_run,
        "--n",
        6,
        "--code",
        "c1=2",
        "--code",
        "c2=1.5",
        "--seed",
        3,
        "--out",
        out,
        "--individual",
        "--npz",
        plugins=IG,
    )
    assert result.exit_code == 0, ganrun.describe(result)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(6)]
    grid = Image.open(out / "grid.png")
    assert grid.size == (3 * 30 + 2, 2 * 30 + 2)  # 3 per row, 28 px tiles, 2 px padding
    data = np.load(out / "samples.npz")
    assert data["images"].shape == (6, 1, 28, 28) and data["g_input"].shape == (6, 62 + 3 + 1 + 1)
    assert (data["code_c1"] == 2).all() and np.allclose(data["code_c2"], 1.5) and data["code_c3"].std() > 0
    run = infogan_plugin.load_run(trained_infogan_run)
    expected = run.generate(6, codes={"c1": 2, "c2": 1.5}, seed=3).numpy()
    assert np.array_equal(data["images"], expected)
    first = np.asarray(Image.open(out / "images" / "000000.png"))
    assert np.array_equal(first, np.round(expected[0, 0] * 255).astype(np.uint8))
    assert not list(out.rglob("*.tmp*"))  # atomic writes leave nothing behind

    again = ganrun.invoke("generate", trained_infogan_run, "--out", out, plugins=IG)
    assert "grid.png exists; pass --overwrite" in ganrun.error_line(again)
    assert ganrun.invoke("generate", trained_infogan_run, "--out", out, "--overwrite", plugins=IG).exit_code == 0


@pytest.mark.parametrize(
    "code, message",
    [
        ("c1=3", "--code: code 'c1' (categorical): value 3 is not allowed: expected an integer in 0..2"),
        ("c7=1", "--code: unknown code 'c7': this run has c1, c2, c3"),
        ("c2", "--code: 'c2' is not NAME=VALUE"),
        ("c2=big", "--code: 'c2=big': 'big' is not a number"),
    ],
)
def test_generate_refuses_bad_codes_in_one_line(
    ganrun: Ganrun, trained_infogan_run: Path, tmp_path: Path, code, message
):
    result = ganrun.invoke("generate", trained_infogan_run, "--code", code, "--out", tmp_path / "g", plugins=IG)
    assert result.exit_code == 2 and message in ganrun.error_line(result)
    assert not (tmp_path / "g").exists()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_encode_a_folder_an_idx_file_and_refusals(ganrun: Ganrun, trained_infogan_run: Path, tmp_path: Path):
    gen = tmp_path / "gen"
    assert (
        ganrun.invoke(
            "generate", trained_infogan_run, "--n", 40, "--code", "c1=1", "--out", gen, "--individual", plugins=IG
        ).exit_code
        == 0
    )
    out = tmp_path / "codes.csv"
    result = ganrun.invoke(
        "encode", trained_infogan_run, "--images", gen / "images", "--out", out, "--batch-size", 16, plugins=IG
    )
    assert result.exit_code == 0, ganrun.describe(result)
    rows = _rows(out)
    assert list(rows[0]) == ["image", "c1", "c1_prob", "c2", "c3"]
    assert [row["image"] for row in rows] == [f"{i:06d}.png" for i in range(40)]
    assert sum(row["c1"] == "1" for row in rows) >= 36  # Q reads the chosen class back
    assert all(1 / 3 <= float(row["c1_prob"]) <= 1 for row in rows)

    idx = ganrun.write_idx(tmp_path / "idx", 30)
    for source in (idx, idx / "train-images-idx3-ubyte"):
        target = tmp_path / f"idx-{source.name}.csv"
        assert (
            ganrun.invoke("encode", trained_infogan_run, "--images", source, "--out", target, plugins=IG).exit_code == 0
        )
        assert [row["image"] for row in _rows(target)] == [str(i) for i in range(30)]

    again = ganrun.invoke("encode", trained_infogan_run, "--images", gen / "images", "--out", out, plugins=IG)
    assert "codes.csv exists; pass --overwrite" in ganrun.error_line(again)
    missing = ganrun.invoke(
        "encode", trained_infogan_run, "--images", tmp_path / "nothing", "--out", tmp_path / "x.csv", plugins=IG
    )
    assert (
        "--images: " in ganrun.error_line(missing)
        and "not a folder, an IDX images file or a dataset name" in missing.output
    )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"not a png")
    unreadable = ganrun.invoke(
        "encode", trained_infogan_run, "--images", tmp_path / "bad", "--out", tmp_path / "y.csv", plugins=IG
    )
    assert "a.png: cannot read image" in ganrun.error_line(unreadable)
    assert not (tmp_path / "y.csv").exists() and not list(tmp_path.glob(".y.csv*"))


def test_export_torchscript_matches_pytorch(ganrun: Ganrun, trained_infogan_run: Path, tmp_path: Path):
    out = tmp_path / "g.pt"
    result = ganrun.invoke("export", trained_infogan_run, "--format", "torchscript", "--out", out)
    assert result.exit_code == 0, ganrun.describe(result)
    extra = {"ganrun.generator": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["ganrun.generator"])
    assert meta["model"] == "tiny" and meta["image_shape"] == [1, 28, 28] and meta["input"]["input_dim"] == 65 + 2
    run = infogan_plugin.load_run(trained_infogan_run)
    g_input = run.inputs(7, codes={"c1": 0}, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(scripted(g_input), run.G(g_input), rtol=1e-5, atol=1e-6)
    again = ganrun.invoke("export", trained_infogan_run, "--format", "torchscript", "--out", out)
    assert "g.pt exists; pass --overwrite" in ganrun.error_line(again)


def test_export_safetensors_holds_the_state_dict_and_the_layout(
    ganrun: Ganrun, trained_infogan_run: Path, tmp_path: Path
):
    out = tmp_path / "g.safetensors"
    assert ganrun.invoke("export", trained_infogan_run, "--format", "safetensors", "--out", out).exit_code == 0
    run = infogan_plugin.load_run(trained_infogan_run)
    with safe_open(str(out), framework="pt") as fh:
        meta = json.loads(fh.metadata()["ganrun.generator"])
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    assert sorted(tensors) == sorted(run.G.state_dict())
    assert all(torch.equal(tensors[k], v) for k, v in run.G.state_dict().items())
    layout = meta["input"]
    assert (layout["noise_dim"], layout["noise"]) == (62, "uniform")
    assert [(c["name"], c["type"], c["columns"], c["width"]) for c in layout["codes"]] == [
        ("c1", "categorical", [62, 65], 3),
        ("c2", "uniform", [65, 66], 1),
        ("c3", "gaussian", [66, 67], 1),
    ]
    assert meta["model"] == "tiny" and meta["image_shape"] == [1, 28, 28] and meta["output_range"] == [-1.0, 1.0]


def test_export_onnx_or_a_one_line_hint(ganrun: Ganrun, trained_plain_run: Path, tmp_path: Path):
    out = tmp_path / "g.onnx"
    result = ganrun.invoke("export", trained_plain_run, "--format", "onnx", "--out", out)
    try:
        import onnx
        import onnxruntime
    except ImportError:
        assert "pip install 'ganrun[export]'" in ganrun.error_line(result)
        return
    assert result.exit_code == 0, ganrun.describe(result)
    model = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["ganrun.generator"])
    assert meta["input"] == {"input_dim": 100, "noise_dim": 100, "noise": "normal", "codes": []}
    import registry

    run = registry.load_run(trained_plain_run)
    g_input = run.sample_inputs(3, seed=2)[0]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["images"], {"g_input": g_input.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, run.G(g_input).numpy(), rtol=1e-4, atol=1e-5)


def test_export_needs_a_format_and_a_run(ganrun: Ganrun, tmp_path: Path):
    result = ganrun.invoke("export", tmp_path, "--format", "pickle", "--out", tmp_path / "g")
    assert result.exit_code == 2 and "'pickle' is not one of" in result.output
    empty = ganrun.invoke("export", tmp_path, "--format", "safetensors", "--out", tmp_path / "g")
    assert "no checkpoint in this run folder" in ganrun.error_line(empty)


def test_report_links_to_the_explorer(ganrun: Ganrun, trained_infogan_run: Path, tiny: str, tmp_path: Path):
    page = tmp_path / "report.html"
    result = ganrun.invoke("report", trained_infogan_run, "--plots", "svg", "--out", page)
    assert result.exit_code == 0, ganrun.describe(result)
    # with the flags of every plugin the run was trained with (config.json's order), as eval and traverse need them
    assert f"ganrun --plugin {tiny} --plugin infogan explore {trained_infogan_run}" in page.read_text()
