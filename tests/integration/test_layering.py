"""The layering of meshdrop/ (setup.cfg's [importlinter] contracts): run here as well as
by ./scripts/test, so that an import pointing the wrong way fails the suite however it is
run. A second test breaks each contract on purpose in a copy of the package, so a
contract that no longer checks anything (a renamed package, a loosened option) is seen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = (  # their names in setup.cfg
    "Dependencies point down: cli > reader > transports > store > core",
    "The LAN and courier transports never import each other",
    "No import circles between sibling modules or packages",
    "core does no I/O: no files, sockets, processes, threads or event loop",
)


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package and setup.cfg found in ``root``."""
    command = Path(sys.executable).with_name("lint-imports")
    assert command.exists(), "import-linter is not installed (run ./scripts/test)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(command), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_meshdrop_keeps_its_import_contracts() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in result.stdout, result.stdout


def test_each_contract_fails_on_an_import_that_breaks_it(tmp_path: Path) -> None:
    shutil.copy(REPO / "setup.cfg", tmp_path)
    shutil.copytree(
        REPO / "meshdrop", tmp_path / "meshdrop", ignore=shutil.ignore_patterns("__pycache__")
    )
    # One wrong import per contract, each breaking only its own contract; added to the
    # packages' __init__ files, which stay where they are while modules move.
    wrong = {
        "meshdrop/store/__init__.py": "import meshdrop.reader",
        "meshdrop/transports/lan/__init__.py": "import meshdrop.transports.courier",
        "meshdrop/core/__init__.py": "import socket",
        "meshdrop/core/keys.py": "import meshdrop.core.records",  # records imports keys
    }
    for path, line in wrong.items():
        with (tmp_path / path).open("a", encoding="utf-8") as out:
            out.write(f"\n{line}  # noqa\n")

    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    for name in CONTRACTS:
        assert f"{name} BROKEN" in result.stdout, result.stdout
    for importer, imported in [
        ("meshdrop.store", "meshdrop.reader"),
        ("meshdrop.transports.lan", "meshdrop.transports.courier"),
        ("meshdrop.core", "socket"),
    ]:
        assert f"{importer} -> {imported}" in result.stdout, result.stdout
