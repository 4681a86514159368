"""Failing media for the tests (issue 21), emulated inside a real meshdrop process (no FAT
driver, loop mounts or FUSE here): ``command`` starts the installed package's entry point
in a new Python process that patches the os functions first.

A fake-capacity card (``FAKE_CARD_ROOT``, ``FAKE_CARD_BLOCKS``; at exit the names of
the files it corrupted go to ``FAKE_CARD_REPORT``, one a line): its controller maps
every new 4 KiB block written to the next linear address, and an address past the real
capacity wraps onto an earlier block, so what was written there first now reads back as
the later block's bytes. Linux's page cache sits in front: a block still cached reads
back as written, one dropped (``posix_fadvise`` DONTNEED: the exporter's writeback hint
and its read-back) is read from the "device". That is what an export into a folder on
such a card meets through the kernel, except that FAT's own tables, which a real card
also overwrites, are not emulated (the folder lives on the test machine's disk), and
that writes through Python file objects (fs.atomic_write: an open folder's publisher
file) take no blocks: only os-level writes and reads are seen.

A failing stick (``READ_ERROR_NAME``, ``READ_ERROR_AT``): every read of the file of that
name that reaches byte ``READ_ERROR_AT`` fails with EIO, as a worn card's bad sector
does."""

from __future__ import annotations

import atexit
import errno
import os
import sys
import threading
from pathlib import Path
from typing import Any

BLOCK = 4096
_real = {name: getattr(os, name) for name in ("write", "pwrite", "pread", "preadv", "read")}
_real_fadvise = os.posix_fadvise


def _path_of(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _blocks(offset: int, size: int) -> range:
    return range(offset // BLOCK, (offset + max(size, 1) - 1) // BLOCK + 1)


class FakeCard:
    """The wrap-around controller and the page cache in front of it."""

    def __init__(self, root: str, blocks: int) -> None:
        self.root = os.path.realpath(root) + os.sep
        self.blocks = blocks
        self.next_address = 0
        self.address: dict[tuple[int, int], int] = {}  # (inode, block) -> linear address
        self.holder: dict[int, tuple[int, int]] = {}  # physical block -> last written there
        self.cached: set[tuple[int, int]] = set()
        self.readers: dict[int, int] = {}  # inode -> a descriptor reading it
        self.lock = threading.RLock()

    def inode(self, fd: int) -> int | None:
        if not _path_of(fd).startswith(self.root):
            return None
        return os.fstat(fd).st_ino

    def wrote(self, fd: int, offset: int, size: int) -> None:
        inode = self.inode(fd)
        if inode is None or size <= 0:
            return
        with self.lock:
            if inode not in self.readers:
                self.readers[inode] = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
            for block in _blocks(offset, size):
                key = (inode, block)
                if key not in self.address:
                    self.address[key] = self.next_address
                    self.next_address += 1
                self.holder[self.address[key] % self.blocks] = key
                self.cached.add(key)

    def dropped(self, fd: int, offset: int, length: int) -> None:
        inode = self.inode(fd)
        if inode is None:
            return
        with self.lock:
            end = None if length == 0 else (offset + length + BLOCK - 1) // BLOCK
            for key in [k for k in self.cached if k[0] == inode]:
                if key[1] >= offset // BLOCK and (end is None or key[1] < end):
                    self.cached.discard(key)

    def corrupted(self) -> list[str]:
        """The names of the files (removed ones too) some block of which now reads as
        another's."""
        inodes = {k[0] for k, a in self.address.items() if self.holder[a % self.blocks] != k}
        names = (_path_of(self.readers[i]).removesuffix(" (deleted)") for i in inodes)
        return sorted(Path(name).name for name in names)

    def seen(self, fd: int, offset: int, data: bytes) -> bytes:
        """What a read of ``data`` at ``offset`` returns through the cache and the card."""
        inode = self.inode(fd)
        if inode is None or not data:
            return data
        out = bytearray(data)
        with self.lock:
            for block in _blocks(offset, len(data)):
                key = (inode, block)
                if key in self.cached or key not in self.address:
                    continue
                other = self.holder[self.address[key] % self.blocks]
                if other == key:
                    continue
                lied = _real["pread"](self.readers[other[0]], BLOCK, other[1] * BLOCK)
                start = max(block * BLOCK, offset)
                end = min((block + 1) * BLOCK, offset + len(data))
                piece = lied[start - block * BLOCK : end - block * BLOCK]
                out[start - offset : end - offset] = piece.ljust(end - start, b"\0")
        return bytes(out)


def _install_card(card: FakeCard) -> None:
    def write(fd: int, data: Any) -> int:
        if card.inode(fd) is None:  # a pipe or terminal cannot seek
            plain: int = _real["write"](fd, data)
            return plain
        offset = os.lseek(fd, 0, os.SEEK_CUR)
        done: int = _real["write"](fd, data)
        card.wrote(fd, offset, done)
        return done

    def pwrite(fd: int, data: Any, offset: int) -> int:
        done: int = _real["pwrite"](fd, data, offset)
        card.wrote(fd, offset, done)
        return done

    def pread(fd: int, size: int, offset: int) -> bytes:
        return card.seen(fd, offset, _real["pread"](fd, size, offset))

    def preadv(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        got: int = _real["preadv"](fd, buffers, offset, flags)
        data = card.seen(fd, offset, b"".join(bytes(memoryview(b)) for b in buffers)[:got])
        at = 0
        for buffer in buffers:
            view = memoryview(buffer).cast("B")
            take = min(len(view), got - at)
            view[:take] = data[at : at + take]
            at += take
        return got

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        _real_fadvise(fd, offset, length, advice)
        if advice == os.POSIX_FADV_DONTNEED:
            card.dropped(fd, offset, length)

    os.write, os.pwrite, os.pread, os.preadv = write, pwrite, pread, preadv
    os.posix_fadvise = fadvise


def _install_read_error(name: str, at: int) -> None:
    def failing(fd: int, offset: int, size: int) -> None:
        if offset <= at < offset + size and Path(_path_of(fd)).name == name:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def pread(fd: int, size: int, offset: int) -> bytes:
        failing(fd, offset, size)
        data: bytes = _real["pread"](fd, size, offset)
        return data

    def preadv(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        failing(fd, offset, sum(memoryview(b).nbytes for b in buffers))
        got: int = _real["preadv"](fd, buffers, offset, flags)
        return got

    def read(fd: int, size: int) -> bytes:
        if Path(_path_of(fd)).name == name:
            failing(fd, os.lseek(fd, 0, os.SEEK_CUR), size)
        data: bytes = _real["read"](fd, size)
        return data

    os.pread, os.preadv, os.read = pread, preadv, read


def install_from_env() -> None:
    if "FAKE_CARD_ROOT" in os.environ:
        card = FakeCard(os.environ["FAKE_CARD_ROOT"], int(os.environ["FAKE_CARD_BLOCKS"]))
        _install_card(card)
        report = Path(os.environ["FAKE_CARD_REPORT"])
        atexit.register(lambda: report.write_text("".join(f"{n}\n" for n in card.corrupted())))
    if "READ_ERROR_NAME" in os.environ:
        _install_read_error(os.environ["READ_ERROR_NAME"], int(os.environ["READ_ERROR_AT"]))


def command(*args: str | Path) -> list[str]:
    """The argv of a meshdrop process with the media of the environment installed."""
    here = str(Path(__file__).resolve().parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import fakemedia; "
        "fakemedia.install_from_env(); from meshdrop.cli.main import main; "
        "sys.argv = ['meshdrop', *sys.argv[1:]]; main()"
    )
    return [sys.executable, "-c", code, *map(str, args)]
