"""Opening a file from a stick: a whole .mdrop or one part, as a source of chunks. Only
the header and envelope are read here; each chunk is then read once, by the importer. The
bytes come through a ``ReadAt``: a plain file, or a blind file decrypted as it is read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from meshdrop.core.bundle import HEADER_SIZE, MAGIC, Envelope, parse_envelope, parse_header
from meshdrop.core.manifest import ChunkRef, Manifest
from meshdrop.errors import FormatError
from meshdrop.fs import open_regular_file
from meshdrop.store.bundlefile import FdReader, ReadAt
from meshdrop.transports.courier.parts import (
    PART_HEADER_SIZE,
    PART_MAGIC,
    PartHeader,
    check_part_fits,
    parse_part_header,
)


@dataclass
class CourierFile:
    """An open bundle file or part whose header and envelope parsed (nothing verified).
    ``path`` names it in messages (for a blind file: its name inside the blind file)."""

    path: Path
    reader: ReadAt
    envelope: Envelope
    envelope_bytes: bytes
    head_size: int  # bytes before the data in this file
    file_size: int
    part: PartHeader | None

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> CourierFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def data_range(self, manifest: Manifest) -> tuple[int, int]:
        """[start, end) of the bundle's data section this file should hold (after the
        envelope verified). Raises FormatError if a part does not fit its bundle."""
        if self.part is None:
            return 0, manifest.size
        check_part_fits(self.part, manifest, self.path.name)
        return self.part.start, self.part.start + self.part.length

    def missing_bytes(self, manifest: Manifest) -> int:
        """How much shorter the file is than it should be (0 if complete); raises if it is
        longer, which the format forbids."""
        start, end = self.data_range(manifest)
        expected = self.head_size + end - start
        if self.file_size > expected:
            raise FormatError(
                f"{self.path.name} has {self.file_size - expected} unexpected bytes after its data"
            )
        return expected - self.file_size

    def read_chunk(self, ref: ChunkRef, start: int) -> memoryview:
        """The chunk's bytes (short only if the file is cut), in this thread's reusable
        buffer (meshdrop/bulkio.py): valid until the thread's next read."""
        return self.reader.read_at(self.head_size + ref.offset - start, ref.size)


def open_courier_file(path: Path) -> CourierFile:
    fd = open_regular_file(path)
    try:
        reader = FdReader(fd, os.fstat(fd).st_size)
    except BaseException:
        os.close(fd)
        raise
    return open_courier_source(reader, path)


def open_courier_source(reader: ReadAt, path: Path) -> CourierFile:
    """Parse the head of the file ``reader`` reads (``path`` names it); closes ``reader``
    if that fails."""
    try:
        first = bytes(reader.read_at(0, PART_HEADER_SIZE))
        part: PartHeader | None = None
        if first.startswith(PART_MAGIC):
            part = parse_part_header(first, path.name)
            length, head = part.envelope_length, PART_HEADER_SIZE
        elif first.startswith(MAGIC) or len(first) < HEADER_SIZE:
            length, head = parse_header(first[:HEADER_SIZE], path.name), HEADER_SIZE
        else:
            raise FormatError(f"{path.name} is not a meshdrop bundle (wrong magic bytes)")
        raw = bytes(reader.read_at(head, length))
        if len(raw) != length:
            raise FormatError(f"{path.name} is truncated inside its envelope")
        envelope = parse_envelope(raw, path.name)
    except BaseException:
        reader.close()
        raise
    return CourierFile(path, reader, envelope, raw, head + length, reader.size, part)
