"""Where global options may stand: the command line rearranged for click (cli/globalopts)."""

from __future__ import annotations

import pytest

from meshdrop.cli.globalopts import rearrange
from meshdrop.cli.main import cli


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["ls", "--home", "h"], ["--home", "h", "ls"]),
        (["ls", "--home=h", "--json"], ["--home=h", "ls", "--json"]),
        (["--home", "h", "ls"], ["--home", "h", "ls"]),
        (["--json", "ls"], ["ls", "--json"]),
        (["--json", "--home", "h", "trust", "ls"], ["--home", "h", "trust", "ls", "--json"]),
        (
            ["--quiet", "import", "a.mdrop", "--home", "h"],
            ["--home", "h", "import", "--quiet", "a.mdrop"],
        ),
        (["-q", "trust", "--json", "ls"], ["trust", "ls", "-q", "--json"]),
        (["import", "--", "--home"], ["import", "--", "--home"]),  # a file named --home
        (["--json"], ["--json"]),  # no command: click says what is wrong
        (["--json", "nosuch", "x"], ["--json", "nosuch", "x"]),
        (
            ["publisher", "new", "k", "--name", "N", "--home", "h"],
            ["--home", "h", "publisher", "new", "k", "--name", "N"],
        ),
    ],
)
def test_global_options_are_moved_where_click_reads_them(
    given: list[str], expected: list[str]
) -> None:
    assert rearrange(cli, given) == expected
