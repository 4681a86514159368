"""Every command answers --help with a description and an example, and the README names
only commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from conftest import run_meshdrop
from meshdrop.cli.main import cli


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found += all_commands(command, path)
        else:
            found.append(path)
    return found


COMMANDS = all_commands(cli)


def test_the_foundation_commands_exist() -> None:
    names = {" ".join(c) for c in COMMANDS}
    expected = {
        "publisher new",
        "publisher show",
        "pack",
        "verify",
        "inspect",
        "trust add",
        "trust ls",
        "trust rm",
        "import",
        "ls",
        "get",
        "fsck",
    }
    assert expected <= names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = run_meshdrop(*command, "--help")
    assert result.code == 0, result.err
    assert "Example: meshdrop" in result.out
    assert "Usage: meshdrop " + " ".join(command) in result.out


def test_readme_mentions_only_real_commands() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    code = "\n".join(re.findall(r"```sh\n(.*?)```", readme, re.DOTALL))
    used = re.findall(r"^meshdrop (?:--home \S+ )?([a-z-]+)", code, re.MULTILINE)
    assert len(used) >= 8
    names = {c[0] for c in COMMANDS}
    for name in used:
        assert name in names, f"README uses 'meshdrop {name}', which does not exist"


def test_unknown_command_is_a_clean_usage_error() -> None:
    result = run_meshdrop("frobnicate")
    assert result.code == 2
    assert "No such command" in result.err and "Traceback" not in result.err
