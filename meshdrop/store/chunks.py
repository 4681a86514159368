"""Content-addressed chunk files: chunks/<first 2 hex>/<64 hex>.

A chunk file exists only once its bytes verified and were fsynced under a temp name and
renamed: its presence means it is complete. Being present does not make it visible;
only the index's committed bundles are.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from meshdrop.fs import TEMP_PREFIX, fsync_dir, temp_path_for

FOLDER_SYNCS_BEFORE_SYNCFS = 8

_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: Path) -> None:
    """Flush everything written to the file system holding ``path`` (Linux syncfs(2))."""
    call = getattr(_libc, "syncfs", None)
    if call is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if call(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file out now, so that the batch's sync later
    finds little left to do. Only a hint: skipped where unsupported."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _drop_cached(path: Path) -> None:
    """Let the kernel drop a file's pages from its cache (they must be clean: written out
    and synced), so that the next chunks written reuse that memory instead of touching
    fresh memory for each (which costs more than the copy on some virtual machines).
    Only a hint: skipped where unsupported."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


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
        temp = self.write_temp(digest, data, durable=True)
        target = self.path(digest)
        temp.replace(target)
        return target.parent

    def write_temp(self, digest: bytes, data: bytes, durable: bool = False) -> Path:
        """Write ``data`` under a temp name beside its final one; ``publish`` names it."""
        target = self.path(digest)
        if not target.parent.is_dir():
            target.parent.mkdir(exist_ok=True)
            if durable:
                fsync_dir(self.root)
        temp = temp_path_for(target)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
            else:
                _start_writeback(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return temp

    def publish(self, temps: Iterable[Path]) -> set[Path]:
        """Make a batch of temp chunk files durable with one file-system sync, then give
        them their names. Far cheaper than a sync per chunk for big bundles; the caller
        syncs the folders (``sync_folders``) before relying on the names."""
        temps = list(temps)
        syncfs(self.root)
        folders = set()
        for temp in temps:
            _drop_cached(temp)  # a batch is streamed through, not kept in memory
            temp.replace(temp.with_name(temp.name.rsplit("-", 1)[1]))
            folders.add(temp.parent)
        return folders

    def sync_folders(self, folders: Iterable[Path]) -> None:
        folders = set(folders)
        if len(folders) > FOLDER_SYNCS_BEFORE_SYNCFS:
            syncfs(self.root)  # one call instead of up to 256
            return
        for folder in folders:
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
