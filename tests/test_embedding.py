"""The embedding API: ``examples/embed_in_your_gan.py`` (a hand-written loop with InfoGAN
added) runs and saves a checkpoint that loads back exactly; the public names import; the
packages ship ``py.typed``; ``save_training_state``/``load_training_state`` round-trip and
refuse what does not fit."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import infogan_plugin
import registry
from registry.checkpoint import CheckpointError, load_module_state, read_checkpoint
from registry.checkpoint.embedding import load_training_state, save_training_state

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "embed_in_your_gan.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("embed_in_your_gan", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("embedded") / "out"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", "3", "--batch-size", "16", "--log-every", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_example_logs_information_bounds(example_run):
    _, stdout = example_run
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records] == [2, 3]
    for key in ("d_loss", "g_loss", "L_I/digit", "L_I/c2", "L_I/c3"):
        assert key in records[-1]
    assert records[-1]["L_I/digit"] <= torch.log(torch.tensor(10.0)).item()  # a lower bound on I <= H


def test_example_writes_traversal_grids(example_run):
    from PIL import Image

    out, _ = example_run
    for name, columns in (("digit", 10), ("c2", 5), ("c3", 5)):
        with Image.open(out / f"traversal-{name}.png") as picture:
            assert picture.size == (columns * 30 + 2, 10 * 30 + 2), name


def test_example_checkpoint_loads_into_fresh_modules(example_run):
    out, _ = example_run
    path = out / "checkpoint.safetensors"
    tensors, meta = read_checkpoint(path)
    assert meta["step"] == "3"
    assert [slot["name"] for slot in json.loads(meta["latent_spec"])["slots"]] == ["digit", "c2", "c3"]

    example = _load_example()
    spec = infogan_plugin.LatentSpec.from_description(meta["latent_spec"])  # the layout G and Q were built for
    assert spec.describe() == example.latent_spec(int(meta["noise_dim"])).describe()
    torch.manual_seed(12345)  # fresh weights differ from the trained ones
    fresh = {"G": example.Generator(spec.input_dim), "D": example.Discriminator()}
    fresh["Q"] = infogan_plugin.QHead(in_features=fresh["D"].feature_dim, out_dim=spec.q_dim)
    for name, module in fresh.items():
        before = module.state_dict()
        assert any(
            not torch.equal(value, tensors[f"model.{name}.{key}"])
            for key, value in before.items()
            if value.is_floating_point()
        )
        load_module_state(module, tensors, f"model.{name}", path=path)
        after = module.state_dict()
        assert after.keys() == {key[len(f"model.{name}.") :] for key in tensors if key.startswith(f"model.{name}.")}
        for key, value in after.items():
            assert torch.equal(value, tensors[f"model.{name}.{key}"]), f"{name}.{key}"

    # the optimizers too, through the convenience loader, with Adam's moments intact
    opt_g = torch.optim.Adam(fresh["G"].parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*fresh["D"].parameters(), *fresh["Q"].parameters()], lr=2e-4, betas=(0.5, 0.999))
    user_meta = load_training_state(path, modules=fresh, optimizers={"G": opt_g, "D": opt_d})
    assert user_meta["step"] == "3" and not any(key.startswith("optim.") for key in user_meta)
    state = opt_d.state_dict()["state"]
    assert len(state) == len(list(fresh["D"].parameters())) + len(list(fresh["Q"].parameters()))
    assert torch.equal(state[0]["exp_avg"], tensors["optim.D.state.0.exp_avg"])
    assert float(state[0]["step"]) == 3.0


def test_public_names_import_and_py_typed():
    for package in (registry, infogan_plugin):
        assert package.__all__ and len(set(package.__all__)) == len(package.__all__)
        fresh = importlib.import_module(package.__name__)
        for name in package.__all__:
            assert getattr(fresh, name) is not None, f"{package.__name__}.{name}"
        namespace: dict = {}
        exec(f"from {package.__name__} import *", namespace)
        assert set(package.__all__) <= set(namespace)
        assert (importlib.resources.files(package.__name__) / "py.typed").is_file(), package.__name__
    for name in (
        "save_training_state",
        "load_training_state",
        "module_state",
        "load_module_state",
        "optimizer_state",
        "load_optimizer_state",
    ):
        assert name in registry.__all__


class _Tiny(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.linear = nn.Linear(width, 2)
        self.norm = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.norm(self.linear(x))


def _trained(seed: int):
    torch.manual_seed(seed)
    model = _Tiny()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 3)).square().mean().backward()
        opt.step()
    return model, opt


def test_training_state_round_trip_and_refusals(tmp_path):
    model, opt = _trained(0)
    path = save_training_state(
        tmp_path / "s.safetensors", modules={"net": model}, optimizers={"net": opt}, metadata={"note": "hello"}
    )
    other, other_opt = _trained(1)
    assert load_training_state(path, modules={"net": other}, optimizers={"net": other_opt}) == {"note": "hello"}
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)
    assert torch.equal(other_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])

    with pytest.raises(CheckpointError, match="optim.net"):  # state in the file that was not asked for
        load_training_state(path, modules={"net": _Tiny()})
    with pytest.raises(CheckpointError, match="shape"):
        load_training_state(path, modules={"net": _Tiny(width=4)}, optimizers={"net": other_opt})
    with pytest.raises(CheckpointError, match="missing"):
        load_training_state(path, modules={"net": model, "extra": _Tiny()}, optimizers={"net": opt})
    with pytest.raises(ValueError, match="reserved"):
        save_training_state(tmp_path / "t.safetensors", modules={"net": model}, metadata={"optim.x": "1"})
    with pytest.raises(ValueError, match="no dots"):
        save_training_state(tmp_path / "t.safetensors", modules={"a.b": model})
    assert not (tmp_path / "t.safetensors").exists()


def test_generators_and_tensors_round_trip(tmp_path):
    """Generator states (uint8) and extra tensors come back in place: the generators then draw
    what the saved ones would have drawn, the tensors hold the saved values on their own device."""
    model, opt = _trained(0)
    latent = torch.Generator().manual_seed(7)
    torch.randn(5, generator=latent)  # a stream part-way through
    step, ema = torch.tensor(41, dtype=torch.int64), torch.linspace(0, 1, 6).reshape(2, 3)
    saved = dict(
        modules={"net": model},
        optimizers={"net": opt},
        generators={"torch": torch.default_generator, "latent": latent},
        tensors={"step": step, "ema": ema},
    )
    global_state = torch.get_rng_state()
    path = save_training_state(tmp_path / "s.safetensors", **saved)
    tensors, _ = read_checkpoint(path)
    assert tensors["rng.latent"].dtype == torch.uint8 and torch.equal(tensors["rng.latent"], latent.get_state())
    assert torch.equal(tensors["rng.torch"], global_state) and tensors["tensor.step"].item() == 41
    expected_latent, expected_global = torch.randn(4, generator=latent), torch.randn(4)

    torch.manual_seed(123)
    other_gen = torch.Generator().manual_seed(99)
    other_step, other_ema = torch.zeros((), dtype=torch.int64), torch.zeros(2, 3)
    other, other_opt = _trained(1)
    load_training_state(
        path,
        modules={"net": other},
        optimizers={"net": other_opt},
        generators={"torch": torch.default_generator, "latent": other_gen},
        tensors={"step": other_step, "ema": other_ema},
    )
    assert torch.equal(torch.randn(4, generator=other_gen), expected_latent)
    assert torch.equal(torch.randn(4), expected_global)
    assert other_step.item() == 41 and torch.equal(other_ema, ema)


def test_generators_and_tensors_refusals_leave_everything_as_it_was(tmp_path):
    model, opt = _trained(0)
    latent = torch.Generator().manual_seed(7)
    path = save_training_state(
        tmp_path / "s.safetensors",
        modules={"net": model},
        generators={"latent": latent},
        tensors={"step": torch.tensor(3)},
    )
    fresh, _ = _trained(1)
    before = {key: value.clone() for key, value in fresh.state_dict().items()}
    gen, step = torch.Generator().manual_seed(1), torch.zeros((), dtype=torch.int64)
    gen_state = gen.get_state()
    cases = [
        (dict(generators={"latent": gen}), "tensor.step"),  # a saved tensor not passed
        (dict(tensors={"step": step}), "rng.latent"),  # a saved generator not passed
        (dict(generators={"latent": gen}, tensors={"step": torch.zeros(2, dtype=torch.int64)}), "shape"),
        (dict(generators={"latent": gen}, tensors={"step": torch.zeros(())}), "int64"),
        (dict(generators={"other": gen}, tensors={"step": step}), "missing"),
    ]
    for kwargs, message in cases:
        with pytest.raises(CheckpointError, match=message):
            load_training_state(path, modules={"net": fresh}, **kwargs)
        assert all(torch.equal(value, before[key]) for key, value in fresh.state_dict().items())
        assert torch.equal(gen.get_state(), gen_state) and step.item() == 0
    with pytest.raises(TypeError, match="generators: 'latent' is a int"):
        save_training_state(tmp_path / "t.safetensors", modules={"net": model}, generators={"latent": 7})
    with pytest.raises(TypeError, match="tensors: 'step' is a int"):
        save_training_state(tmp_path / "t.safetensors", modules={"net": model}, tensors={"step": 3})
    with pytest.raises(ValueError, match="no dots"):
        save_training_state(tmp_path / "t.safetensors", modules={"net": model}, tensors={"a.b": torch.ones(1)})
    assert not (tmp_path / "t.safetensors").exists()
