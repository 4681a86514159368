"""Content-addressed chunk files: chunks/<first 2 hex>/<64 hex>.

A chunk file exists only once its bytes verified and were fsynced under a temp name and
renamed: its presence means it is complete. Being present does not make it visible;
only the index's committed bundles are.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from meshdrop.fs import TEMP_PREFIX, fsync_dir, temp_path_for


class ChunkStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create_root(self) -> None:
        self.root.mkdir(exist_ok=True)

    def path(self, digest: bytes) -> Path:
        hexdigest = digest.hex()
        return self.root / hexdigest[:2] / hexdigest

    def has(self, digest: bytes) -> bool:
        return self.path(digest).is_file()

    def write(self, digest: bytes, data: bytes) -> Path:
        """Durably store verified ``data``; the caller fsyncs the folder before relying on
        the rename (``sync_folders``), so one folder sync covers many chunks."""
        target = self.path(digest)
        if not target.parent.is_dir():
            target.parent.mkdir(exist_ok=True)
            fsync_dir(self.root)
        temp = temp_path_for(target)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        temp.replace(target)
        return target.parent

    def sync_folders(self, folders: Iterable[Path]) -> None:
        for folder in set(folders):
            fsync_dir(folder)

    def read(self, digest: bytes) -> bytes | None:
        """The chunk's bytes if present and intact, else None."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            return None
        return data if hashlib.sha256(data).digest() == digest else None

    def delete(self, digests: Iterable[bytes]) -> None:
        for digest in digests:
            self.path(digest).unlink(missing_ok=True)

    def all_digests(self) -> Iterable[bytes]:
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if len(entry.name) == 64 and not entry.name.startswith(TEMP_PREFIX):
                        yield bytes.fromhex(entry.name)

    def remove_temp_files(self) -> int:
        removed = 0
        for folder in self.root.iterdir():
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.name.startswith(TEMP_PREFIX):
                        Path(entry.path).unlink(missing_ok=True)
                        removed += 1
        return removed
