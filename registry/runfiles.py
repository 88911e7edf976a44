"""The small JSON files of a run folder (``config.json``, ``metrics.jsonl``, a plugin's
``eval.json``): read with every byte checked, written as strict JSON.

Every command that reads one of them goes through ``read_json`` or ``read_metrics``, so a
file that is truncated, not UTF-8, of the wrong shape, nested absurdly deep or a folder is
reported the same way everywhere: one line naming the file (and the line of a JSON Lines
file), never a traceback. ``metrics.jsonl`` is only informative, so its damaged lines are
skipped with one ``warning:`` line. Everything ganrun writes is strict JSON (RFC 8259):
``dumps`` refuses NaN and infinities, ``finite_json`` turns them into ``null`` and names them.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.checkpoint.file import json_type, nesting_problem

__all__ = ["RunFileError", "check_writable", "dumps", "finite_json", "read_json", "read_metrics", "warn"]


class NestingError(ValueError):
    """JSON text nested deeper than ganrun reads (:func:`registry.checkpoint.file.nesting_problem`)."""


class RunFileError(ValueError):
    """A run file that cannot be used; the message is one line: ``PATH: REASON; HINT``."""

    def __init__(self, path: str | os.PathLike[str], reason: str, hint: str = "") -> None:
        super().__init__(f"{path}: {reason}" + (f"; {hint}" if hint else ""))
        self.path, self.reason = Path(path), reason


def warn(text: str) -> None:
    """One ``warning:`` line on stderr."""
    print(f"warning: {text}", file=sys.stderr)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str, *, non_finite: str = "refuse") -> Any:
    """Strict JSON: NaN and infinities are refused (``non_finite="null"`` reads them as ``None``,
    for logs older builds wrote), as is nesting deeper than the checkpoint metadata's limit
    (which would otherwise exhaust the parser's recursion)."""
    too_deep = nesting_problem(text)
    if too_deep:
        raise NestingError(too_deep)
    return json.loads(text, parse_constant=_refuse_constant if non_finite == "refuse" else lambda name: None)


def _kind(value: Any) -> str:
    kind = json_type(value)
    phrases = {"object": "an object", "array": "an array", "boolean": "true or false", "null": "null"}
    return phrases.get(kind, f"a {kind}")


def read_json(path: str | os.PathLike[str], *, expect: type = dict, required: bool = True, hint: str = "") -> Any:
    """The JSON value in ``path``, which must be ``expect`` (an object by default).

    A missing file is ``None`` unless ``required``. Anything else that is wrong (a folder, an
    unreadable file, bytes that are not UTF-8, text that is not strict JSON, a value of another
    kind) raises ``RunFileError``: ``PATH: what is wrong; HINT`` on one line (``hint`` says what
    to do; by default to restore or delete the file)."""
    path = Path(path)
    hint = hint or "restore it from a backup or delete it"
    if not path.exists() and not path.is_symlink():
        if required:
            raise RunFileError(path, "missing", hint)
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        what = "is a folder, not a file" if path.is_dir() else f"cannot be read ({exc.strerror or exc})"
        raise RunFileError(path, what, hint) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunFileError(path, f"not UTF-8 text (byte {exc.start})", hint) from None
    try:
        value = loads(text)
    except NestingError as exc:  # may be valid JSON: say what is wrong with it
        raise RunFileError(path, str(exc), hint) from None
    except json.JSONDecodeError as exc:
        raise RunFileError(path, f"not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})", hint) from None
    except (ValueError, RecursionError) as exc:
        raise RunFileError(path, f"not valid JSON ({exc})", hint) from None
    if not isinstance(value, expect):
        raise RunFileError(path, f"holds {_kind(value)}, expected {_kind(expect())}", hint)
    return value


def read_metrics(run_dir: str | os.PathLike[str], *, warn: Callable[[str], None] | None = warn) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl``. The file is only informative, so damage is skipped
    with one warning naming the file and the first damaged line: a line that is not UTF-8, not
    strict JSON, nested absurdly deep, not an object or without an integer ``step``. A last line
    cut short by a crash is skipped silently; a file that cannot be read (a folder) gives no
    rows. ``warn=None`` skips silently."""
    path = Path(run_dir) / "metrics.jsonl"
    say = warn or (lambda text: None)
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as exc:
        what = "a folder, not a file" if path.is_dir() else exc.strerror or exc
        say(f"{path}: cannot be read ({what}); its metrics are skipped")
        return []
    rows, bad = [], []
    lines = data.splitlines()
    for number, raw in enumerate(lines, 1):
        try:
            row = loads(raw.decode("utf-8"), non_finite="null")
        except (ValueError, RecursionError):
            row = None
        step = row.get("step") if isinstance(row, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            rows.append(row)
        elif not (number == len(lines) and not data.endswith(b"\n")):
            bad.append(number)
    if bad:
        say(f"{path}: skipped {len(bad)} damaged line(s), the first is line {bad[0]}")
    return rows


def finite_json(value: Any, where: str = "") -> tuple[Any, list[str]]:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON ``null``), and the
    dotted names of the values replaced (``information.c1.L_I``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, [where or "value"]
    if isinstance(value, dict):
        out, bad = {}, []
        for key, item in value.items():
            out[key], found = finite_json(item, f"{where}.{key}" if where else str(key))
            bad += found
        return out, bad
    if isinstance(value, (list, tuple)):
        items = [finite_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return [item for item, _ in items], [name for _, found in items for name in found]
    return value, []


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value``: a NaN or an infinity raises ``ValueError`` (pass the value
    through ``finite_json`` first where ``null`` is the right reading)."""
    return json.dumps(value, allow_nan=False, **kwargs)


def check_writable(path: str | os.PathLike[str], *, hint: str = "") -> None:
    """Refuse a run file ganrun is about to (re)write when something other than a file holds its
    name (a folder): ``RunFileError`` naming it, before any work is done."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise RunFileError(path, f"is {what}, and ganrun writes a file there", hint or "move it away and try again")
