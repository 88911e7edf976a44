"""InfoGAN embedded in a loop shaped like a public DCGAN script (``tests/embedded_dcgan.py``:
D returns only logits, G is updated first, N(0, 1) noise, its own ``nn.Sequential`` models),
and the helpers that make that possible without editing D: ``trunk_features``, ``traversals``,
``categorical_accuracy``, and ``save_training_state``'s generators and tensors.

The script resumed from its state file after half the steps ends bit-identical to the same
script run straight through, in fresh processes (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from infogan_plugin import (
    Categorical,
    CategoricalCE,
    CodeSlot,
    GaussianNLLFixed,
    LatentSpec,
    QHead,
    Uniform,
    categorical_accuracy,
    traversals,
    trunk_features,
)
from registry import read_checkpoint

SCRIPT = Path(__file__).with_name("embedded_dcgan.py")


def _script(tmp_path: Path, *args: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_resumed_dcgan_script_is_bit_identical_to_a_straight_run(tmp_path):
    """2 epochs (8 steps) straight, against 1 epoch, a new process that resumes from
    state.safetensors, and 1 more: every weight, Adam moment, generator state and the epoch
    counter are equal bit for bit, and so are the traversal pictures and the logged losses."""
    straight = _script(tmp_path, "--epochs", "2", "--out", "a")
    half = _script(tmp_path, "--epochs", "1", "--out", "b")
    resumed = _script(tmp_path, "--epochs", "2", "--out", "b", "--resume", "b/state.safetensors")
    assert [r.get("epoch") for r in straight] == [1, 2, None] and half[0] == straight[0]
    assert resumed[0] == straight[1] and resumed[-1] == straight[-1]  # epoch 2's losses, L_I, accuracy

    a, meta_a = read_checkpoint(tmp_path / "a" / "state.safetensors")
    b, meta_b = read_checkpoint(tmp_path / "b" / "state.safetensors")
    assert a.keys() == b.keys() and meta_a == meta_b
    assert {key.split(".")[0] for key in a} == {"model", "optim", "rng", "tensor"}
    assert a["tensor.epoch"].item() == 2 and a["rng.latent"].dtype == torch.uint8
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, different
    for name in ("traversal-digit.png", "traversal-c2.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # what the script records lets a reader rebuild the codes it trained with
    assert LatentSpec.from_description(meta_a["latent_spec"]).noise == "normal"


# ------------------------------------------------------------------------- the pieces in-process


def _spec() -> LatentSpec:
    return LatentSpec(
        noise_dim=4,
        noise="normal",
        slots=[
            CodeSlot("digit", Categorical(k=3), CategoricalCE(), lam=1.0),
            CodeSlot("c2", Uniform(), GaussianNLLFixed(), lam=0.1),
        ],
    )


def _models(spec: LatentSpec) -> tuple[nn.Sequential, nn.Sequential, QHead]:
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(spec.input_dim, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 64), nn.Tanh())
    G.append(nn.Unflatten(1, (1, 8, 8)))
    D = nn.Sequential(
        nn.Conv2d(1, 4, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout2d(0.25), nn.Flatten(), nn.Linear(4 * 4 * 4, 1)
    )
    return G, D, QHead(in_features=64, out_dim=spec.q_dim)


def test_trunk_features_capture_a_layer_without_changing_d():
    spec = _spec()
    _, D, q_head = _models(spec)
    x = torch.randn(6, 1, 8, 8)
    D.eval()  # no dropout: two passes agree
    expected_logits = D(x)
    with trunk_features(D, "1") as trunk:  # the LeakyReLU's (B, 4, 4, 4) output, flattened
        assert torch.equal(D(x), expected_logits)  # D's return value is untouched
        assert trunk.output.shape == (6, 64) and trunk.dim == 64
        assert torch.equal(trunk.output, D[:2](x).flatten(1))
        assert torch.equal(trunk(x[:2]), D[:2](x[:2]).flatten(1))  # calling it runs D on images
        D(torch.zeros(3, 1, 8, 8))
        assert trunk.output.shape[0] == 3  # always the latest call
    assert not D[1]._forward_hooks  # removed on exit
    with pytest.raises(RuntimeError, match="was removed"):
        trunk.output
    unflat = trunk_features(D, D[3], flatten=False)  # the submodule itself works too
    D(x)
    assert unflat.output.shape == (6, 64) and unflat.layer_name == "3"
    unflat.remove()
    with pytest.raises(ValueError, match="'trunk'.*'0', '1', '2', '3', '4'"):
        trunk_features(D, "trunk")
    with pytest.raises(ValueError, match="not a submodule"):
        trunk_features(D, nn.Linear(1, 1))
    with pytest.raises(RuntimeError, match="no forward pass"):
        trunk_features(D, "3").output


def test_information_loss_through_the_hook_reaches_d_trunk_and_q_only():
    """Q's loss on the hooked features trains Q and the layers below the hook; D's head after
    the hook gets no gradient from it."""
    spec = _spec()
    G, D, q_head = _models(spec)
    trunk = trunk_features(D, "3")
    g_input, codes = spec.sample(8, generator=torch.Generator().manual_seed(0), device="cpu")
    D(G(g_input))
    info, _ = spec.information_loss(q_head(trunk.output), codes)
    info.backward()
    assert D[0].weight.grad.abs().sum() > 0 and q_head.net[0].weight.grad.abs().sum() > 0
    assert D[4].weight.grad is None  # the real/fake head is above the hooked layer
    assert all(p.grad.abs().sum() > 0 for p in G.parameters() if p.dim() > 1)


def _step(spec, G, D, q_head, opt_d, trunk, *, g_first: bool, zero_grad: bool = True, control: bool = False):
    """One G-then-D (or D only) iteration as the guide writes it; returns the D/Q gradients
    of the D step."""
    bce = nn.BCEWithLogitsLoss()
    torch.manual_seed(5)
    g_input, codes = spec.sample(8, generator=torch.Generator().manual_seed(1), device="cpu")
    fake = G(g_input)
    if g_first:
        g_loss = bce(D(fake), torch.ones(8, 1))
        if not control:
            g_loss = g_loss + spec.information_loss(q_head(trunk.output), codes)[0]
        g_loss.backward()
    if zero_grad:
        opt_d.zero_grad()
    torch.manual_seed(6)  # the same dropout masks in the D step whatever ran before it
    d_loss = bce(D(torch.zeros(8, 1, 8, 8)), torch.ones(8, 1)) + bce(D(fake.detach()), torch.zeros(8, 1))
    features = trunk.output.detach() if control else trunk.output
    weights = [1.0] * len(spec.slots) if control else None
    d_loss = d_loss + spec.information_loss(q_head(features), codes, weights=weights)[0]
    d_loss.backward()
    return [p.grad.clone() for p in [*D.parameters(), *q_head.parameters()]]


def test_update_order_needs_only_zero_grad_before_d_backward():
    """The G step's information loss leaves gradients in Q and D's trunk; with opt_d.zero_grad()
    before D's backward the D step computes the same update whether G went first or not, and
    without it the leftovers would be added to D's and Q's step."""
    spec = _spec()

    def grads(**kwargs):
        G, D, q_head = _models(spec)
        opt_d = torch.optim.Adam([*D.parameters(), *q_head.parameters()])
        with trunk_features(D, "3") as trunk:
            return _step(spec, G, D, q_head, opt_d, trunk, **kwargs)

    alone = grads(g_first=False)
    after_g = grads(g_first=True)
    leftovers = grads(g_first=True, zero_grad=False)
    assert all(torch.equal(a, b) for a, b in zip(alone, after_g))
    assert not all(torch.equal(a, b) for a, b in zip(alone, leftovers))


def test_lambda0_control_leaves_d_a_plain_gan():
    """The control: no information term for G, Q reads detached features with weight 1. D's
    gradients are then those of the GAN loss alone; Q still learns to read the codes."""
    spec = _spec()
    G, D, q_head = _models(spec)
    opt_d = torch.optim.Adam([*D.parameters(), *q_head.parameters()])
    with trunk_features(D, "3") as trunk:
        control = _step(spec, G, D, q_head, opt_d, trunk, g_first=True, control=True)
    n_d = len(list(D.parameters()))
    G, D, q_head = _models(spec)
    bce = nn.BCEWithLogitsLoss()
    g_input, _ = spec.sample(8, generator=torch.Generator().manual_seed(1), device="cpu")
    torch.manual_seed(6)
    plain = bce(D(torch.zeros(8, 1, 8, 8)), torch.ones(8, 1)) + bce(D(G(g_input).detach()), torch.zeros(8, 1))
    plain.backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(control[:n_d], D.parameters()))
    assert all(g.abs().sum() > 0 for g in control[n_d:] if g.dim() > 1)  # Q's weights learn


def test_traversals_one_grid_per_code_in_eval_mode_and_back(tmp_path):
    spec = LatentSpec(
        noise_dim=4,
        slots=[
            CodeSlot("digit", Categorical(k=3), CategoricalCE(), lam=1.0),
            CodeSlot("pose", Uniform(dim=2), GaussianNLLFixed(), lam=0.1),
        ],
    )
    G, _, _ = _models(spec)
    G.train()
    G(torch.randn(16, spec.input_dim))  # running statistics away from their initial values
    buffers = {key: value.clone() for key, value in G.state_dict().items()}
    global_rng = torch.get_rng_state()

    grids = traversals(G, spec, rows=4, steps=3, out_dir=tmp_path)
    assert {key: tuple(grid.shape) for key, grid in grids.items()} == {
        "digit": (4, 3, 1, 8, 8),
        "pose-d0": (4, 3, 1, 8, 8),
        "pose-d1": (4, 3, 1, 8, 8),
    }
    assert G.training and not any(grid.requires_grad for grid in grids.values())
    assert all(torch.equal(value, buffers[key]) for key, value in G.state_dict().items())
    assert torch.equal(torch.get_rng_state(), global_rng)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "traversal-digit.png",
        "traversal-pose-d0.png",
        "traversal-pose-d1.png",
    ]
    # rows share z and the other codes across grids; eval mode: a row does not depend on its batch
    G.eval()
    with torch.no_grad():
        first_row = G(spec.traversal_inputs(0, n_rows=4, generator=torch.Generator().manual_seed(0), device="cpu"))
    assert torch.allclose(grids["digit"].flatten(0, 1), first_row, atol=1e-6)
    assert torch.equal(traversals(G, spec, rows=4, steps=3)["pose-d1"], grids["pose-d1"])
    assert not G.training  # a model in eval mode stays there


def test_categorical_accuracy_on_labelled_data():
    spec = _spec()
    labels = torch.tensor([7, 7, 8, 9, 9, 9, 8, 7])
    values = {7: 2, 8: 0, 9: 1}  # Q's classes are an arbitrary permutation of the labels
    q_out = torch.zeros(8, spec.q_dim)
    for i, label in enumerate(labels.tolist()):
        q_out[i, values[label]] = 5.0
    q_out[0, :3] = torch.tensor([5.0, 0.0, 0.0])  # one 7 read as the 8s' value
    report = categorical_accuracy(spec, q_out, labels)
    assert set(report) == {"digit"}  # the uniform code is no classification
    assert report["digit"]["accuracy"] == 7 / 8
    assert report["digit"]["mapping"] == {"0": 8, "1": 9, "2": 7} and report["digit"]["labels"] == [7, 8, 9]
    assert report["digit"]["confusion"] == [[1, 2, 0], [0, 0, 3], [2, 0, 0]]
    with pytest.raises(ValueError, match=r"q_out must have shape \(N, 4\)"):
        categorical_accuracy(spec, q_out[:, :3], labels)
    with pytest.raises(ValueError, match="labels must be integers of shape"):
        categorical_accuracy(spec, q_out, labels[:5])
    with pytest.raises(ValueError, match="labels must be integers"):
        categorical_accuracy(spec, q_out, labels.float())
