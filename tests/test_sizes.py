"""Absurd sizes and allocator failures (issue 18): a size option whose allocations cannot fit is
refused up front, as one line naming the option, before anything of that size is allocated;
an allocator failure anywhere in a command (injected here) is one line saying where it
happened, what to lower and which checkpoint holds the run; never a traceback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.checkpoint import checkpoint_name

if TYPE_CHECKING:
    from conftest import Ganrun

TINY = ("--model", "tiny", "--steps", 2, "--batch-size", 16, "--no-progress")
# Values whose allocations are tens of terabytes at least (more than any test machine has).
HUGE = st.integers(min_value=10**11, max_value=10**13)
SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _refused(ganrun: Ganrun, tmp_path: Path, *args, plugins, option: str) -> str:
    start = time.perf_counter()
    result = ganrun.invoke("train", "--out", tmp_path / "run", *TINY, *args, plugins=plugins)
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert option in line, line
    assert elapsed < 30, f"took {elapsed:.1f} s: it must refuse before allocating"
    assert not (tmp_path / "run").exists()
    return line


@SETTINGS
@given(value=HUGE)
def test_a_huge_noise_dim_is_refused_up_front(ganrun: Ganrun, tiny: str, tmp_path_factory, value: int) -> None:
    line = _refused(ganrun, tmp_path_factory.mktemp("s"), "--noise-dim", value, plugins=[tiny], option="--noise-dim")
    assert "available" in line and ("TB" in line or "PB" in line), line


@SETTINGS
@given(value=st.integers(min_value=10**6, max_value=10**8))
def test_a_huge_image_size_is_refused_before_the_loader_resizes(
    ganrun: Ganrun, tiny: str, tmp_path_factory, value: int
) -> None:
    _refused(ganrun, tmp_path_factory.mktemp("s"), "--image-size", value, plugins=[tiny], option="--image-size")


@SETTINGS
@given(value=st.integers(min_value=10**5, max_value=10**15))
def test_a_huge_batch_size_is_refused(ganrun: Ganrun, tiny: str, tmp_path_factory, value: int) -> None:
    _refused(ganrun, tmp_path_factory.mktemp("s"), "--batch-size", value, plugins=[tiny], option="--batch-size")


@SETTINGS
@given(value=HUGE, kind=st.sampled_from(["categorical", "uniform", "gaussian"]))
def test_a_huge_code_is_refused(ganrun: Ganrun, tiny: str, tmp_path_factory, value: int, kind: str) -> None:
    _refused(
        ganrun, tmp_path_factory.mktemp("s"), "--code", f"{kind}:{value}", plugins=["infogan", tiny], option="--code"
    )


@SETTINGS
@given(value=HUGE)
def test_a_huge_q_head_is_refused(ganrun: Ganrun, tiny: str, tmp_path_factory, value: int) -> None:
    _refused(ganrun, tmp_path_factory.mktemp("s"), "--q-hidden", value, plugins=["infogan", tiny], option="--q-hidden")


def test_ordinary_sizes_still_train(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    ganrun.train(
        tmp_path / "run", "--model", "tiny", "--steps", 2, "--batch-size", 16, "--noise-dim", 300, plugins=[tiny]
    )


IG = ["infogan"]


@SETTINGS
@given(value=HUGE)
def test_generate_refuses_a_huge_n(ganrun: Ganrun, trained_infogan_run: Path, tmp_path_factory, value: int) -> None:
    out = tmp_path_factory.mktemp("gen") / "out"
    result = ganrun.invoke("generate", trained_infogan_run, "--n", value, "--out", out, plugins=IG)
    assert result.exit_code == 2, ganrun.describe(result)
    assert "--n" in ganrun.error_line(result)
    assert not out.exists()


@SETTINGS
@given(value=HUGE)
def test_encode_refuses_a_huge_batch(ganrun: Ganrun, trained_infogan_run: Path, tmp_path_factory, value: int) -> None:
    out = tmp_path_factory.mktemp("enc") / "codes.csv"
    args = ("encode", trained_infogan_run, "--images", "digits", "--out", out, "--batch-size", value)
    result = ganrun.invoke(*args, plugins=IG)
    assert result.exit_code == 2, ganrun.describe(result)
    assert "--batch-size" in ganrun.error_line(result)
    assert not out.exists()


@pytest.mark.parametrize("samples", [10_000_001, 10**9, 10**18])
def test_eval_refuses_more_samples_than_change_the_estimate(ganrun: Ganrun, tiny: str, tmp_path: Path, samples: int):
    run = tmp_path / "run"
    ganrun.train(run, "--model", "tiny", "--steps", 1, "--batch-size", 16, plugins=["infogan", tiny])
    result = ganrun.invoke("eval", run, "--samples", samples, plugins=["infogan", tiny])
    line = ganrun.error_line(result)
    assert "--samples" in line and "between 1 and 10,000,000" in line, line


def test_eval_refuses_huge_metrics_samples(ganrun: Ganrun, tiny: str, tmp_path: Path) -> None:
    run = tmp_path / "shapes"
    ganrun.train(
        run, "--dataset", "shapes", "--model", "tiny", "--steps", 1, "--batch-size", 8, plugins=["infogan", tiny]
    )
    result = ganrun.invoke("eval", run, "--metrics-samples", 10**13, plugins=["infogan", tiny])
    assert result.exit_code == 2, ganrun.describe(result)
    assert "--metrics-samples" in ganrun.error_line(result)


# ------------------------------------------------------------------ allocator failures, injected
FAULT = """\
import torch
from registry import hookimpl

def _fail():
    kind = "{kind}"
    if kind == "cuda":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    if kind == "cpu":
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
    raise MemoryError()

@hookimpl
def ganrun_g_loss_terms(ctx):
    if {at} >= 0 and ctx.step == {at}:
        _fail()
    return {{}}

@hookimpl
def ganrun_build_modules(config, models, sampler):
    if {at} < 0 and next(models["G"].parameters()).device.type != "meta":
        _fail()
    return {{}}
"""


@pytest.mark.parametrize("kind", ["cuda", "cpu", "python"])
def test_running_out_of_memory_mid_run_is_one_line_naming_the_checkpoint(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str], kind: str
) -> None:
    fault = make_plugin(FAULT.format(kind=kind, at=2))  # fails inside step 3
    run = tmp_path / "run"
    args = ("--model", "tiny", "--steps", 6, "--batch-size", 16, "--save-every", 2, "--keep-checkpoints", 0)
    result = ganrun.train(run, *args, plugins=[tiny, fault], expect=1)
    line = ganrun.error_line(result)
    assert "ran out of memory during training step 3" in line and "--batch-size" in line, line
    assert f"the last good checkpoint {run / 'checkpoints' / checkpoint_name(2)} is kept" in line, line
    assert ganrun.checkpoints(run) == [checkpoint_name(2)]


def test_running_out_of_memory_before_the_first_checkpoint_says_none_exists(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str]
) -> None:
    fault = make_plugin(FAULT.format(kind="cuda", at=0))
    run = tmp_path / "run"
    result = ganrun.train(run, *TINY, "--save-every", 2, plugins=[tiny, fault], expect=1)
    line = ganrun.error_line(result)
    assert "training step 1" in line and "no checkpoint was written" in line, line


def test_running_out_of_memory_while_building_is_one_line(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str]
) -> None:
    fault = make_plugin(FAULT.format(kind="cpu", at=-1))
    result = ganrun.train(tmp_path / "run", *TINY, plugins=[tiny, fault], expect=1)
    assert "ran out of memory during building the run" in ganrun.error_line(result)


def test_a_use_command_that_runs_out_of_memory_is_one_line(
    ganrun: Ganrun, trained_infogan_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infogan_plugin.run

    def fail(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(infogan_plugin.run.InfoGANRun, "render", fail)
    result = ganrun.invoke("generate", trained_infogan_run, "--out", tmp_path / "out", plugins=IG)
    assert result.exit_code == 1, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert "'generate' ran out of memory" in line and "--n" in line, line
