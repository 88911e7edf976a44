"""Hooks that run while training, sampling, checkpointing and reporting (issue 19): a plugin that
raises in any of them is one line naming the plugin, the hook and the exception, never a
traceback, and the run's checkpoints stay as they were; a result that breaks a hook's contract
(a list for a dict, a non-scalar loss term) is named the same way; the host's own refusals and
pluggy's call semantics are unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
import torch

from registry.checkpoint import checkpoint_name, read_checkpoint
from registry.plugins import HookError, Host

if TYPE_CHECKING:
    from conftest import Ganrun

ARGS = ("--model", "tiny", "--steps", 6, "--batch-size", 16, "--log-every", 1, "--sample-every", 2)

# Each hook that runs during a run, with its arguments and how to read the step in it. They
# raise from step 3 on (so the checkpoint of step 2 is written first), except the ones called
# once while the run is built.
RAISING = {  # hook: (its arguments, when it raises, the step the message names)
    "ganrun_d_loss_terms": ("ctx", "ctx.step >= 2", 3),  # ctx.step counts the steps before this one
    "ganrun_g_loss_terms": ("ctx", "ctx.step >= 2", 3),
    "ganrun_step_end": ("trainer, step", "step >= 3", 3),
    "ganrun_log": ("trainer, step, metrics", "step >= 3", 3),
    "ganrun_sample": ("trainer, step, run_dir", "step >= 3", 4),  # pictures every 2 steps
    "ganrun_checkpoint_state": ("trainer", "trainer.step >= 3", 4),  # saves every 2 steps
}
AT_BUILD = {
    "ganrun_build_modules": "config, models, sampler",
    "ganrun_latent_sampler": "config, registries",
}


def _raising_plugin(hook: str, args: str, when: str = "True") -> str:
    return (
        "from registry import hookimpl\n\n"
        f"@hookimpl\ndef {hook}({args}):\n"
        f"    if {when}:\n"
        f"        raise RuntimeError('boom in {hook}')\n"
    )


@pytest.mark.parametrize("hook", sorted(RAISING))
def test_a_hook_that_raises_mid_run_is_one_line_and_keeps_the_last_checkpoint(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str], hook: str
) -> None:
    args, when, at = RAISING[hook]
    bad = make_plugin(_raising_plugin(hook, args, when))
    run = tmp_path / "run"
    result = ganrun.train(run, *ARGS, "--save-every", 2, plugins=[tiny, bad], expect=1)
    line = ganrun.error_line(result)
    assert f"plugin {bad!r} failed in {hook}: RuntimeError: boom in {hook}" in line, line
    assert f"at step {at};" in line, line
    good = run / "checkpoints" / checkpoint_name(2)
    assert f"the last good checkpoint {good} is kept" in line and f"--resume {run}" in line, line
    assert "GANRUN_TRACE=1" in line
    assert ganrun.checkpoints(run) == [checkpoint_name(2)]
    read_checkpoint(good)  # complete and readable


@pytest.mark.parametrize("hook", sorted(AT_BUILD))
def test_a_hook_that_raises_while_the_run_is_built_is_one_line_and_writes_nothing(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str], hook: str
) -> None:
    bad = make_plugin(_raising_plugin(hook, AT_BUILD[hook]))
    run = tmp_path / "run"
    result = ganrun.train(run, *ARGS, plugins=[tiny, bad], expect=1)
    line = ganrun.error_line(result)
    assert f"plugin {bad!r} failed in {hook}: RuntimeError: boom in {hook}" in line, line
    assert not run.exists()


def test_a_hook_that_raises_before_the_first_checkpoint_says_there_is_nothing_to_resume(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str]
) -> None:
    bad = make_plugin(_raising_plugin("ganrun_step_end", "step", "step == 1"))
    run = tmp_path / "run"
    line = ganrun.error_line(ganrun.train(run, *ARGS, "--save-every", 4, plugins=[tiny, bad], expect=1))
    assert "at step 1" in line and "nothing to resume" in line and "start the run again" in line, line
    assert "--resume" not in line and ganrun.checkpoints(run) == []


def test_a_hook_that_raises_on_resume_leaves_the_run_folder_as_it_was(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str]
) -> None:
    run = tmp_path / "run"
    ganrun.train(run, *ARGS, "--steps", 2, plugins=[tiny])
    before = ganrun.snapshot(run)
    bad = make_plugin(_raising_plugin("ganrun_load_checkpoint_state", "trainer, tensors"))
    result = ganrun.invoke("train", "--resume", run, "--steps", 4, "--no-progress", plugins=[tiny, bad])
    assert result.exit_code == 1, ganrun.describe(result)
    line = ganrun.error_line(result)
    assert f"plugin {bad!r} failed in ganrun_load_checkpoint_state: RuntimeError" in line, line
    assert ganrun.snapshot(run) == before


def test_a_report_section_that_raises_is_one_line(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str]
) -> None:
    run = tmp_path / "run"
    ganrun.train(run, *ARGS, "--steps", 2, plugins=[tiny])
    bad = make_plugin(_raising_plugin("ganrun_report_sections", "run_dir, metrics, baseline_metrics"))
    result = ganrun.invoke("report", run, plugins=[tiny, bad])
    assert result.exit_code == 1, ganrun.describe(result)
    assert f"plugin {bad!r} failed in ganrun_report_sections: RuntimeError" in ganrun.error_line(result)


def test_the_traceback_of_a_failing_hook_is_shown_with_ganrun_trace(
    ganrun: Ganrun, tiny: str, tmp_path: Path, make_plugin: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = make_plugin(_raising_plugin("ganrun_step_end", "step", "step == 2"))
    monkeypatch.setenv("GANRUN_TRACE", "1")
    result = ganrun.train(tmp_path / "run", *ARGS, plugins=[tiny, bad], expect=1)
    assert "Traceback" in result.stderr and "boom in ganrun_step_end" in result.stderr
    assert "GANRUN_TRACE=1 shows" not in result.stderr  # it is shown already


# results that break each hook's contract, and a phrase of what the message says about them
BROKEN_RESULTS = [
    ("ganrun_d_loss_terms", "ctx", "[ctx.real.logits.mean()]", "returned an instance of list"),
    ("ganrun_d_loss_terms", "ctx", "{'wide': ctx.real.logits}", "'wide' as a tensor of shape [16] and dtype float32"),
    ("ganrun_d_loss_terms", "ctx", "{'count': torch.tensor(3)}", "dtype int64, not a floating-point scalar"),
    ("ganrun_g_loss_terms", "ctx", "{'x': 1.0}", "'x' as an instance of float"),
    ("ganrun_g_loss_terms", "ctx", "{3: ctx.fake.logits.mean()}", "the key 3"),
    ("ganrun_log", "metrics", "['text']", "returned an instance of list; return {label: text} or None"),
    ("ganrun_log", "metrics", "{'x': object()}", "'x' as an instance of object, not text or a number"),
    ("ganrun_checkpoint_state", "trainer", "{'count': 3}", "'count' as an instance of int, not a tensor"),
]


@pytest.mark.parametrize(("hook", "args", "value", "said"), BROKEN_RESULTS)
def test_a_result_that_breaks_the_hooks_contract_names_the_plugin(
    ganrun: Ganrun,
    tiny: str,
    tmp_path: Path,
    make_plugin: Callable[..., str],
    hook: str,
    args: str,
    value: str,
    said: str,
) -> None:
    bad = make_plugin(
        f"import torch\nfrom registry import hookimpl\n\n@hookimpl\ndef {hook}({args}):\n    return {value}\n"
    )
    run = tmp_path / "run"
    line = ganrun.error_line(ganrun.train(run, *ARGS, plugins=[tiny, bad], expect=1))
    assert f"plugin {bad!r} broke the {hook} contract: it " in line and said in line, line


def test_the_isolated_hooks_keep_pluggys_semantics_and_blame_the_right_plugin(make_plugin: Callable[..., str]) -> None:
    first = make_plugin(
        "from registry import hookimpl\n\n@hookimpl\ndef ganrun_latent_sampler(config):\n    return 'first'\n"
    )
    second = make_plugin(
        "from registry import hookimpl\n\n@hookimpl\ndef ganrun_latent_sampler(config):\n    return 'second'\n"
    )
    host = Host.create([first, second])
    # firstresult: the plugin registered last answers first, as with pm.hook
    assert host.hook.ganrun_latent_sampler(config=None, registries=None) == "second"
    assert host.hook.ganrun_latent_sampler(config=None, registries=None) == host.pm.hook.ganrun_latent_sampler(
        config=None, registries=None
    )
    assert host.run("ganrun_latent_sampler", config=None, registries=None) == "second"
    assert host.run("ganrun_latent_sampler", only=first, config=None, registries=None) == "first"
    helper = make_plugin("def explode():\n    raise KeyError('deep')\n")
    bad = make_plugin(
        f"import {helper}\nfrom registry import hookimpl\n\n"
        f"@hookimpl\ndef ganrun_step_end(step):\n    {helper}.explode()\n"
    )
    quiet = make_plugin("from registry import hookimpl\n\n@hookimpl\ndef ganrun_step_end(step):\n    return None\n")
    host = Host.create([quiet, bad])
    with pytest.raises(HookError) as info:  # raised two frames below the hook, in another module
        host.hook.ganrun_step_end(trainer=None, step=1)
    assert info.value.plugin == bad and info.value.hook == "ganrun_step_end"
    assert str(info.value) == f"plugin {bad!r} failed in ganrun_step_end: KeyError: 'deep'"
    assert isinstance(info.value.__cause__, KeyError)


def test_a_plugins_own_refusals_pass_through_unchanged(make_plugin: Callable[..., str]) -> None:
    from registry.checkpoint import CheckpointError

    refusing = make_plugin(
        "from registry import hookimpl\nfrom registry.checkpoint import CheckpointError\n\n"
        "@hookimpl\ndef ganrun_load_checkpoint_state(tensors):\n"
        "    raise CheckpointError('entry plugin.x is missing')\n"
        "@hookimpl\ndef ganrun_configure(config):\n    raise ValueError('--thing must be positive')\n"
    )
    host = Host.create([refusing])
    with pytest.raises(CheckpointError, match="entry plugin.x is missing"):
        host.hook.ganrun_load_checkpoint_state(trainer=None, tensors={})
    with pytest.raises(ValueError, match="--thing must be positive"):
        host.hook.ganrun_configure(config=None, registries=None)


def test_checked_results_match_the_plain_hook_call(make_plugin: Callable[..., str]) -> None:
    a = make_plugin(
        "import torch\nfrom registry import hookimpl\n\n@hookimpl\ndef ganrun_d_loss_terms(ctx):\n"
        "    return {'a': torch.tensor(1.0)}\n"
    )
    b = make_plugin("from registry import hookimpl\n\n@hookimpl\ndef ganrun_d_loss_terms(ctx):\n    return None\n")
    c = make_plugin(
        "import torch\nfrom registry import hookimpl\n\n@hookimpl\ndef ganrun_d_loss_terms(ctx):\n"
        "    return {'c': torch.tensor(2.0)}\n"
    )
    host = Host.create([a, b, c])
    assert host.checked("ganrun_d_loss_terms", ctx=None) == host.pm.hook.ganrun_d_loss_terms(ctx=None)
    assert [list(r) for r in host.checked("ganrun_d_loss_terms", ctx=None)] == [["c"], ["a"]]
    assert torch.equal(host.checked("ganrun_d_loss_terms", ctx=None)[0]["c"], torch.tensor(2.0))
