"""The options several commands share, and their checks, in one place every command uses.

``ganrun``'s commands and the plugins' commands declare these options through the helpers
here, so a bad value is refused the same way everywhere (one ``Error:`` line naming the
option, the value and what is accepted) before anything is loaded or written, and ``--help``
shows every default one way: ``[default: VALUE]``.

- :func:`device_option`: ``--device``, default ``auto`` (CUDA when present, else CPU),
  checked by :class:`Device` (the form, and that the device exists on this machine).
- :func:`run_argument`: a run folder or checkpoint file that must exist.
- :class:`OutputPath` (``folder`` or ``file``): a path to write, refused when it is the other
  kind of thing, lies under a file, or its nearest existing folder is not writable.
- :data:`POSITIVE`: a count or size of at least 1.
- :class:`Option` / :func:`option`: click's option with defaults shown one way; a default
  computed at run time is described with ``show_default="..."``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import click

from registry.train.device import DEVICE_FORMS, device_problem

__all__ = [
    "DEVICE_FORMS",
    "POSITIVE",
    "Device",
    "Option",
    "OutputPath",
    "adopt",
    "device_option",
    "option",
    "output_problem",
    "run_argument",
]

#: A count or size: at least 1.
POSITIVE = click.IntRange(min=1)


class Option(click.Option):
    """click's ``Option`` with every default shown as ``[default: VALUE]``: a ``show_default``
    text (a default computed at run time, e.g. ``"RUN/generated"``) without click's
    parentheses, and an on/off flag's default as ``on`` or ``off``."""

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if isinstance(self.show_default, str):
            extra["default"] = self.show_default
        elif self.is_bool_flag and self.secondary_opts and "default" in extra:
            extra["default"] = "on" if self.get_default(ctx, call=False) else "off"
        return extra


def option(*decls: str, **attrs: Any) -> Callable[[Any], Any]:
    """``click.option`` with :class:`Option`."""
    attrs.setdefault("cls", Option)
    return click.option(*decls, **attrs)


def adopt(param: click.Parameter) -> click.Parameter:
    """A plugin's plain ``click.Option`` shown the :class:`Option` way (it holds no state of
    its own, so only the class changes); anything else is returned as it is."""
    if type(param) is click.Option:
        param.__class__ = Option
    return param


class Device(click.ParamType):
    """A device name that can be used on this machine: auto, cpu, cuda or cuda:N."""

    name = "DEVICE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = device_problem(value)
        if problem:
            self.fail(problem, param, ctx)
        return str(value).strip()


DEVICE = Device()


def device_option(what: str = "Device to run on") -> Callable[[Any], Any]:
    """``--device``, default ``auto``, checked before the command runs. ``what`` is the
    first words of its help."""
    return option("--device", type=DEVICE, default="auto", show_default=True, help=f"{what}: {DEVICE_FORMS}.")


def run_argument(name: str = "run") -> Callable[[Any], Any]:
    """The ``RUN`` argument: a run folder (or one of its checkpoint files) that exists."""
    return click.argument(name, type=click.Path(exists=True, path_type=Path))


def output_problem(path: Path, kind: str) -> str:
    """Why ``path`` cannot be written as a ``kind`` ("folder" or "file"), or "": it exists as
    the other kind, a part of it is a file, or its nearest existing folder is not writable."""
    other = "file" if kind == "folder" else "folder"
    if path.exists():
        if path.is_dir() != (kind == "folder"):
            return f"{path} is a {other}; name a {kind}"
        folder = path if kind == "folder" else path.parent  # a file is replaced within its folder
    else:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if folder.exists() and not folder.is_dir():
            return f"{path} cannot be created: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK):
        return f"{folder} is not writable; choose another place"
    return ""


class OutputPath(click.ParamType):
    """A path a command writes: a ``folder`` or a ``file``, checked by :func:`output_problem`
    (it need not exist; its folders are made when written). ``text=True`` gives the value as
    typed (a string, for a configuration field), else a ``Path``."""

    def __init__(self, kind: str = "folder", *, text: bool = False) -> None:
        if kind not in ("folder", "file"):
            raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
        self.kind, self.text = kind, text
        self.name = "DIR" if kind == "folder" else "FILE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        path = Path(os.fsdecode(value)) if not isinstance(value, Path) else value
        if str(path).strip() == "":
            self.fail(f"an empty path is not a {self.kind}", param, ctx)
        problem = output_problem(path, self.kind)
        if problem:
            self.fail(problem, param, ctx)
        return str(value) if self.text else path
