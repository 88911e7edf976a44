"""The front page and the docs site stay navigable and their commands stay real.

- Every ``docs/*.md`` page is in ``mkdocs.yml``'s nav, and every nav entry exists.
- Every relative link in ``README.md`` and ``docs/*.md`` points to an existing file, and an
  anchor to a heading of the target page, under the slugs of both mkdocs and GitHub (the pages
  are read in both places). Links from ``docs/`` stay inside ``docs/``: the site serves nothing
  else, so other files of the repository are named as code (``benchmarks/README.md``).
- Every ``ganrun ...`` command line in a shell block of ``README.md`` and ``docs/*.md`` parses
  the way the CLI would parse it: its command exists with the plugins the line activates, every
  option is one that command accepts with a value of the right type where the type is checked
  without touching files, and the positional arguments fit. Nothing runs or trains.
  ``docs/plugins.md`` is left out: ``test_guide_blocks.py`` runs each of its blocks for real.
- ``docs/embedding.md`` runs top to bottom as a script in ``test_embedding_guide.py``.

``mkdocs build --strict`` in ``.ci/run`` checks the site's own links and anchors too; these tests
also cover README.md and run without mkdocs installed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from registry.cli import build_cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))
RUN_FOR_REAL = {DOCS / "plugins.md"}  # every block runs in test_guide_blocks.py

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
SHELL = {"bash", "sh", "shell", "console"}


def _prose(text: str) -> str:
    """The text a reader sees as prose: no fenced blocks, HTML comments or code spans."""
    text = COMMENT.sub("", FENCE.sub("", text))
    return CODE_SPAN.sub("", text)


def _nav() -> list[str]:
    """The pages named in mkdocs.yml's nav (``- Title: page.md`` entries), in order; read with a
    pattern so the test needs no YAML parser."""
    text = (ROOT / "mkdocs.yml").read_text()
    block = re.search(r"^nav:\n((?:[ \t]+.*\n|\n)+)", text, re.M)
    assert block, "mkdocs.yml has no nav"
    return re.findall(r"^\s+-\s+(?:[^:\n]+:\s*)?(\S+\.md)\s*$", block.group(1), re.M)


def _slug_mkdocs(heading: str) -> str:
    """Python-Markdown's toc slugify, which mkdocs uses."""
    value = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def _slug_github(heading: str) -> str:
    return re.sub(r" ", "-", re.sub(r"[^\w\- ]", "", heading.strip().lower()))


def _anchors(page: Path) -> tuple[set[str], set[str]]:
    """The heading anchors of a page under mkdocs' and GitHub's rules."""
    text = COMMENT.sub("", FENCE.sub("", page.read_text()))
    headings = [re.sub(r"[`*]", "", h) for h in HEADING.findall(text)]
    return {_slug_mkdocs(h) for h in headings}, {_slug_github(h) for h in headings}


def _links(page: Path) -> list[str]:
    return [target for target in LINK.findall(_prose(page.read_text())) if not re.match(r"[a-z]+:", target)]


# ------------------------------------------------------------------------------------ nav


def test_every_docs_page_is_in_the_nav() -> None:
    nav = _nav()
    assert len(nav) == len(set(nav)), f"mkdocs.yml names a page twice: {nav}"
    missing = [p.name for p in PAGES if p.name not in nav]
    assert not missing, f"docs pages that mkdocs.yml's nav leaves out: {missing}"
    absent = [name for name in nav if not (DOCS / name).is_file()]
    assert not absent, f"mkdocs.yml's nav names pages that do not exist: {absent}"
    assert nav[0] == "index.md"


# ------------------------------------------------------------------------------------ links


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    links = _links(page)
    problems = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            problems.append(f"{link}: no such file")
            continue
        if page.parent == DOCS and DOCS not in (target, *target.parents):
            problems.append(f"{link}: outside docs/, which the site does not serve; name the file as code")
        if anchor:
            if target.suffix != ".md":
                problems.append(f"{link}: an anchor into a file that is not a page")
                continue
            mkdocs, github = _anchors(target)
            if anchor not in mkdocs or anchor not in github:
                problems.append(f"{link}: {target.name} has no heading with that anchor (mkdocs and GitHub)")
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_link_checker_sees_links() -> None:
    """Guards the patterns above: the front page links to every docs page."""
    linked = {link.partition("#")[0] for link in _links(README)}
    assert {f"docs/{p.name}" for p in PAGES if p.name != "index.md"} <= linked


# ------------------------------------------------------------------------------------ commands


def _command_lines(page: Path) -> list[str]:
    """``ganrun`` argument lists of every shell block of a page, as strings for the test ids.

    Continuation lines are joined, ``#`` comments dropped, ``&&``/``;``/``|`` split a line into
    commands; ``VAR=value`` prefixes and ``time`` are skipped, ``torchrun ... -m registry ARGS``
    and ``torchrun --no-python ganrun ARGS`` count as ``ganrun ARGS``.
    """
    found = []
    for match in FENCE.finditer(COMMENT.sub("", page.read_text())):
        if match["lang"] not in SHELL:
            continue
        body = re.sub(r"\\\n\s*", " ", match["body"])
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for word in [*words, "&&"]:
                if word not in ("&&", "||", ";", "|"):
                    command.append(word)
                    continue
                while command and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]) or command[0] == "time"):
                    command.pop(0)
                args = _ganrun_args(command)
                if args is not None:
                    found.append(shlex.join(args))
                command = []
    return found


def _ganrun_args(command: list[str]) -> list[str] | None:
    if command[:1] == ["ganrun"]:
        return command[1:]
    if command[:1] == ["torchrun"]:
        for i in range(len(command) - 1):
            if command[i : i + 2] == ["-m", "registry"] or command[i : i + 2] == ["--no-python", "ganrun"]:
                return command[i + 2 :]
        raise AssertionError(f"a torchrun line that starts neither ganrun nor registry: {shlex.join(command)}")
    return None


# Types whose values can be checked without touching files or loading a run.
CHECKED_TYPES = (click.types.IntParamType, click.types.FloatParamType, click.types.BoolParamType, click.Choice)


def parse_ganrun(argv: list[str]) -> tuple[str, dict]:
    """Parse ``ganrun ARGV`` as the CLI does, without invoking anything: returns the command's
    name and its parsed options. Raises ``click.UsageError`` (or ``BadParameter``) for an
    unknown command or option, a missing value or argument, extra arguments, or a value of a
    checked type that does not convert."""
    cli = build_cli()
    ctx = click.Context(cli, info_name="ganrun")
    group_options, rest, _ = cli.make_parser(ctx).parse_args(list(argv))
    ctx.params["plugin"] = tuple(group_options.get("plugin") or ())
    name, args = (rest[0], rest[1:]) if rest else ("train", [])  # no command: train with its defaults
    command = cli.get_command(ctx, name)
    if command is None:
        raise click.UsageError(f"no command {name!r} with plugins {list(ctx.params['plugin'])}")
    sub = click.Context(command, info_name=name, parent=ctx)
    options, extra, _ = command.make_parser(sub).parse_args(list(args))
    if extra and not command.allow_extra_args:
        raise click.UsageError(f"unexpected extra arguments {extra}")
    for param in command.params:
        if param.required and param.value_is_missing(options.get(param.name)):
            raise click.UsageError(f"missing {param.human_readable_name}")
        if param.name in options and isinstance(param.type, CHECKED_TYPES) and not getattr(param, "is_flag", False):
            values = options[param.name]
            for value in values if isinstance(values, list) else [values]:
                param.type.convert(value, param, sub)
    return name, options


DOCUMENTED = [(page, line) for page in [README, *PAGES] if page not in RUN_FOR_REAL for line in _command_lines(page)]


@pytest.mark.parametrize(
    "page, line", DOCUMENTED, ids=[f"{p.relative_to(ROOT).as_posix()}: {line[:60]}" for p, line in DOCUMENTED]
)
def test_documented_ganrun_commands_parse(page: Path, line: str) -> None:
    try:
        parse_ganrun(shlex.split(line))
    except click.ClickException as exc:
        pytest.fail(f"{page.relative_to(ROOT)}: ganrun {line}\n  {exc.format_message()}")


def test_the_command_checker_finds_commands_and_catches_mistakes() -> None:
    """Guards the extraction and the parser: the front page's main job is found, and a wrong
    option, value, command or argument count is caught."""
    assert "--plugin infogan" in _command_lines(README)
    assert sum(len(_command_lines(p)) for p in PAGES if p not in RUN_FOR_REAL) >= 20
    assert parse_ganrun(["--plugin", "infogan"])[0] == "train"
    assert parse_ganrun(["--plugin", "infogan", "report", "RUN", "--baseline", "B"])[1]["baseline"] == "B"
    for wrong in (
        ["--plugin", "infogan", "train", "--no-such-option"],
        ["--plugin", "infogan", "train", "--steps", "many"],
        ["--plugin", "infogan", "report", "RUN", "--plots", "gif"],
        ["eval", "RUN"],  # eval comes with the infogan plugin
        ["--plugin", "infogan", "eval"],  # no run folder
        ["--plugin", "infogan", "eval", "RUN", "OTHER"],
        ["--plugin", "infogan", "train", "--out"],
    ):
        with pytest.raises(click.ClickException):
            parse_ganrun(wrong)
    with pytest.raises(AssertionError):
        _ganrun_args(["torchrun", "--nproc_per_node=2", "train.py"])
