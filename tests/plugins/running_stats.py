"""A test plugin that keeps state of its own in every checkpoint (no module, no option).

It tracks a running mean of D's adversarial loss over the log lines (``ganrun_log``; float32,
shape (2,): the mean and its weight) and the number of steps seen (``ganrun_step_end``; an
int64 scalar), saves both with
``ganrun_checkpoint_state`` and restores them with ``ganrun_load_checkpoint_state``, as a
third-party plugin would. Uses public names only.
"""

from __future__ import annotations

import torch

from registry import hookimpl

KEY = "_running_stats"


def _state(trainer) -> dict[str, torch.Tensor]:
    state = trainer.__dict__.get(KEY)
    if state is None:
        state = {"running_stats.mean": torch.zeros(2), "running_stats.steps": torch.tensor(0, dtype=torch.int64)}
        trainer.__dict__[KEY] = state
    return state


@hookimpl
def ganrun_step_end(trainer, step):
    state = _state(trainer)
    state["running_stats.steps"] = state["running_stats.steps"] + 1


@hookimpl
def ganrun_log(trainer, step, metrics):
    state = _state(trainer)
    mean, weight = state["running_stats.mean"].tolist()
    loss = float(metrics.get("d/adv", 0.0))
    state["running_stats.mean"] = torch.tensor([(mean * weight + loss) / (weight + 1), weight + 1])


@hookimpl
def ganrun_checkpoint_state(trainer):
    return {key: value.clone() for key, value in _state(trainer).items()}


@hookimpl
def ganrun_load_checkpoint_state(trainer, tensors):
    state = _state(trainer)
    for key in state:
        state[key] = tensors[key].clone()
