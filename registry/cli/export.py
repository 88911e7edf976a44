"""``ganrun export RUN --format torchscript|onnx|safetensors --out FILE``: the generator alone,
for serving without ganrun, with its input layout in the file's metadata.

Every format carries the same JSON description (``describe_generator``): the model name,
G's input layout (``input_dim``, the noise columns and, for InfoGAN, each code's columns and
width) and the image shape, with G's output in [-1, 1]. TorchScript (``torch.jit.trace``)
and ONNX exports are checked against PyTorch's G on a fresh batch before they are written.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn

from registry import checkpoint as ckpt
from registry.cli.options import OutputPath, option, run_argument
from registry.cpu.linear import Linear
from registry.run import Run, atomic_output

__all__ = ["FORMATS", "ExportError", "METADATA_KEY", "describe_generator", "export_generator"]

FORMATS = ("torchscript", "onnx", "safetensors")
METADATA_KEY = "ganrun.generator"  # safetensors metadata key, ONNX metadata_props key, TorchScript extra file
EXPORT_HINT = "pip install 'ganrun[export]'"
CHECK_BATCH = 5  # a batch size other than the trace's, so a baked-in batch is caught


class ExportError(Exception):
    """An export that cannot be made (missing optional package, output that does not match G)."""


def describe_generator(run: Run) -> dict[str, Any]:
    """The JSON-able description every export carries."""
    return {
        "format": "ganrun-generator/1",
        "model": run.model_name,
        "input": run.input_layout(),
        "image_shape": list(run.image_shape),
        "output_range": [-1.0, 1.0],
        "step": run.step,
        "plugins": run.plugins,
    }


def plain_generator(run: Run) -> nn.Module:
    """A CPU copy of G in eval mode whose ``registry.Linear`` layers are plain ``nn.Linear``:
    the oneDNN route is a CPU speed-up that an exported graph should not depend on."""
    G = copy.deepcopy(run.G).cpu().eval()
    for module in G.modules():
        if type(module) is Linear:
            module.__class__ = nn.Linear
    return G


def _inputs(run: Run, n: int, seed: int) -> torch.Tensor:
    return run.sample_inputs(n, seed=seed)[0].cpu()


def _check(name: str, got: torch.Tensor, want: torch.Tensor) -> None:
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        diff = (got - want).abs().max().item() if got.shape == want.shape else float("nan")
        raise ExportError(
            f"the {name} export does not reproduce G (max difference {diff:.3g}); "
            f"the model is not traceable, so nothing was written"
        )


def export_generator(run: Run, fmt: str, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write G of ``run`` to ``out`` in format ``fmt`` (one of ``FORMATS``) atomically.

    - ``safetensors``: G's state dict, plus the description as JSON under metadata key
      ``ganrun.generator`` (load with ``safetensors.safe_open(...).metadata()``);
    - ``torchscript``: ``torch.jit.trace`` of G, description in the extra file ``ganrun.generator``
      (``torch.jit.load(path, _extra_files={"ganrun.generator": ""})``);
    - ``onnx`` (needs ``pip install 'ganrun[export]'``): input ``g_input (batch, input_dim)``,
      output ``images (batch, C, H, W)``, description in ``metadata_props``.

    Raises ``FileExistsError`` unless ``overwrite``, ``ExportError`` when an optional package
    is missing or the traced model does not reproduce G.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or choose another name")
    meta = json.dumps(describe_generator(run), sort_keys=True, allow_nan=False)
    G = plain_generator(run)
    if fmt == "safetensors":
        tensors = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
        # ganrun's checkpoint writer: validated dtypes, fsync, atomic rename
        ckpt.save_checkpoint(out, tensors, {METADATA_KEY: meta})
        return out
    example, fresh = _inputs(run, 2, 0), _inputs(run, CHECK_BATCH, 1)
    with torch.no_grad():
        want = G(fresh)
        if fmt == "torchscript":
            traced = torch.jit.trace(G, example, check_trace=False)
            _check("TorchScript", traced(fresh), want)
            with atomic_output(out, overwrite=overwrite) as tmp:
                torch.jit.save(traced, str(tmp), _extra_files={METADATA_KEY: meta})
            return out
    return _export_onnx(G, example, fresh, want, out, meta, overwrite)


def _export_onnx(
    G: nn.Module, example: torch.Tensor, fresh: torch.Tensor, want: torch.Tensor, out: Path, meta: str, overwrite: bool
) -> Path:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs the onnx and onnxruntime packages ({exc.name} is missing): {EXPORT_HINT}"
        ) from None
    with atomic_output(out, overwrite=overwrite) as tmp:
        torch.onnx.export(
            G,
            (example,),
            str(tmp),
            input_names=["g_input"],
            output_names=["images"],
            dynamic_axes={"g_input": {0: "batch"}, "images": {0: "batch"}},
            dynamo=False,
        )
        model = onnx.load(str(tmp))
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, meta
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(["images"], {"g_input": fresh.numpy()})[0])
        _check("ONNX", got, want)
    return out


# ------------------------------------------------------------------------------ the command


@click.command("export")
@run_argument()
@option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="torchscript (torch.jit.trace), onnx (needs pip install 'ganrun[export]') or "
    "safetensors (G's weights; rebuild G from the model name in the metadata).",
)
@option("--out", type=OutputPath("file"), required=True, help="The file to write.")
@option(
    "--checkpoint",
    default=None,
    metavar="STEP|FILE",
    show_default="the newest",
    help="A step number or a checkpoint file of the run.",
)
@option("--overwrite", is_flag=True, default=False, help="Replace OUT if it exists.")
@click.pass_context
def export_command(ctx: click.Context, run: Path, fmt: str, out: Path, checkpoint: str | None, overwrite: bool) -> None:
    """Export a run's generator alone, for serving without ganrun: G plus its input layout
    (noise and code columns) and image shape in the file's metadata.

    The plugins the run was trained with are activated from its checkpoint."""
    from registry.data import DatasetError
    from registry.plugins import PluginError
    from registry.run import load_run

    if out.exists() and not overwrite:
        raise click.BadParameter(
            f"{out} exists; pass --overwrite to replace it, or choose another name", param_hint="--out"
        )
    if fmt == "onnx":  # before loading anything: a missing extra is the user's first problem
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise click.ClickException(
                f"--format onnx needs the onnx and onnxruntime packages ({exc.name} is missing): {EXPORT_HINT}"
            ) from None
    chosen: str | int | None = int(checkpoint) if checkpoint is not None and checkpoint.isdigit() else checkpoint
    try:
        loaded = load_run(
            run, chosen, "cpu", plugins=ctx.obj.plugin_names if ctx.obj is not None else (), command="export"
        )
    except (ckpt.CheckpointError, PluginError, DatasetError) as exc:
        raise click.ClickException(str(exc)) from None
    except (ValueError, KeyError) as exc:
        raise click.ClickException(f"{run}: cannot rebuild the run ({exc})") from None
    try:
        path = export_generator(loaded, fmt, out, overwrite=overwrite)
    except (ExportError, FileExistsError, IsADirectoryError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(path))
