"""Content-addressed chunk files: chunks/<first 2 hex>/<64 hex>.

A chunk file exists only once its bytes verified and were fsynced under a temp name and
renamed: its presence means it is complete. Being present does not make it visible;
only the index's committed bundles are.

In a sealed store (store/sealing.py ``ChunkSealer``) the 64 hex characters are the keyed
name of the chunk's hash, not the hash, and the file holds the chunk encrypted; reading
decrypts, then checks the hash as for a plain store. Names cannot be turned back into
hashes: ``all_names`` and ``name_of`` let fsck tell the unreferenced files.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from meshdrop.bulkio import drop_cached, read_file_into, start_writeback, write_all
from meshdrop.fs import TEMP_PREFIX, fsync_dir, temp_name_for
from meshdrop.store.sealing import ChunkSealer

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


class ChunkStore:
    def __init__(self, root: Path, sealer: ChunkSealer | None = None) -> None:
        self.root = root
        self.sealer = sealer
        # Chunk paths are built as strings: per chunk, pathlib costs more than the
        # system calls it wraps.
        self._root = os.fspath(root)

    @property
    def sealed(self) -> bool:
        return self.sealer is not None

    def name_of(self, digest: bytes) -> str:
        """The file name of the chunk whose hash is ``digest``."""
        return digest.hex() if self.sealer is None else self.sealer.name(digest)

    def create_root(self) -> None:
        """Make the chunk folders when the store is made: every store ends up with all
        256, and making them in the middle of a big import costs it about a fifth of its
        time (mkdir contends with the writes on the parent folder and the journal)."""
        if self.root.is_dir():
            return
        fresh = self.root.with_name(f"{TEMP_PREFIX}{self.root.name}")
        shutil.rmtree(fresh, ignore_errors=True)  # an earlier attempt that was cut short
        fresh.mkdir()
        for prefix in range(256):
            (fresh / f"{prefix:02x}").mkdir()
        fresh.rename(self.root)
        fsync_dir(self.root.parent)

    def path(self, digest: bytes) -> Path:
        return Path(self._path(digest))

    def _path(self, digest: bytes) -> str:
        name = self.name_of(digest)
        return f"{self._root}/{name[:2]}/{name}"

    def has(self, digest: bytes) -> bool:
        return os.path.isfile(self._path(digest))  # noqa: PTH113 (once per chunk: no Path)

    def write(self, digest: bytes, data: bytes | memoryview) -> Path:
        """Durably store verified ``data``; the caller fsyncs the folder before relying on
        the rename (``sync_folders``), so one folder sync covers many chunks."""
        temp = self.write_temp(digest, data, durable=True)
        target = self.path(digest)
        temp.replace(target)
        return target.parent

    def write_temp(self, digest: bytes, data: bytes | memoryview, durable: bool = False) -> Path:
        """Write ``data`` under a temp name beside its final one; ``publish`` names it.
        Not ``durable``: its writeback starts at once, so that the batch's sync finds
        little left to do."""
        name = self.name_of(digest)
        folder = f"{self._root}/{name[:2]}"
        temp = f"{folder}/{temp_name_for(name)}"
        stored = memoryview(data if self.sealer is None else self.sealer.seal(digest, data))
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:  # a store made before create_root made all 256 folders
            Path(folder).mkdir(exist_ok=True)
            if durable:
                fsync_dir(self.root)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_all(fd, stored)
            if durable:
                os.fsync(fd)
            else:
                start_writeback(fd)
        except BaseException:
            os.close(fd)
            Path(temp).unlink(missing_ok=True)
            raise
        os.close(fd)
        return Path(temp)

    def publish(self, temps: Iterable[Path], cached: bool = False) -> set[Path]:
        """Make a batch of temp chunk files durable with one file-system sync, then give
        them their names. Far cheaper than a sync per chunk for big bundles; the caller
        syncs the folders (``sync_folders``) before relying on the names. ``cached``:
        leave their pages in the cache (small bundles' chunks: not worth a drop each)."""
        temps = list(temps)
        syncfs(self.root)
        folders = set()
        for temp in temps:
            path = os.fspath(temp)
            if not cached:
                drop_cached(path)  # a batch is streamed through, not kept in memory
            folder, _, name = path.rpartition("/")
            os.replace(path, f"{folder}/{name.rsplit('-', 1)[1]}")  # noqa: PTH105 (per chunk)
            folders.add(folder)
        return {Path(folder) for folder in folders}

    def sync_folders(self, folders: Iterable[Path]) -> None:
        folders = set(folders)
        if len(folders) > FOLDER_SYNCS_BEFORE_SYNCFS:
            syncfs(self.root)  # one call instead of up to 256
            return
        for folder in folders:
            fsync_dir(folder)

    def read(self, digest: bytes) -> bytes | None:
        """The chunk's bytes if present and intact (sealed: and it decrypts), else None."""
        try:
            with open(self._path(digest), "rb") as file:
                stored = file.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        data = stored if self.sealer is None else self.sealer.open(digest, stored)
        if data is None or hashlib.sha256(data).digest() != digest:
            return None
        return data

    def read_into(self, digest: bytes, size: int, buffer: mmap.mmap) -> memoryview | None:
        """Like ``read`` for a chunk of ``size`` bytes, into ``buffer`` (see
        ``direct.read_file_into``); sealed, a view of the decrypted bytes instead."""
        if self.sealer is not None:  # decrypting makes a new buffer anyway
            opened = self.read(digest)
            return None if opened is None or len(opened) != size else memoryview(opened)
        data = read_file_into(self._path(digest), buffer, size)
        if data is None or hashlib.sha256(data).digest() != digest:
            return None
        return data

    def delete(self, digests: Iterable[bytes]) -> None:
        for digest in digests:
            self.path(digest).unlink(missing_ok=True)

    def delete_names(self, names: Iterable[str]) -> None:
        """Delete chunk files by file name (``all_names``: what fsck found unreferenced)."""
        for name in names:
            Path(f"{self._root}/{name[:2]}/{name}").unlink(missing_ok=True)

    def all_names(self) -> Iterable[str]:
        """The file name of every complete chunk file (``name_of`` a hash gives its own)."""
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if len(entry.name) == 64 and not entry.name.startswith(TEMP_PREFIX):
                        yield entry.name

    def all_digests(self) -> Iterable[bytes]:
        """The hash of every chunk file: a plain store's only (sealed names hide them)."""
        if self.sealer is not None:
            raise ValueError("a sealed store's chunk names do not give their hashes")
        for name in self.all_names():
            yield bytes.fromhex(name)

    def remove_temp_files(self) -> int:
        removed = 0
        for folder in self.root.iterdir():
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.name.startswith(TEMP_PREFIX):
                        Path(entry.path).unlink(missing_ok=True)
                        removed += 1
        return removed
