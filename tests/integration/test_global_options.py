"""`--home`, `--json` and `--quiet` before or after the subcommand (README: global options)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Publisher, run_meshdrop

MakeBundle = Callable[..., Path]


def test_home_after_the_subcommand_is_the_same_store(node: Path, make_bundle: MakeBundle) -> None:
    bundle = make_bundle("news")
    imported = run_meshdrop("import", bundle, "--home", node)
    assert imported.code == 0, imported
    after = run_meshdrop("ls", "--home", node)
    before = run_meshdrop("--home", node, "ls")
    assert after.code == before.code == 0, after
    assert after.out == before.out and after.out.startswith("news "), after.out


def test_json_before_the_subcommand_is_the_commands_json(node: Path, publisher: Publisher) -> None:
    result = run_meshdrop("--json", "trust", "ls", "--home", node)
    assert result.code == 0, result
    assert [json.loads(line)["name"] for line in result.out.splitlines()] == ["Test Publisher"]


def test_a_global_option_a_command_lacks_is_one_clear_line(node: Path) -> None:
    result = run_meshdrop("--quiet", "trust", "ls", "--home", node)
    assert result.code == 2
    assert result.err.count("\n") == 1 and "no such option '--quiet'" in result.err.lower()
