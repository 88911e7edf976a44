"""Safetensors-only checkpoints for training runs: the validated file, read and written.

(About 450 lines, on purpose: the header parser, its bounds and the atomic write are read
together when auditing what a hostile file can do; the tensor codec is in ``codec.py``.)

Checkpoints are the one file format a run reads back from disk that someone
else may have touched (copied between machines, downloaded, half-written by a
crash).  Pickle-based formats (``torch.save`` / ``torch.load``) execute code
while loading, so this module only ever reads and writes safetensors, and it
validates every header itself, with bounded memory, before the safetensors
library sees the file.  Every problem surfaces as a one-line
:class:`CheckpointError` that names the file and the cause.

Writes are atomic (temporary file, fsync, rename, directory fsync), so a crash
mid-save leaves the previous checkpoint intact and never a file that
:func:`find_latest` would pick.

What the tensors mean (a module's parameters, an optimizer's state) is
``registry.checkpoint.codec``.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import stat
import struct
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO, Union

import safetensors.torch
from safetensors.torch import load as _load_safetensors_bytes  # tensors only, no pickle
import torch

from registry.checkpoint.atomic import atomic_write
from registry.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "CheckpointError",
    "checkpoint_name",
    "step_of",
    "save_checkpoint",
    "read_checkpoint",
    "read_metadata",
    "find_latest",
    "latest_checkpoint",
    "require_keys",
    "json_entry",
    "nesting_problem",
    "MAX_JSON_DEPTH",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Bumped whenever the layout of what a run stores changes incompatibly.
FORMAT_VERSION = "1"

#: A header larger than this is refused before any of it is read, so a
#: hostile length prefix cannot make us allocate unbounded memory.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Bytes per element for every dtype we accept; anything else is refused both
# when saving (so a run cannot write what it could not read back) and reading.
_ITEMSIZE: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
_TORCH_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}

_NAME_RE = re.compile(r"ckpt-(\d+)\.safetensors")
_MAX_LISTED = 5  # how many offending keys an error message names


def checkpoint_error(path: PathLike, cause: str) -> CheckpointError:
    """A ``CheckpointError`` reading ``<path>: <cause>``, guaranteed to be one line (line breaks
    in ``cause`` are escaped)."""
    message = f"{os.fspath(path)}: {cause}"
    return CheckpointError(message.replace("\r", "\\r").replace("\n", "\\n"))


def listing(keys: list[str]) -> str:
    """The first few of ``keys`` and how many more, for an error message (long lists would drown
    the actual cause)."""
    shown = ", ".join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return f"{shown} (and {more} more)" if more > 0 else shown


def step_of(path: PathLike) -> int | None:
    """The step in a checkpoint file name written by :func:`checkpoint_name`, else None."""
    match = _NAME_RE.fullmatch(pathlib.Path(path).name)
    return int(match.group(1)) if match else None


def checkpoint_name(step: int) -> str:
    """File name for ``step``; zero padded so lexical order is step order."""
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    return f"ckpt-{step:09d}.safetensors"


# --------------------------------------------------------------------------
# Writing


def _prepare_tensor(name: str, value: Any) -> torch.Tensor:
    """Detached, contiguous CPU copy that owns its storage.

    The copy matters: safetensors refuses tensors that share storage (tied
    weights, views), and it needs contiguous memory.
    """
    if not isinstance(name, str):
        raise TypeError(f"tensor name must be str, got {type(name).__name__}")
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"value for {name!r} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in _TORCH_DTYPES:
        raise TypeError(f"tensor {name!r} has unsupported dtype {value.dtype}")
    return value.detach().to("cpu").clone(memory_format=torch.contiguous_format)


def save_checkpoint(path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Atomically write ``tensors`` and ``metadata`` to ``path``.

    Either the complete new file appears under ``path`` or, if anything fails,
    whatever was there before is left untouched and no temporary file stays.
    """
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str; entry {key!r} has {type(value).__name__}")
    header_meta = {**metadata, "format_version": FORMAT_VERSION}
    prepared = {name: _prepare_tensor(name, value) for name, value in tensors.items()}

    # durable: the bytes reach the disk before the rename makes them the checkpoint
    atomic_write(path, safetensors.torch.save(prepared, metadata=header_meta), durable=True)


# --------------------------------------------------------------------------
# Header validation


def _looks_like_pickle(prefix: bytes) -> bool:
    """Whether the first bytes are a pickle stream or torch.save's zip.

    A genuine safetensors header length can share those first bytes, but its
    header then starts with '{' at offset 8, which neither format has there.
    """
    pickle_magic = len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5
    zip_magic = prefix[:4] == b"PK\x03\x04"
    if not (pickle_magic or zip_magic):
        return False
    return len(prefix) < 9 or prefix[8:9] != b"{"


def is_int(value: Any) -> bool:
    """Whether ``value`` is an int and not a bool (a size or index in a header or state layout)."""
    # bool is an int subclass in Python but not a valid size in a header.
    return isinstance(value, int) and not isinstance(value, bool)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: a repeated key could mean different things to different parsers."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate entry {key!r}")
        result[key] = value
    return result


def _parse_header(path: PathLike, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise checkpoint_error(path, "header is not valid JSON (not UTF-8)") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        cause = str(exc) if "duplicate" in str(exc) else "not parsable"
        raise checkpoint_error(path, f"header is not valid JSON ({cause})") from None
    if not isinstance(header, dict):
        raise checkpoint_error(path, "header is not valid JSON (not an object)")
    return header


def _check_metadata(path: PathLike, header: dict[str, Any]) -> dict[str, str]:
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict):
        raise checkpoint_error(path, "metadata is not a JSON object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise checkpoint_error(path, f"metadata value for {key!r} is not a string")
    version = metadata.get("format_version")
    if version is None:
        raise checkpoint_error(path, "not a ganrun checkpoint (no format_version)")
    if version != FORMAT_VERSION:
        raise checkpoint_error(
            path,
            f"written in checkpoint format version {version!r} by another version of ganrun; this build reads "
            f"format {FORMAT_VERSION!r} only: use the ganrun version that wrote it",
        )
    return metadata


def _check_entries(path: PathLike, header: dict[str, Any]) -> int:
    """Validate every tensor entry and return the length the data region must have."""
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise checkpoint_error(path, f"tensor {name!r} entry must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
            raise checkpoint_error(path, f"tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            raise checkpoint_error(path, f"tensor {name!r} shape is not a list of non-negative integers")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(is_int(o) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise checkpoint_error(path, f"tensor {name!r} data_offsets must be [begin, end] with 0 <= begin <= end")
        begin, end = offsets
        # Python ints do not overflow, so a hostile shape cannot wrap around.
        expected = math.prod(shape) * _ITEMSIZE[dtype]
        if end - begin != expected:
            raise checkpoint_error(
                path,
                f"tensor {name!r} spans {end - begin} bytes but dtype {dtype} and shape {shape} need {expected}",
            )
        spans.append((begin, end, name))

    # Tensors must tile the data region exactly: overlaps would alias data,
    # gaps would hide bytes nobody accounts for.
    position = 0
    for begin, end, name in sorted(spans):
        if begin < position:
            raise checkpoint_error(
                path, f"tensor {name!r} overlaps the data of another tensor (offsets {begin}..{end})"
            )
        if begin > position:
            raise checkpoint_error(path, f"gap of {begin - position} bytes before tensor {name!r}")
        position = end
    return position


def _validate(path: PathLike, handle: BinaryIO) -> tuple[dict[str, Any], dict[str, str]]:
    """Check an open file's structure reading only its header.

    Returns the header and its metadata.  Nothing here allocates more than the
    header, which is itself capped at MAX_HEADER_BYTES.
    """
    size = os.fstat(handle.fileno()).st_size
    prefix = handle.read(9)
    if _looks_like_pickle(prefix):
        raise checkpoint_error(
            path,
            "looks like a pickle/torch.save file; refused because unpickling can run code "
            "(convert it to safetensors only if you trust where it came from)",
        )
    if size < 8:
        raise checkpoint_error(path, f"truncated ({size} bytes, a checkpoint has at least 8)")
    (header_len,) = struct.unpack("<Q", prefix[:8])
    if header_len > MAX_HEADER_BYTES:
        raise checkpoint_error(path, f"header length {header_len} exceeds the 100 MB limit")
    if 8 + header_len > size:
        raise checkpoint_error(
            path, f"truncated (header claims {header_len} bytes, file has {size - 8} after the length)"
        )
    handle.seek(8)
    raw = handle.read(header_len)
    if len(raw) != header_len:
        raise checkpoint_error(path, "truncated (file shrank while being read)")

    header = _parse_header(path, raw)
    metadata = _check_metadata(path, header)
    data_len = _check_entries(path, header)
    available = size - 8 - header_len
    if available > data_len:
        raise checkpoint_error(path, f"{available - data_len} trailing bytes after the tensor data")
    if available < data_len:
        raise checkpoint_error(path, f"truncated (tensor data needs {data_len} bytes, file has {available})")
    return header, metadata


def _open(path: PathLike) -> BinaryIO:
    """Open a regular file for reading; a FIFO, device or socket is refused without waiting
    (O_NONBLOCK: opening a FIFO with no writer would otherwise block forever)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise checkpoint_error(path, "file not found") from None
    except IsADirectoryError:
        raise checkpoint_error(path, "is a directory, not a checkpoint file") from None
    except OSError as exc:
        raise checkpoint_error(path, f"cannot open ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise checkpoint_error(path, "is a directory, not a checkpoint file")
        if not stat.S_ISREG(mode):
            raise checkpoint_error(path, "is not a regular file (a FIFO, device or socket), not a checkpoint file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


#: How deeply a JSON metadata entry may nest. What this build writes nests at most 6 levels
#: (optimizer state); the bound stops hostile nesting before the parser recurses.
MAX_JSON_DEPTH = 32


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text, found without parsing (so without
    recursion); brackets inside strings do not count."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def nesting_problem(text: str) -> str:
    """Why JSON ``text`` is refused for its depth ("" when it is not): the one wording every
    reader of a run's JSON (checkpoint metadata, config.json, metrics.jsonl, sweep.json) uses,
    since such text may well be valid JSON and "not valid JSON" would blame the wrong thing."""
    depth = json_depth(text)
    if depth <= MAX_JSON_DEPTH:
        return ""
    return (
        f"nested {depth} levels deep, deeper than the {MAX_JSON_DEPTH} levels ganrun reads (what it writes "
        f"nests at most 6), so ganrun did not write it"
    )


# The top-level JSON type of each metadata entry this build writes.
JSON_ENTRY_TYPES: dict[str, type] = {"config": dict, "run": dict}


def json_entry(path: PathLike, metadata: Mapping[str, str], key: str, *, required: bool = True) -> Any:
    """Parse the JSON metadata entry ``key``, refusing a missing entry (when ``required``),
    non-JSON text, NaN/Infinity, nesting deeper than :data:`MAX_JSON_DEPTH` and a top-level
    type other than the one this build writes (:data:`JSON_ENTRY_TYPES`) with one line that
    names the file and the entry. A missing optional entry gives None."""
    text = metadata.get(key)
    if text is None:
        if required:
            raise checkpoint_error(path, f"metadata entry {key!r} is missing")
        return None
    if not isinstance(text, str):
        raise checkpoint_error(path, f"metadata entry {key!r} is not a string")
    too_deep = nesting_problem(text)
    if too_deep:
        raise checkpoint_error(path, f"metadata entry {key!r} is {too_deep}")

    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not a value this build writes")

    try:
        value = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=None if key.startswith("optim.") else refuse_constant
        )
    except (ValueError, RecursionError) as exc:
        raise checkpoint_error(path, f"metadata entry {key!r} is not valid JSON ({exc})") from None
    kind = JSON_ENTRY_TYPES.get(key)
    if kind is not None and not isinstance(value, kind):
        raise checkpoint_error(
            path, f"metadata entry {key!r} is a JSON {json_type(value)}; this build writes a JSON object"
        )
    return value


def json_type(value: Any) -> str:
    """JSON's name for the type of a parsed value."""
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_checkpoint(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a checkpoint's tensors (on CPU) and metadata, refusing anything suspect.

    The whole structure is validated before the safetensors library is
    involved, so a hostile file fails here with a specific cause.
    """
    with _open(path) as handle:
        _, metadata = _validate(path, handle)
        # Same open file as validated, so a concurrent replace cannot swap in
        # different content; the size is the one we just checked.
        size = os.fstat(handle.fileno()).st_size
        handle.seek(0)
        data = handle.read(size + 1)
    if len(data) != size:
        raise checkpoint_error(path, "file changed while being read; retry")
    try:
        tensors = _load_safetensors_bytes(data)
    except Exception as exc:  # the library's own error types vary by version
        raise checkpoint_error(path, f"safetensors could not load the file ({exc})") from None
    return tensors, dict(metadata)


def read_metadata(path: PathLike) -> dict[str, str]:
    """A checkpoint's string metadata, after validating its whole structure, without reading
    any tensor data (cheap enough to decide whether a resume is compatible)."""
    with _open(path) as handle:
        _, metadata = _validate(path, handle)
    return dict(metadata)


def _header_problem(path: pathlib.Path) -> str:
    """Why ``path``'s structure does not validate ("" when it does), without its file name."""
    try:
        with _open(path) as handle:
            _validate(path, handle)
    except CheckpointError as exc:
        return str(exc).removeprefix(f"{path}: ")
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return ""


def find_latest(run_dir: PathLike) -> pathlib.Path | None:
    """Newest usable checkpoint in ``run_dir``, or None.

    Newest means highest step in the file name; a file whose header does not
    validate (partial copy, corruption, another format version) is skipped in favour of an
    older one (:func:`latest_checkpoint` also says which were skipped and why).
    """
    return latest_checkpoint(run_dir)[0]


def latest_checkpoint(run_dir: PathLike) -> tuple[pathlib.Path | None, list[tuple[pathlib.Path, str]]]:
    """``(newest usable checkpoint or None, [(newer file skipped, why)...])`` in ``run_dir``:
    the skipped files, newest first, with the one-line reason :func:`read_checkpoint` would
    give (truncated, tampered with, another format version), so a caller can say which
    checkpoint it used instead and why, or why none can be used."""
    folder = pathlib.Path(run_dir)
    if not folder.is_dir():
        return None, []
    candidates: list[tuple[int, str, pathlib.Path]] = []
    for entry in folder.glob("ckpt-*.safetensors"):
        match = _NAME_RE.fullmatch(entry.name)
        if match and entry.is_file():
            candidates.append((int(match.group(1)), entry.name, entry))
    skipped: list[tuple[pathlib.Path, str]] = []
    for _, _, entry in sorted(candidates, reverse=True):
        problem = _header_problem(entry)
        if not problem:
            return entry, skipped
        skipped.append((entry, problem))
    return None, skipped


def require_keys(tensors: Mapping[str, torch.Tensor], keys: Iterable[str], *, path: PathLike, what: str) -> None:
    """Fail with a clear message when an expected tensor is absent."""
    for key in keys:
        if key not in tensors:
            raise checkpoint_error(path, f"missing {what} entry {key!r}")
