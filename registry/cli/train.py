"""The ``ganrun`` command line, built by ``build_cli()`` (nothing happens at import).

``ganrun [--plugin NAME]... [COMMAND]``: plugins are loaded only when a command needs
them, so a broken plugin never takes down ``--help`` or ``ganrun plugins``. With no
command, ``train`` runs with its defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click

from registry import checkpoint as ckpt
from registry.checkpoint.run import find_checkpoint, run_dir_of
from registry.train import distributed
from registry.config import (
    CORE_KEYS,
    MUTABLE_ON_RESUME,
    TrainConfig,
    read_toml,
    resume_differences,
    refuse_unknown,
)
from registry.data import DatasetError
from registry.run_plugins import loadable, require_run_plugins
from registry.plugins import (
    DEFAULT_PLUGINS,
    Host,
    RESERVED_COMMANDS,
    PluginError,
    PluginWarning,
    Registries,
    UnknownNameError,
    activate,
    get_plugin_manager,
    hooks_of,
    installed_plugins,
    name_clashes,
)


class Session:
    """What the group options chose; the plugin host is built on first use."""

    def __init__(self, plugin_names: tuple[str, ...]):
        self.plugin_names = plugin_names
        self._host: Host | None = None

    def host(self) -> Host:
        if self._host is None:
            try:
                self._host = Host.create(self.plugin_names)
            except PluginError as exc:
                raise click.ClickException(str(exc)) from None
        return self._host


class GanrunGroup(click.Group):
    """Adds ``train`` (with the active plugins' options) and plugin commands on demand."""

    def _session(self, ctx: click.Context) -> Session:
        return Session(tuple(ctx.params.get("plugin") or ()))

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(RESERVED_COMMANDS)
        try:
            names += [n for n in self._session(ctx).host().registries.commands.names() if n not in names]
        except click.ClickException:
            pass  # a broken plugin is reported when it is used, not in --help
        return names

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "plugins":
            return plugins_command
        if name == "report":
            return report_command
        if name == "export":
            from registry.export import export_command

            return export_command
        if name == "train":
            return make_train_command(self._session(ctx))
        session = self._session(ctx)
        host = session.host()
        if name in host.registries.commands:
            return host.registries.commands.get(name)
        return None

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if args and not args[0].startswith("-"):
                hint = _command_hint(args[0])
                if hint:
                    raise click.UsageError(f"{exc.message} {hint}", ctx) from None
            raise


def _command_hint(name: str) -> str:
    """Say which installed plugin provides an unknown command, if one does."""
    for ep_name in installed_plugins():
        try:
            host = Host.create([ep_name])
        except PluginError:
            continue
        if name in host.registries.commands:
            return f"Command {name!r} is provided by plugin {ep_name!r}: run 'ganrun --plugin {ep_name} {name}'."
    return ""


def build_cli() -> click.Group:
    @click.group(cls=GanrunGroup, invoke_without_command=True,
                 context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--plugin", "-p", multiple=True, metavar="NAME", is_eager=True,  # read before --help
                  help="Activate a plugin: an installed entry-point name (see 'ganrun plugins') or a "
                       "dotted module path. Repeatable.")
    @click.version_option(package_name="ganrun", prog_name="ganrun")
    @click.pass_context
    def cli(ctx: click.Context, plugin: tuple[str, ...]) -> None:
        """Train GANs whose every piece is a plugin.

        \b
        ganrun --plugin infogan             train InfoGAN on the built-in MNIST digits
        ganrun train --steps 500            train a plain GAN
        ganrun plugins                      list installed plugins and what they register

        With no command, 'train' runs with its defaults.
        """
        ctx.obj = Session(plugin)
        if ctx.invoked_subcommand is None:
            command = make_train_command(ctx.obj)
            with command.make_context("train", [], parent=ctx) as sub:
                command.invoke(sub)

    return cli


def main() -> None:
    build_cli()(prog_name="ganrun")


# ------------------------------------------------------------------------------ plugins


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, which are active, their hooks and registered names."""
    active = set(ctx.obj.plugin_names if ctx.obj else ())
    rows = []
    candidates = [(name, None, None) for name in DEFAULT_PLUGINS]
    installed = installed_plugins()
    candidates += [(ep.name, ep.distribution, ep.version) for ep in installed.values()]
    candidates += [(name, None, None) for name in active if name not in installed]
    for name, dist, version in candidates:
        row: dict[str, Any] = {"name": name, "distribution": dist, "version": version,
                               "active": name in active or name in DEFAULT_PLUGINS, "builtin": name in DEFAULT_PLUGINS}
        try:  # each alone, so the registries below show only what that plugin registers
            pm = get_plugin_manager(defaults=False)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PluginWarning)
                activate(pm, [name])
            row["warnings"] = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
            row["hooks"] = hooks_of(pm, pm.get_plugin(name))
            broken: dict[str, str] = {}
            regs = Registries.collect(pm, broken=broken)
            row["registers"] = {f.name: getattr(regs, f.name).names() for f in dataclasses.fields(regs)
                                if getattr(regs, f.name).names()}
            row["error"] = broken.get(name)
        except PluginError as exc:
            row.update(hooks=[], registers={}, error=str(exc), warnings=row.get("warnings", []))
        rows.append(row)
    for row in rows:
        row["clashes"] = name_clashes(rows, row["name"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        status = "active" if row["active"] else "installed"
        version = row["version"] or ("built-in" if row["builtin"] else "-")
        click.echo(f"{row['name']} ({version}, {status})")
        for line in row.get("warnings", []):
            click.echo(f"  warning: {line}")
        if row["error"]:
            click.echo(f"  BROKEN: {row['error']}")
            continue
        click.echo(f"  hooks: {', '.join(row['hooks'])}")
        for kind, names in row["registers"].items():
            click.echo(f"  {kind.replace('_', ' ')}: {', '.join(names)}")
        for line in row["clashes"]:
            click.echo(f"  clash: {line}")


# ------------------------------------------------------------------------------ report


@click.command("report")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--baseline", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Another run whose curves are overlaid (dashed), e.g. a --lambda 0 run.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the page (default: RUN/report.html).")
@click.option("--plots", type=click.Choice(["auto", "png", "svg"]), default="auto", show_default=True,
              help="How curves are drawn: png renders them with matplotlib, embeds them in the page and "
                   "also writes them to RUN/plots/ (needs pip install 'ganrun[plot]'); svg draws inline "
                   "SVG without any plotting library; auto is png when matplotlib is installed, else svg.")
@click.pass_context
def report_command(ctx: click.Context, run: Path, baseline: Path | None, out: Path | None, plots: str) -> None:
    """Write a one-page HTML report of a run: configuration, final metrics, curves and the
    newest pictures, plus sections from the run's plugins (for InfoGAN: L_I against H(c)
    per code, traversal grids and eval.json). The page is a single self-contained file.

    The plugins are those given with --plugin or, without any, those the run was trained with."""
    import contextlib

    from registry import report

    if not (run / "metrics.jsonl").exists() and not (run / "config.json").exists():
        raise click.BadParameter(f"{run} is not a ganrun run folder (no metrics.jsonl or config.json)",
                                 param_hint="RUN")
    if plots != "svg":
        available = report.matplotlib_available()
        if plots == "png" and not available:
            raise click.BadParameter(f"PNG plots need matplotlib, which is not installed: {report.PLOT_EXTRA_HINT}",
                                     param_hint="--plots")
        plots = "png" if available else "svg"
    host = _report_host(ctx.obj, run)
    rows = report.read_metrics(run)
    baseline_rows = report.read_metrics(baseline) if baseline is not None else None
    charts = report.png_charts(run / "plots") if plots == "png" else contextlib.nullcontext()
    with charts:
        sections = report.core_sections(run, rows, baseline_rows)
        for extra in host.hook.ganrun_report_sections(run_dir=run, metrics=rows, baseline_metrics=baseline_rows):
            sections.extend(extra or [])
    path = report.write_report(out or run / "report.html", report.render(f"ganrun run {run.name}", sections))
    click.echo(str(path))


def _report_host(session: Session, run: Path) -> Host:
    """The plugins named with --plugin; without any, those recorded in the run's config.json,
    so that ``ganrun report RUN`` has the sections of the plugins that trained RUN."""
    from registry import report

    recorded = report.recorded_plugins(run)
    if session.plugin_names or not recorded:
        return session.host()
    try:
        require_run_plugins(run, loadable(recorded), "report")
        return Host.create(recorded)
    except PluginError as exc:
        click.echo(f"warning: {exc}. Until then the report has the core sections only.", err=True)
        return session.host()


# ------------------------------------------------------------------------------ train

# Help text per core option; the default shown is the effective one for the active plugins.
CORE_HELP = {
    "dataset": "Dataset name (registered by a plugin; built-ins: digits, shapes, mnist-idx, image-folder).",
    "data_dir": "Folder the dataset reads from (mnist-idx, image-folder, ...).",
    "image_size": "Resize images to this square size (default: the dataset's own).",
    "model": "Architecture name: dcgan28, dcgan64, conv64 (small, for shapes) or a plugin's (default: dcgan28 for 28 px images, dcgan64 otherwise).",
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
    "device": "auto (CUDA when present), cpu, cuda or cuda:N.",
    "out": "Run folder for checkpoints, metrics and pictures (default: runs/<dataset>-<time>).",
    "save_every": "Checkpoint every N steps (and at the end).",
    "sample_every": "Write sample pictures every N steps (and at the end).",
    "log_every": "Write metrics every N steps.",
    "keep_checkpoints": "Keep only the newest N checkpoints (0 keeps all).",
    "spectral_norm": "Spectral normalisation (torch's parametrization) on every convolution and linear layer "
                     "of D, its head and every module in D's optimizer group (InfoGAN's Q): what lets D train at "
                     "a high learning rate without overpowering G.",
    "g_steps": "G updates per D update; each regenerates the fakes from the step's noise and codes "
               "(InfoGAN-CR uses 2).",
    "amp": "bf16 autocast on CUDA and on CPUs with native bf16 (the Q and GAN losses stay fp32).",
    "compile": "torch.compile the networks.",
    "progress": "Show a progress bar.",
}


def _core_option(field: dataclasses.Field, default: Any) -> click.Option:
    name = field.name
    flag = "--" + name.replace("_", "-")
    help_text = CORE_HELP.get(name, "")
    kind = {"int": int, "float": float, "str": str, "bool": bool}
    annotation = str(field.type)
    if "bool" in annotation:
        return click.Option([f"{flag}/--no-{name.replace('_', '-')}"], default=None, help=help_text,
                            show_default=str(default).lower())
    if name == "noise":
        return click.Option([flag], type=click.Choice(["normal", "uniform"]), default=None,
                            help=help_text, show_default=str(default))
    typ = next((t for key, t in kind.items() if annotation.startswith(key)), str)
    return click.Option([flag], type=typ, default=None, help=help_text,
                        show_default=str(default) if default is not None else False)


def _plugin_defaults(host: Host) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for defaults in reversed(host.call("ganrun_config_defaults")):  # registered last wins
        merged.update(defaults or {})
    return merged


def make_train_command(session: Session) -> click.Command:
    """``train`` with the core options plus every active plugin's options."""
    try:
        host = session.host()
        plugin_options = [opt for opts in host.call("ganrun_train_options") for opt in (opts or [])]
        defaults = _plugin_defaults(host)
    except (click.ClickException, PluginError) as exc:
        broken = exc if isinstance(exc, click.ClickException) else click.ClickException(str(exc))

        # Accept any options so the plugin error, not "no such option", is what the user sees.
        @click.command("train", help="Train a GAN (unavailable: a plugin failed to load).",
                       context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        def unavailable() -> None:
            raise broken

        return unavailable

    base = dataclasses.asdict(TrainConfig())
    base.update({k: v for k, v in defaults.items() if k in CORE_KEYS})
    params: list[click.Parameter] = [
        _core_option(f, base[f.name]) for f in dataclasses.fields(TrainConfig) if f.name != "extra"
    ]
    params += plugin_options
    params += [
        click.Option(["--config"], type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="TOML file setting any of these options by name (flags override it)."),
        click.Option(["--resume"], type=click.Path(path_type=Path), default=None,
                     help="Continue from a checkpoint file, or a run folder's newest complete checkpoint."),
        click.Option(["--auto-resume"], is_flag=True, default=False,
                     help="Resume from the newest complete checkpoint in --out if there is one, else start "
                          "fresh: one command line for first start and restarts (torchrun --max-restarts)."),
        click.Option(["--overwrite"], is_flag=True, default=False,
                     help="Start over in an existing run folder, deleting its checkpoints and logs."),
    ]

    def callback(**values: Any) -> None:
        ctx = click.get_current_context()
        run_train(ctx, session, host, values, defaults, {opt.name for opt in plugin_options})

    return click.Command(
        "train", params=params, callback=callback,
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
    found = find_checkpoint(path)
    if found is None:
        raise click.BadParameter(f"no complete checkpoint in {path}", param_hint="--resume")
    path = found
    if not path.exists():
        raise click.BadParameter(f"{path} does not exist", param_hint="--resume")
    return path


def _option_for(message: str) -> str:
    for kind, option in (("dataset", "--dataset"), ("model", "--model"), ("GAN loss", "--gan-loss"),
                         ("latent code type", "--code"), ("Q loss", "--code")):
        if message.startswith(f"unknown {kind} "):
            return option
    return ""


def build_config(ctx: click.Context, values: dict[str, Any], defaults: dict[str, Any],
                 plugin_keys: set[str], mutable_on_resume: frozenset[str] = MUTABLE_ON_RESUME,
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
    explicit = {**file_values, **cli_values}

    resume_path = _resolve_resume(values["resume"]) if values.get("resume") is not None else None
    if values.get("auto_resume") and resume_path is None:
        out = explicit.get("out")
        if out is None:
            raise click.BadParameter("needs --out (the run folder to continue)", param_hint="--auto-resume")
        resume_path = ckpt.find_latest(Path(out) / "checkpoints")
    if resume_path is not None:
        try:
            meta = ckpt.read_metadata(resume_path)  # tensors are read once, by the trainer
            saved = TrainConfig.from_dict(json.loads(meta["config"]))
        except ckpt.CheckpointError as exc:
            raise click.ClickException(str(exc)) from None
        except (KeyError, ValueError, TypeError) as exc:
            raise click.ClickException(f"{resume_path}: configuration metadata is missing or malformed ({exc})") from None
        merged = dataclasses.asdict(saved)
        extra = dict(merged.pop("extra"))
    else:
        merged = dataclasses.asdict(TrainConfig())
        merged.pop("extra")
        extra = {k: None for k in plugin_keys}
        for key, value in defaults.items():
            if key in CORE_KEYS:
                merged[key] = value
            elif key in plugin_keys:
                extra[key] = value
    if resume_path is not None:
        merged["out"] = None  # continue where the checkpoint is now (the run may have moved)
    for key, value in explicit.items():
        if key in CORE_KEYS:
            merged[key] = value
        else:
            extra[key] = value
    config = TrainConfig(**merged, extra=extra)
    if resume_path is not None:
        diffs = resume_differences(saved, config, mutable_on_resume)
        if diffs:
            raise click.UsageError(
                f"--resume {resume_path}: the run was trained with a different configuration; "
                f"refusing to change " + "; ".join(diffs)
                + f". Only {', '.join(sorted(mutable_on_resume))} may change on resume.")
    return config, resume_path, explicit


def _validate(config: TrainConfig, host: Host) -> None:
    positive = ("steps", "batch_size", "noise_dim", "save_every", "sample_every", "log_every", "g_steps")
    for key in positive:
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise click.BadParameter(f"must be a positive integer, got {value!r}", param_hint=f"--{key.replace('_', '-')}")
    for key in ("lr_g", "lr_d"):
        if not getattr(config, key) > 0:
            raise click.BadParameter(f"must be positive, got {getattr(config, key)!r}", param_hint=f"--{key.replace('_', '-')}")
    if not 0.0 <= config.lr_decay <= 1.0:
        raise click.BadParameter(f"must be a fraction of the run between 0 and 1, got {config.lr_decay!r}",
                                 param_hint="--lr-decay")
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


def _require_run_plugins(run: Path, active: Any, command: str) -> None:
    try:
        require_run_plugins(run, active, command)
    except PluginError as exc:
        raise click.ClickException(str(exc)) from None


def _choose_run_dir(config: TrainConfig, resume_path: Path | None) -> Path:
    """``--out``, else the resumed run's folder, else ``runs/<dataset>-<time>``."""
    if config.out is None:
        if resume_path is not None:
            config.out = str(run_dir_of(resume_path))
        else:
            config.out = os.path.join("runs", f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return Path(config.out)


def _check_run_dir(run_dir: Path, resume_path: Path | None, overwrite: bool) -> None:
    """Refuse an unusable run folder before anything is built; changes nothing on disk."""
    if run_dir.exists() and not run_dir.is_dir():
        raise click.BadParameter(f"{run_dir} exists and is not a folder", param_hint="--out")
    has_run = run_dir.is_dir() and any(run_dir.iterdir())
    if has_run and resume_path is None:
        if not overwrite:
            raise click.BadParameter(
                f"run folder {run_dir} already exists; pass --resume {run_dir} to continue it, "
                f"--overwrite to start over, or another --out", param_hint="--out")
        if not ((run_dir / "config.json").exists() or (run_dir / "checkpoints").is_dir()):
            raise click.BadParameter(f"{run_dir} is not a ganrun run folder; refusing to delete it",
                                     param_hint="--out")


def _prepare_run_dir(run_dir: Path, resume_path: Path | None, overwrite: bool) -> None:
    """Start over if asked (only once the new run has been built), create and probe the folder."""
    if overwrite and resume_path is None and run_dir.is_dir() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise click.BadParameter(f"cannot write to {run_dir}: {exc.strerror}", param_hint="--out") from None


def run_train(ctx: click.Context, session: Session, host: Host, values: dict[str, Any],
              defaults: dict[str, Any], plugin_keys: set[str]) -> None:
    from registry.train import DivergenceError, Interrupted, Trainer

    mutable = MUTABLE_ON_RESUME.union(*(names or () for names in host.hook.ganrun_resume_mutable_options()))
    config, resume_path, _ = build_config(ctx, values, defaults, plugin_keys, frozenset(mutable))
    if resume_path is not None:
        _require_run_plugins(Path(values.get("resume") or resume_path), host.plugins, "train --resume")
    try:
        host.hook.ganrun_configure(config=config, registries=host.registries)
    except click.ClickException:
        raise
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _validate(config, host)
    info = distributed.from_environment()
    overwrite = values.get("overwrite", False)
    run_dir = _choose_run_dir(config, resume_path)
    if info.is_main:
        _check_run_dir(run_dir, resume_path, overwrite)
    try:
        trainer = Trainer(config, host, run_dir, dist=info)  # writes nothing yet
    except DatasetError as exc:
        raise click.BadParameter(str(exc), param_hint="--data-dir / --dataset") from None
    except UnknownNameError as exc:
        raise click.BadParameter(str(exc), param_hint=_option_for(str(exc)) or None) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if info.is_main:
        _prepare_run_dir(run_dir, resume_path, overwrite)
    clean = False
    try:
        if resume_path is not None:
            trainer.restore(resume_path)
            if info.is_main:
                click.echo(f"resuming {run_dir} from step {trainer.step} ({resume_path.name})", err=True)
        elif info.is_main:
            click.echo(f"training in {run_dir}", err=True)
        last = trainer.fit()
        clean = True
    except ckpt.CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    except DivergenceError as exc:
        raise click.ClickException(str(exc)) from None
    except Interrupted as exc:
        where = f"; checkpoint {exc.path}" if exc.path else ""
        click.echo(f"{exc}{where}; continue with: ganrun ... train --resume {run_dir}", err=True)
        sys.exit(128 + exc.signum)
    finally:
        trainer.release_distributed()
        distributed.destroy(info, clean=clean)
    if info.is_main:
        shown = {k: round(v, 4) for k, v in trainer.last_metrics.items()}
        click.echo(f"done: {trainer.step} steps; last checkpoint {last}", err=True)
        click.echo(json.dumps(shown), err=True)
