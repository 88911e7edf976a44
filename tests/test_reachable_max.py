"""L_I read against what a code and its Q loss can reach (``QLoss.reachable_max``), not against
H(c) alone: the maxima are the values a perfect Q gives and no Q exceeds, and every place that
shows L_I (training's metrics and progress bar, eval, the report, a sweep's line) says it that way.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from infogan_plugin.bounds import bound_text, progress_text, shows_share
from infogan_plugin.codes import Categorical, Gaussian, Uniform
from infogan_plugin.latent import CodeSlot, LatentSpec
from infogan_plugin.qlosses import CategoricalCE, GaussianNLL, GaussianNLLFixed
from registry.cli.sweep_pool import SeedRun, seed_line

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def test_the_built_in_losses_state_their_reachable_maximum() -> None:
    assert CategoricalCE().bind(Categorical(k=10)).reachable_max() == pytest.approx(math.log(10))
    assert GaussianNLLFixed().bind(Uniform()).reachable_max() == pytest.approx(math.log(2) - HALF_LOG_2PI)
    assert GaussianNLLFixed().bind(Uniform()).reachable_max() == pytest.approx(-0.2258, abs=1e-4)  # issue 27's -0.226
    # d columns, std s: H - d (ln s + (1/2) ln 2 pi)
    two = GaussianNLLFixed(std=0.5).bind(Uniform(dim=2, low=0.0, high=3.0))
    assert two.reachable_max() == pytest.approx(2 * math.log(3) - 2 * (math.log(0.5) + HALF_LOG_2PI))
    assert GaussianNLL().bind(Gaussian()).reachable_max() is None  # a learned std has no useful ceiling
    assert CategoricalCE().reachable_max() is None  # not bound to a code: nothing to say


@pytest.mark.parametrize(
    ("code", "loss"),
    [
        (Categorical(k=4), CategoricalCE()),
        (Uniform(), GaussianNLLFixed()),
        (Gaussian(std=0.3), GaussianNLLFixed(std=0.2)),
    ],
)
def test_a_perfect_q_reaches_the_maximum_and_no_q_passes_it(code, loss) -> None:
    spec = LatentSpec(noise_dim=0, slots=[CodeSlot("c", code, loss, 1.0)])
    gen = torch.Generator().manual_seed(0)
    _, [c] = spec.sample(4096, generator=gen, device="cpu")  # (n, input_width)
    ceiling = spec.reachable_maxima()["c"]
    h = code.entropy()
    perfect = c * 60.0 if code.discrete else c  # logits far apart on the true class; the exact mean
    assert h - float(loss.nll(perfect, c).mean()) == pytest.approx(ceiling, abs=1e-6)
    for _ in range(5):  # any other prediction scores lower
        guess = torch.randn(c.shape, generator=gen) * 2
        assert h - float(loss.nll(guess, c).mean()) < ceiling


def test_the_words_for_each_kind_of_code() -> None:
    h10 = math.log(10)
    assert bound_text(2.27, h10, h10) == "L_I 2.270 nats of H 2.303 (98.6%)"
    assert bound_text(-0.27, math.log(2), -0.2258) == "L_I -0.270 nats (reachable max -0.226; H 0.693)"
    assert bound_text(0.512, 1.419, None) == (
        "L_I 0.512 nats (H 1.419; its Q loss states no reachable maximum, so no share of H)"
    )
    # H <= 0 (a narrow continuous code): never a share, even where the maximum equals H
    assert "%" not in bound_text(-0.5, -0.4, -0.4) and not shows_share(-0.4, -0.4) and not shows_share(0.0, 0.0)
    assert bound_text(None, h10, h10) == "L_I n/a nats of H 2.303"  # eval writes null for a NaN
    assert progress_text("c1", 2.0, h10, h10) == ("I/H c1", "0.87")
    assert progress_text("c2", -0.27, 0.693, -0.2258) == ("L_I c2", "-0.27/-0.23")
    assert progress_text("c3", 0.5, 1.4, None) == ("L_I c3", "0.50")


def test_a_sweep_line_shows_shares_only_where_the_code_reaches_h(tmp_path: Path) -> None:
    metrics = {"step": 10, "steps_per_sec": 2.0}
    metrics |= {"L_I/c1": 2.0, "H/c1": math.log(10), "L_I_max/c1": math.log(10), "L_I_over_H/c1": 0.87}
    metrics |= {"L_I/c2": -0.27, "H/c2": math.log(2), "L_I_max/c2": -0.2258, "L_I_over_H/c2": -0.39}
    metrics |= {"L_I/c3": 0.5, "H/c3": 1.4, "L_I_over_H/c3": 0.36}
    line = seed_line(SeedRun(seed=3, folder=tmp_path, state="running", metrics=metrics), 100, 0.0)
    assert line.endswith("L_I/H c1 0.87  L_I c2 -0.27 (max -0.23) c3 0.50"), line
    assert "-0.39" not in line


def test_training_eval_and_report_read_l_i_against_the_reachable_maximum(
    ganrun, trained_infogan_run: Path, tiny: str, tmp_path: Path
) -> None:
    """The session's tiny run: c1 categorical:3 (CE), c2 uniform:1 (fixed-std Gaussian), c3
    gaussian:1 (learned std)."""
    last = ganrun.metrics(trained_infogan_run)[-1]
    assert last["L_I_max/c1"] == pytest.approx(math.log(3), abs=1e-5) == last["H/c1"]
    assert last["L_I_max/c2"] == pytest.approx(math.log(2) - HALF_LOG_2PI, abs=1e-5)
    assert "L_I_max/c3" not in last
    assert {"L_I_over_H/c1", "L_I_over_H/c2", "L_I_over_H/c3"} <= set(last)  # the old keys stay
    assert last["L_I/c2"] <= last["L_I_max/c2"] + 1e-6

    run = tmp_path / "run"
    shutil.copytree(trained_infogan_run, run)
    result = ganrun.invoke("eval", run, "--samples", 200, plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    info = json.loads((run / "eval.json").read_text())["information"]
    assert info["c1"]["L_I_max"] == pytest.approx(math.log(3)) and info["c3"]["L_I_max"] is None
    assert info["c2"]["ratio"] == pytest.approx(info["c2"]["L_I"] / math.log(2))  # kept for scripts
    lines = {line.split(":", 1)[0]: line for line in result.stdout.splitlines() if line[4:8] == "L_I "}
    assert lines["c1"] == f"c1: L_I {info['c1']['L_I']:.3f} nats of H 1.099 ({info['c1']['L_I'] / math.log(3):.1%})"
    assert lines["c2"] == f"c2: L_I {info['c2']['L_I']:.3f} nats (reachable max -0.226; H 0.693)"
    assert lines["c3"].endswith("(H 1.419; its Q loss states no reachable maximum, so no share of H)")

    result = ganrun.invoke("report", run, "--plots", "svg", plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    page = (run / "report.html").read_text()
    assert "reachable max = -0.226" in page  # c2's chart draws the line L_I can reach
    assert f"L_I {info['c2']['L_I']:.3f} nats (reachable max -0.226; H 0.693)" in page
    assert "%)" not in lines["c2"] and "%)" not in lines["c3"]
