"""What every benchmark script shares: running the installed command, an area's command
line (``area_main``), and how finished runs are set aside on the disk it measures on.

Runs are not cleaned up by deleting their files: ext4 without a journal (the file system
of this project's VMs and CI) does not reuse an inode freed less than 60 s ago (300 s
while its inode table block is dirty), and every file created meanwhile walks past each
such inode. Measured here: creating 5,000 small files took 0.16 s in a quiet file system
and 1.2 s right after 10,000 were deleted. A benchmark that deleted one run's node home
(hundreds of chunk files) just before the next run would time that walk, not meshdrop,
and cp -r would suffer it too. So a finished run's files are emptied (their blocks freed,
their inodes kept) and set aside; the inodes go when the bench's folder is removed at the
very end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def meshdrop() -> str:
    """The installed meshdrop command (the virtualenv's, beside this Python)."""
    found = shutil.which("meshdrop") or str(Path(sys.executable).with_name("meshdrop"))
    if not Path(found).exists():
        raise RuntimeError("the meshdrop command is not installed (run ./scripts/test once)")
    return found


def md(*args: str | Path, prefix: Sequence[str] = ()) -> str:
    """Run ``meshdrop ARGS`` (after ``prefix``, e.g. ip netns exec); its output, or an
    error naming the command if it failed."""
    proc = subprocess.run(
        [*prefix, meshdrop(), *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"meshdrop {' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


def area_main(
    run: Callable[[Path, bool], list[dict[str, Any]]],
    description: str | None,
    quick_help: str,
    argv: Sequence[str] | None = None,
) -> int:
    """An area script's command line: --quick, --workdir; prints one JSON row a line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--workdir", type=Path, help="where to work (default: a temp folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as temp:
        rows = run(Path(temp), args.quick)
    for r in rows:
        print(json.dumps(r))
    return 0


def set_aside(path: Path) -> None:
    """Free the space of a finished run's file or folder without freeing its inodes."""
    if not path.exists():
        return
    if path.is_dir() and not path.is_symlink():
        for folder, _, names in os.walk(path):
            for name in names:
                _empty(Path(folder) / name)
    else:
        _empty(path)
    path.rename(path.with_name(f".{path.name}.done-{secrets.token_hex(4)}"))


def _empty(file: Path) -> None:
    if file.is_file() and not file.is_symlink():
        os.truncate(file, 0)
