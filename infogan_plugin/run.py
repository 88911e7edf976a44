"""A trained InfoGAN run in Python: generate images for chosen code values, read codes back with Q.

Everything goes through the code types and Q losses of the run's latent spec:
``LatentCode.input_for`` / ``value_range`` check and encode a chosen value, ``QLoss.predict``
and ``LatentCode.value_of`` turn Q's output into a value, ``QLoss.probabilities`` gives a
discrete code's distribution. A third-party code type gets all of it from its own methods.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from infogan_plugin.latent import LatentSpec
from registry import Run
from registry import load_run as load_host_run

__all__ = ["CodeEstimate", "CodeValue", "InfoGANRun", "load_run"]

CodeValue = float | int | Sequence[float]
ENCODE_BATCH = 500  # images per D/Q pass in encode(): memory stays flat for any N


@dataclass(frozen=True)
class CodeEstimate:
    """What Q reads from images for one code.

    ``value``: the point estimate, ``(N,)`` for a one-dimensional code (a categorical's class
    index, as a float) or ``(N, dim)``; ``probabilities``: ``(N, V)`` over a discrete code's
    values where its Q loss models them (``QLoss.probabilities``), else ``None``.
    """

    value: torch.Tensor
    probabilities: torch.Tensor | None = None


class InfoGANRun(Run):
    """A trained InfoGAN run: ``G``, ``D``, ``Q`` in eval mode, the ``spec`` (``LatentSpec``),
    ``generate`` with chosen codes and ``encode`` through Q. Made by :func:`load_run`."""

    def __init__(self, state: Any, checkpoint: Path) -> None:
        super().__init__(state, checkpoint)
        if not isinstance(self.sampler, LatentSpec) or "Q" not in self.modules:
            raise ValueError(
                f"{checkpoint}: not an InfoGAN run (no latent codes or Q head); use registry.load_run for a plain GAN"
            )
        self.spec: LatentSpec = self.sampler

    @property
    def Q(self) -> nn.Module:
        """The Q head: D's trunk features ``(B, F)`` -> Q's output ``(B, spec.q_dim)``."""
        return self.modules["Q"]

    @property
    def code_names(self) -> list[str]:
        return [slot.name for slot in self.spec.slots]

    # ------------------------------------------------------------------ generating
    def code_columns(self, codes: Mapping[str, CodeValue]) -> dict[int, torch.Tensor]:
        """Slot index -> G-input columns ``(input_width,)`` for chosen code values.

        Raises ``ValueError`` naming the code for an unknown name (listing the known ones) and
        for a value outside the code's support (naming the value and the allowed range).
        """
        if not isinstance(codes, Mapping):
            raise TypeError(f"codes must be a mapping of code name to value, got {type(codes).__name__}")
        chosen = {}
        for name, value in codes.items():
            if name not in self.code_names:
                raise ValueError(f"unknown code {name!r}: this run has {', '.join(self.code_names)}")
            slot_index = self.spec.index(name)
            code = self.spec.slots[slot_index].code
            try:
                chosen[slot_index] = code.input_for(value)
            except ValueError as exc:
                raise ValueError(f"code {name!r} ({code.type_name}): {exc}") from None
        return chosen

    def inputs(self, n: int, *, codes: Mapping[str, CodeValue] | None = None, seed: int = 0) -> torch.Tensor:
        """G inputs ``(n, input_dim)`` on the run's device: noise and the codes not in ``codes``
        drawn from their priors with ``seed`` (the same draws whatever is chosen), the chosen
        codes set to their values in every row."""
        chosen = self.code_columns(codes or {})
        g_input, _ = self.sample_inputs(n, seed=seed)
        _, slots = self.spec.split_input(g_input)  # views into g_input
        for slot_index, columns in chosen.items():
            slots[slot_index].copy_(columns.to(g_input.device).expand_as(slots[slot_index]))
        return g_input

    def generate(self, n: int, *, codes: Mapping[str, CodeValue] | None = None, seed: int = 0) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` float32 in [0, 1] on the run's device.

        ``codes`` maps code names to values (``{"c1": 3, "c2": 1.5}``: class 3 of a categorical,
        1.5 for a continuous code; a sequence of ``dim`` numbers for a multi-dimensional code).
        The noise and every code not named are drawn from their priors with ``seed``, so the
        same seed gives the same images and changing one code keeps everything else. Raises
        ``ValueError`` for an unknown code name, a value outside the code's ``value_range()``,
        a bad ``n`` or ``seed``.
        """
        return self.render(self.inputs(n, codes=codes, seed=seed))

    # ------------------------------------------------------------------ encoding
    @torch.no_grad()
    def q_outputs(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Q's raw output ``(N, q_dim)`` float32 for images (any layout ``prepare_images`` takes)."""
        x = self.prepare_images(images)
        outs = []
        for chunk in x.split(ENCODE_BATCH):
            _, features = self.D(chunk)
            outs.append(self.Q(features).float())
        return torch.cat(outs)

    def estimates(self, q_out: torch.Tensor) -> dict[str, CodeEstimate]:
        """Q's output ``(N, q_dim)`` -> per code the point estimate and, where the Q loss has
        them, the probabilities of a discrete code's values."""
        out = {}
        for slot, chunk in zip(self.spec.slots, self.spec.split_q(q_out)):
            value = slot.q_loss.point_estimate(chunk)  # (N, dim)
            if slot.code.dim == 1:
                value = value[:, 0]
            out[slot.name] = CodeEstimate(value=value, probabilities=slot.q_loss.probabilities(chunk))
        return out

    def encode(self, images: torch.Tensor | np.ndarray) -> dict[str, CodeEstimate]:
        """Q's reading of each code from images: ``{code name: CodeEstimate}``, tensors on the run's
        device.

        ``images``: uint8 ``(N, C, H, W)`` or ``(N, H, W)`` (one channel), or float in [0, 1] in
        the same layouts, at the run's size or square at another size (resized as the dataset
        would). Images go through D's trunk and Q in batches. Raises ``TypeError`` /
        ``ValueError`` (see ``Run.prepare_images``) for anything else.
        """
        return self.estimates(self.q_outputs(images))


def load_run(
    path: str | os.PathLike[str],
    checkpoint: str | int | os.PathLike[str] | None = None,
    device: str = "cpu",
    *,
    plugins: Iterable[str] = (),
    command: str = "load_run",
) -> InfoGANRun:
    """Load a trained InfoGAN run (``registry.load_run``, checked to hold codes and a Q head).

    ``path`` is a run folder or a checkpoint file; ``checkpoint`` a step number, a file name in
    ``checkpoints/`` or a path (default: the newest complete checkpoint); ``device`` where the
    modules go. The checkpoint is validated as ``--resume`` validates it and the run's plugins
    are activated; the run's dataset is not needed. Raises ``CheckpointError``, ``PluginError``
    or ``ValueError`` (each one line) when the run cannot be rebuilt or is not an InfoGAN run.
    """
    # the run's recorded plugins include infogan for an InfoGAN run; adding it to a plain run's
    # would make its sampler look for codes the run never had
    run = load_host_run(path, checkpoint, device, plugins=plugins, command=command)
    return InfoGANRun(run.state, run.checkpoint)
