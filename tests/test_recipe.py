"""The disentanglement recipe's training pieces: spectral norm, several G updates per D
update, D-balance metrics and the chance warning, the configurable Q head, and ``shapes``
batches drawn fresh from the whole grid. Each is exact on resume and recorded in the run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from torch import nn

from infogan_plugin.head import QHead
from registry.train.balance import BalanceWatch
from registry.checkpoint import checkpoint_name, read_checkpoint
from registry.data.shapes import FACTOR_NAMES, draw_batch, factor_sizes, render
from registry.nets.spectral import apply_spectral_norm

if TYPE_CHECKING:
    from conftest import Ganrun

SHAPES = [
    "--dataset",
    "shapes",
    "--model",
    "conv64",
    "--code",
    "uniform:2",
    "--noise-dim",
    3,
    "--batch-size",
    8,
    "--log-every",
    1,
    "--sample-every",
    100,
    "--keep-checkpoints",
    0,
    "--seed",
    3,
]
RECIPE = ["--spectral-norm", "--g-steps", 2, "--q-norm", "none", "--q-slope", 0.2, "--q-hidden", 16]


@pytest.fixture(scope="module")
def recipe_runs(ganrun: Ganrun, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The recipe for 4 steps straight, and 2 + resume + 2 in a new process; the plain run."""
    root = tmp_path_factory.mktemp("recipe")
    runs = {name: root / name for name in ("straight", "split", "plain")}
    ganrun.train(runs["straight"], "--steps", 4, "--save-every", 2, *SHAPES, *RECIPE, plugins=["infogan"])
    ganrun.train(runs["split"], "--steps", 2, "--save-every", 2, *SHAPES, *RECIPE, plugins=["infogan"])
    resumed = ganrun.run("train", "--resume", runs["split"], "--steps", 4, "--no-progress", plugins=["infogan"])
    assert resumed.returncode == 0, resumed.stderr
    ganrun.train(runs["plain"], "--steps", 4, "--save-every", 2, *SHAPES, plugins=["infogan"])
    return runs


def test_recipe_resumes_bit_identically(ganrun: Ganrun, recipe_runs: dict[str, Path]) -> None:
    # power-iteration vectors, the Q head and the freshly drawn batches all continue exactly
    for step in (2, 4):
        ganrun.assert_same_checkpoint(
            recipe_runs["straight"] / "checkpoints" / checkpoint_name(step),
            recipe_runs["split"] / "checkpoints" / checkpoint_name(step),
        )


def test_spectral_norm_covers_d_its_head_and_q_but_not_g(recipe_runs: dict[str, Path]) -> None:
    tensors, _ = read_checkpoint(recipe_runs["straight"] / "checkpoints" / checkpoint_name(4))
    vectors = {k.rsplit(".parametrizations", 1)[0] for k in tensors if k.endswith("._u")}
    assert "model.D.head" in vectors
    assert {"model.Q.net.0", "model.Q.net.2"} <= vectors  # no batch norm: Linear, LeakyReLU, Linear
    assert sum(k.startswith("model.D.trunk.") for k in vectors) == 5  # four convolutions and the FC layer
    assert not any(k.startswith("model.G.") for k in vectors)
    plain, _ = read_checkpoint(recipe_runs["plain"] / "checkpoints" / checkpoint_name(4))
    assert not any("parametrizations" in k for k in plain)
    assert any(k.startswith("model.Q.net.1.running_mean") for k in plain)  # the default Q keeps batch norm


def test_recipe_is_recorded_and_refused_if_changed_on_resume(ganrun: Ganrun, recipe_runs: dict[str, Path]) -> None:
    config = ganrun.config(recipe_runs["straight"])["config"]
    assert config["spectral_norm"] is True and config["g_steps"] == 2
    assert (config["extra"]["q_norm"], config["extra"]["q_slope"], config["extra"]["q_hidden"]) == ("none", 0.2, 16)
    for flag in (["--no-spectral-norm"], ["--g-steps", 1], ["--q-norm", "batch"], ["--q-hidden", 32]):
        result = ganrun.invoke(
            "train", "--resume", recipe_runs["straight"], "--steps", 6, "--no-progress", *flag, plugins=["infogan"]
        )
        assert result.exit_code == 2, ganrun.describe(result)
        assert "refusing to change" in result.output


def test_two_g_steps_train_g_differently_and_log_the_same_quantities(ganrun: Ganrun, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    ganrun.train(one, "--steps", 2, "--save-every", 2, *SHAPES, plugins=["infogan"])
    ganrun.train(two, "--steps", 2, "--save-every", 2, "--g-steps", 2, *SHAPES, plugins=["infogan"])
    a, _ = read_checkpoint(one / "checkpoints" / checkpoint_name(2))
    b, _ = read_checkpoint(two / "checkpoints" / checkpoint_name(2))
    assert int(b["optim.G.state.0.step"]) == 2 * int(a["optim.G.state.0.step"]) == 4  # Adam counted 4 G updates
    assert int(b["optim.D.state.0.step"]) == int(a["optim.D.state.0.step"]) == 2
    first_one, first_two = ganrun.metrics(one)[0], ganrun.metrics(two)[0]
    assert set(first_one) == set(first_two)
    # step 1's first G update sees the same D and fakes either way: the logged value is that one, not a sum
    assert first_one["g/adv"] == pytest.approx(first_two["g/adv"], rel=1e-5)


def test_balance_metrics_are_logged(ganrun: Ganrun, recipe_runs: dict[str, Path]) -> None:
    for record in ganrun.metrics(recipe_runs["straight"]):
        assert 0 <= record["balance/acc_real"] <= 1 and 0 <= record["balance/acc_fake"] <= 1
        assert record["balance/logit_std"] >= 0 and math.isfinite(record["balance/logit_gap"])
        assert "balance/chance_steps" in record


@pytest.mark.parametrize(
    "bad",
    [
        (["--g-steps", 0], "--g-steps"),
        (["--g-steps", -2], "--g-steps"),
        (["--q-hidden", 0], "--q-hidden"),
        (["--q-slope", -0.1], "--q-slope"),
        (["--q-slope", "nan"], "--q-slope"),
        (["--q-norm", "layer"], "--q-norm"),
    ],
)
def test_bad_recipe_values_are_refused_naming_the_option(ganrun: Ganrun, tmp_path: Path, bad) -> None:
    flags, option = bad
    result = ganrun.invoke("train", "--out", tmp_path / "r", "--steps", 1, *SHAPES, *flags, plugins=["infogan"])
    assert result.exit_code == 2, ganrun.describe(result)
    assert option in result.output
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------ the chance warning


def _line(real: float, fake: float, gap: float) -> dict[str, float]:
    return {"balance/acc_real": real, "balance/acc_fake": fake, "balance/logit_gap": gap}


@pytest.mark.parametrize("seed", range(20))
def test_balance_watch_warns_once_per_stretch_at_chance(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    watch = BalanceWatch(steps=300)
    since, warned_in_stretch = None, False
    for step in range(50, 5000, 50):
        kind = int(torch.randint(3, (), generator=gen))
        at_chance = kind < 2
        u = float(torch.rand((), generator=gen))
        if kind == 0:  # one logit for every image, just above 0: real all right, fake all wrong
            metrics = _line(1.0, 0.09 * u, 0.3 * u)
        elif kind == 1:  # accuracies that look fine, but the logits barely differ
            metrics = _line(0.9, 0.2 + 0.7 * u, 0.049 * u)
        else:  # a contest
            metrics = _line(0.9, 0.5 + 0.4 * u, 0.05 + u)
        warning = watch.update(step, metrics)
        if at_chance:
            since = step if since is None else since
            expect = step - since >= 300 and not warned_in_stretch
            warned_in_stretch |= expect
        else:
            since, warned_in_stretch, expect = None, False, False
        assert (warning is not None) == expect, (step, metrics)
        assert metrics["balance/chance_steps"] == (step - since if since is not None else 0)
        if warning:
            assert "at chance since step" in warning and "D/G balance" in warning


def test_trainer_prints_the_chance_warning(ganrun: Ganrun, tiny: str, tmp_path: Path, monkeypatch) -> None:
    # a learning rate of ~0 keeps D's logits where they start, identical for real and fake
    monkeypatch.setattr(
        BalanceWatch.__init__, "__kwdefaults__", {"accuracy": 0.55, "gap": 0.05, "steps": 3, "hint": "unused"}
    )
    data = ganrun.write_idx(tmp_path / "idx", 64)
    result = ganrun.train(
        tmp_path / "r",
        "--model",
        "tiny",
        "--dataset",
        "mnist-idx",
        "--data-dir",
        data,
        "--batch-size",
        16,
        "--steps",
        8,
        "--log-every",
        1,
        "--lr-d",
        1e-30,
        "--lr-g",
        1e-30,
        "--save-every",
        8,
        plugins=[tiny],
    )
    assert result.stderr.count("warning: D has been at chance") == 1, result.stderr
    assert "Try --spectral-norm, or a lower --lr-g than 1e-30" in result.stderr


# ------------------------------------------------------------------------------ pieces


def test_apply_spectral_norm_bounds_every_layer() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(50)
    apply_spectral_norm(net)
    for _ in range(30):  # power iterations converge in training-mode forwards
        net(torch.randn(2, 1, 8, 8))
    net.eval()
    with torch.no_grad():
        for layer in (net[0], net[2]):
            sigma = float(torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2))
            assert sigma == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("norm,batchnorms", [("batch", 1), ("none", 0)])
def test_q_head_norm(norm: str, batchnorms: int) -> None:
    head = QHead(in_features=8, out_dim=3, hidden=5, negative_slope=0.2, norm=norm)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == batchnorms
    assert head(torch.randn(4, 8)).shape == (4, 3)
    with pytest.raises(ValueError, match="norm must be one of"):
        QHead(in_features=8, out_dim=3, norm="layer")


def test_drawn_batches_are_a_pure_function_of_the_generator_and_cover_the_grid() -> None:
    a = draw_batch(64, torch.Generator().manual_seed(5), "cpu")
    b = draw_batch(64, torch.Generator().manual_seed(5), "cpu")
    c = draw_batch(64, torch.Generator().manual_seed(6), "cpu")
    assert a.dtype == torch.uint8 and a.shape == (64, 1, 64, 64)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert draw_batch(4, torch.Generator().manual_seed(5), "cpu", image_size=32).shape == (4, 1, 32, 32)
    assert len(FACTOR_NAMES) == len(factor_sizes())


@pytest.mark.parametrize("scale", range(6))
@pytest.mark.parametrize("orientation", [0, 20])
def test_heart_notch_shows_at_every_scale(scale: int, orientation: int) -> None:
    """Some column between the heart's lobes is empty at the lobes' top row and filled lower
    down: the notch is at least one pixel deep."""
    image = render(torch.tensor([[2, scale, orientation, 16, 16]]))[0, 0].bool()
    if orientation == 20:  # upside down: the lobes are at the bottom
        image = image.flip(0)
    rows = image.any(1).nonzero().flatten()
    cols = image.any(0).nonzero().flatten()
    top = int(rows[0])
    centre = (int(cols[0]) + int(cols[-1])) // 2
    window = image[:, centre - 1 : centre + 2]
    notch = [c for c in range(3) if not window[top, c] and window[top:, c].any()]
    assert notch, f"no notch at scale {scale}"
    assert image[top, : centre - 1].any() and image[top, centre + 2 :].any()  # both lobes reach the top row


# ------------------------------------------------------------------------------ --eval-every


def test_eval_every_logs_scores_and_changes_no_weight(ganrun: Ganrun, tmp_path: Path) -> None:
    scored, plain = tmp_path / "scored", tmp_path / "plain"
    common = [*SHAPES, "--steps", 4, "--save-every", 4]
    ganrun.train(scored, *common, "--log-every", 2, "--eval-every", 2, "--eval-samples", 60, plugins=["infogan"])
    ganrun.train(plain, *common, "--log-every", 2, plugins=["infogan"])
    rows = ganrun.metrics(scored)
    assert [r["step"] for r in rows] == [2, 4]
    for row in rows:
        for key in ("mig", "factor_vae", "dci", "sap"):
            assert 0.0 <= row[f"disent/{key}"] <= 1.0
    assert not any(k.startswith("disent/") for r in ganrun.metrics(plain) for k in r)
    ganrun.assert_same_checkpoint(
        scored / "checkpoints" / checkpoint_name(4), plain / "checkpoints" / checkpoint_name(4)
    )
    report = ganrun.invoke("report", scored, plugins=["infogan"])
    assert report.exit_code == 0, ganrun.describe(report)
    assert "Disentanglement during training" in (scored / "report.html").read_text()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--eval-every", 3, "--log-every", 2], "multiple of --log-every"),
        (["--eval-every", -1], "integer >= 0"),
        (["--eval-samples", 0], "integer >= 1"),
    ],
)
def test_bad_eval_every_is_refused(ganrun: Ganrun, tmp_path: Path, flags, message: str) -> None:
    result = ganrun.invoke("train", "--out", tmp_path / "r", "--steps", 1, *SHAPES, *flags, plugins=["infogan"])
    assert result.exit_code == 2 and message in result.output, ganrun.describe(result)


def test_eval_every_needs_factors(ganrun: Ganrun, tmp_path: Path) -> None:
    result = ganrun.invoke("train", "--out", tmp_path / "r", "--steps", 1, "--eval-every", 50, plugins=["infogan"])
    assert result.exit_code == 2 and "ground-truth factors" in result.output, ganrun.describe(result)


# ------------------------------------------------------------------------------ ground truth, by declaration


def test_metrics_read_ground_truth_from_the_dataset_not_its_name(ganrun: Ganrun, tmp_path: Path, monkeypatch) -> None:
    """A dataset under another name that declares ground-truth factors is scored; the same
    images without the declaration are refused with the reason."""
    from infogan_plugin.evaluate import disentanglement_metrics
    from registry.data import GroundTruth, shapes as shapes_module
    from registry.plugins import Host
    from registry.train import Trainer

    run = tmp_path / "r"
    ganrun.train(run, *SHAPES, "--steps", 2, "--save-every", 2, plugins=["infogan"])
    trainer = Trainer.from_checkpoint(run, Host.create(["infogan"]), device="cpu")
    truth = trainer.dataset.ground_truth
    assert isinstance(truth, GroundTruth) and truth.names == shapes_module.FACTOR_NAMES
    report = disentanglement_metrics(trainer, num_samples=40)
    assert report["factors"] == list(shapes_module.FACTOR_NAMES)
    # a renamed copy with two factors: the metrics follow the declaration
    two = GroundTruth(
        names=("shape", "scale"),
        sizes=(3, 6),
        sample=lambda n, g: torch.stack([torch.randint(3, (n,), generator=g), torch.randint(6, (n,), generator=g)], 1),
        render=lambda f: render(torch.cat([f, torch.full_like(f, 16)[:, :1].repeat(1, 3)], 1)),
    )
    import dataclasses

    object.__setattr__(trainer, "dataset", dataclasses.replace(trainer.dataset, name="other", ground_truth=two))
    assert disentanglement_metrics(trainer, num_samples=40)["factors"] == ["shape", "scale"]
    object.__setattr__(trainer, "dataset", dataclasses.replace(trainer.dataset, ground_truth=None))
    with pytest.raises(ValueError, match="declares none"):
        disentanglement_metrics(trainer, num_samples=40)


def test_ground_truth_declaration_is_checked() -> None:
    from registry.data import GroundTruth

    with pytest.raises(ValueError, match="one positive size per factor"):
        GroundTruth(names=("a", "b"), sizes=(3,), sample=lambda n, g: None, render=lambda f: None)
    with pytest.raises(ValueError, match="one positive size per factor"):
        GroundTruth(names=("a",), sizes=(0,), sample=lambda n, g: None, render=lambda f: None)


# ------------------------------------------------------------------------------ a seed stream per plugin

GREEDY = """
import torch
from torch import nn
from registry.plugins import hookimpl

@hookimpl
def ganrun_build_modules(config, models, sampler):
    torch.randn(12345)                      # draws from the global RNG while building
    probe = nn.Linear(3, 3)
    return {"probe": (probe, "G")}
"""


def test_each_plugins_modules_start_from_its_own_seed_stream(make_plugin, tmp_path: Path) -> None:
    """A plugin that draws while building shifts nobody else's initialisation, and its own
    modules start the same whatever other plugins are active."""
    from registry.config import TrainConfig
    from registry.plugins import Host
    from registry.train import Trainer

    greedy = make_plugin(GREEDY)

    def build(plugins: list[str]) -> Trainer:
        host = Host.create(plugins)
        config = TrainConfig(
            steps=1,
            batch_size=8,
            device="cpu",
            progress=False,
            seed=4,
            extra={"code": ["categorical:3"], "info_lambda": None},
        )
        host.run("ganrun_configure", config=config, registries=host.registries)
        return Trainer(config, host, tmp_path / "unused")

    alone, both = build(["infogan"]), build(["infogan", greedy])
    for name in ("G", "D", "Q"):
        a, b = alone.modules[name].state_dict(), both.modules[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    plain = build([greedy])
    assert torch.equal(plain.modules["probe"].weight, both.modules["probe"].weight)
    assert torch.equal(plain.modules["G"].state_dict()["0.weight"], build([]).modules["G"].state_dict()["0.weight"])
