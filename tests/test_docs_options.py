"""The docs and `--help` say the same about every option (issue 27): each option the docs name
exists in a command, each default the docs quote ("`--max-loss F` (default 1e6)") is the click
definition's, and every option of `train` is described somewhere in the docs. Options are found by
introspecting the click commands, so a new option or a changed default fails here until the docs
follow."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from registry.cli import build_cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# "`--name VALUE` (default X" or "`--name` (default X": the default the docs quote for that option
QUOTED_DEFAULT = re.compile(r"`--([a-z0-9][a-z0-9-]*)(?: [^`]*)?` \(default (\d{1,3}(?:,\d{3})+|[^,;:)]+)")
# options that belong to other programs the docs show (pip, pytest, torchrun, mkdocs, the
# benchmarks' scripts), and ganrun's own group options
NOT_OURS = {
    "max-restarts",
    "compare",
    "help",
    "plugin",
    "nproc-per-node",
    "nnodes",
    "node-rank",
    "rdzv-endpoint",
    "rdzv-backend",
    "standalone",
    "basetemp",
    "strict",
}
PLUGINS = ("infogan", "infogan_cr")  # every plugin the distribution ships


def _commands() -> dict[str, click.Command]:
    cli = build_cli()
    ctx = click.Context(cli, info_name="ganrun")
    ctx.params["plugin"] = PLUGINS
    return {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}


COMMANDS = _commands()


def _options(command: click.Command, *, secondary: bool = True) -> dict[str, click.Option]:
    """``{name without --: option}``, with the ``--no-x`` halves of flags unless ``secondary=False``."""
    return {
        opt[2:]: p
        for p in command.params
        if isinstance(p, click.Option)
        for opt in (*p.opts, *(p.secondary_opts if secondary else ()))
        if opt.startswith("--")
    }


OPTIONS: dict[str, list[click.Option]] = {}
for _command in COMMANDS.values():
    for _name, _param in _options(_command).items():
        OPTIONS.setdefault(_name, []).append(_param)


def _same(quoted: str, default: object) -> bool:
    """A quoted default against click's: numbers by value (1e6 == 1000000.0), flags as on/off,
    words as words."""
    quoted = quoted.strip().strip("`").replace(",", "")
    if isinstance(default, bool):
        return quoted in (("on", "true", "yes") if default else ("off", "false", "no", "0"))
    try:
        return float(quoted) == float(default)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return quoted == str(default)


def _quotes() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in QUOTED_DEFAULT.finditer(text):
            found.append((page.relative_to(ROOT).as_posix(), match.group(1), match.group(2)))
    return found


QUOTES = _quotes()


def test_the_docs_quote_defaults_of_options_at_all() -> None:
    names = {name for _, name, _ in QUOTES}
    assert {"max-loss", "q-hidden", "lr-decay"} <= names, names


@pytest.mark.parametrize(("page", "name", "quoted"), QUOTES, ids=[f"{p}:--{n}" for p, n, _ in QUOTES])
def test_a_default_the_docs_quote_is_the_commands(page: str, name: str, quoted: str) -> None:
    assert name in OPTIONS, f"{page} quotes a default for --{name}, which no command has"
    # train's options default to None at click's level (a --config file may set them) and show
    # the default in force through show_default, as --help prints it
    defaults = [param.show_default if isinstance(param.show_default, str) else param.default for param in OPTIONS[name]]
    assert any(_same(quoted, default) for default in defaults), (
        f"{page} says --{name} defaults to {quoted!r}; the commands say {defaults!r}"
    )


def test_every_option_the_docs_name_exists() -> None:
    named: dict[str, set[str]] = {}
    for page in PAGES:
        for name in re.findall(r"`(?:ganrun[^`]*?\s)?--([a-z0-9][a-z0-9-]*)", page.read_text()):
            named.setdefault(name, set()).add(page.relative_to(ROOT).as_posix())
    unknown = {name: sorted(pages) for name, pages in named.items() if name not in OPTIONS and name not in NOT_OURS}
    assert not unknown, f"options the docs name that no ganrun command has: {unknown}"


def test_every_train_option_is_described_in_the_docs() -> None:
    text = "\n".join(page.read_text() for page in PAGES)
    missing = sorted(
        name
        for name, param in _options(COMMANDS["train"], secondary=False).items()
        if name != "help" and not param.hidden and f"--{name}" not in text
    )
    assert not missing, f"train options the docs never mention: {missing}"
