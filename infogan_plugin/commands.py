"""``ganrun --plugin infogan eval RUN`` and ``... traverse RUN``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from registry import DatasetError, PluginError, UnknownNameError, choose_checkpoint, require_run_plugins, runfiles
from registry.checkpoint import CheckpointError, atomic_write
from registry.cli.options import OutputPath, device_option, option, run_argument

# The numbers eval reports as its result: one that is not finite makes eval fail (after writing
# eval.json with null in its place), since a NaN L_I or accuracy means the networks are broken.
MAX_EVAL_SAMPLES = 10_000_000  # L_I's estimate: standard error ~3e-4 of the NLL's spread at this size
HEADLINE = {"information": "L_I", "classification": "accuracy", "disentanglement": "score"}
# What eval computes from the run's dataset, named in its one line about them when that is missing.
SKIPPABLE = {"classification": "the accuracy", "disentanglement": "the disentanglement scores"}


def _writable(path: Path) -> None:
    try:
        runfiles.check_writable(path)
    except runfiles.RunFileError as exc:
        raise click.ClickException(str(exc)) from None


def _load(ctx: click.Context, run: Path, device: str | None):
    """The run's networks from its newest checkpoint (``registry.train.inference``: no dataset,
    no optimizers), with the plugins named on the command line active."""
    from registry.train import restore_for_inference

    host = ctx.obj.host()
    try:
        require_run_plugins(run, host.plugins, ctx.info_name or "eval")
        return restore_for_inference(choose_checkpoint(run), host, device=device)
    except (CheckpointError, PluginError, DatasetError) as exc:
        raise click.ClickException(str(exc)) from None
    except (ValueError, KeyError) as exc:
        raise click.ClickException(f"{run}: cannot rebuild the run ({exc})") from None


class _WithData:
    """A restored run with its dataset, read the way the trainer reads them (``dataset`` and
    ``data``: the images as float32 in [-1, 1] on the run's device), for the metrics that
    need real images: the accuracy and the disentanglement scores."""

    def __init__(self, state: Any, dataset: Any) -> None:
        from registry import to_training_tensor

        self.state, self.dataset = state, dataset
        self.data = to_training_tensor(dataset, state.device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)


def _read_dataset(state: Any, data_dir: Path | None) -> tuple[Any, str | None]:
    """``(dataset, None)``, or ``(None, why)`` when the run's dataset cannot be read from where
    the run recorded it. A ``--data-dir`` the user gave that cannot be read is an error, as is
    data of another image shape than the run's."""
    config = state.config
    try:
        dataset = state.host.registries.datasets.get(config.dataset)(
            data_dir=str(data_dir) if data_dir is not None else config.data_dir, image_size=config.image_size
        )
    except (DatasetError, UnknownNameError) as exc:
        if data_dir is not None:
            raise click.BadParameter(str(exc), param_hint="--data-dir") from None
        return None, f"the run's dataset {config.dataset!r} cannot be read ({exc})"
    shape = (dataset.channels, dataset.image_size, dataset.image_size)
    if shape != tuple(state.image_shape):
        where = f"{data_dir}" if data_dir is not None else f"dataset {config.dataset!r}"
        raise click.BadParameter(
            f"{where} holds {'x'.join(map(str, shape))} images; the run was trained on "
            f"{'x'.join(map(str, state.image_shape))}",
            param_hint="--data-dir",
        )
    return dataset, None


_run_arg = run_argument()
_device_opt = device_option("Device to evaluate on")


@click.command("traverse")
@_run_arg
@_device_opt
@option(
    "--out",
    type=OutputPath("folder"),
    default=None,
    show_default="RUN/traversals",
    help="Folder for the PNGs.",
)
@click.pass_context
def traverse_command(ctx: click.Context, run: Path, device: str, out: Path | None) -> None:
    """Write latent traversal grids (one per code) from a run's newest checkpoint.

    Each row keeps the noise and the other codes fixed; the columns sweep the code over
    its values: every class of a categorical code, -2..2 for a U(-1, 1) code (beyond the
    training range, as in the paper's figures).
    """
    from infogan_plugin.traversals import traversal_grids

    state = _load(ctx, run, device)
    out = out or state.run_dir / "traversals"
    if out.exists() and not out.is_dir():
        raise click.BadParameter(f"{out} exists and is not a folder; name another --out", param_hint="--out")
    for path in traversal_grids(state, out, state.step):
        click.echo(str(path))


@click.command("eval")
@_run_arg
@_device_opt
@option("--samples", default=10_000, show_default=True, help="Generated samples for the L_I estimate.")
@option(
    "--disentanglement/--no-disentanglement",
    default=True,
    show_default=True,
    help="On a run trained on a dataset with ground-truth factors (shapes), also compute MIG, the FactorVAE score, DCI "
    "disentanglement and SAP of Q's code estimates (needs pip install 'ganrun[eval]').",
)
@option(
    "--metrics-samples",
    default=10_000,
    show_default=True,
    help="Size of the disentanglement metrics: training points of MIG, DCI and SAP, variance "
    "points and training votes of FactorVAE; test sets and evaluation votes get half, and "
    "each vote encodes 64 images (about 96 x N images in all). 10000 is disentanglement_lib's "
    "setting; use a few hundred for a quick look.",
)
@option("--metrics-seed", default=0, show_default=True, help="Seed of the ground-truth samples the metrics draw.")
@option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    show_default="the folder recorded at training",
    help="Where the run's dataset is now, if it has moved. Only the accuracy and the disentanglement scores read it.",
)
@click.pass_context
def eval_command(
    ctx: click.Context,
    run: Path,
    device: str,
    samples: int,
    disentanglement: bool,
    metrics_samples: int,
    metrics_seed: int,
    data_dir: Path | None,
) -> None:
    """Measure a run: L_I per code against what its code and Q loss can reach (H(c) for a
    categorical code, less for a continuous code under a fixed-std Gaussian Q) and, on labelled data, the unsupervised
    classification accuracy of each categorical code. On a dataset with ground-truth factors
    (shapes), also the
    disentanglement metrics of Q's code estimates (with seconds per metric). Writes RUN/eval.json.

    A number that is not finite is written to eval.json as null, with a warning naming it; eval
    then fails (exit 1) if it is an L_I, an accuracy or a disentanglement score. A code whose
    H(c) <= 0 (a differential entropy can be) has no L_I/H: its "ratio" is null by design, and
    eval prints L_I and H alone.

    L_I needs only the run folder. The accuracy and the disentanglement scores read the run's
    dataset; when it cannot be read where the run recorded it (and no --data-dir is given), eval
    reports L_I, says in one line what it skipped and why, records it under "skipped" in
    eval.json and exits 0.

    The accuracy and the disentanglement metrics need scikit-learn and scipy:
    pip install 'ganrun[eval]'."""
    from registry.eval.optional import MissingEvalDependency, check_eval_dependencies, require
    from infogan_plugin.bounds import bound_text
    from infogan_plugin.codes import Categorical
    from infogan_plugin.evaluate import (
        classification_accuracy,
        classifies,
        confusion_lines,
        disentanglement_metrics,
        information_bounds,
        label_problem,
        label_warnings,
    )

    if not 1 <= samples <= MAX_EVAL_SAMPLES:
        raise click.BadParameter(
            f"must be between 1 and {MAX_EVAL_SAMPLES:,}, got {samples:,} (L_I's standard error is about "
            f"1/sqrt(samples) nats per nat of spread, so more samples only take longer)",
            param_hint="--samples",
        )
    if metrics_samples < 2:
        raise click.BadParameter(f"must be at least 2, got {metrics_samples}", param_hint="--metrics-samples")
    state = _load(ctx, run, device)
    path = state.run_dir / "eval.json"
    _writable(path)  # refused now, not after minutes of evaluation
    wanted = (["classification"] if any(slot.code.discrete for slot in state.sampler.slots) else []) + (
        ["disentanglement"] if disentanglement else []
    )
    dataset, why = _read_dataset(state, data_dir) if wanted else (None, None)
    with_data = _WithData(state, dataset) if dataset is not None else None
    scores_disentanglement = disentanglement and dataset is not None and dataset.ground_truth is not None
    if scores_disentanglement:  # codes and factors (float64) of the training and test points
        from infogan_plugin.generate import check_fits

        per_point = 8 * (state.sampler.input_dim + 16) * 3
        check_fits(state.device, "--metrics-samples", metrics_samples, "the metrics' codes and factors", per_point)
    scores_accuracy = with_data is not None and classifies(with_data)
    unusable_labels = label_problem(with_data.dataset.labels) if scores_accuracy else ""
    if unusable_labels:  # a 100% that means nothing is worse than no number: say why there is none
        scores_accuracy = False
        runfiles.warn(f"no accuracy: {unusable_labels}")
    # labels with more classes than a categorical code has values cap its accuracy: said next to
    # the accuracy (a reading of the figure, not a problem with the run)
    caps = label_warnings(with_data.dataset.labels, state.sampler) if scores_accuracy and not unusable_labels else []
    try:  # fail before the first stage, not minutes into the evaluation
        if scores_accuracy and any(isinstance(slot.code, Categorical) for slot in state.sampler.slots):
            require("scipy.optimize", "the unsupervised classification accuracy")
        if scores_disentanglement:
            check_eval_dependencies("the disentanglement metrics (MIG, DCI, SAP)")
    except MissingEvalDependency as exc:
        raise click.ClickException(str(exc)) from None

    def stage(text: str) -> None:  # progress on stderr, so stdout stays the results
        click.echo(f"[eval] {text}", err=True)

    stage(f"L_I of each code on {samples} generated samples")
    from tqdm.auto import tqdm

    with tqdm(total=samples, unit="sample", file=sys.stderr, dynamic_ncols=True, disable=None, leave=False) as bar:
        information = information_bounds(state, n=samples, progress=bar.update)
    if scores_accuracy:
        stage("unsupervised classification accuracy on the labelled data")
    try:
        result = {
            "step": state.step,
            "dataset": state.config.dataset,
            "information": information,
            "classification": classification_accuracy(with_data) if scores_accuracy else {},
        }
        if why is not None:  # recorded as not computed, which is not a failure
            result["skipped"] = {name: why for name in wanted}
        if unusable_labels:
            result.setdefault("skipped", {})["classification"] = unusable_labels
        if scores_disentanglement:
            labels = {"mig": "MIG", "factor_vae": "FactorVAE score (the slow one)", "dci": "DCI", "sap": "SAP"}
            result["disentanglement"] = disentanglement_metrics(
                with_data,
                num_samples=metrics_samples,
                seed=metrics_seed,
                on_metric=lambda name: stage(f"{labels[name]} at {metrics_samples} samples"),
            )
    except MissingEvalDependency as exc:
        raise click.ClickException(str(exc)) from None
    written, non_finite = runfiles.finite_json(result)
    atomic_write(path, runfiles.dumps(written, indent=2))
    if non_finite:
        runfiles.warn(f"{path}: {', '.join(non_finite)} not finite (NaN or infinite); written as null")
    for name, info in result["information"].items():
        click.echo(f"{name}: {bound_text(info['L_I'], info['H'], info['L_I_max'])}")
    for name, acc in result["classification"].items():
        click.echo(f"{name}: unsupervised accuracy {acc['accuracy']:.2%}")
        for line in caps:
            if line.startswith(f"{name}: "):
                click.echo(f"  ({line.removeprefix(f'{name}: ')})")
        for line in confusion_lines(acc):
            click.echo(f"  {line}")
    if "disentanglement" in result:
        dis = result["disentanglement"]
        shown = ", ".join(
            f"{label} {dis[key]['score']:.3f} ({dis[key]['seconds']:.1f} s)"
            for key, label in (("mig", "MIG"), ("factor_vae", "FactorVAE"), ("dci", "DCI"), ("sap", "SAP"))
        )
        click.echo(f"disentanglement of {', '.join(dis['encoder'])} ({metrics_samples} samples): {shown}")
    if why is not None:
        skipped = " and ".join(SKIPPABLE[name] for name in wanted)
        click.echo(
            f"skipped {skipped}, which read the run's data: {why}; pass --data-dir DIR to point eval at the data"
        )
    click.echo(f"wrote {path}")
    broken = [name for name in non_finite if HEADLINE.get(name.partition(".")[0]) == name.rpartition(".")[2]]
    if broken:
        raise click.ClickException(
            f"{path}: {', '.join(broken)} not finite at step {state.step}: the networks of this checkpoint give "
            f"NaN or infinite outputs; evaluate an earlier one (ganrun --plugin infogan eval RUN/checkpoints/FILE)"
        )
