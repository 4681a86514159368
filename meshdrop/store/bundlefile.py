"""Reading a .mdrop file from disk: refuse what is not a plain file, parse the header and
envelope within their caps, and stream the data section chunk by chunk."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from meshdrop.core.bundle import HEADER_SIZE, Envelope, parse_envelope, parse_header
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import FormatError, UsageError


def describe_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISLNK: "a symbolic link",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a device",
        stat.S_ISBLK: "a device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def open_regular_file(path: Path) -> int:
    """Open ``path`` for reading only if it is a regular file, without following a
    symlink and without blocking on a FIFO."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: is {describe_kind(info.st_mode)}, not a bundle file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"{path}: cannot open ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{path}: changed into something that is not a file while opening")
    os.set_blocking(fd, True)
    return fd


def read_exactly(fd: int, size: int) -> bytes:
    parts = []
    remaining = size
    while remaining:
        part = os.read(fd, min(remaining, 8 * 1024 * 1024))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


@dataclass
class BundleFile:
    """An open bundle file whose header and envelope parsed (nothing verified yet)."""

    path: Path
    fd: int
    envelope: Envelope
    data_offset: int
    file_size: int

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> BundleFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check_size(self, verified: VerifiedManifest) -> None:
        expected = self.data_offset + verified.manifest.size
        if self.file_size < expected:
            raise FormatError(
                f"{self.path.name} is truncated: {expected - self.file_size} bytes of data missing"
            )
        if self.file_size > expected:
            raise FormatError(
                f"{self.path.name} has {self.file_size - expected} unexpected bytes after its data"
            )

    def read_chunk(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` within the data section (short only if truncated)."""
        return os.pread(self.fd, size, self.data_offset + offset)


def open_bundle_file(path: Path) -> BundleFile:
    fd = open_regular_file(path)
    try:
        file_size = os.fstat(fd).st_size
        length = parse_header(read_exactly(fd, HEADER_SIZE), path.name)
        raw = read_exactly(fd, length)
        if len(raw) != length:
            raise FormatError(f"{path.name} is truncated inside its envelope")
        envelope = parse_envelope(raw, path.name)
    except BaseException:
        os.close(fd)
        raise
    return BundleFile(path, fd, envelope, HEADER_SIZE + length, file_size)
