"""What every benchmark script shares about the disk it measures on.

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

import os
import secrets
from pathlib import Path


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
