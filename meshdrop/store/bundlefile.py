"""Reading a .mdrop file from disk: refuse what is not a plain file, parse the header and
envelope within their caps, and stream the data section chunk by chunk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from meshdrop.bulkio import read_reusable
from meshdrop.core.bundle import HEADER_SIZE, Envelope, parse_envelope, parse_header
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import FormatError
from meshdrop.fs import open_regular_file, read_exactly

__all__ = ["BundleFile", "open_bundle_file", "open_regular_file", "read_exactly"]


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

    def read_chunk(self, offset: int, size: int) -> memoryview:
        """``size`` bytes at ``offset`` within the data section (short only if truncated),
        in this thread's reusable buffer (meshdrop/bulkio.py): valid until its next read."""
        return read_reusable(self.fd, self.data_offset + offset, size)


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
