"""``ganrun --plugin infogan select SWEEP``: choose one seed of a sweep without labels.

SWEEP holds ordinary run folders of one configuration trained with different seeds
(``SWEEP/seed-N/``, as ``ganrun train --seed N --out SWEEP/seed-N`` writes them). Each usable
run is loaded with ``load_run``; the pick is the most central run by the agreement of its
categorical partitions or by InfoGAN-CR's ModelCentrality for continuous codes
(``infogan_plugin.selection``). Writes SWEEP/select.json and SWEEP/select.html.
"""

from __future__ import annotations

import gc
import html
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from infogan_plugin.codes import Categorical
from infogan_plugin.generate import device_opt
from registry import runfiles
from registry.checkpoint import CheckpointError, atomic_write
from registry.cli.options import option
from registry.config import MUTABLE_ON_RESUME

# Settings that may differ between the runs of one sweep: the seed, where a run lives and how
# it was watched (device, progress bar, picture, log and checkpoint periods, checkpoints kept,
# the divergence guard, torch.compile), and the plugins' options that a resume may change (how
# often training is scored). Everything else, the number of steps and bf16 autocast included,
# changes what is trained, so runs that differ in it are not seeds of one configuration.
SWEEP_MUTABLE = frozenset({"seed", "out"} | (MUTABLE_ON_RESUME - {"steps", "amp"}))
FACTOR_LEVELS = 1000  # values a continuous code takes in ModelCentrality: a fixed draw from its prior
ENCODE_BATCH = 500  # images per D/Q pass
METHODS = ("categorical", "continuous")
AUTO_RULE = "auto: categorical when the runs have a categorical code, else continuous"


@dataclass
class Candidate:
    """A run folder of the sweep: where it is, its name relative to SWEEP, its seed and config."""

    folder: Path
    name: str
    seed: int
    config: dict[str, Any]


@dataclass
class Loaded:
    """What select keeps of a loaded run: its networks and what was read from the real images."""

    candidate: Candidate
    checkpoint: Path
    step: int
    modules: dict[str, Any]
    spec: Any
    device: torch.device
    partitions: dict[str, np.ndarray] = field(default_factory=dict)  # categorical code -> (N,) argmax Q
    accuracy: dict[str, float] = field(default_factory=dict)  # categorical code -> unsupervised accuracy
    factor_vae: float | None = None  # FactorVAE against the dataset's ground-truth factors


def _say(text: str) -> None:  # progress on stderr, so stdout stays the result
    click.echo(f"[select] {text}", err=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------------ finding the runs


def discover(sweep: Path) -> tuple[list[Candidate], list[str]]:
    """The run folders directly under ``sweep`` (those holding config.json or checkpoints/),
    sorted by seed, and one line per folder skipped because its config.json cannot be read."""
    found, skipped = [], []
    for folder in sorted(p for p in sweep.iterdir() if p.is_dir()):
        if not ((folder / "config.json").exists() or (folder / "checkpoints").is_dir()):
            continue
        try:
            described = runfiles.read_json(folder / "config.json")
            config = described.get("config")
            if not isinstance(config, dict) or not isinstance(config.get("seed"), int):
                raise runfiles.RunFileError(folder / "config.json", "has no configuration with an integer seed")
        except runfiles.RunFileError as exc:
            skipped.append(f"{folder.name}: skipped, {exc.reason} ({folder / 'config.json'})")
            continue
        found.append(Candidate(folder, folder.name, config["seed"], config))
    found.sort(key=lambda c: (c.seed, c.name))
    return found, skipped


def check_sweep(sweep: Path, candidates: list[Candidate], ignored: frozenset[str]) -> None:
    """Refuse runs that are not seeds of one configuration, or a seed held by two folders."""
    from infogan_plugin.selection import config_differences

    by_seed: dict[int, list[str]] = {}
    for c in candidates:
        by_seed.setdefault(c.seed, []).append(c.name)
    for seed, names in by_seed.items():
        if len(names) > 1:
            raise click.ClickException(
                f"{sweep}: {' and '.join(names)} both hold seed {seed}; a sweep has one run per seed, move one away"
            )
    diffs = config_differences({c.seed: c.config for c in candidates}, ignored)
    if diffs:
        raise click.ClickException(
            f"{sweep}: the runs are not seeds of one configuration: {'; '.join(diffs)} "
            f"(only {', '.join(sorted(ignored))} may differ)"
        )


# ------------------------------------------------------------------------------ reading each run


@torch.no_grad()
def read_run(
    ctx: click.Context,
    candidate: Candidate,
    checkpoint: str | None,
    device: str,
    labels: bool,
    samples: int,
    metrics_seed: int,
) -> Loaded:
    """Load one run and read its categorical partitions of the real images (with the label
    metrics when asked). Raises ``CheckpointError`` / ``ValueError`` / ``KeyError`` for a run
    to skip; other errors concern the whole sweep."""
    from infogan_plugin.evaluate import label_problem, q_encoder, q_outputs
    from infogan_plugin.run import load_run

    chosen: str | int | None = int(checkpoint) if checkpoint is not None and checkpoint.isdigit() else checkpoint
    plugins = ctx.obj.plugin_names if ctx.obj is not None else ()
    run = load_run(candidate.folder, chosen, device, plugins=plugins, command="select")
    trainer = run.trainer
    loaded = Loaded(candidate, run.checkpoint, run.step, dict(run.modules), run.spec, run.device)
    categorical = [i for i, slot in enumerate(run.spec.slots) if isinstance(slot.code, Categorical)]
    if categorical:
        chunks = run.spec.split_q(q_outputs(trainer, trainer.data))
        for i in categorical:
            slot = run.spec.slots[i]
            loaded.partitions[slot.name] = slot.q_loss.predict(chunks[i]).argmax(dim=1).cpu().numpy()
    if labels and categorical and trainer.dataset.labels is not None:
        from registry.eval.assignment import cluster_accuracy

        truth = trainer.dataset.labels.cpu()
        problem = label_problem(truth)
        if problem:  # a number that would look like a result: say why there is none
            runfiles.warn(f"{candidate.folder}: no accuracy: {problem}")
        for name, partition in ({} if problem else loaded.partitions).items():
            loaded.accuracy[name] = cluster_accuracy(torch.from_numpy(partition), truth)[0]
    truth_factors = trainer.dataset.ground_truth
    if labels and truth_factors is not None:
        from registry.eval.disentanglement import evaluate_all

        result = evaluate_all(
            q_encoder(trainer),
            truth_factors.sizes,
            truth_factors.sample,
            lambda factors: truth_factors.render(factors.to(run.device)),
            seed=metrics_seed,
            num_samples=samples,
            metrics=("factor_vae",),
        )
        loaded.factor_vae = float(result["factor_vae"].score)
    return loaded  # the trainer (optimizers, the dataset on the device) goes with ``run``


# ------------------------------------------------------------------------------ continuous codes


def continuous_factors(spec: Any) -> tuple[list[tuple[int, int, str]], str | None]:
    """``(slot index, dimension, name)`` of every continuous code dimension: the ground-truth
    factors of ModelCentrality; and why the runs cannot be scored that way, or ``None``. A code
    fed to G through more columns than it has dimensions (an angle as cos/sin) cannot take a
    factor's value column by column; the FactorVAE score needs at least two factors."""
    out = []
    for i, slot in enumerate(spec.slots):
        if slot.code.discrete:
            continue
        if slot.code.input_width != slot.code.dim:
            return [], (
                f"code {slot.name!r} ({slot.code.type_name}) feeds G {slot.code.input_width} columns for "
                f"{slot.code.dim} dimension(s), and ModelCentrality sets codes column by column"
            )
        out.extend((i, d, slot.name if slot.code.dim == 1 else f"{slot.name}[{d}]") for d in range(slot.code.dim))
    if len(out) < 2:
        return out, (
            f"the runs have {_plural(len(out), 'continuous code dimension')}, and the FactorVAE score of "
            f"ModelCentrality needs at least 2"
        )
    return out, None


def continuous_pieces(models: list[Loaded], factors: list[tuple[int, int, str]], seed: int):
    """Each model's encoder (Q's estimates of the continuous codes from G's images) and generator
    (factor indices -> images, the other inputs drawn from the nuisance generator), and the
    factor sizes. Factor index ``k`` of a code dimension is value ``k`` of a fixed draw of
    ``FACTOR_LEVELS`` values from the code's prior, the same for every model."""
    spec = models[0].spec
    table_gen = torch.Generator().manual_seed(seed)
    tables = {i: spec.slots[i].code.sample(FACTOR_LEVELS, generator=table_gen, device="cpu") for i, _, _ in factors}
    slots = sorted(tables)

    def encoder(model: Loaded):
        D, Q = model.modules["D"], model.modules["Q"]

        @torch.no_grad()
        def encode(images: torch.Tensor) -> torch.Tensor:
            outs = []
            for chunk in images.split(ENCODE_BATCH):
                _, features = D(chunk.to(model.device))
                outs.append(Q(features).float())
            chunks = model.spec.split_q(torch.cat(outs))
            columns = [model.spec.slots[i].q_loss.point_estimate(chunks[i]).float() for i in slots]
            return torch.cat(columns, dim=1).cpu()

        return encode

    def generator(model: Loaded):
        G = model.modules["G"]

        @torch.no_grad()
        def generate(indices: torch.Tensor, nuisance: torch.Generator) -> torch.Tensor:
            g_input, _ = model.spec.sample(indices.shape[0], generator=nuisance, device="cpu")
            _, columns = model.spec.split_input(g_input)  # views into g_input
            for f, (i, d, _) in enumerate(factors):
                columns[i][:, d] = tables[i][indices[:, f].cpu(), d]
            return G(g_input.to(model.device)).float()  # (n, C, H, W) in [-1, 1]

        return generate

    return [encoder(m) for m in models], [generator(m) for m in models], (FACTOR_LEVELS,) * len(factors)


# ------------------------------------------------------------------------------ the report


def _label_summary(values: list[float], index: int, what: str, percent: bool) -> dict[str, Any]:
    from infogan_plugin.selection import ordinal, rank_of

    rank = rank_of(values, index)
    median = statistics.median(values)
    shown = (lambda v: f"{v:.1%}") if percent else (lambda v: f"{v:.3f}")
    return {
        "values": values,
        "pick": values[index],
        "pick_rank": rank,
        "of": len(values),
        "median": median,
        "line": f"the pick is {ordinal(rank)} of {len(values)} by {what} ({shown(values[index])}; "
        f"median {shown(median)}, best {shown(max(values))})",
    }


def page(sweep: Path, result: dict[str, Any]) -> str:
    from registry.report import heat_map, render

    names = [f"seed {s}" for s in result["seeds"]]
    chosen = result["seeds"].index(result["pick"]["seed"])
    pick = result["pick"]
    sections = [
        (
            "Pick",
            f"<p>seed <b>{pick['seed']}</b> ({html.escape(pick['run'])}), centrality {pick['centrality']:.3f} by "
            f"{html.escape(pick['method'])} ({html.escape(result['rule'])})</p>"
            + "".join(f"<p>{html.escape(info['line'])}</p>" for info in result.get("labels", {}).values()),
        )
    ]
    if "categorical" in result:
        cat = result["categorical"]
        maps = [
            heat_map(
                cat["matrix"],
                names,
                title=f"adjusted mutual information of argmax Q(c|x) on {cat['images']} real images"
                + (f", mean over {', '.join(cat['codes'])}" if len(cat["codes"]) > 1 else f" ({cat['codes'][0]})"),
                mark=chosen,
            )
        ]
        if len(cat["codes"]) > 1:
            maps += [heat_map(m, names, title=f"code {c}", mark=chosen) for c, m in cat["per_code"].items()]
        sections.append(("Agreement of categorical partitions", "".join(maps)))
    if "continuous" in result:
        con = result["continuous"]
        sections.append(
            (
                "ModelCentrality of continuous codes",
                heat_map(
                    con["matrix"],
                    names,
                    title=f"FactorVAE score of Q_i on G_j's images ({', '.join(con['factors'])} as factors, "
                    f"{con['samples']} samples)",
                    rows="encoder of",
                    columns="generator of",
                    mark=chosen,
                ),
            )
        )
    head = "<tr><th>seed</th><th>run</th><th>step</th>" + "".join(f"<th>{m}</th>" for m in result["centrality"])
    head += "".join(f"<th>{html.escape(k)}</th>" for k in result.get("labels", {})) + "</tr>"
    rows = ""
    for i, seed in enumerate(result["seeds"]):
        cells = [str(seed), html.escape(result["runs"][i]), str(result["steps"][i])]
        cells += [f"{values[i]:.3f}" for values in result["centrality"].values()]
        cells += [
            f"{info['values'][i]:.1%}" if key == "accuracy" else f"{info['values'][i]:.3f}"
            for key, info in result.get("labels", {}).items()
        ]
        style = ' style="font-weight:bold"' if i == chosen else ""
        rows += f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    sections.append(("Seeds", f"<table>{head}{rows}</table>"))
    if result["skipped"]:
        sections.append(("Skipped", "".join(f"<p>{html.escape(line)}</p>" for line in result["skipped"])))
    return render(f"select: {sweep.resolve().name}", sections)


# ------------------------------------------------------------------------------ the command


@click.command("select")
@click.argument("sweep", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option(
    "--by",
    type=click.Choice(["auto", *METHODS]),
    default="auto",
    show_default=True,
    help="What picks the seed: the agreement of categorical partitions, or ModelCentrality of the continuous "
    "codes. auto computes every method the runs' codes allow and picks by categorical when there is a "
    "categorical code, else by continuous; naming a method computes only that one (categorical alone is "
    "fast: ModelCentrality scores every ordered pair of runs).",
)
@option(
    "--samples",
    type=click.IntRange(min=2),
    default=500,
    show_default=True,
    help="Size of each FactorVAE score: variance points and training votes, half as many evaluation votes, 64 "
    "images a vote, so about 100 x SAMPLES images for every ordered pair of runs. 500 votes is what InfoGAN-CR "
    "used; use 100 for a quick look. The labelled check on a dataset with ground-truth factors uses it too.",
)
@option(
    "--metrics-seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the codes, noise and factor draws of the FactorVAE scores.",
)
@option(
    "--labels/--no-labels",
    default=True,
    show_default=True,
    help="Where the dataset has labels (digits) or ground-truth factors (shapes), also report each seed's "
    "unsupervised accuracy or FactorVAE score and where the pick ranks among the seeds on it. They never "
    "change the pick.",
)
@option(
    "--checkpoint",
    default=None,
    metavar="STEP|FILE",
    show_default="each run's newest",
    help="The checkpoint of every run: a step number or a file name in its checkpoints/ folder. A run without it "
    "is skipped.",
)
@device_opt
@click.pass_context
def select_command(
    ctx: click.Context,
    sweep: Path,
    by: str,
    samples: int,
    metrics_seed: int,
    labels: bool,
    checkpoint: str | None,
    device: str,
) -> None:
    """Choose one seed of a sweep without labels, and write SWEEP/select.json and SWEEP/select.html.

    SWEEP holds run folders of one configuration trained with different seeds (SWEEP/seed-N, from
    ganrun --plugin infogan train --seed N --out SWEEP/seed-N). A model that agrees with the other seeds
    is the pick: failures tend to be idiosyncratic, good solutions alike.

    \b
    categorical codes: each seed partitions the dataset's real images by argmax Q(c|x); every pair
      of seeds is scored by the adjusted mutual information of their partitions (mean over the
      categorical codes when there are several).
    continuous codes: InfoGAN-CR's ModelCentrality: seed j's generator is the ground truth for
      seed i's Q, scored with the FactorVAE metric, the continuous codes being the factors.

    A seed's centrality is its mean score against the other seeds; the pick is the most central
    (a tie goes to the lowest seed). Runs whose checkpoint is missing or damaged are skipped
    with a warning. Needs scikit-learn and scipy: pip install 'ganrun[eval]'.

    \b
    ganrun --plugin infogan select SWEEP --device auto
    """
    from tqdm.auto import tqdm

    from infogan_plugin import selection
    from registry.data import DatasetError
    from registry.eval.optional import MissingEvalDependency, require
    from registry.plugins import PluginError

    candidates, skipped = discover(sweep)
    for line in skipped:
        runfiles.warn(line)
    if len(candidates) < 2:
        raise click.ClickException(
            f"{sweep}: select needs at least 2 runs of one configuration, found {len(candidates)} "
            f"(run folders SWEEP/seed-N with config.json and checkpoints/)"
        )
    host = ctx.obj.host() if ctx.obj is not None else None
    extra_mutable = host.run("ganrun_resume_mutable_options") if host is not None else []
    check_sweep(sweep, candidates, SWEEP_MUTABLE.union(*(names or () for names in extra_mutable)))
    json_path, html_path = sweep / "select.json", sweep / "select.html"
    try:
        for path in (json_path, html_path):
            runfiles.check_writable(path)
        require("sklearn.metrics", "select's agreement of partitions")
        if labels:
            require("scipy.optimize", "select's unsupervised accuracy")
    except (runfiles.RunFileError, MissingEvalDependency) as exc:
        raise click.ClickException(str(exc)) from None

    models: list[Loaded] = []
    for candidate in tqdm(candidates, desc="reading runs", unit="run", file=sys.stderr, disable=None, leave=False):
        try:
            models.append(read_run(ctx, candidate, checkpoint, device, labels, samples, metrics_seed))
        except CheckpointError as exc:
            line = f"{candidate.name}: skipped, {exc}"
        except (ValueError, KeyError) as exc:
            line = f"{candidate.name}: skipped, cannot rebuild the run ({exc})"
        except (PluginError, DatasetError, MissingEvalDependency) as exc:
            raise click.ClickException(str(exc)) from None
        else:
            gc.collect()  # the run's trainer (its optimizers, the dataset on the device) is gone: free it now
            continue
        tqdm.write(f"warning: {line}", file=sys.stderr)
        skipped.append(line)
    if len(models) < 2:
        raise click.ClickException(
            f"{sweep}: select needs at least 2 usable runs, {len(models)} of {len(candidates)} could be loaded"
        )

    spec = models[0].spec
    cat_codes = [slot.name for slot in spec.slots if isinstance(slot.code, Categorical)]
    factors, no_continuous = continuous_factors(spec)
    why = {"categorical": None if cat_codes else "the runs have no categorical code", "continuous": no_continuous}
    if by == "auto":
        method = "categorical" if cat_codes else "continuous"
        computed = [m for m in METHODS if why[m] is None]
    else:
        method, computed = by, [by]
    if why[method] is not None:
        other = [m for m in METHODS if why[m] is None]
        hint = f"; use --by {other[0]}" if other else ""
        raise click.ClickException(f"{sweep}: cannot select by {method}: {why[method]}{hint}")

    seeds = [m.candidate.seed for m in models]
    result: dict[str, Any] = {
        "sweep": sweep.resolve().name,
        "seeds": seeds,
        "runs": [m.candidate.name for m in models],
        "checkpoints": [_relative(m.checkpoint, sweep) for m in models],
        "steps": [m.step for m in models],
        "skipped": skipped,
        "method": method,
        "rule": AUTO_RULE if by == "auto" else f"--by {by}",
        "centrality": {},
    }
    if "categorical" in computed:
        _say(f"agreement of {', '.join(cat_codes)} between {_plural(len(models), 'seed')}")
        per_code = {code: selection.partition_agreement([m.partitions[code] for m in models]) for code in cat_codes}
        matrix = np.mean(list(per_code.values()), axis=0)
        result["categorical"] = {
            "codes": cat_codes,
            "metric": "sklearn.metrics.adjusted_mutual_info_score (arithmetic), mean over codes",
            "images": int(models[0].partitions[cat_codes[0]].shape[0]),
            "matrix": matrix.tolist(),
            "per_code": {code: m.tolist() for code, m in per_code.items()},
            "centrality": selection.centrality(matrix).tolist(),
        }
        result["centrality"]["categorical"] = result["categorical"]["centrality"]
    if "continuous" in computed:
        encoders, generators, sizes = continuous_pieces(models, factors, metrics_seed)
        pairs = len(models) * (len(models) - 1)
        _say(f"ModelCentrality of {', '.join(name for _, _, name in factors)}: {pairs} pairs at {samples} samples")
        total = pairs * selection.images_per_pair(samples)
        with tqdm(
            total=total,
            unit="image",
            desc="ModelCentrality",
            file=sys.stderr,
            disable=None,
            leave=False,
            dynamic_ncols=True,
            unit_scale=True,
        ) as bar:
            matrix, central = selection.model_centrality(
                encoders,
                generators,
                sizes,
                _uniform(sizes),
                num_samples=samples,
                seed=metrics_seed,
                progress=bar.update,
            )
        result["continuous"] = {
            "codes": sorted({spec.slots[i].name for i, _, _ in factors}, key=[s.name for s in spec.slots].index),
            "factors": [name for _, _, name in factors],
            "metric": "FactorVAE score (registry.eval.disentanglement.factor_vae_score)",
            "rows": "encoder (Q) of the seed",
            "columns": "generator (G) of the seed",
            "samples": samples,
            "metrics_seed": metrics_seed,
            "factor_levels": FACTOR_LEVELS,
            "matrix": [[None if i == j else float(v) for j, v in enumerate(row)] for i, row in enumerate(matrix)],
            "centrality": central.tolist(),
        }
        result["centrality"]["continuous"] = result["continuous"]["centrality"]

    scores = result["centrality"][method]
    chosen = selection.pick(scores)
    pick = models[chosen]
    result["pick"] = {
        "seed": pick.candidate.seed,
        "run": pick.candidate.name,
        "checkpoint": result["checkpoints"][chosen],
        "centrality": scores[chosen],
        "method": method,
    }
    if labels:
        label_info = {}
        if all(m.accuracy for m in models):
            values = [float(np.mean(list(m.accuracy.values()))) for m in models]
            what = "accuracy" if len(cat_codes) == 1 else f"mean accuracy of {', '.join(cat_codes)}"
            label_info["accuracy"] = _label_summary(values, chosen, what, percent=True)
            label_info["accuracy"]["per_code"] = {c: [m.accuracy[c] for m in models] for c in cat_codes}
        if all(m.factor_vae is not None for m in models):
            values = [float(m.factor_vae) for m in models]
            label_info["factor_vae"] = _label_summary(values, chosen, "FactorVAE on the ground-truth factors", False)
            label_info["factor_vae"]["samples"] = samples
        if label_info:
            result["labels"] = label_info

    written, non_finite = runfiles.finite_json(result)
    atomic_write(json_path, runfiles.dumps(written, indent=2))
    if non_finite:
        runfiles.warn(f"{json_path}: {', '.join(non_finite)} not finite (NaN or infinite); written as null")
    atomic_write(html_path, page(sweep, written))

    where = sweep / pick.candidate.name
    click.echo(f"pick: seed {pick.candidate.seed}, centrality {scores[chosen]:.3f} ({method}), run {where}")
    _print_table(result, chosen)
    for info in result.get("labels", {}).values():
        click.echo(info["line"])
    click.echo(f"wrote {json_path} and {html_path}")
    click.echo("next:")
    click.echo(f"  ganrun --plugin infogan generate {where} --n 64")
    click.echo(f"  ganrun --plugin infogan eval {where}")
    click.echo(f"  ganrun report {where}")


def _relative(path: Path, sweep: Path) -> str:
    """``path`` relative to the sweep folder where it lies inside it (as POSIX text), else as given."""
    try:
        return path.resolve().relative_to(sweep.resolve()).as_posix()
    except ValueError:
        return str(path)


def _uniform(sizes: tuple[int, ...]):
    from registry.eval.disentanglement import uniform_factor_sampler

    return uniform_factor_sampler(sizes)


def _print_table(result: dict[str, Any], chosen: int) -> None:
    columns = list(result["centrality"])
    labels = result.get("labels", {})
    head = f"  {'seed':>6} {'step':>7} " + "".join(f"{c:>12}" for c in columns)
    head += "".join(f"{k:>12}" for k in labels) + "  run"
    click.echo(head)
    for i, seed in enumerate(result["seeds"]):
        cells = "".join(f"{result['centrality'][c][i]:>12.3f}" for c in columns)
        for key, info in labels.items():
            value = info["values"][i]
            cells += f"{value:>12.1%}" if key == "accuracy" else f"{value:>12.3f}"
        marker = "*" if i == chosen else " "
        click.echo(f"{marker} {seed:>6} {result['steps'][i]:>7} {cells}  {result['runs'][i]}")
