"""Every command's --help: each option explained, and the exit codes listed (one definition)."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from obs_sync.cli import main
from obs_sync.errors import EXIT_FAILED, EXIT_MEANINGS, EXIT_OK, EXIT_USAGE


def commands(group: click.Group = main, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


ALL = list(commands())


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path in ALL}
    assert {"", "sync", "run", "check", "status", "fetch", "db", "db upgrade", "demo"} <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "obs-sync")
def test_help_lists_the_exit_codes(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Exit codes:" in text
    after = text.split("Exit codes:", 1)[1]
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE):
        # Each code on its own line, with its meaning from obs_sync.errors.
        first_words = " ".join(EXIT_MEANINGS[code].split()[:2])
        assert f"  {code}  {first_words}" in after, after


def _options(path: tuple[str, ...]) -> list[click.Parameter]:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "obs-sync")
def test_every_option_has_help_text(path: tuple[str, ...]) -> None:
    undocumented = [
        option.opts[0]
        for option in _options(path)
        if not option.help and option.name not in ("help", "version")
    ]
    assert undocumented == []


@pytest.mark.parametrize("path", [("status",), ("fetch",)], ids=" ".join)
def test_format_is_explained_in_help(path: tuple[str, ...]) -> None:
    text = CliRunner().invoke(main, [*path, "--help"], terminal_width=100).output
    line = text.split("--format", 1)[1].split("\n  -", 1)[0]
    assert "json" in line and "table" in line and "Output format" in line
