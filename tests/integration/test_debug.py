"""MESHDROP_DEBUG=1 shows what a user's one-line error wraps (issue 13, item 6): the
cause is chained, and debug mode prints the chain; without it, one line and no traceback."""

from __future__ import annotations

from pathlib import Path

from conftest import run_meshdrop


def test_debug_mode_prints_the_cause_of_an_error_and_plain_mode_one_line(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nothing.pub"
    plain = run_meshdrop("--home", tmp_path / "node", "trust", "add", "--yes", missing)
    assert plain.code == 2
    assert plain.err.strip().count("\n") == 0 and "Traceback" not in plain.err
    assert "no such file" in plain.err
    debug = run_meshdrop(
        "--home", tmp_path / "node", "trust", "add", "--yes", missing, env={"MESHDROP_DEBUG": "1"}
    )
    assert debug.code == 2
    assert "FileNotFoundError" in debug.err
    assert "direct cause of the following exception" in debug.err
    assert debug.err.rstrip().endswith(plain.err.rstrip())
