"""Global options in either place: `meshdrop --home X ls` and `meshdrop ls --home X`,
`meshdrop --json ls` and `meshdrop ls --json`.

click parses a group's options only before the subcommand's name, and a command's only
after it. So before parsing, the command line is rearranged: `--home` (the root group's
option) moves to the front from wherever it is, and `--json`, `--quiet`/`-q` given before
the subcommand move to just after the name of the command that takes them. A command
without such an option still says so ("No such option: --json"). Nothing after `--` moves.
"""

from __future__ import annotations

import click

HOME_OPTION = "--home"
COMMAND_FLAGS = frozenset({"--json", "--quiet", "-q"})


def rearrange(root: click.Group, args: list[str]) -> list[str]:
    """``args`` with the global options where click expects them (see the module's doc)."""
    end = args.index("--") if "--" in args else len(args)
    head, tail = args[:end], args[end:]
    home, rest = _take_home(head)
    return home + _move_flags_to_command(root, rest) + tail


def _take_home(args: list[str]) -> tuple[list[str], list[str]]:
    home: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token == HOME_OPTION and index + 1 < len(args):
            home += args[index : index + 2]
            index += 2
            continue
        if token.startswith(HOME_OPTION + "="):
            home.append(token)
        else:
            rest.append(token)
        index += 1
    return home, rest


def _move_flags_to_command(root: click.Group, args: list[str]) -> list[str]:
    """Flags met while walking down the groups, moved after the first command that is not a
    group; left where they were when no such command is named."""
    group: click.Group = root
    kept: list[str] = []
    flags: list[str] = []
    for index, token in enumerate(args):
        if token in COMMAND_FLAGS:
            flags.append(token)
            continue
        kept.append(token)
        if token.startswith("-"):
            continue
        command = group.commands.get(token)
        if isinstance(command, click.Group):
            group = command
            continue
        if command is not None:
            return kept + flags + args[index + 1 :]
        break
    return args
