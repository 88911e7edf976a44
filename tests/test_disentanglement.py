"""Disentanglement metrics on synthetic encoders whose answer is known, and ``eval`` on a shapes run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from registry.eval import disentanglement as dis
from infogan_plugin.evaluate import q_encoder, q_outputs
from registry.data import shapes
from registry.cli import build_cli
from registry.plugins import Host
from registry.train import Trainer

SIZES = shapes.factor_sizes()
SMALL = {  # a fifth of disentanglement_lib's sizes or less, to stay fast
    "mig": {"num_train": 2000},
    "factor_vae": {"num_train": 500, "num_eval": 250, "num_variance_estimate": 2000},
    "dci": {"num_train": 1000, "num_test": 500},
    "sap": {"num_train": 2000, "num_test": 1000},
}
METRIC_FNS = {"mig": dis.mig, "factor_vae": dis.factor_vae_score, "dci": dis.dci, "sap": dis.sap_score}


def identity(factors: torch.Tensor) -> torch.Tensor:
    """The metrics' math needs no pictures: these encoders read the factors themselves."""
    return factors


def perfect_encoder(noise: float = 0.002, seed: int = 0):
    """One dimension per factor: its index scaled to [0, 1], plus a little Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    top = torch.tensor(SIZES, dtype=torch.float64) - 1

    def encode(factors: torch.Tensor) -> torch.Tensor:
        x = factors.double() / top
        return x + noise * torch.randn(x.shape, generator=gen, dtype=torch.float64)

    return encode


def mixed_encoder(matrix: torch.Tensor, extra_dims: int = 0):
    """The perfect code, centred, padded with standard-normal dimensions and multiplied by ``matrix``."""
    base = perfect_encoder()
    gen = torch.Generator().manual_seed(1)

    def encode(factors: torch.Tensor) -> torch.Tensor:
        x = (base(factors) - 0.5) / 0.3
        if extra_dims:
            x = torch.cat([x, torch.randn(x.shape[0], extra_dims, generator=gen, dtype=torch.float64)], dim=1)
        return x @ matrix.T

    return encode


def random_rotation(dim: int, seed: int = 0) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def hadamard8() -> torch.Tensor:
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    return torch.kron(torch.kron(h2, h2), h2) / math.sqrt(8)


def _scores(encode) -> dict[str, dis.MetricResult]:
    return {name: fn(encode, SIZES, shapes.sample_factors, identity, seed=0, **SMALL[name])
            for name, fn in METRIC_FNS.items()}


@pytest.fixture(scope="module")
def perfect() -> dict[str, dis.MetricResult]:
    return _scores(perfect_encoder())


@pytest.fixture(scope="module")
def rotated() -> dict[str, dis.MetricResult]:
    return _scores(mixed_encoder(random_rotation(5)))


def test_perfect_encoder_scores_near_the_top(perfect):
    # FactorVAE: every vote names the fixed factor's own dimension.
    assert perfect["factor_vae"].score == 1.0
    assert perfect["factor_vae"].details["classifier"] == [0, 1, 2, 3, 4]
    # DCI: each code's importance sits on one factor (observed 0.971 with the stump fallback).
    assert perfect["dci"].score > 0.95
    assert perfect["dci"].details["completeness"] > 0.95
    assert perfect["dci"].details["informativeness_test"] > 0.85
    # MIG: factors with at most 20 values are captured by 20 bins; 32/40-valued ones lose
    # about log(20)/log(size) to the discretisation (observed 0.99, 0.98, 0.75, 0.78, 0.78; mean 0.86).
    gaps = perfect["mig"].details["per_factor"]
    assert gaps[0] > 0.95 and gaps[1] > 0.95
    assert all(0.65 < g < math.log(20) / math.log(size) + 0.02 for g, size in zip(gaps[2:], SIZES[2:]))
    assert perfect["mig"].score > 0.8
    # SAP: a linear classifier on one dimension separates the 3 shapes but few of 32 positions
    # (observed 0.17, with gap 0.65 on the shape factor).
    assert perfect["sap"].details["per_factor"][0] > 0.5
    assert perfect["sap"].score > 0.12
    for result in perfect.values():
        assert result.seconds > 0
        json.dumps(result.to_json())


def test_rotated_encoder_scores_clearly_lower(perfect, rotated):
    # observed with this rotation: MIG 0.13, FactorVAE 0.90, DCI 0.25, SAP 0.07
    assert rotated["mig"].score < 0.3 < perfect["mig"].score
    assert rotated["dci"].score < 0.5 < perfect["dci"].score
    assert rotated["sap"].score < 0.6 * perfect["sap"].score
    # FactorVAE only needs each factor to move a different dimension most, which a random
    # rotation often still satisfies; it must still lose votes here.
    assert rotated["factor_vae"].score < 0.95
    # information is kept: a rotation loses nothing a classifier on all codes can use
    assert rotated["dci"].details["informativeness_train"] > 0.3


def test_fully_mixed_code_scores_near_chance():
    encode = mixed_encoder(hadamard8(), extra_dims=3)  # every dimension weighs every factor equally
    fvae = dis.factor_vae_score(encode, SIZES, shapes.sample_factors, identity,
                                num_train=300, num_eval=150, num_variance_estimate=1000)
    assert fvae.score < 0.4  # chance is about 1/5
    mig = dis.mig(encode, SIZES, shapes.sample_factors, identity, num_train=2000)
    assert mig.score < 0.05


def test_metrics_ignore_the_order_and_scale_of_code_dimensions(perfect):
    base = perfect_encoder()
    order = torch.tensor([3, 0, 4, 1, 2])

    def shuffled(factors):
        return base(factors)[:, order] * torch.tensor([2.0, -1.0, 0.5, 3.0, 1.0], dtype=torch.float64)

    mig = dis.mig(shuffled, SIZES, shapes.sample_factors, identity, **SMALL["mig"])
    assert mig.score == pytest.approx(perfect["mig"].score, abs=1e-9)
    fvae = dis.factor_vae_score(shuffled, SIZES, shapes.sample_factors, identity, **SMALL["factor_vae"])
    assert fvae.score == 1.0 and fvae.details["classifier"] == [3, 0, 4, 1, 2]


def test_factor_vae_prunes_collapsed_dimensions_and_keeps_their_index():
    base = perfect_encoder()

    def with_constant(factors):  # dimension 0 never moves
        x = base(factors)
        return torch.cat([torch.full((x.shape[0], 1), 0.3, dtype=torch.float64), x], dim=1)

    result = dis.factor_vae_score(with_constant, SIZES, shapes.sample_factors, identity,
                                  num_train=100, num_eval=50, num_variance_estimate=500)
    assert result.details["active_dims"] == [1, 2, 3, 4, 5]
    votes = np.array(result.details["votes"])
    assert votes[:, 0].sum() == 0  # the collapsed dimension receives no votes
    assert result.details["classifier"][1:] == [0, 1, 2, 3, 4]
    assert result.score == 1.0

    collapsed = dis.factor_vae_score(lambda f: torch.zeros(f.shape[0], 3), SIZES, shapes.sample_factors, identity,
                                     num_train=10, num_eval=10, num_variance_estimate=100)
    assert collapsed.score == 0.0 and collapsed.details["active_dims"] == []


def test_mig_matches_its_definition_on_a_hand_made_case():
    # two binary factors; code 0 copies factor 0, code 1 is factor 0 with 10% of the bits
    # flipped, code 2 copies factor 1
    gen = torch.Generator().manual_seed(0)

    def encode(f):
        flips = (torch.rand(f.shape[0], generator=gen) < 0.1).long()
        return torch.stack([f[:, 0], f[:, 0] ^ flips, f[:, 1]], dim=1).double()

    result = dis.mig(encode, (2, 2), dis.uniform_factor_sampler((2, 2)), identity, num_train=20_000)
    mi = np.array(result.details["mutual_information"])
    ln2 = math.log(2)
    noisy = ln2 + 0.1 * math.log(0.1) + 0.9 * math.log(0.9)  # ln 2 - H(0.1) = 0.368 nats
    assert mi[:, 0] == pytest.approx([ln2, noisy, 0.0], abs=0.01)
    assert mi[:, 1] == pytest.approx([0.0, 0.0, ln2], abs=0.01)
    assert result.details["factor_entropy"] == pytest.approx([ln2, ln2], abs=1e-3)
    assert result.details["per_factor"] == pytest.approx([(ln2 - noisy) / ln2, 1.0], abs=0.015)
    assert result.score == pytest.approx(((ln2 - noisy) / ln2 + 1.0) / 2, abs=0.01)


def test_dci_scores_of_hand_made_importance_matrices():
    # two codes share factor 0, a third holds factor 1: every code is pure, factor 0 is split
    d, c, per_code = dis.dci_from_importance(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert d == pytest.approx(1.0) and per_code == pytest.approx([1.0, 1.0, 1.0])
    assert c == pytest.approx(2 / 3 * (1 - math.log(2) / math.log(3)) + 1 / 3)
    # one code spread evenly over both factors, one pure code
    d, c, per_code = dis.dci_from_importance(np.array([[0.5, 0.5], [0.0, 1.0]]))
    assert per_code == pytest.approx([0.0, 1.0]) and d == pytest.approx(0.5)
    h_factor1 = -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)  # its column [0.5, 1] normalised
    assert c == pytest.approx(0.25 * 1.0 + 0.75 * (1 - h_factor1 / math.log(2)))


def test_stump_ensemble_finds_the_informative_code_and_predicts_well():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 1500)
    x = np.stack([rng.normal(size=1500), y + 0.1 * rng.normal(size=1500), rng.normal(size=1500)], axis=1)
    importance, pred_train, pred_test = dis._boosted_stumps(x[:1000], y[:1000], x[1000:], rounds=30)
    assert importance.argmax() == 1 and importance[1] > 0.95 and importance.sum() == pytest.approx(1.0)
    assert np.mean(pred_test == y[1000:]) > 0.95
    assert set(np.unique(pred_train)) <= set(range(5))


def test_linear_svm_solves_its_objective():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(3, 400)))
    t = torch.from_numpy(np.where(rng.random(400) < 0.3, 1.0, -1.0))[None].expand(3, -1)
    x = x + 0.8 * t  # shifted classes, not separable
    cost = torch.full((3, 400), 0.05, dtype=torch.float64)
    w, b = dis._squared_hinge_svm(x, t, cost)

    def objective(w_, b_):
        viol = (1 - t * (w_[:, None] * x + b_[:, None])).clamp_min(0)
        return 0.5 * (w_**2 + b_**2) + (cost * viol**2).sum(dim=1)

    best = objective(w, b)
    for dw, db in ((1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3)):
        assert torch.all(objective(w + dw, b + db) > best)
    assert torch.all(w > 0)  # positives lie to the right


def test_sap_classifier_is_balanced_and_one_vs_rest():
    rng = np.random.default_rng(0)
    # 10% positives shifted by one standard deviation: "balanced" class weights move the
    # threshold towards the middle, trading accuracy (0.67 here; 0.9 unweighted) for the rare class
    y = (rng.random(4000) < 0.1).astype(np.int64)
    x = rng.normal(size=4000) + y
    accuracy = dis._linear_svc_accuracy(x[:3000, None], y[:3000], x[3000:, None], y[3000:])
    assert accuracy.shape == (1,) and 0.55 < accuracy[0] < 0.8
    # three well separated clusters on one line: one-vs-rest still finds the middle one
    y3 = rng.integers(0, 3, 3000)
    x3 = np.stack([5.0 * y3 + 0.5 * rng.normal(size=3000), rng.normal(size=3000)], axis=1)
    accuracy = dis._linear_svc_accuracy(x3[:2000], y3[:2000], x3[2000:], y3[2000:])
    assert accuracy[0] > 0.98 and accuracy[1] < 0.45  # the informative dimension, then noise


def test_evaluate_all_scales_disentanglement_lib_sizes():
    started = []
    results = dis.evaluate_all(perfect_encoder(), SIZES, shapes.sample_factors, identity, num_samples=300,
                               on_metric=lambda name: started.append((name, len(started))))
    assert list(results) == ["mig", "factor_vae", "dci", "sap"]
    assert started == [("mig", 0), ("factor_vae", 1), ("dci", 2), ("sap", 3)]  # each announced as it starts
    assert results["mig"].details["num_train"] == 300
    assert results["factor_vae"].details["num_train"] == 300 and results["factor_vae"].details["num_eval"] == 150
    assert results["factor_vae"].details["batch_size"] == 64
    assert results["dci"].details["num_test"] == 150 and results["sap"].details["num_test"] == 150
    expected = "sklearn" if dis.sklearn_available() else "boosted_stumps"
    assert results["dci"].details["importance_model"] == expected
    with pytest.raises(ValueError, match="unknown metrics"):
        dis.evaluate_all(perfect_encoder(), SIZES, shapes.sample_factors, identity, metrics=["beta_vae"])


def test_metrics_score_rendered_images():
    """The metrics on real pictures, with an encoder that measures the sprite's centre."""
    columns = torch.arange(64, dtype=torch.float64)

    def centroid(images):
        x = images[:, 0].double()
        mass = x.sum(dim=(1, 2))
        return torch.stack([(x.sum(dim=1) * columns).sum(1) / mass, (x.sum(dim=2) * columns).sum(1) / mass], dim=1)

    result = dis.mig(centroid, SIZES, shapes.sample_factors, shapes.render, num_train=1000)
    gaps = result.details["per_factor"]
    assert gaps[3] > 0.6 and gaps[4] > 0.6  # x and y are each read from their own dimension
    assert max(gaps[:3]) < 0.1
    fvae = dis.factor_vae_score(centroid, SIZES, shapes.sample_factors, shapes.render,
                                num_train=100, num_eval=50, num_variance_estimate=500)
    votes = np.array(fvae.details["votes"])
    assert votes.sum() == 100 and fvae.details["classifier"] == [3, 4]  # column -> x, row -> y
    assert votes[3, 0] == votes[3].sum() and votes[4, 1] == votes[4].sum()


def test_eval_on_a_shapes_run_writes_the_metrics(tmp_path, monkeypatch, tiny):
    """Train two steps on ``shapes`` and evaluate with small metric sizes. The conftest's
    ``tiny`` model stands in for dcgan64 so that the run and the FactorVAE votes (64 images
    each) cost milliseconds; dataset, checkpoint, Q encoder and metrics are the real ones."""
    monkeypatch.setattr(shapes, "SUBSET_SIZE", 256)  # the run only needs a few images to train on
    run = tmp_path / "tmp"
    cli = build_cli()
    plugins = ["--plugin", tiny, "--plugin", "infogan"]
    result = CliRunner().invoke(cli, [*plugins, "train", "--dataset", "shapes", "--code", "uniform:2",
                                      "--model", "tiny", "--steps", "2", "--batch-size", "16", "--no-progress",
                                      "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, [*plugins, "eval", str(run), "--samples", "32", "--metrics-samples", "16"])
    assert result.exit_code == 0, result.output
    assert "disentanglement of c1, c2 (16 samples): MIG" in result.stdout
    # progress goes to stderr, one line per stage as it starts; stdout keeps only the results
    stages = [line for line in result.stderr.splitlines() if line.startswith("[eval] ")]
    assert [line.split()[1] for line in stages] == ["L_I", "MIG", "FactorVAE", "DCI", "SAP"]
    assert "16 samples" in stages[2] and "[eval]" not in result.stdout
    report = json.loads((run / "eval.json").read_text())
    assert report["dataset"] == "shapes"
    dis_report = report["disentanglement"]
    assert dis_report["encoder"] == ["c1", "c2"] and dis_report["factors"] == list(shapes.FACTOR_NAMES)
    for name in ("mig", "factor_vae", "dci", "sap"):
        assert 0.0 <= dis_report[name]["score"] <= 1.0, name
        assert dis_report[name]["seconds"] > 0, name
    assert len(dis_report["mig"]["mutual_information"]) == 2  # one row per code dimension
    assert dis_report["mig"]["num_train"] == 16 and dis_report["dci"]["num_test"] == 8
    fvae = dis_report["factor_vae"]
    assert fvae["active_dims"] == [i for i, v in enumerate(fvae["global_variance"]) if math.sqrt(v) >= 0.05]

    # the encoder is Q's point estimate of each code on the rendered pictures, scaled like training data
    trainer = Trainer.from_checkpoint(run, Host.create([tiny, "infogan"]), device="cpu")
    factors = shapes.sample_factors(5, torch.Generator().manual_seed(0))
    images = shapes.render(factors)
    codes = q_encoder(trainer)(images)
    q_out = q_outputs(trainer, images.float() / 127.5 - 1.0)
    expected = torch.cat([slot.q_loss.predict(chunk) for slot, chunk in zip(trainer.sampler.slots,
                                                                             trainer.sampler.split_q(q_out))], dim=1)
    assert codes.shape == (5, 2) and torch.allclose(codes, expected)

    result = CliRunner().invoke(cli, [*plugins, "eval", str(run), "--no-disentanglement", "--samples", "8"])
    assert result.exit_code == 0, result.output
    assert "disentanglement" not in json.loads((run / "eval.json").read_text())
    result = CliRunner().invoke(cli, [*plugins, "eval", str(run), "--metrics-samples", "1"])
    assert result.exit_code == 2 and "--metrics-samples" in result.output
