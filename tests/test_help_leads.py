"""`ganrun --help` leads to the next step (issue 27): the commands installed plugins provide are
listed with the flag that enables them, and leave that list once the plugin is active."""

from __future__ import annotations

from click.testing import CliRunner

from registry.cli import build_cli

SECTION = "Commands of installed plugins (enable with --plugin NAME):"


def _help(*args: str) -> str:
    result = CliRunner().invoke(build_cli(), [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_help_names_the_infogan_commands_and_how_to_enable_them() -> None:
    text = _help()
    assert SECTION in text
    row = next(line for line in text[text.index(SECTION) :].splitlines() if "--plugin infogan " in line)
    for command in ("eval", "traverse", "generate", "encode", "explore", "select"):
        assert command in row, row


def test_active_plugins_commands_are_listed_as_commands_not_as_a_hint() -> None:
    text = _help("--plugin", "infogan")
    assert SECTION not in text
    commands = text[text.index("Commands:") :]
    assert "  eval " in commands and "  traverse " in commands
