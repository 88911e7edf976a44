"""``registry.load_run`` and ``infogan_plugin.load_run`` on real runs: generate with chosen codes,
encode through Q, the round trip, and every refusal (bad codes, bad images, bad checkpoints)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import infogan_plugin
import registry
from registry import CheckpointError


@pytest.fixture(scope="module")
def run(trained_infogan_run: Path) -> infogan_plugin.InfoGANRun:
    return infogan_plugin.load_run(trained_infogan_run)


def test_load_run_gives_modules_in_eval_mode_and_the_spec(run):
    assert run.step == 200 and run.image_shape == (1, 28, 28) and run.device == torch.device("cpu")
    assert [slot.code.type_name for slot in run.spec.slots] == ["categorical", "uniform", "gaussian"]
    for module in (run.G, run.D, run.Q):
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    assert run.input_layout()["codes"][0] == {
        "name": "c1",
        "type": "categorical",
        "columns": [62, 65],
        "width": 3,
        "code": {"type": "categorical", "dim": 1, "k": 3},
    }


def test_generate_is_deterministic_in_range_and_respects_codes(run):
    images = run.generate(6, codes={"c1": 2, "c2": 1.5}, seed=3)
    assert images.shape == (6, 1, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert torch.equal(images, run.generate(6, codes={"c1": 2, "c2": 1.5}, seed=3))
    assert not torch.equal(images, run.generate(6, codes={"c1": 2, "c2": 1.5}, seed=4))

    g_input = run.inputs(6, codes={"c1": 2, "c2": 1.5}, seed=3)
    z, (c1, c2, c3) = run.spec.split_input(g_input)
    assert torch.equal(c1, torch.tensor([[0.0, 0.0, 1.0]]).expand(6, 3)) and torch.all(c2 == 1.5)
    # the unnamed code and the noise are the seed's prior draws, whatever the chosen codes are
    other_z, (_, _, other_c3) = run.spec.split_input(run.inputs(6, codes={"c1": 0}, seed=3))
    assert torch.equal(z, other_z) and torch.equal(c3, other_c3)
    assert torch.all((z >= -1) & (z <= 1)) and c3.std() > 0


@pytest.mark.parametrize(
    "codes, message",
    [
        ({"c9": 1}, "unknown code 'c9': this run has c1, c2, c3"),
        ({"c1": 3}, "code 'c1' (categorical): value 3 is not allowed: expected an integer in 0..2"),
        ({"c1": 1.5}, "code 'c1' (categorical): value 1.5 is not allowed: expected an integer in 0..2"),
        ({"c2": 2.5}, "code 'c2' (uniform): value 2.5 is not allowed: expected a number in [-2, 2]"),
        ({"c3": float("nan")}, "code 'c3' (gaussian): value nan is not allowed: expected a number in [-4, 4]"),
        ({"c2": "1"}, "code 'c2' (uniform): value '1' is not a number"),
        ({"c2": [0.5, 0.5]}, "code 'c2' (uniform): value [0.5, 0.5] has 2 entries, expected one number or 1"),
    ],
)
def test_bad_codes_are_refused_naming_code_value_and_range(run, codes, message):
    with pytest.raises(ValueError) as info:
        run.generate(2, codes=codes)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n 0 is not allowed"),
        ({"n": 2, "seed": -1}, "seed -1"),
        ({"n": 2, "seed": 2**64}, "expected an integer in 0.."),
    ],
)
def test_bad_counts_and_seeds_are_refused(run, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run.generate(**kwargs)


def test_round_trip_reads_back_the_chosen_categorical_value(run):
    """Q was trained to read c1 from G's images: generate class k, encode, get k back."""
    for k in range(3):
        estimate = run.encode(run.generate(200, codes={"c1": k}, seed=k))["c1"]
        assert (estimate.value == k).float().mean() > 0.9
        assert torch.allclose(estimate.probabilities.sum(1), torch.ones(200))
        assert torch.equal(estimate.probabilities.argmax(1).float(), estimate.value)


def test_encode_takes_uint8_and_float_layouts_and_resizes_like_the_dataset(run):
    images = run.generate(5, seed=1)  # (5, 1, 28, 28) in [0, 1]
    as_uint8 = images.mul(255).round().to(torch.uint8)
    by_float = run.encode(images)
    assert set(by_float) == {"c1", "c2", "c3"}
    assert by_float["c2"].value.shape == (5,) and by_float["c2"].probabilities is None
    assert by_float["c1"].probabilities.shape == (5, 3)
    for variant in (as_uint8, as_uint8[:, 0], as_uint8.numpy(), images.double()):
        same = run.encode(variant)
        assert torch.allclose(same["c2"].value, by_float["c2"].value, atol=0.05)
    bigger = torch.nn.functional.interpolate(as_uint8.float(), size=56).round().to(torch.uint8)
    assert run.encode(bigger)["c1"].value.shape == (5,)


@pytest.mark.parametrize(
    "images, error, message",
    [
        (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), ValueError, r"must be \(N, 1, H, W\) or \(N, H, W\)"),
        (torch.zeros(2, 1, 28, 20), ValueError, "must be square"),
        (torch.full((2, 28, 28), 2.0), ValueError, r"float images must lie in \[0, 1\]"),
        (torch.full((2, 28, 28), float("nan")), ValueError, r"float images must lie in \[0, 1\]"),
        (torch.zeros(2, 28, 28, dtype=torch.int32), TypeError, "uint8 .* or float"),
        (torch.zeros(0, 28, 28, dtype=torch.uint8), ValueError, "empty"),
        ([[0]], TypeError, "torch.Tensor or numpy.ndarray"),
    ],
)
def test_encode_refuses_bad_images(run, images, error, message):
    with pytest.raises(error, match=message):
        run.encode(images)


def test_named_checkpoint_and_refusals_like_resume(trained_infogan_run, tmp_path):
    older = infogan_plugin.load_run(trained_infogan_run, checkpoint=100)
    assert older.step == 100 and older.checkpoint.name == "ckpt-000000100.safetensors"
    with pytest.raises(CheckpointError, match="no checkpoint 7; the run has: ckpt-000000100"):
        infogan_plugin.load_run(trained_infogan_run, checkpoint=7)
    with pytest.raises(CheckpointError, match="no such run folder"):
        infogan_plugin.load_run(tmp_path / "missing")
    broken = Path(shutil.copytree(trained_infogan_run, tmp_path / "broken"))
    newest = broken / "checkpoints" / "ckpt-000000200.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointError, match="ckpt-000000200"):
        infogan_plugin.load_run(newest)


def test_host_load_run_serves_a_plain_gan_and_keeps_the_global_rng(trained_plain_run):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    run = registry.load_run(trained_plain_run)
    assert torch.equal(torch.get_rng_state(), before)
    assert run.input_layout() == {"input_dim": 100, "noise_dim": 100, "noise": "normal", "codes": []}
    images = run.generate(3, seed=5)
    assert images.shape == (3, 1, 28, 28) and torch.equal(images, run.generate(3, seed=5))
    with pytest.raises(ValueError, match="not an InfoGAN run"):
        infogan_plugin.load_run(trained_plain_run)


def test_a_third_party_code_type_gets_values_from_its_traversal(run):
    """The base-class defaults: a discrete code's values index traversal_values(); value_of inverts."""
    code = run.spec.slots[0].code
    assert code.value_range() == (0.0, 2.0)
    assert torch.equal(code.input_for(1), torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(code.value_of(torch.eye(3)), torch.tensor([[0.0], [1.0], [2.0]]))
    uniform = run.spec.slots[1].code
    assert uniform.value_range() == uniform.traversal_range() == (-2.0, 2.0)
    assert math.isclose(float(uniform.input_for(0.25)), 0.25)
    assert np.allclose(uniform.value_of(torch.tensor([[0.5]])).numpy(), 0.5)
