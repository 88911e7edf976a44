"""An adversary's tally: bad input, hostile files and faults fed to the real command line, each
attempt judged by what a user sees, counted by family.

Every attempt runs ``ganrun`` in a fresh process (with a time limit, and an address-space limit
so that a size nobody checked fails fast instead of swapping) against a copy of a small trained
InfoGAN run, then is judged:

- ``held``: it did what it should: a refusal is exactly one ``Error:`` line that names what the
  attempt damaged (the option, the file or the entry), exit code 1 or 2, no traceback, and the
  run folder it was given is byte-for-byte as it was; an attempt that should work exits 0
  without a traceback (a damaged informative file may add ``warning:`` lines);
- ``weak``: refused cleanly, but the line does not name what was wrong (or blames something
  else: ``avoid``), or worked without the warning that was due (``warns``);
- ``bug``: a traceback, a crash, a hang, exit 0 where a refusal was due (or the reverse), or
  non-finite numbers left in a checkpoint or a JSON file;
- ``lost``: a refused attempt that changed or removed files of the run it was given.

    OMP_NUM_THREADS=1 python benchmarks/adversary.py                 # every family, ~10 min
    OMP_NUM_THREADS=1 python benchmarks/adversary.py --family config --jobs 2 --show bug

It prints one line per attempt that is not ``held`` (``--show all`` for every one) and the
tally by family. The attempts are fixed (no randomness), so two versions of the code can be
compared attempt by attempt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CLI = [sys.executable, "-c", "from registry.cli import main; main()"]
TINY = ["--batch-size", "16", "--no-progress"]  # before the attempted option, which then wins
MEMORY_LIMIT = 6 * 2**30  # bytes of address space per attempt
PICKLE = b"\x80\x04\x95" + b"\x00" * 64  # the start of a pickle stream


@dataclass
class Attempt:
    family: str
    name: str
    argv: list[str]  # after ``ganrun``; "{run}" / "{work}" are replaced
    expect: str = "refuse"  # "refuse" | "ok" | "either" (a clean refusal or a clean run)
    names: tuple[str, ...] = ()  # a refusal must mention one of these
    damage: Callable[[Path], None] | None = None  # applied to the copy of the base run
    copy_run: bool = True
    timeout: float = 120.0
    check: Callable[[Path], str | None] | None = None  # extra judgement of the folder afterwards
    avoid: tuple[str, ...] = ()  # a refusal that says one of these blames the wrong thing: weak
    warns: tuple[str, ...] = ()  # an attempt that works must say one of these in a warning: line
    result: str = ""
    detail: str = ""
    seconds: float = 0.0


def snapshot(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith(".ganrun.lock"):
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_attempt(attempt: Attempt, base: Path, work: Path) -> Attempt:
    """Run and judge one attempt in its own folder, removed afterwards (each holds a copy of the
    base run, so keeping them all would take gigabytes)."""
    folder = work / re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{attempt.family}-{attempt.name}")[:120]
    folder.mkdir(parents=True)
    try:
        return _run_attempt(attempt, base, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_attempt(attempt: Attempt, base: Path, folder: Path) -> Attempt:
    run = folder / "run"
    if attempt.copy_run:
        shutil.copytree(base, run, symlinks=True)
    if attempt.damage is not None:
        attempt.damage(run)
    before = snapshot(run)
    argv = [a.replace("{run}", str(run)).replace("{work}", str(folder)) for a in attempt.argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    env.pop("GANRUN_TRACE", None)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [*CLI, *argv],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=attempt.timeout,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        attempt.seconds = time.perf_counter() - start
        attempt.result, attempt.detail = "bug", f"no answer within {attempt.timeout:.0f} s"
        return attempt
    attempt.seconds = time.perf_counter() - start
    attempt.result, attempt.detail = judge(attempt, done, run, before)
    return attempt


def judge(attempt: Attempt, done: subprocess.CompletedProcess, run: Path, before: dict[str, str]) -> tuple[str, str]:
    output = done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    if "Traceback" in output or done.returncode < 0 or done.returncode > 2:
        last = (output.strip().splitlines() or [""])[-1]
        return "bug", f"exit {done.returncode}: {last[:200]}"
    bad_json = non_strict_json(run)
    if bad_json:
        return "bug", bad_json
    if attempt.check is not None:
        problem = attempt.check(run)
        if problem:
            return "bug", problem
    if done.returncode == 0:
        if attempt.expect == "refuse":
            return "bug", "exit 0 where a refusal was due: " + (done.stderr.strip().splitlines() or [""])[-1][:160]
        warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
        if attempt.warns and not any(w.lower() in line.lower() for line in warned for w in attempt.warns):
            return "weak", f"worked without saying {' / '.join(attempt.warns)}"
        return "held", ""
    # refused
    if attempt.expect == "ok":
        return "bug", f"refused what should work: {(errors or [output.strip()])[-1][:200]}"
    if len(errors) != 1:
        return "weak", f"{len(errors)} Error: lines: {output.strip()[-200:]}"
    if attempt.copy_run and snapshot(run) != before:
        changed = sorted(set(before.items()) ^ set(snapshot(run).items()))
        return "lost", f"{errors[0][:160]} | changed: {[name for name, _ in changed][:4]}"
    if attempt.names and not any(name.lower() in errors[0].lower() for name in attempt.names):
        return "weak", f"does not name {' / '.join(attempt.names)}: {errors[0][:200]}"
    blamed = [phrase for phrase in attempt.avoid if phrase.lower() in errors[0].lower()]
    if blamed:
        return "weak", f"blames {blamed[0]!r}: {errors[0][:200]}"
    return "held", errors[0][:200]


def non_strict_json(run: Path) -> str:
    """A JSON file in the run that a strict parser refuses (NaN, Infinity)."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    for path in [run / "config.json", run / "eval.json"]:
        if path.is_file():
            try:
                json.loads(path.read_bytes().decode("utf-8", "replace"), parse_constant=refuse)
            except ValueError as exc:
                if str(exc) in ("NaN", "Infinity", "-Infinity"):
                    return f"{path.name} holds {exc}"
    return ""


# --------------------------------------------------------------------------- damage helpers


def newest_checkpoint(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("ckpt-*.safetensors"))[-1]


def rewrite_checkpoint(change: Callable[[dict, dict], None]) -> Callable[[Path], None]:
    """Damage that rewrites the newest checkpoint as a well-formed safetensors file."""

    def damage(run: Path) -> None:
        from safetensors.torch import load_file, safe_open, save_file

        path = newest_checkpoint(run)
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
        change(tensors, metadata)
        save_file(tensors, str(path), metadata=metadata)

    return damage


def write_file(relative: str, content: bytes | None) -> Callable[[Path], None]:
    """Replace a run file with ``content`` (``None``: a directory in its place)."""

    def damage(run: Path) -> None:
        path = run / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)

    return damage


def truncate(relative: str, fraction: float) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / relative
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return damage


def remove(relative: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / relative).unlink()

    return damage


def checkpoints_finite(run: Path) -> str | None:
    import torch
    from safetensors.torch import load_file

    for path in sorted((run / "checkpoints").glob("ckpt-*.safetensors")):
        for name, tensor in load_file(str(path)).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return f"{path.name}: {name} is not finite"
            if tensor.is_floating_point() and tensor.numel() and float(tensor.abs().max()) > 1e20:
                return f"{path.name}: {name} holds {float(tensor.abs().max()):.3g}"
    return None


# ------------------------------------------------------------------------------- families


def family_config() -> list[Attempt]:
    """Typed configuration: wrong TOML types and out-of-range flags, each option in turn."""
    out = []
    numbers = {
        "steps": "int",
        "batch_size": "int",
        "noise_dim": "int",
        "lr_g": "float",
        "lr_d": "float",
        "lr_decay": "float",
        "beta1": "float",
        "beta2": "float",
        "g_steps": "int",
        "seed": "int",
        "save_every": "int",
        "sample_every": "int",
        "log_every": "int",
        "keep_checkpoints": "int",
        "image_size": "int",
        "info_lambda": "float",
    }
    texts = ["dataset", "model", "gan_loss", "noise", "device", "data_dir"]
    flags = ["amp", "compile", "spectral_norm", "progress"]
    bad_values = {
        **{key: ['"fast"', "true", "[1]", "{a = 1}", "1.5", "nan"] for key, kind in numbers.items() if kind == "int"},
        **{key: ['"fast"', "true", "[1]", "{a = 1}"] for key, kind in numbers.items() if kind == "float"},
        **{key: ["5", "true", '["digits"]', "{a = 1}"] for key in texts},
        **{key: ['"no"', "1", "0", "[true]"] for key in flags},
        "code": ["5", '"categorical:3"', "[5]"],
    }
    for key, values in bad_values.items():
        for value in values:
            steps = "" if key == "steps" else "steps = 2\n"
            out.append(
                Attempt(
                    "config",
                    f"toml {key} = {value}",
                    ["--plugin", "infogan", "train", "--config", "{work}/c.toml", "--out", "{work}/new", *TINY],
                    expect="either" if value == '"categorical:3"' else "refuse",
                    names=(key,),
                    copy_run=False,
                    damage=_toml(f"{key} = {value}\n{steps}"),
                )
            )
    option_bad = {
        "--lr-g": ["nan", "inf", "-1", "0"],
        "--lr-d": ["nan", "-inf", "-0.1"],
        "--beta1": ["1.5", "-0.1", "nan"],
        "--beta2": ["1.5", "1", "nan"],
        "--lambda": ["inf", "nan", "-1"],
        "--lr-decay": ["2", "-0.5", "nan"],
        "--keep-checkpoints": ["-1"],
        "--batch-size": ["0", "-4"],
        "--noise-dim": ["-1"],
        "--g-steps": ["0", "-1"],
        "--log-every": ["0"],
        "--save-every": ["0"],
        "--sample-every": ["-3"],
        "--image-size": ["2", "-28"],
        "--device": ["foo", "cuda:x", "cuda:-1", "cpu:0:1", ""],
        "--steps": ["-1", "1.5", "ten"],
        "--seed": ["abc", "1e3"],
    }
    for option, values in option_bad.items():
        for value in values:
            out.append(
                Attempt(
                    "config",
                    f"{option} {value}",
                    ["--plugin", "infogan", "train", "--steps", "2", "--out", "{work}/new", *TINY, option, value],
                    names=(option,),
                    copy_run=False,
                )
            )
    out.append(
        Attempt(
            "config",
            "image-folder without --image-size",
            [
                "train",
                "--dataset",
                "image-folder",
                "--data-dir",
                "{work}",
                "--steps",
                "1",
                "--out",
                "{work}/new",
                *TINY,
            ],
            names=("--image-size", "--data-dir", "image"),
            copy_run=False,
        )
    )
    return out


def _toml(text: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run.parent / "c.toml").write_text(text)

    return damage


def family_sizes() -> list[Attempt]:
    """Absurd sizes: refused up front, or one line when memory runs out; never a traceback."""
    cases = [
        ("--batch-size", "1000000000"),
        ("--noise-dim", "1000000000"),
        ("--noise-dim", "100000000"),
        ("--code", "categorical:1000000000"),
        ("--code", "uniform:100000000"),
        ("--q-hidden", "1000000000"),
        ("--image-size", "100000"),
    ]
    out = []
    for option, value in cases:
        extra = ["--dataset", "image-folder", "--data-dir", "{work}/images"] if option == "--image-size" else []
        out.append(
            Attempt(
                "sizes",
                f"{option} {value}",
                ["--plugin", "infogan", "train", *extra, "--steps", "2", "--out", "{work}/new", *TINY, option, value],
                names=(option,),
                copy_run=False,
                damage=_images if option == "--image-size" else None,
                timeout=180,
            )
        )
    for option, value in [("--n", "1000000000"), ("--samples", "1000000000")]:
        command = "generate" if option == "--n" else "eval"
        out.append(
            Attempt(
                "sizes",
                f"{command} {option} {value}",
                ["--plugin", "infogan", command, "{run}", option, value, "--out", "{work}/gen"]
                if command == "generate"
                else ["--plugin", "infogan", command, "{run}", option, value],
                names=(option,),
                timeout=180,
            )
        )
    return out


def _images(run: Path) -> None:
    from PIL import Image

    folder = run.parent / "images"
    folder.mkdir(exist_ok=True)
    for i in range(20):
        Image.new("RGB", (40, 40), (i * 10, 0, 0)).save(folder / f"{i}.png")


def family_divergence() -> list[Attempt]:
    """Exploding and non-finite training: stopped, truthfully, without a poisoned checkpoint."""
    runs = [
        ("lr 1e6", ["--lr-d", "1e6", "--lr-g", "1e6"]),
        ("lambda 1e30", ["--lambda", "1e30"]),
        ("lr-g 1e4", ["--lr-g", "1e4"]),
        ("lr-d 1e8 beta1 0", ["--lr-d", "1e8", "--beta1", "0"]),
    ]
    out = []
    for name, args in runs:
        out.append(
            Attempt(
                "divergence",
                name,
                ["--plugin", "infogan", "train", *args, "--steps", "30", "--save-every", "10", "--out", "{work}/new"]
                + TINY,
                expect="refuse",
                names=("diverge", "NaN", "Inf", "explod", "loss"),
                copy_run=False,
                check=lambda run: checkpoints_finite(run.parent / "new") if (run.parent / "new").exists() else None,
                timeout=240,
            )
        )
    return out


def family_checkpoint() -> list[Attempt]:
    """Hostile values inside well-formed checkpoints, met by --resume, eval and generate."""
    import torch

    def set_entry(pattern: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict, dict], None]:
        def change(tensors: dict, metadata: dict) -> None:
            name = next(k for k in sorted(tensors) if re.fullmatch(pattern, k))
            tensors[name] = make(tensors[name])

        return change

    def set_meta(key: str, value: Callable[[str], str]) -> Callable[[dict, dict], None]:
        def change(tensors: dict, metadata: dict) -> None:
            metadata[key] = value(metadata.get(key, ""))

        return change

    def drop(pattern: str) -> Callable[[dict, dict], None]:
        def change(tensors: dict, metadata: dict) -> None:
            del tensors[next(k for k in sorted(tensors) if re.fullmatch(pattern, k))]

        return change

    def json_edit(key: str, edit: Callable[[dict], None]) -> Callable[[str], str]:
        def value(text: str) -> str:
            data = json.loads(text)
            edit(data)
            return json.dumps(data)

        return value

    cases = {
        "weight shape": set_entry(r"model\.G\..*weight", lambda t: t.reshape(-1)[:-1].clone()),
        "weight f16": set_entry(r"model\.G\..*weight", lambda t: t.half()),
        "weight int64": set_entry(r"model\.D\..*weight", lambda t: t.long()),
        "weight NaN": set_entry(r"model\.Q\..*weight", lambda t: t.clone().fill_(math.nan)),
        "weight Inf": set_entry(r"model\.G\..*bias", lambda t: t.clone().fill_(math.inf)),
        "BN running_var NaN": set_entry(r"model\.G\..*running_var", lambda t: t.clone().fill_(math.nan)),
        "adam exp_avg shape": set_entry(r"optim\.D\..*exp_avg", lambda t: t.reshape(-1)[1:].clone()),
        "adam exp_avg_sq Inf": set_entry(r"optim\.G\..*exp_avg_sq", lambda t: t.clone().fill_(math.inf)),
        "adam step shape": set_entry(r"optim\.G\..*step", lambda t: t.reshape(1).repeat(3)),
        "rng dtype": set_entry(r"rng\.torch_cpu\..*", lambda t: t.float()),
        "rng size": set_entry(r"rng\.latent\..*", lambda t: t[:-5].clone()),
        "missing weight": drop(r"model\.G\..*weight"),
        "missing rng": drop(r"rng\.torch_cpu\..*"),
        "step -1": set_meta("step", lambda v: "-1"),
        "step abc": set_meta("step", lambda v: "abc"),
        "step 10**12": set_meta("step", lambda v: str(10**12)),
        "step 1e3": set_meta("step", lambda v: "1e3"),
        "config not JSON": set_meta("config", lambda v: v[: len(v) // 2]),
        "config nested 100000": set_meta("config", lambda v: "[" * 100000 + "]" * 100000),
        "config lr_g string": set_meta("config", json_edit("config", lambda d: d.__setitem__("lr_g", "fast"))),
        "config batch_size list": set_meta("config", json_edit("config", lambda d: d.__setitem__("batch_size", [1]))),
        "optim lr string": set_meta("optim.G", json_edit("optim.G", lambda d: _set_lr(d, "fast"))),
        "optim lr NaN": set_meta("optim.D", lambda v: re.sub(r'"lr": ?', '"lr":NaN,"x":', v, count=1)),
        "run JSON list": set_meta("run", lambda v: "[]"),
    }
    out = []
    for name, change in cases.items():
        for command in (["train", "--resume", "{run}", "--steps", "6", *TINY], ["eval", "{run}", "--samples", "32"]):
            out.append(
                Attempt(
                    "checkpoint",
                    f"{name} / {command[0]}",
                    ["--plugin", "infogan", *command],
                    names=("ckpt-", "checkpoint"),
                    damage=rewrite_checkpoint(change),
                )
            )
    not_files = [  # (what, file name, what the refusal names, how it is made)
        ("a FIFO", "fifo.safetensors", ("fifo", "regular"), lambda path: os.mkfifo(path)),
        ("a pickle renamed", "p.safetensors", ("p.safetensors", "pickle"), lambda path: path.write_bytes(PICKLE)),
    ]
    for what, name, names, make in not_files:
        out.append(
            Attempt(
                "checkpoint",
                f"{what} as the checkpoint / resume",
                ["--plugin", "infogan", "train", "--resume", f"{{work}}/{name}", *TINY],
                names=names,
                damage=lambda run, name=name, make=make: make(run.parent / name),
                timeout=60,
            )
        )
    return out


def _set_lr(state: dict, value) -> None:
    for group in state.get("param_groups", []):
        group["lr"] = value


def family_run_files() -> list[Attempt]:
    """Damaged config.json, metrics.jsonl and eval.json, met by every command that reads a run."""
    damages = {
        "config.json truncated": truncate("config.json", 0.5),
        "config.json empty": write_file("config.json", b""),
        "config.json a list": write_file("config.json", b"[1, 2]"),
        "config.json not UTF-8": write_file("config.json", b"\xff\xfe{\x00}"),
        "config.json a folder": write_file("config.json", None),
        "config.json wrong types": write_file("config.json", b'{"plugins": 5, "config": "x"}'),
        "config.json missing": remove("config.json"),
        "metrics.jsonl truncated": truncate("metrics.jsonl", 0.7),
        "metrics.jsonl not UTF-8": write_file("metrics.jsonl", b'{"step": 1}\n\xff\xff\n'),
        "metrics.jsonl a folder": write_file("metrics.jsonl", None),
        "metrics.jsonl wrong shape": write_file(
            "metrics.jsonl", b'[1]\n"x"\n{"step": "a"}\n{"step": 2, "d/adv": "x"}\n'
        ),
        "eval.json truncated": truncate("eval.json", 0.5),
        "eval.json a folder": write_file("eval.json", None),
        "eval.json wrong shape": write_file("eval.json", b'{"codes": 5, "accuracy": "x"}'),
    }
    commands = {
        "report": (["report", "{run}", "--out", "{work}/r.html"], "either"),
        "eval": (["eval", "{run}", "--samples", "32"], "either"),
        "traverse": (["traverse", "{run}", "--out", "{work}/t"], "either"),
        "generate": (["generate", "{run}", "--n", "4", "--out", "{work}/g"], "either"),
        "resume": (["train", "--resume", "{run}", "--steps", "6", *TINY], "either"),
    }
    out = []
    for damage_name, damage in damages.items():
        target = damage_name.split()[0]
        for command_name, (argv, expect) in commands.items():
            if target == "eval.json" and command_name not in ("report", "eval"):
                continue
            out.append(
                Attempt(
                    "run files",
                    f"{damage_name} / {command_name}",
                    ["--plugin", "infogan", *argv],
                    expect=expect,
                    names=(target,),
                    damage=damage,
                )
            )
    return out


def family_losing() -> list[Attempt]:
    """What could lose a run: resume, restart, folders already there."""
    return [
        Attempt(
            "losing a run",
            "train --out an existing run",
            ["--plugin", "infogan", "train", "--out", "{run}", "--steps", "6", *TINY],
            names=("exists", "--resume", "--overwrite"),
        ),
        Attempt(
            "losing a run",
            "resume with a changed computing option",
            ["--plugin", "infogan", "train", "--resume", "{run}", "--steps", "6", "--lr-g", "0.5", *TINY],
            names=("lr_g", "--lr-g"),
        ),
        Attempt(
            "losing a run",
            "auto-resume a run with config.json but no checkpoint",
            ["--plugin", "infogan", "train", "--out", "{run}", "--auto-resume", "--steps", "4", *TINY],
            expect="ok",
            damage=lambda run: shutil.rmtree(run / "checkpoints"),
        ),
        Attempt(
            "losing a run",
            "resume a run whose checkpoints folder is a file",
            ["--plugin", "infogan", "train", "--resume", "{run}", "--steps", "6", *TINY],
            names=("checkpoints",),
            damage=lambda run: (shutil.rmtree(run / "checkpoints"), (run / "checkpoints").write_text("x")),
        ),
        Attempt(
            "losing a run",
            "resume with --steps below the checkpoint",
            ["--plugin", "infogan", "train", "--resume", "{run}", "--steps", "2", *TINY],
            names=("--steps",),
        ),
    ]


def _all_checkpoints_version(version: str) -> Callable[[Path], None]:
    """Every checkpoint rewritten in another format version, or only the newest (``"newest:2"``)."""

    def damage(run: Path) -> None:
        from safetensors.torch import load_file, safe_open, save_file

        newest_only = version.startswith("newest:")
        paths = sorted((run / "checkpoints").glob("ckpt-*.safetensors"))
        for path in paths[-1:] if newest_only else paths:
            tensors = load_file(str(path))
            with safe_open(str(path), "pt") as handle:
                metadata = dict(handle.metadata() or {})
            metadata["format_version"] = version.removeprefix("newest:")
            save_file(tensors, str(path), metadata=metadata)

    return damage


def family_options() -> list[Attempt]:
    """Shared options every command takes (issue 28, class 3), and options a run would not use
    (class 1): a bad --device in every command, outputs that cannot be written."""
    ig = ["--plugin", "infogan"]
    commands = {
        "eval": ["eval", "{run}", "--samples", "32"],
        "traverse": ["traverse", "{run}", "--out", "{work}/t"],
        "generate": ["generate", "{run}", "--n", "4", "--out", "{work}/g"],
        "encode": ["encode", "{run}", "--images", "digits", "--out", "{work}/c.csv"],
        "explore": ["explore", "{run}", "--port", "0"],
        "select": ["select", "{work}"],
        "train": ["train", "--out", "{work}/new", "--steps", "2", *TINY],
        "sweep": ["sweep", "--seeds", "0", "--out", "{work}/sweep", "--steps", "2", *TINY],
    }
    out = []
    for name, argv in commands.items():
        for device in ("gpu", "cuda:7") if name != "eval" else ("gpu", "cuda:-1", "mps", "cuda:7"):
            out.append(
                Attempt("options", f"{name} --device {device}", [*ig, *argv, "--device", device], names=("--device",))
            )
    outputs = {
        "generate --out a file": ["generate", "{run}", "--n", "4", "--out", "{run}/config.json"],
        "traverse --out under a file": ["traverse", "{run}", "--out", "{run}/config.json/t"],
        "encode --out a folder": ["encode", "{run}", "--images", "digits", "--out", "{work}"],
        "export --out a folder": ["export", "{run}", "--format", "safetensors", "--out", "{run}/checkpoints"],
        "report --out under a file": ["report", "{run}", "--out", "{run}/config.json/r.html"],
        "sweep --out a file": ["sweep", "--seeds", "0", "--out", "{run}/config.json", "--steps", "2", *TINY],
    }
    for name, argv in outputs.items():
        out.append(Attempt("options", name, [*ig, *argv], names=("--out",)))
    out += [
        Attempt(
            "options",
            "train --resume with --auto-resume",
            [*ig, "train", "--resume", "{run}", "--auto-resume", "--out", "{run}", "--steps", "6", *TINY],
            names=("--auto-resume",),
        ),
        Attempt(
            "options",
            "train --eval-samples without --eval-every",
            [*ig, "train", "--out", "{work}/new", "--steps", "1", "--eval-samples", "200", *TINY],
            expect="ok",
            warns=("--eval-samples",),
            copy_run=False,
        ),
    ]
    return out


def family_messages() -> list[Attempt]:
    """Refusals that must name the real cause (issue 28, class 5)."""
    ig = ["--plugin", "infogan"]
    deep = ("[" * 40 + "]" * 40).encode()
    users = {
        "eval": (["eval", "{run}", "--samples", "32"], "either"),
        "traverse": (["traverse", "{run}", "--out", "{work}/t"], "either"),
        "generate": (["generate", "{run}", "--n", "4", "--out", "{work}/g"], "either"),
        "resume": (["train", "--resume", "{run}", "--steps", "6", *TINY], "either"),
    }
    out = []
    for name, (argv, expect) in users.items():
        out.append(
            Attempt(
                "messages",
                f"every checkpoint another format version / {name}",
                [*ig, *argv],
                names=("format version",),
                avoid=("no complete checkpoint",),
                damage=_all_checkpoints_version("2"),
            )
        )
        if name != "resume":
            out.append(
                Attempt(
                    "messages",
                    f"newest checkpoint another format version / {name}",
                    [*ig, *argv],
                    expect="ok",
                    warns=("format version",),
                    damage=_all_checkpoints_version("newest:2"),
                )
            )
    for name in ("report", "eval"):
        argv = ["report", "{run}", "--out", "{work}/r.html"] if name == "report" else users["eval"][0]
        out.append(
            Attempt(
                "messages",
                f"metrics.jsonl nested 40 deep / {name}",
                [*ig, *argv],
                expect="either",
                names=("metrics.jsonl",),
                damage=write_file("metrics.jsonl", b'{"step": 1, "x": ' + deep + b"}\n"),
            )
        )
    out.append(
        Attempt(
            "messages",
            "config.json nested 40 deep / eval",
            [*ig, *users["eval"][0]],
            expect="either",
            names=("config.json",),
            avoid=("not valid JSON",),
            damage=write_file("config.json", b'{"config": ' + deep + b"}"),
        )
    )
    tomls = {
        "code = bogus": ('code = ["bogus:3"]\n', "c.toml: code"),
        "code = categorical:1": ('code = ["categorical:1"]\n', "c.toml: code"),
        "steps = 0": ("steps = 0\n", "c.toml: steps"),
        "device = gpu": ('device = "gpu"\n', "c.toml: device"),
        "q_augment = affine,rotate=x": ('q_augment = "affine,rotate=x"\n', "c.toml: q_augment"),
        "eval_every = 7": ("eval_every = 7\n", "c.toml: eval_every"),
    }
    for name, (text, named) in tomls.items():
        # --steps 2 keeps each attempt short, except where the file's steps is the value under test
        # (a flag overrides the file, so the file's value would never be read)
        steps = [] if name.startswith("steps") else ["--steps", "2"]
        out.append(
            Attempt(
                "messages",
                f"--config {name}",
                [*ig, "train", "--config", "{work}/c.toml", "--out", "{work}/new", *steps, *TINY],
                names=(named,),
                damage=_toml(text),
            )
        )
    return out


FAMILIES = {
    "options": family_options,
    "messages": family_messages,
    "losing": family_losing,
    "checkpoint": family_checkpoint,
    "config": family_config,
    "sizes": family_sizes,
    "divergence": family_divergence,
    "run-files": family_run_files,
}


def make_base(work: Path) -> Path:
    base = work / "base"
    argv = [
        "--plugin", "infogan", "train", "--out", str(base), "--steps", "4", "--save-every", "2",
        "--sample-every", "2", "--log-every", "1", "--keep-checkpoints", "0", *TINY,
    ]  # fmt: skip
    subprocess.run([*CLI, *argv], check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    done = subprocess.run(
        [*CLI, "--plugin", "infogan", "eval", str(base), "--samples", "32"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        raise SystemExit(f"eval of the base run failed:\n{done.stderr}")
    return base


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append", help="default: all")
    parser.add_argument("--jobs", type=int, default=1, help="attempts run at once (default 1)")
    parser.add_argument("--show", choices=["all", "failed", "bug"], default="failed")
    parser.add_argument("--json", type=Path, help="also write every attempt and its verdict here")
    parser.add_argument(
        "--timeout-scale",
        type=float,
        default=1.0,
        help="multiply every attempt's time limit (on a machine shared with other jobs, where starting "
        "a process alone takes tens of seconds, a hang is otherwise indistinguishable from a slow start)",
    )
    args = parser.parse_args(argv)
    attempts = [a for name in (args.family or FAMILIES) for a in FAMILIES[name]()]
    for attempt in attempts:
        attempt.timeout *= args.timeout_scale
    with tempfile.TemporaryDirectory(prefix="ganrun-adversary-") as tmp:
        work = Path(tmp)
        base = make_base(work)
        print(f"{len(attempts)} attempts against a 4-step InfoGAN run", flush=True)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for attempt in pool.map(lambda a: run_attempt(a, base, work), attempts):
                show = args.show == "all" or (
                    attempt.result != "held" and (args.show == "failed" or attempt.result == "bug")
                )
                if show:
                    print(f"{attempt.result:5s} [{attempt.family}] {attempt.name}: {attempt.detail}", flush=True)
    tally: dict[str, Counter] = defaultdict(Counter)
    for attempt in attempts:
        tally[attempt.family][attempt.result] += 1
    print()
    print(f"{'family':<14}{'attempts':>9}{'held':>7}{'weak':>7}{'bug':>6}{'lost':>6}")
    total = Counter()
    for family, counts in tally.items():
        n = sum(counts.values())
        total.update(counts)
        print(f"{family:<14}{n:>9}{counts['held']:>7}{counts['weak']:>7}{counts['bug']:>6}{counts['lost']:>6}")
    print(f"{'all':<14}{sum(total.values()):>9}{total['held']:>7}{total['weak']:>7}{total['bug']:>6}{total['lost']:>6}")
    if args.json:
        rows = [
            {"family": a.family, "name": a.name, "result": a.result, "detail": a.detail, "seconds": round(a.seconds, 1)}
            for a in attempts
        ]
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
