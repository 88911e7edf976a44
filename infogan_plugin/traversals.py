"""From configuration to a ``LatentSpec``, and traversal pictures of a trained G."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from infogan_plugin.latent import CodeSlot, LatentSpec, parse_code_spec
from registry.report.images import save_grid
from registry.plugins import UnknownNameError

TRAVERSAL_ROWS = 10  # rows of fixed (z, other codes) per traversal grid, as in the paper's figures


def build_latent_spec(config: Any, registries: Any) -> LatentSpec:
    """The noise and codes of ``config`` (``config.extra["code"]``), looked up by name.

    Each spec ``TYPE[:N][,key=value...]`` may carry two options of its own besides the
    code type's: ``lambda=`` (this code's weight) and ``loss=`` (a registered Q loss).
    A code without ``lambda=`` takes ``--lambda`` if given, else its type's default.
    """
    global_lambda = config.extra.get("info_lambda")
    slots: list[CodeSlot] = []
    for text in config.extra.get("code") or []:
        type_name, size, options = parse_code_spec(str(text))
        try:
            code_type = registries.latent_codes.get(type_name)
        except UnknownNameError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        options = dict(options)
        lam_text, loss_name = options.pop("lambda", None), options.pop("loss", None)
        try:
            lam = float(lam_text) if lam_text is not None else None
        except ValueError:
            raise ValueError(f"{text!r}: lambda={lam_text!r} is not a number") from None
        try:
            loss_type = registries.q_losses.get(loss_name or code_type.default_q_loss)
        except UnknownNameError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        try:
            codes = code_type.from_spec(size, options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        for code in codes:
            weight = lam if lam is not None else global_lambda if global_lambda is not None else code_type.default_lambda
            slots.append(CodeSlot(f"c{len(slots) + 1}", code, loss_type(), float(weight)))
    if not slots:
        raise ValueError("at least one --code is needed, e.g. --code categorical:10")
    return LatentSpec(noise_dim=config.noise_dim, slots=slots, noise=config.noise)


@torch.no_grad()
def traversal_grids(trainer: Any, out_dir: Path, step: int, *, rows: int = TRAVERSAL_ROWS) -> list[Path]:
    """One PNG per code: each row fixes z and the other codes, columns sweep this code.

    The fixed inputs come from their own seeded generator, so grids from different steps
    (and from resumed runs) show the same rows and never disturb training's RNG streams.
    """
    from registry.train import seed_for

    spec: LatentSpec = trainer.sampler
    device = trainer.device
    gen = torch.Generator(device=device).manual_seed(seed_for(trainer.config.seed, "plugin"))
    base, _ = spec.sample(rows, generator=gen, device=device)  # (rows, input_dim)
    G = trainer.modules["G"]
    written = []
    for index, slot in enumerate(spec.slots):
        for dim_index in range(slot.code.dim):
            inputs = spec.traversal_inputs(index, n_rows=rows, generator=gen, device=device,
                                           base=base, dim_index=dim_index)       # (rows * V, input_dim)
            columns = inputs.shape[0] // rows
            images = G(inputs).float()                                             # (rows * V, C, H, W)
            suffix = f"-d{dim_index}" if slot.code.dim > 1 else ""
            path = out_dir / f"{slot.name}{suffix}-step-{step:09d}.png"
            written.append(save_grid(images, path, nrow=columns))
    return written
