"""Fingerprint the checkpoints of three short runs, to show that a change moved code
without changing a number ("bit-identical before and after").

    python benchmarks/same_checkpoints.py --out after.json
    PYTHONPATH=/tmp/base python benchmarks/same_checkpoints.py --out before.json
    python benchmarks/same_checkpoints.py --compare before.json after.json

The runs go through the command line (``python -m registry`` and ``torchrun -m registry``),
never through internal imports, so the script fingerprints whatever ``registry`` and
``infogan_plugin`` are importable (it records where they were imported from):

- ``main``: ``ganrun --plugin infogan train`` (the paper's MNIST job), 6 steps, checkpoints
  at 3 and 6;
- ``shapes``: ``--dataset shapes --model conv64 --code uniform:5``, 4 steps;
- ``torchrun``: the main job on 2 CPU processes (gloo), 4 steps.

For every checkpoint the JSON holds the sha256 of each tensor's dtype, shape and bytes, and
its string metadata (the ``versions`` entry of ``run`` removed, since it names the installed
package); for every run also the metrics (``steps_per_sec`` removed: it is a timing) and
the sha256 of every PNG written. ``--compare A B`` prints each difference and exits 1 if
there is any.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = ["--device", "cpu", "--no-progress", "--keep-checkpoints", "0", "--log-every", "1"]
RUNS = {
    "main": [
        sys.executable,
        "-m",
        "registry",
        "--plugin",
        "infogan",
        "train",
        "--steps",
        "6",
        "--save-every",
        "3",
        "--batch-size",
        "16",
        *COMMON,
    ],
    "shapes": [
        sys.executable,
        "-m",
        "registry",
        "--plugin",
        "infogan",
        "train",
        "--dataset",
        "shapes",
        "--model",
        "conv64",
        "--code",
        "uniform:5",
        "--steps",
        "4",
        "--save-every",
        "2",
        "--batch-size",
        "16",
        *COMMON,
    ],
    "torchrun": [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "registry",
        "--plugin",
        "infogan",
        "train",
        "--steps",
        "4",
        "--save-every",
        "2",
        "--batch-size",
        "8",
        *COMMON,
    ],
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint_checkpoint(path: Path) -> dict:
    import torch
    from safetensors import safe_open  # the file format itself, not the project's reader

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        for name in sorted(f.keys()):
            t = f.get_tensor(name).contiguous()
            head = f"{t.dtype}:{list(t.shape)}:".encode()
            tensors[name] = _sha(head + t.view(-1).view(torch.uint8).numpy().tobytes())
    if "run" in metadata:
        run = json.loads(metadata["run"])
        run.pop("versions", None)
        metadata["run"] = run
    return {"tensors": tensors, "metadata": metadata}


def fingerprint_run(folder: Path) -> dict:
    out: dict = {"checkpoints": {}, "metrics": [], "pictures": {}}
    for ckpt in sorted((folder / "checkpoints").glob("ckpt-*.safetensors")):
        out["checkpoints"][ckpt.name] = fingerprint_checkpoint(ckpt)
    metrics = folder / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            row.pop("steps_per_sec", None)
            out["metrics"].append(row)
    for png in sorted(folder.rglob("*.png")):
        out["pictures"][png.relative_to(folder).as_posix()] = _sha(png.read_bytes())
    return out


def record(out: Path, only: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="same-ckpt-") as tmp:
        # from the folder the runs start in, so sys.path is theirs (not this checkout's)
        where = subprocess.run(
            [
                sys.executable,
                "-c",
                "import registry, infogan_plugin; print(registry.__file__); print(infogan_plugin.__file__)",
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        print(f"importing registry from {where[0]}\n          infogan_plugin from {where[1]}", file=sys.stderr)
        result: dict = {"imported_from": where, "runs": {}}
        for name, cmd in RUNS.items():
            if only and name not in only:
                continue
            print(f"[{name}] {' '.join(cmd[1:])}", file=sys.stderr)
            # relative --out, run from the same kind of folder: the recorded config is the same
            done = subprocess.run([*cmd, "--out", name], cwd=tmp, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"[{name}] failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            result["runs"][name] = fingerprint_run(Path(tmp) / name)
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    n = sum(len(r["checkpoints"]) for r in result["runs"].values())
    print(f"wrote {out}: {n} checkpoints in {len(result['runs'])} runs", file=sys.stderr)


def _diff(a, b, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{where}/{key}: only in {'B' if key not in a else 'A'}")
            else:
                _diff(a[key], b[key], f"{where}/{key}", out)
    elif a != b:
        out.append(f"{where}: {str(a)[:120]!s} != {str(b)[:120]!s}")


def compare(path_a: Path, path_b: Path) -> int:
    a, b = json.loads(path_a.read_text()), json.loads(path_b.read_text())
    diffs: list[str] = []
    _diff(a["runs"], b["runs"], "", diffs)
    tensors = sum(len(c["tensors"]) for r in a["runs"].values() for c in r["checkpoints"].values())
    ckpts = sum(len(r["checkpoints"]) for r in a["runs"].values())
    print(f"A: {path_a} (registry from {a['imported_from'][0]})")
    print(f"B: {path_b} (registry from {b['imported_from'][0]})")
    for line in diffs:
        print(line)
    if diffs:
        print(f"{len(diffs)} difference(s)")
        return 1
    print(f"identical: {len(a['runs'])} runs, {ckpts} checkpoints, {tensors} tensors, metadata, metrics and pictures")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the fingerprints of the three runs here")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(RUNS), help="run only these")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two JSON files")
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    if args.out is None:
        parser.error("give --out or --compare")
    record(args.out, args.only)


if __name__ == "__main__":
    main()
