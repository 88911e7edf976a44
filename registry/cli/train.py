"""``ganrun train``: the command with the core options plus every active plugin's, the
configuration it builds (through the pure ``registry.config.merge_config``), and the trainer
it runs in a run folder that ``rundir.py`` chooses, checks, locks and prepares.

(About 420 lines: building the command from the options, validating the merged configuration
and running it are one path a user's flags take, read top to bottom; the run folder's handling
is already apart in ``rundir.py``.)"""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from registry import checkpoint as ckpt
from registry.checkpoint.lock import RunFolderBusy, RunLock
from registry.checkpoint.run import choose_checkpoint, saved_config
from registry.cli.options import DEVICE, DEVICE_FORMS, Option, OutputPath, adopt
from registry.cli.rundir import check_run_dir, choose_run_dir, lock_run_dir, prepare_run_dir, run_entries
from registry.cli.session import Session, plugin_failure
from registry.config import (
    CORE_KEYS,
    MUTABLE_ON_RESUME,
    ResumeConflict,
    TrainConfig,
    merge_config,
    read_toml,
    refuse_unknown,
    type_errors,
)
from registry.data import DatasetError
from registry.errors import is_out_of_memory
from registry.plugins import Host, PluginError, UnknownNameError
from registry.run_plugins import require_run_plugins
from registry.train import distributed, memory
from registry.train.device import device_problem

# Help text per core option; the default shown is the effective one for the active plugins.
CORE_HELP = {
    "dataset": "Dataset name (registered by a plugin; built-ins: digits, shapes, mnist-idx, image-folder).",
    "data_dir": "Folder the dataset reads from (mnist-idx, image-folder, ...).",
    "image_size": "Resize images to this square size.",
    "model": "Architecture name: dcgan28, dcgan64, conv64 (small, for shapes) or a plugin's.",
    "gan_loss": "Adversarial loss: nonsaturating or hinge (or a plugin's).",
    "noise_dim": "Width of the incompressible noise z.",
    "noise": "Distribution of z.",
    "steps": "Total training steps (one D and one G update each).",
    "batch_size": "Images per step and process.",
    "lr_g": "Generator learning rate (Adam).",
    "lr_d": "Discriminator (and auxiliary heads) learning rate (Adam).",
    "lr_decay": "Fraction of the run, at its end, over which both learning rates fall linearly to zero "
    "(0 keeps them constant; 0.5 starts the decay half-way). Follows --steps, also on resume.",
    "beta1": "Adam beta1.",
    "beta2": "Adam beta2.",
    "seed": "Seed for initialisation, data order and latent sampling.",
    "device": f"Device to train on: {DEVICE_FORMS}.",
    "out": "Run folder for checkpoints, metrics and pictures.",
    "save_every": "Checkpoint every N steps (and at the end).",
    "sample_every": "Write sample pictures every N steps (and at the end).",
    "log_every": "Write metrics every N steps.",
    "keep_checkpoints": "Keep only the newest N checkpoints (0 keeps all).",
    "spectral_norm": "Spectral normalisation (torch's parametrization) on every convolution and linear layer "
    "of D, its head and every module in D's optimizer group (InfoGAN's Q): what lets D train at "
    "a high learning rate without overpowering G.",
    "g_steps": "G updates per D update; each regenerates the fakes from the step's noise and codes "
    "(InfoGAN-CR uses 2).",
    "max_loss": "Divergence bound: a loss term above this magnitude on any step, or a weight or buffer above "
    "it, stops the run as diverged (normal runs stay below 100); 0 turns the bound off. NaN or Inf "
    "in a loss, weight, buffer or optimizer state always stops it. May change on resume.",
    "amp": "bf16 autocast on CUDA and on CPUs with native bf16 (the Q and GAN losses stay fp32).",
    "compile": "torch.compile the networks.",
    "progress": "Show a progress bar.",
}


# What a core option's default is when it is computed at run time, as --help shows it.
RUNTIME_DEFAULTS = {
    "image_size": "the dataset's own",
    "model": "dcgan28 for 28 px images, dcgan64 otherwise",
    "out": "runs/<dataset>-<time>",
}


def _core_option(field: dataclasses.Field, default: Any) -> click.Option:
    """The flag of a ``TrainConfig`` field. Its click default is None, so a value the user did
    not give comes from a plugin's defaults, the --config file or the saved run; --help shows
    the effective default."""
    name = field.name
    flag = "--" + name.replace("_", "-")
    help_text = CORE_HELP.get(name, "")
    kind = {"int": int, "float": float, "str": str, "bool": bool}
    annotation = str(field.type)
    if default is None:
        shown: str | bool = RUNTIME_DEFAULTS.get(name, False)
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    else:
        shown = str(default)
    if "bool" in annotation:
        return Option([f"{flag}/--no-{name.replace('_', '-')}"], default=None, help=help_text, show_default=shown)
    if name == "noise":
        return Option(
            [flag], type=click.Choice(["normal", "uniform"]), default=None, help=help_text, show_default=shown
        )
    if name == "device":  # checked where it is typed; a --config or saved value by _validate
        return Option([flag], type=DEVICE, default=None, help=help_text, show_default=shown)
    if name == "out":
        return Option([flag], type=OutputPath("folder", text=True), default=None, help=help_text, show_default=shown)
    typ = next((t for key, t in kind.items() if annotation.startswith(key)), str)
    return Option([flag], type=typ, default=None, help=help_text, show_default=shown)


def _require_run_plugins(run: Path, active: Any, command: str) -> None:
    try:
        require_run_plugins(run, active, command)
    except PluginError as exc:
        raise click.ClickException(str(exc)) from None


def _plugin_defaults(host: Host) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for defaults in reversed(host.run("ganrun_config_defaults")):  # registered last wins
        merged.update(defaults or {})
    return merged


@dataclasses.dataclass
class TrainOptions:
    """What ``train`` accepts for the active plugins: its parameters (the core options, every
    plugin's, then --config, --resume, --auto-resume, --overwrite), the plugins' defaults and
    the names of the plugins' options. ``sweep`` builds its command from the same list."""

    host: Host
    params: list[click.Parameter]
    defaults: dict[str, Any]
    plugin_keys: set[str]


def train_options(session: Session) -> TrainOptions:
    """The options of ``train`` for the session's plugins; a broken plugin raises
    ``click.ClickException`` naming it."""
    try:
        host = session.host()
        plugin_options = [adopt(opt) for opts in host.run("ganrun_train_options") for opt in (opts or [])]
        defaults = _plugin_defaults(host)
    except (click.ClickException, PluginError) as exc:
        raise exc if isinstance(exc, click.ClickException) else click.ClickException(str(exc)) from None
    base = dataclasses.asdict(TrainConfig())
    base.update({k: v for k, v in defaults.items() if k in CORE_KEYS})
    params: list[click.Parameter] = [
        _core_option(f, base[f.name]) for f in dataclasses.fields(TrainConfig) if f.name != "extra"
    ]
    params += plugin_options
    params += [
        Option(
            ["--config"],
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="TOML file setting any of these options by name (flags override it).",
        ),
        Option(
            ["--resume"],
            type=click.Path(path_type=Path),
            default=None,
            help="Continue from a checkpoint file, or a run folder's newest complete checkpoint.",
        ),
        Option(
            ["--auto-resume"],
            is_flag=True,
            default=False,
            help="Resume from the newest complete checkpoint in --out if there is one, else start "
            "fresh: one command line for first start and restarts (torchrun --max-restarts).",
        ),
        Option(
            ["--overwrite"],
            is_flag=True,
            default=False,
            help="Start over in an existing run folder, deleting its checkpoints and logs.",
        ),
    ]
    return TrainOptions(host, params, defaults, {opt.name for opt in plugin_options if opt.name})


def unavailable_command(name: str, what: str, broken: click.ClickException) -> click.Command:
    """A stand-in for a command whose plugins failed to load: it accepts any options, so the
    plugin's error, not "no such option", is what the user sees; its help says which plugin
    failed and why (the error's first clause in the command list, all of it in ``--help``)."""

    @click.command(
        name,
        help=f"{what}: unavailable, because {broken.message}",
        short_help=f"{what} (unavailable: {broken.message.split(': ')[0]})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def unavailable() -> None:
        raise broken

    return unavailable


def make_train_command(session: Session) -> click.Command:
    """``train`` with the core options plus every active plugin's options."""
    try:
        options = train_options(session)
    except click.ClickException as exc:
        return unavailable_command("train", "Train a GAN", exc)

    def callback(**values: Any) -> None:
        ctx = click.get_current_context()
        run_train(ctx, session, options.host, values, options.defaults, options.plugin_keys)

    return click.Command(
        "train",
        params=options.params,
        callback=callback,
        help="Train a GAN on a registered dataset; options come from the active plugins too.\n\n"
        "Precedence: built-in defaults < plugin defaults < --config TOML < flags.",
    )


def _explicit(ctx: click.Context, values: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The values the user typed (or set through the environment), not click's defaults."""
    explicit = {}
    for name in names:
        source = ctx.get_parameter_source(name)
        if source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT):
            value = values[name]
            explicit[name] = list(value) if isinstance(value, tuple) else value
    return explicit


def _resolve_resume(path: Path) -> Path:
    if not path.exists():
        raise click.BadParameter(f"{path} does not exist", param_hint="--resume")
    try:  # a newer checkpoint skipped is named on stderr, with why
        return choose_checkpoint(path)
    except ckpt.CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="--resume") from None


def _auto_resume_checkpoint(out: Path) -> Path | None:
    """--auto-resume's checkpoint: the newest usable one in ``out/checkpoints`` (newer ones
    skipped are named on stderr), None when there is none at all; checkpoints none of which
    can be used are refused rather than trained over from step 0."""
    found, skipped = ckpt.latest_checkpoint(out / "checkpoints")
    if found is None and not skipped:
        return None
    try:
        return choose_checkpoint(out)
    except ckpt.CheckpointError as exc:
        raise click.BadParameter(
            f"{exc}; move them away to start {out} again, or resume with the ganrun that wrote them",
            param_hint="--auto-resume",
        ) from None


# The options that size a training run's allocations, for an out-of-memory message.
SIZE_OPTIONS = ("--batch-size", "--image-size", "--noise-dim", "--model")


def out_of_memory_text(phase: str, options: tuple[str, ...], checkpoint: str = "") -> str:
    """One line for an allocator failure: where it happened, what to lower, what is kept."""
    text = f"ran out of memory during {phase}; lower {', '.join(options)} (or use a device with more memory)"
    return f"{text}; {checkpoint}" if checkpoint else text


def _option_for(message: str) -> str:
    for kind, option in (
        ("dataset", "--dataset"),
        ("model", "--model"),
        ("GAN loss", "--gan-loss"),
        ("latent code type", "--code"),
        ("Q loss", "--code"),
    ):
        if message.startswith(f"unknown {kind} "):
            return option
    return ""


def _plugin_type_errors(ctx: click.Context, values: dict[str, Any], plugin_keys: set[str]) -> list[str]:
    """``key: ...`` for each plugin option in a TOML file whose value is not what its flag takes:
    the Python type first (TOML has types; "3" is not 3, "no" is not false), then the option's
    own check (choices, ranges)."""
    options = {p.name: p for p in ctx.command.params if isinstance(p, click.Option)}
    problems = []
    for key in sorted(set(values) & plugin_keys):
        option, value = options.get(key), values[key]
        if option is None:
            continue
        items = value if option.multiple and isinstance(value, list) else [value]
        if option.multiple and not isinstance(value, list):
            problems.append(f"{key}: must be a list, got {value!r} (option {option.opts[0]})")
            continue
        for item in items:
            cause = _option_value_error(ctx, option, item)
            if cause:
                problems.append(f"{key}: {cause} (option {option.opts[0]})")
                break
    return problems


def _option_value_error(ctx: click.Context, option: click.Option, value: Any) -> str:
    kind = option.type
    if option.is_flag or isinstance(kind, click.types.BoolParamType):
        return "" if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if isinstance(value, bool):
        return f"must be {kind.name}, got {value!r}"
    if isinstance(kind, click.types.IntParamType) and not isinstance(value, int):
        return f"must be an integer, got {value!r}"
    if isinstance(kind, click.types.FloatParamType):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
    if isinstance(kind, (click.types.StringParamType, click.Choice, click.Path)) and not isinstance(value, str):
        return f"must be a string, got {value!r}"
    try:
        kind.convert(value, option, ctx)
    except click.BadParameter as exc:
        return exc.message
    return ""


def build_config(
    ctx: click.Context,
    values: dict[str, Any],
    defaults: dict[str, Any],
    plugin_keys: set[str],
    mutable_on_resume: frozenset[str] = MUTABLE_ON_RESUME,
) -> tuple[TrainConfig, Path | None, dict[str, Any]]:
    """Merge defaults, plugin defaults, TOML and flags; on resume start from the saved config."""
    names = set(CORE_KEYS) | plugin_keys
    cli_values = _explicit(ctx, values, names)
    file_values: dict[str, Any] = {}
    if values.get("config") is not None:
        try:
            file_values = read_toml(values["config"])
            refuse_unknown(file_values, plugin_keys, str(values["config"]))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--config") from None
        problems = type_errors(file_values) + _plugin_type_errors(ctx, file_values, plugin_keys)
        if problems:
            raise click.BadParameter(f"{values['config']}: " + "; ".join(problems), param_hint="--config")
    # the keys whose value is the file's, so that configure() names the file for a bad one
    ctx.meta[CONFIG_FILE_KEYS] = (values.get("config"), set(file_values) - set(cli_values))
    explicit = {**file_values, **cli_values}

    if values.get("resume") is not None and values.get("auto_resume"):
        raise click.UsageError(
            "--resume and --auto-resume both say where to continue from; use --resume PATH for one checkpoint "
            "or run folder, or --auto-resume with --out for restarts, not both"
        )
    resume_path = _resolve_resume(values["resume"]) if values.get("resume") is not None else None
    if values.get("auto_resume") and resume_path is None:
        out = explicit.get("out")
        if out is None:
            raise click.BadParameter("needs --out (the run folder to continue)", param_hint="--auto-resume")
        resume_path = _auto_resume_checkpoint(Path(out))
    saved = None
    if resume_path is not None:
        try:
            meta = ckpt.read_metadata(resume_path)  # tensors are read once, by the trainer
            saved = saved_config(resume_path, meta)
        except ckpt.CheckpointError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        config = merge_config(
            explicit, defaults=defaults, plugin_keys=plugin_keys, saved=saved, mutable_on_resume=mutable_on_resume
        )
    except ResumeConflict as exc:
        raise click.UsageError(
            f"--resume {resume_path}: the run was trained with a different configuration; "
            f"refusing to change "
            + "; ".join(exc.diffs)
            + f". Only {', '.join(sorted(mutable_on_resume))} may change on resume."
        ) from None
    return config, resume_path, explicit


def _validate(config: TrainConfig, host: Host) -> None:
    for problem in type_errors({key: getattr(config, key) for key in CORE_KEYS}):
        key = problem.split(":", 1)[0]
        raise click.BadParameter(problem.split(": ", 1)[1], param_hint=f"--{key.replace('_', '-')}")
    if config.keep_checkpoints < 0:
        raise click.BadParameter(
            f"must be 0 (keep all) or more, got {config.keep_checkpoints}", param_hint="--keep-checkpoints"
        )
    for key in ("beta1", "beta2"):
        if not 0.0 <= getattr(config, key) < 1.0:
            raise click.BadParameter(f"must be in [0, 1), got {getattr(config, key)!r}", param_hint=f"--{key}")
    problem = device_problem(config.device)  # the check --device has, for a --config or saved value
    if problem:
        raise click.BadParameter(problem, param_hint="--device")
    positive = ("steps", "batch_size", "noise_dim", "save_every", "sample_every", "log_every", "g_steps")
    for key in positive:
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise click.BadParameter(
                f"must be a positive integer, got {value!r}", param_hint=f"--{key.replace('_', '-')}"
            )
    for key in ("lr_g", "lr_d"):
        if not getattr(config, key) > 0:
            raise click.BadParameter(
                f"must be positive, got {getattr(config, key)!r}", param_hint=f"--{key.replace('_', '-')}"
            )
    if not config.max_loss >= 0:
        raise click.BadParameter(
            f"must be a magnitude >= 0 (0 turns the bound off), got {config.max_loss!r}", param_hint="--max-loss"
        )
    if not 0.0 <= config.lr_decay <= 1.0:
        raise click.BadParameter(
            f"must be a fraction of the run between 0 and 1, got {config.lr_decay!r}", param_hint="--lr-decay"
        )
    if config.image_size is not None and config.image_size < 4:
        raise click.BadParameter(f"must be at least 4, got {config.image_size}", param_hint="--image-size")
    reg = host.registries
    for key, registry in (("dataset", reg.datasets), ("gan_loss", reg.gan_losses)):
        try:
            registry.get(getattr(config, key))
        except UnknownNameError as exc:
            raise click.BadParameter(str(exc), param_hint=f"--{key.replace('_', '-')}") from None
    if config.model is not None:
        try:
            reg.models.get(config.model)
        except UnknownNameError as exc:
            raise click.BadParameter(str(exc), param_hint="--model") from None
    if config.data_dir is not None and not reads_data_dir(reg.datasets.get(config.dataset)):
        raise click.BadParameter(
            f"dataset {config.dataset!r} reads no folder (its images ship with the package or are drawn), so "
            f"{config.data_dir!r} would be ignored; drop --data-dir, or pick a dataset that reads one "
            f"(e.g. --dataset mnist-idx or image-folder)",
            param_hint="--data-dir",
        )


def reads_data_dir(factory: Any) -> bool:
    """Whether a dataset factory reads ``data_dir``: true unless it declares
    ``reads_data_dir = False`` (the built-in digits and shapes do)."""
    return getattr(factory, "reads_data_dir", True) is not False


def resume_mutable(host: Host) -> frozenset[str]:
    """The options a resume may change: the core ones and those the active plugins name."""
    return frozenset(MUTABLE_ON_RESUME.union(*(names or () for names in host.run("ganrun_resume_mutable_options"))))


CONFIG_FILE_KEYS = "ganrun.config_file_keys"  # ctx.meta: (--config file, keys whose value is the file's)


def _from_config_file(ctx: click.Context | None, exc: click.BadParameter) -> click.BadParameter:
    """A bad value refused under its option (``--code``) that came from the --config file, not
    the command line, named where the user must fix it: the file and the key."""
    source, keys = ctx.meta.get(CONFIG_FILE_KEYS, (None, set())) if ctx is not None else (None, set())
    hint = exc.param_hint if isinstance(exc.param_hint, str) else None
    if source is None or hint is None or ctx is None:
        return exc
    names = {opt: p.name for p in ctx.command.params for opt in getattr(p, "opts", ())}
    key = names.get(hint)
    if key not in keys:
        return exc
    return click.BadParameter(f"{source}: {key}: {exc.message} (option {hint})", ctx=ctx, param_hint="--config")


def configure(config: TrainConfig, host: Host, ctx: click.Context | None = None) -> None:
    """Check a merged configuration and let the plugins complete it (``ganrun_configure``);
    a bad value is one line naming its option, or, when ``ctx``'s --config file set it, the
    file and the key."""
    try:
        _validate(config, host)  # first: a bad core value is named under its own option, never a plugin's
        try:
            host.run("ganrun_configure", config=config, registries=host.registries)
        except click.ClickException:
            raise
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        _validate(config, host)
    except click.BadParameter as exc:
        raise _from_config_file(ctx, exc) from None


def build_trainer(
    config: TrainConfig,
    host: Host,
    run_dir: Path,
    info: distributed.DistInfo | None = None,
    resume_path: Path | None = None,
):
    """The ``Trainer`` of a configured run (it writes nothing yet); what stops it from being
    built (data, names, memory, a plugin's hook) is one line naming the option to change
    (for a resume, ``resume_path``: the data, which a resume cannot change)."""
    from registry.train import Trainer

    try:
        return Trainer(config, host, run_dir, dist=info)
    except memory.TooBig as exc:
        raise click.UsageError(str(exc)) from None
    except DatasetError as exc:
        if resume_path is not None:  # the data a run was trained on cannot change on resume
            where = f" (--data-dir {config.data_dir})" if config.data_dir is not None else ""
            raise click.ClickException(
                f"train --resume needs the run's dataset {config.dataset!r}, which cannot be read: {exc}; "
                f"a resume reads it where the run recorded it{where}, so put the data back there"
            ) from None
        raise click.BadParameter(str(exc), param_hint="--data-dir / --dataset") from None
    except UnknownNameError as exc:
        raise click.BadParameter(str(exc), param_hint=_option_for(str(exc)) or None) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except PluginError as exc:  # a plugin's hook failed while the run was being built
        raise click.ClickException(plugin_failure(exc)) from None
    except Exception as exc:
        if is_out_of_memory(exc):
            raise click.ClickException(out_of_memory_text("building the run (data, networks)", SIZE_OPTIONS)) from None
        raise


def _duration(seconds: float) -> str:
    """``42 s``, ``9 min 52 s``, ``2 h 05 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def end_summary(
    host: Host, run_dir: Path, metrics: dict[str, Any], trained: int, seconds: float, checkpoint: Path | None
) -> list[str]:
    """What training prints when it ends, for people: the steps and the time, what the run is,
    the plugins' figures (``ganrun_run_summary``: for InfoGAN, L_I per code against what it can
    reach), the checkpoint, where every metric is, and the commands to run next on the run.
    A plugin whose summary fails is named in one line and left out: the run itself is done."""
    from registry.report import read_described, title_for
    from registry.report.summary import RunSummary, ganrun_prefix, run_summary

    described = read_described(run_dir, quiet=True)
    try:
        summary = run_summary(host, run_dir, (described or {}).get("config") or {}, metrics)
    except PluginError as exc:
        click.echo(f"warning: {plugin_failure(exc)}; the summary below leaves it out", err=True)
        summary = RunSummary()
    step = metrics["step"]
    title = title_for(run_dir, described, [metrics], summary.whats).split(": ", 1)[-1]
    title = title.rsplit(", ", 1)[0] if title.endswith(" steps") else title  # the steps are said first
    now = f", {trained:,} of them" if trained != step else ""
    lines = [f"done: {step:,} steps{now} in {_duration(seconds)} ({run_dir.name}: {title})"]
    lines += [f"  {text}" for text in summary.results]
    lines.append(f"checkpoint: {checkpoint}")
    lines.append(f"every metric: {run_dir / 'metrics.jsonl'}")
    run = shlex.quote(str(run_dir))
    prefix = ganrun_prefix(host.plugins)
    commands = [(f"{prefix} {args}", purpose) for args, purpose in summary.commands]
    commands.append((f"{prefix} report {run}", "report.html: the figures, pictures and curves on one page"))
    width = max(len(command) for command, _ in commands)
    lines.append("next:")
    lines += [f"  {command.ljust(width)}  # {purpose}" for command, purpose in commands]
    return lines


def run_train(
    ctx: click.Context,
    session: Session,
    host: Host,
    values: dict[str, Any],
    defaults: dict[str, Any],
    plugin_keys: set[str],
) -> None:
    from registry.train import DivergenceError, Interrupted

    mutable = resume_mutable(host)
    config, resume_path, _ = build_config(ctx, values, defaults, plugin_keys, mutable)
    if resume_path is not None:
        _require_run_plugins(Path(values.get("resume") or resume_path), host.plugins, "train --resume")
    configure(config, host, ctx)
    info = distributed.from_environment()
    overwrite = values.get("overwrite", False)
    run_dir = choose_run_dir(config, resume_path)
    # --auto-resume without a checkpoint: a run that died before its first one starts again
    restart = config if values.get("auto_resume") and resume_path is None else None
    folder_checks = (run_dir, resume_path, overwrite, restart, mutable)
    if info.is_main:
        try:  # a live writer is named before the folder's contents are judged
            RunLock(run_dir).check_free()
        except RunFolderBusy as exc:
            raise click.ClickException(str(exc)) from None
        check_run_dir(*folder_checks)
    trainer = build_trainer(config, host, run_dir, info, resume_path)
    lock = None
    clean = False
    try:
        if info.is_main:  # one writer per run folder; under torchrun rank 0 writes for all
            lock = lock_run_dir(run_dir)
            check_run_dir(*folder_checks)  # again: another writer may have finished meanwhile
            prepare_run_dir(run_dir, resume_path, overwrite)
            if restart is not None and run_entries(run_dir):
                trainer.restart_from_zero()
                click.echo(f"restarting {run_dir} from step 0 (it has no checkpoint yet)", err=True)
        if resume_path is not None:
            trainer.restore(resume_path)
            if info.is_main:
                click.echo(f"resuming {run_dir} from step {trainer.step} ({resume_path.name})", err=True)
        elif info.is_main:
            click.echo(f"training in {run_dir}", err=True)
        start = trainer.step
        if info.is_main and config.amp and not trainer.amp:
            click.echo(
                "warning: --amp: this CPU has no native bf16, so training runs in fp32, exactly as without --amp "
                "(emulated bf16 would be slower)",
                err=True,
            )
        started = time.perf_counter()
        last = trainer.fit()
        seconds = time.perf_counter() - started
        clean = True
    except ckpt.CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    except DivergenceError as exc:
        raise click.ClickException(str(exc)) from None
    except PluginError as exc:  # a plugin's hook failed mid-run: the checkpoints stay as they were
        where = trainer.last_good_checkpoint_text()
        then = "start the run again" if "nothing to resume" in where else f"continue with --resume {run_dir}"
        raise click.ClickException(
            plugin_failure(exc, f"at step {trainer.current_step}; {where}; fix or deactivate the plugin, then {then}")
        ) from None
    except Interrupted as exc:
        where = f"; checkpoint {exc.path}" if exc.path else ""
        click.echo(f"{exc}{where}; continue with: ganrun ... train --resume {run_dir}", err=True)
        sys.exit(128 + exc.signum)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        phase = f"training step {trainer.current_step}" if trainer.step < config.steps else "the final save"
        raise click.ClickException(
            out_of_memory_text(phase, SIZE_OPTIONS, trainer.last_good_checkpoint_text())
        ) from None
    finally:
        trainer.release_distributed()
        distributed.destroy(info, clean=clean)
        if lock is not None:
            lock.release()
    if info.is_main and trainer.step == start:  # resumed at (or past) --steps: fit had nothing to do
        click.echo(
            f"nothing to train: {run_dir} is already at step {trainer.step} (--steps {config.steps}); "
            f"its checkpoint is {resume_path}; to train further, resume with a larger --steps",
            err=True,
        )
    elif info.is_main:
        metrics = {"step": trainer.step, **trainer.last_metrics}
        click.echo("\n".join(end_summary(host, run_dir, metrics, trainer.step - start, seconds, last)), err=True)
