"""The training configuration: one dataclass, merged from defaults, plugins, TOML and flags.

Precedence, lowest first: the field defaults below, ``ganrun_config_defaults`` from the
active plugins, the ``--config`` TOML file, then flags given on the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    dataset: str = "digits"  # registered dataset name
    data_dir: str | None = None  # folder for datasets that read files
    image_size: int | None = None  # resize to this square size (None: the dataset's own)
    model: str | None = None  # registered model name (None: dcgan28 for 28 px, else dcgan64)
    gan_loss: str = "nonsaturating"  # registered adversarial loss
    noise_dim: int = 100  # width of the incompressible noise z
    noise: str = "normal"  # z ~ N(0, 1) ("normal") or U(-1, 1) ("uniform")
    steps: int = 2000  # total optimisation steps (each one D step and one G step)
    batch_size: int = 64  # per process
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    lr_decay: float = 0.0  # last fraction of the run over which both rates fall linearly to 0
    beta1: float = 0.5  # Adam beta1; 0.5 is the DCGAN/InfoGAN choice
    beta2: float = 0.999
    spectral_norm: bool = False  # spectral normalisation on every layer of D's optimizer group (D, its head, Q)
    g_steps: int = 1  # G updates per D update, each on a fresh G pass of the step's input
    max_loss: float = 1e6  # divergence bound on every loss term and weight (0: off; NaN/Inf always stop)
    seed: int = 0  # fixes init, data order and latent sampling
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str | None = None  # run folder (None: runs/<dataset>-<time>)
    save_every: int = 500  # checkpoint period in steps (and always at the end)
    sample_every: int = 500  # picture period in steps (and always at the end)
    log_every: int = 50  # metrics period in steps
    keep_checkpoints: int = 3  # newest checkpoints kept on disk (0 keeps all)
    amp: bool = False  # bf16 autocast on CUDA and on CPUs with native bf16
    compile: bool = False  # torch.compile the networks (pays off on CUDA; slow to start)
    progress: bool = True  # show a progress bar
    extra: dict[str, Any] = field(default_factory=dict)  # plugin options, by option name

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """A configuration read back (from a checkpoint or config.json): every key known and
        every value of its field's type, else ValueError naming the key."""
        if not isinstance(data, dict):
            raise ValueError(f"configuration is a {type(data).__name__}, not an object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        problems = type_errors({k: v for k, v in data.items() if k != "extra"})
        extra = data.get("extra", {})
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            problems.append(f"extra: expected an object of plugin options, got {extra!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**data)


_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig) if f.name != "extra"}
_TYPE_WORDS = {"int": "an integer", "float": "a finite number", "str": "a string", "bool": "true or false"}


def _fits(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, str)


def type_errors(values: dict[str, Any]) -> list[str]:
    """``key: must be ..., got ...`` for each core value whose type is not its field's (an int
    is a number; a bool is neither; a number must be finite). Keys that are not core fields
    are left to the caller."""
    problems = []
    for key, value in values.items():
        annotation = _FIELD_TYPES.get(key)
        if annotation is None:
            continue
        kind, _, optional = annotation.partition(" | ")
        if value is None and optional == "None":
            continue
        if not _fits(value, kind):
            expected = _TYPE_WORDS[kind] + (" (or absent)" if optional else "")
            problems.append(f"{key}: must be {expected}, got {value!r}")
    return problems


CORE_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra")

# Keys that may differ between a checkpoint and the run that resumes it: they change how
# long or how visibly a run goes on, not what it computes. Plugins add their own through
# ``ganrun_resume_mutable_options``.
MUTABLE_ON_RESUME = frozenset(
    {
        "steps",
        "save_every",
        "sample_every",
        "log_every",
        "keep_checkpoints",
        "device",
        "out",
        "amp",
        "compile",
        "progress",
        "max_loss",
    }
)


def read_toml(path: Path) -> dict[str, Any]:
    """Read a flat TOML config (``key = value`` lines; tables are refused as unknown keys);
    errors carry the file name."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return {key.replace("-", "_"): value for key, value in data.items()}


def refuse_unknown(values: dict[str, Any], plugin_keys: set[str], source: str) -> None:
    """Refuse keys that are neither core fields nor options of the active plugins."""
    unknown = sorted(set(values) - set(CORE_KEYS) - plugin_keys)
    if unknown:
        known = ", ".join(sorted(set(CORE_KEYS) | plugin_keys))
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {known}")


def resume_differences(
    saved: TrainConfig, wanted: TrainConfig, mutable: frozenset[str] = MUTABLE_ON_RESUME
) -> list[str]:
    """Lines ``key: saved -> wanted`` for each setting a resume may not change."""
    diffs = []
    a, b = dataclasses.asdict(saved), dataclasses.asdict(wanted)
    for key in CORE_KEYS:
        if key not in mutable and a[key] != b[key]:
            diffs.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    for key in sorted(set(a["extra"]) | set(b["extra"])):
        if key not in mutable and a["extra"].get(key) != b["extra"].get(key):
            diffs.append(f"{key}: {a['extra'].get(key)!r} -> {b['extra'].get(key)!r}")
    return diffs


class ResumeConflict(ValueError):
    """A resume that would change settings the checkpoint's run was trained with;
    ``diffs`` holds one ``key: saved -> wanted`` line per setting."""

    def __init__(self, diffs: list[str], mutable: frozenset[str]):
        self.diffs = diffs
        self.mutable = mutable
        super().__init__("; ".join(diffs))


def merge_config(
    explicit: dict[str, Any],
    *,
    defaults: dict[str, Any],
    plugin_keys: set[str],
    saved: TrainConfig | None = None,
    mutable_on_resume: frozenset[str] = MUTABLE_ON_RESUME,
) -> TrainConfig:
    """The effective configuration, as a pure function of what the user gave.

    ``explicit`` holds the values the user set (the TOML file's, overridden by flags typed
    on the command line), never a command line's unset defaults. A fresh run starts from
    the field defaults updated by the plugins' ``defaults``; a resume (``saved`` given)
    starts from the checkpoint's configuration, with ``out`` cleared so the run continues
    where the checkpoint lies now. ``explicit`` then overrides either. On resume a change
    to a key outside ``mutable_on_resume`` raises :class:`ResumeConflict`.
    """
    if saved is not None:
        merged = dataclasses.asdict(saved)
        extra = dict(merged.pop("extra"))
        merged["out"] = None  # continue where the checkpoint is now (the run may have moved)
    else:
        merged = dataclasses.asdict(TrainConfig())
        merged.pop("extra")
        extra = {k: None for k in plugin_keys}
        for key, value in defaults.items():
            if key in CORE_KEYS:
                merged[key] = value
            elif key in plugin_keys:
                extra[key] = value
    for key, value in explicit.items():
        if key in CORE_KEYS:
            merged[key] = value
        else:
            extra[key] = value
    config = TrainConfig(**merged, extra=extra)
    if saved is not None:
        diffs = resume_differences(saved, config, mutable_on_resume)
        if diffs:
            raise ResumeConflict(diffs, mutable_on_resume)
    return config
