"""``ganrun sweep``: one configuration trained over many seeds, each seed an ordinary run
folder ``SWEEP/seed-N`` made by a real ``ganrun train --seed N --out SWEEP/seed-N
--auto-resume`` process, as many at once as the machine holds.

The command takes every option of ``train`` (the same list and the same merging of defaults,
``--config`` and flags, from ``registry.cli.train``) except the ones the sweep owns: ``--seed``
(from ``--seeds``), ``--out`` (the sweep folder), ``--resume``/``--auto-resume`` (a sweep
resumes by itself) and ``--overwrite``. The flags the user typed are handed to every child as
typed values, so a seed's run is the run ``ganrun train`` makes of them alone.

Before anything starts the configuration is checked and one ``Trainer`` is built on the CPU
(nothing written): a bad option is one error, not one per seed, and the lower bounds of its
allocations (``Trainer.memory_needs``) size the default parallelism. The processes
themselves are ``sweep_pool.Pool``'s.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from registry import runfiles
from registry.checkpoint.lock import LOCK_NAME, RunFolderBusy, RunLock
from registry.cli.options import POSITIVE, Option, OutputPath
from registry.cli.session import Session
from registry.cli.sweep_pool import Pool, Progress, SeedRun, last_metrics, newest_step, write_sweep_json
from registry.cli.train import (
    build_config,
    build_trainer,
    configure,
    resume_mutable,
    train_options,
    unavailable_command,
)
from registry.config import TrainConfig, read_toml, resume_differences
from registry.train import memory

SWEEP_FILE = "sweep.json"
FORMAT = "ganrun-sweep/1"
MAX_SEEDS = 10_000
# Memory a train process takes beyond the tensors memory.Needs counts (the interpreter, torch,
# its kernels): about 440 MB measured for a tiny CPU run; 1 GB on a GPU for the CUDA context,
# cuDNN's workspace and the caching allocator's slack.
CPU_PROCESS_BYTES = 500_000_000
GPU_PROCESS_BYTES = 1_000_000_000
# On a GPU a run's activations are not all in memory.Needs' lower bound: count them twice.
GPU_NEEDS_FACTOR = 2

# train's options that the sweep owns, and why each is refused when given.
OWNED = {
    "seed": "a sweep sets each run's --seed from --seeds; pass --seeds N for a single seed",
    "resume": "a sweep resumes every unfinished seed by itself; rerun the same sweep command",
    "auto_resume": "a sweep runs every seed with --auto-resume already; rerun the same sweep command",
    "overwrite": "a sweep never deletes runs; remove the sweep folder (or one seed-N folder) yourself, "
    "or choose another --out",
}
# Keys a --config file may not set, and why.
FILE_OWNED = {
    "seed": "a sweep sets each run's seed from --seeds",
    "out": "a sweep puts each run in OUT/seed-N of its own --out",
}


# ------------------------------------------------------------------------------ --seeds


def parse_seeds(text: str) -> list[int]:
    """``0-9``, ``0,2,5``, ``0-3,7``: the seeds, in the order given; ``ValueError`` with one
    line saying what is wrong and what to write."""
    seeds: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"{text!r} has an empty item; write seeds like 0-9, 0,2,5 or 0-3,7")
        low, dash, high = item.partition("-")
        if not low.strip().isdecimal() or (dash and not high.strip().isdecimal()):
            raise ValueError(
                f"{item!r} is not a seed (a whole number >= 0) or a range A-B; write seeds like 0-9, 0,2,5 or 0-3,7"
            )
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"range {item!r} ends before it starts; write {last}-{first}")
        if last >= 2**63:
            raise ValueError(f"seed {last} is too large; seeds go up to {2**63 - 1}")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise ValueError(f"{text!r} names more than {MAX_SEEDS} seeds; sweep fewer at a time")
        seeds.extend(range(first, last + 1))
    seen: set[int] = set()
    for seed in seeds:
        if seed in seen:
            raise ValueError(f"seed {seed} is named twice in {text!r}; name each seed once")
        seen.add(seed)
    return seeds


class SeedList(click.ParamType):
    name = "SEEDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            return parse_seeds(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


# ------------------------------------------------------------------------------ the command


def _refuse(name: str) -> Any:
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            raise click.BadParameter(OWNED[name], ctx=ctx, param=param)
        return value

    return check


def _owned_option(param: click.Option) -> click.Option:
    """A stand-in for a train option the sweep owns: hidden, refusing any value with the reason."""
    return Option(
        param.opts,
        type=None if param.is_flag else param.type,
        is_flag=param.is_flag,
        default=None if not param.is_flag else False,
        hidden=True,
        expose_value=False,
        callback=_refuse(param.name),
    )


def train_parameters(params: list[click.Parameter]) -> list[click.Parameter]:
    """train's parameters that a sweep passes on: all but the owned ones, --out and --progress
    (the sweep's own --out and --progress replace those two)."""
    return [p for p in params if p.name not in OWNED and p.name not in ("out", "progress")]


def make_sweep_command(session: Session) -> click.Command:
    """``sweep`` with every option of ``train`` for the active plugins, plus its own."""
    try:
        options = train_options(session)
    except click.ClickException as exc:
        return unavailable_command("sweep", "Train one configuration over many seeds", exc)

    train_params = train_parameters(options.params)
    owned = [_owned_option(p) for p in options.params if p.name in OWNED and isinstance(p, click.Option)]
    params: list[click.Parameter] = [
        Option(
            ["--seeds"],
            type=SeedList(),
            required=True,
            help="The seeds to train: a list and ranges, e.g. 0-9, 0,2,5 or 0-3,7. May change when the "
            "sweep is rerun: new seeds start, seeds left out are left as they are.",
        ),
        Option(
            ["--out", "sweep_dir"],
            type=OutputPath("folder"),
            required=True,
            help="The sweep folder: SWEEP/seed-N is seed N's run folder, SWEEP/sweep.json the sweep's "
            "record. Rerun the same command to continue an interrupted sweep.",
        ),
        Option(
            ["--parallel", "-j"],
            type=POSITIVE,
            default=None,
            show_default="on CPU one per core, fewer when memory runs short; on GPUs one per device, more "
            "where the device's memory holds them",
            help="Seeds trained at once.",
        ),
        Option(
            ["--threads"],
            type=POSITIVE,
            default=None,
            show_default="the cores shared out, cores // --parallel, at least 1",
            help="Torch threads of each seed's process (OMP_NUM_THREADS). A seed's weights are bit-identical "
            "to ganrun train's with the same thread count.",
        ),
        Option(
            ["--progress/--no-progress", "show_progress"],
            default=True,
            show_default=True,
            help="Show one line per seed (state, step, steps/s, L_I/H of each code), redrawn on a "
            "terminal, else printed when a seed's state changes.",
        ),
        *train_params,
        *owned,
    ]

    def callback(**values: Any) -> None:
        run_sweep(click.get_current_context(), session, options, values)

    return click.Command(
        "sweep",
        params=params,
        callback=callback,
        help="Train one configuration over many seeds, each an ordinary run folder SWEEP/seed-N made "
        "by 'ganrun train --seed N --out SWEEP/seed-N --auto-resume', as many at once as the machine "
        "holds.\n\nEvery train option works here and means what it means for train (precedence: "
        "built-in defaults < plugin defaults < --config TOML < flags); --seed, --resume, "
        "--auto-resume and --overwrite belong to the sweep and are refused. Rerunning the same "
        "command continues every unfinished seed exactly from its newest checkpoint and skips "
        "finished ones; a seed that fails does not stop the others. Ctrl-C stops every seed with a "
        "checkpoint. Exit status: 0 when every seed is done, 1 when one failed, 128+N when stopped "
        "by signal N.",
    )


# ------------------------------------------------------------------------------ the child's flags


def _flag(option: click.Option) -> str:
    return next((o for o in option.opts if o.startswith("--")), option.opts[0])


def option_flags(option: click.Option, value: Any) -> list[str]:
    """``value`` of ``option`` as command-line words that give ``train`` the same value."""
    name = _flag(option)

    def one(item: Any) -> list[str]:
        if isinstance(item, (tuple, list)):  # nargs > 1
            return [name, *(str(part) for part in item)]
        return [f"{name}={item}"] if name.startswith("--") else [name, str(item)]

    if option.is_flag:
        if option.secondary_opts:
            return [name] if value else [option.secondary_opts[0]]
        return [name] if value else []
    if option.multiple:
        return [word for item in value for word in one(item)]
    return one(value)


def train_flags(ctx: click.Context, params: list[click.Parameter], values: dict[str, Any]) -> list[str]:
    """The train options the user typed (or set in the environment), as flags for the children;
    ``--config`` as an absolute path, so a child reads the file the sweep read."""
    words: list[str] = []
    typed = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    for param in params:
        if not isinstance(param, click.Option) or ctx.get_parameter_source(param.name) not in typed:
            continue
        value = values[param.name]
        if param.name == "config":
            value = Path(value).absolute()
        words += option_flags(param, value)
    return words


# ------------------------------------------------------------------------------ planning


@dataclass
class Plan:
    """How the seeds run: ``slots`` processes at once, each with ``threads`` torch threads,
    slot ``i`` adding ``slot_env[i]`` to its environment."""

    threads: int
    slot_env: list[dict[str, str]]
    device: str  # "cpu", or the GPUs in words
    reason: str  # why this many at once


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _gpu_free(env: dict[str, str]) -> list[int] | None:
    """Free memory of each visible GPU, read in a short child process so the sweep itself never
    holds a CUDA context; None when it cannot be read."""
    code = (
        "import json, torch; "
        "print(json.dumps([torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        free = json.loads(out.stdout.strip().splitlines()[-1])
        return [int(n) for n in free]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def plan(
    config: TrainConfig, n_seeds: int, needs: int, parallel: int | None, threads: int | None, env: dict[str, str]
) -> Plan:
    """CPU: one process per core, fewer when the machine's memory cannot hold them, each with its
    share of the cores. GPUs (``--device auto`` with CUDA, or ``cuda``): one process per device,
    more where the device's free memory holds them (and the cores drive them), each seeing its
    device alone through ``CUDA_VISIBLE_DEVICES``; ``--device cuda:N``: every process on GPU N."""
    import torch

    cores = cpu_cores()
    gpu = config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
    if not gpu:
        fit = memory.available_bytes("cpu")
        by_memory = max(fit // (needs + CPU_PROCESS_BYTES), 1) if fit is not None else cores
        count = parallel or max(1, min(n_seeds, cores, by_memory))
        reason = (
            "--parallel" if parallel else f"{cores} cores" + (", memory" if by_memory < min(n_seeds, cores) else "")
        )
        return Plan(threads or max(1, cores // count), [{} for _ in range(count)], "cpu", reason)
    if ":" in config.device:  # one named GPU: the child's --device names it, nothing to hide
        devices, slot_env = [config.device.split(":", 1)[1]], lambda d: {}
    else:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
        devices = ids or [str(i) for i in range(torch.cuda.device_count())]
        slot_env = lambda d: {"CUDA_VISIBLE_DEVICES": d}  # noqa: E731
        if not torch.cuda.is_available() or not devices:
            raise click.BadParameter(
                f"{config.device}: CUDA is not available on this machine; use --device cpu", param_hint="--device"
            )
    if parallel:
        count, reason = parallel, "--parallel"
    else:
        free = _gpu_free(env) if ":" not in config.device else None
        per_process = needs * GPU_NEEDS_FACTOR + GPU_PROCESS_BYTES
        per_device = max(1, cores // max(len(devices), 1))
        if free and len(free) == len(devices):
            per_device = min(per_device, max(1, min(free) // per_process))
        count = max(1, min(n_seeds, per_device * len(devices)))
        reason = f"{len(devices)} GPU(s), {per_device} per device by memory and cores"
    slots = [slot_env(devices[i % len(devices)]) for i in range(count)]
    return Plan(threads or max(1, cores // count), slots, f"GPU {', '.join(devices)}", reason)


# ------------------------------------------------------------------------------ the sweep folder


def _option_names(ctx: click.Context) -> dict[str, str]:
    return {p.name: _flag(p) for p in ctx.command.params if isinstance(p, click.Option) and p.name}


def recorded_config(config: TrainConfig) -> dict[str, Any]:
    """The configuration a sweep records: its runs' own, less what differs between seeds."""
    data = dataclasses.asdict(config)
    for key in ("seed", "out", "progress"):
        data.pop(key)
    return data


def check_same_config(
    ctx: click.Context, path: Path, recorded: Any, config: TrainConfig, mutable: frozenset[str]
) -> None:
    """Refuse a rerun whose configuration differs from the recorded one in anything a resume
    may not change, naming each differing option."""
    try:
        if not isinstance(recorded, dict):
            raise ValueError("it is missing")
        previous = TrainConfig.from_dict({**recorded, "seed": config.seed, "out": config.out, "progress": False})
    except ValueError as exc:
        raise click.ClickException(f"{path}: its 'config' entry is unusable ({exc}); restore it or use another --out")
    diffs = resume_differences(previous, dataclasses.replace(config, progress=False), mutable)
    if diffs:
        names = _option_names(ctx)
        named = []
        for line in diffs:
            key, _, change = line.partition(": ")
            named.append(f"{names.get(key, key)}: {change}")
        raise click.UsageError(
            f"--out {path.parent}: the sweep was started with a different configuration; refusing to change "
            + "; ".join(named)
            + f". Only {', '.join(sorted(names.get(k, k) for k in mutable - {'out', 'progress'}))} may change "
            "when a sweep is rerun; use another --out for a new configuration."
        )


def read_sweep(path: Path) -> dict[str, Any] | None:
    try:
        return runfiles.read_json(path, required=False, hint="restore it, or use another --out")
    except runfiles.RunFileError as exc:
        raise click.ClickException(str(exc)) from None


def check_sweep_dir(sweep_dir: Path) -> None:
    """A folder that holds something other than a sweep is refused before anything is written."""
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise click.BadParameter(f"{sweep_dir} exists and is not a folder", param_hint="--out")
    if not sweep_dir.is_dir() or (sweep_dir / SWEEP_FILE).exists():
        return
    foreign = sorted(
        p.name for p in sweep_dir.iterdir() if p.name != LOCK_NAME and not (p.name.startswith("seed-") and p.is_dir())
    )
    if foreign:
        raise click.BadParameter(
            f"{sweep_dir} is not a sweep folder (no {SWEEP_FILE}; it holds {', '.join(foreign[:3])}); "
            "choose another --out",
            param_hint="--out",
        )


# ------------------------------------------------------------------------------ running


def run_sweep(ctx: click.Context, session: Session, options: Any, values: dict[str, Any]) -> None:
    host = options.host
    seeds: list[int] = values["seeds"]
    sweep_dir: Path = values["sweep_dir"]
    if values.get("config") is not None:
        try:
            file_values = read_toml(values["config"])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--config") from None
        for key, why in FILE_OWNED.items():
            if key in file_values:
                raise click.BadParameter(
                    f"{values['config']} sets {key!r}; {why}: remove it from the file", param_hint="--config"
                )
    mutable = resume_mutable(host)
    merged = {**values, "resume": None, "auto_resume": False}
    config, _, _ = build_config(ctx, merged, options.defaults, options.plugin_keys, mutable)
    config.seed = seeds[0]
    configure(config, host, ctx)
    try:  # a live sweep is named before the folder's contents are judged or anything is built
        RunLock(sweep_dir).check_free()
    except RunFolderBusy as exc:
        raise click.ClickException(str(exc)) from None
    check_sweep_dir(sweep_dir)
    recorded = read_sweep(sweep_dir / SWEEP_FILE)
    if recorded is not None:  # refused before the lock is taken or anything is built: the folder stays as it was
        check_same_config(ctx, sweep_dir / SWEEP_FILE, recorded.get("config"), config, mutable)

    # One build on the CPU checks data, names and plugins once for every seed, and sizes a run.
    probe = copy.deepcopy(config)
    probe.device = "cpu"
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(probe, host, Path(scratch) / "run")
        needs = trainer.memory_needs.total
        del trainer
        gc.collect()

    env = dict(os.environ)
    layout = plan(config, len(seeds), needs, values.get("parallel"), values.get("threads"), env)
    flags = train_flags(ctx, train_parameters(options.params), values)
    plugin_flags = [word for name in session.plugin_names for word in ("--plugin", name)]

    try:
        lock = RunLock(sweep_dir).acquire()
    except RunFolderBusy as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.BadParameter(f"cannot write to {sweep_dir}: {exc.strerror}", param_hint="--out") from None
    try:
        path = sweep_dir / SWEEP_FILE
        previous = read_sweep(path)
        if previous is not None:
            check_same_config(ctx, path, previous.get("config"), config, mutable)
        _sweep(ctx, sweep_dir, path, previous, config, seeds, layout, flags, plugin_flags, values, env)
    finally:
        lock.release()


def _sweep(
    ctx: click.Context,
    sweep_dir: Path,
    path: Path,
    previous: dict[str, Any] | None,
    config: TrainConfig,
    seeds: list[int],
    layout: Plan,
    flags: list[str],
    plugin_flags: list[str],
    values: dict[str, Any],
    env: dict[str, str],
) -> None:
    recorded_runs = (previous or {}).get("runs")
    recorded_runs = recorded_runs if isinstance(recorded_runs, dict) else {}
    runs = []
    for seed in seeds:
        run = SeedRun(seed, sweep_dir / f"seed-{seed}")
        if isinstance(recorded_runs.get(str(seed)), dict):
            run.restore(recorded_runs[str(seed)])
        run.step = newest_step(run.folder)
        run.metrics = last_metrics(run.folder)
        if run.step is not None and run.step >= config.steps:
            run.state = "done"  # finished by an earlier command: skipped
        else:
            run.state = "pending"
        runs.append(run)

    def command(run: SeedRun) -> list[str]:
        return [
            sys.executable,
            "-m",
            "registry",
            *plugin_flags,
            "train",
            *flags,
            f"--seed={run.seed}",
            f"--out={run.folder}",
            "--auto-resume",
            "--no-progress",
        ]

    others = {k: v for k, v in recorded_runs.items() if k not in {str(s) for s in seeds}}

    def save() -> None:
        document = {
            "format": FORMAT,
            "plugins": [word for word in plugin_flags if word != "--plugin"],
            "train_args": flags,
            "config": recorded_config(config),
            "seeds": seeds,
            "parallel": len(layout.slot_env),
            "threads": layout.threads,
            "device": layout.device,
            "runs": {**others, **{str(run.seed): run.record() for run in runs}},
        }
        write_sweep_json(path, document)

    threads = str(layout.threads)
    child_env = {**env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    skipped = [run.seed for run in runs if run.state == "done"]
    todo = len(runs) - len(skipped)
    if values["show_progress"]:
        click.echo(
            f"sweep {sweep_dir}: {todo} of {len(runs)} seed(s) to train, {len(layout.slot_env)} at once "
            f"({layout.reason}) with {layout.threads} thread(s) each on {layout.device}"
            + (f"; finished before: {', '.join(map(str, skipped))}" if skipped else "")
        )
    progress = Progress(config.steps, enabled=values["show_progress"])
    pool = Pool(
        runs, command, steps=config.steps, env=child_env, slot_env=layout.slot_env, save=save, progress=progress
    )
    pool.run()
    progress.forget_drawn()
    _summary(sweep_dir, runs, config.steps, pool.stop_signal)


def _summary(sweep_dir: Path, runs: list[SeedRun], steps: int, stop_signal: int | None) -> None:
    counts = {state: [r.seed for r in runs if r.state == state] for state in ("done", "failed", "interrupted")}
    left = [r.seed for r in runs if r.state == "pending"]
    parts = [f"{len(counts['done'])} done"]
    for state in ("failed", "interrupted"):
        if counts[state]:
            parts.append(f"{len(counts[state])} {state} (seed {', '.join(map(str, counts[state]))})")
    if left:
        parts.append(f"{len(left)} not started (seed {', '.join(map(str, left))})")
    click.echo(f"sweep {sweep_dir}: " + ", ".join(parts) + f"; {sweep_dir / SWEEP_FILE}")
    for run in runs:
        if run.state == "failed":
            click.echo(f"seed {run.seed} failed (exit code {run.exit_code}):", err=True)
            for line in (run.error or "").splitlines():
                click.echo(f"  {line}", err=True)
    if stop_signal is not None:
        click.echo("continue with the same sweep command", err=True)
        sys.exit(128 + stop_signal)
    if counts["failed"]:
        click.echo("fix the cause and rerun the same sweep command: finished seeds are skipped", err=True)
        sys.exit(1)
