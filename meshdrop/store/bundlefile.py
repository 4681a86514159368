"""Reading a .mdrop file from disk: refuse what is not a plain file, parse the header and
envelope within their caps, and stream the data section chunk by chunk. Also the check
`inspect` makes when no publisher is pinned (``read_self_signed``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from meshdrop.bulkio import read_reusable
from meshdrop.core.bundle import HEADER_SIZE, Envelope, parse_envelope, parse_header
from meshdrop.core.keys import Domain, verify
from meshdrop.core.manifest import Manifest, parse_manifest
from meshdrop.core.records import peek_record
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import FormatError, SignatureError
from meshdrop.fs import open_regular_file, read_exactly

__all__ = [
    "BundleFile",
    "FdReader",
    "ReadAt",
    "SelfSigned",
    "open_bundle_file",
    "open_regular_file",
    "read_exactly",
    "read_self_signed",
]


class ReadAt(Protocol):
    """A file's bytes read at an offset: a plain file (``FdReader``), or one decrypted as
    it is read (a blind courier file, transports/courier/blindfile.py)."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, size: int) -> memoryview:
        """``size`` bytes at ``offset`` (fewer only at the end), valid until this thread's
        next read."""
        ...

    def close(self) -> None: ...


@dataclass
class FdReader:
    """A plain file: reads go straight to ``os.preadv`` into a reused buffer."""

    fd: int
    size: int

    def read_at(self, offset: int, size: int) -> memoryview:
        return read_reusable(self.fd, offset, size)

    def close(self) -> None:
        os.close(self.fd)


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
        self.check_data_size(verified.manifest)

    def check_data_size(self, manifest: Manifest) -> None:
        """Refuse a file that is not exactly 16 + L bytes plus the sizes ``manifest`` gives."""
        expected = self.data_offset + manifest.size
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


@dataclass(frozen=True)
class SelfSigned:
    """A bundle file checked without any pinned publisher: its manifest verifies under the
    signing key its own envelope names, and the file is exactly as long as the manifest
    says. Anyone can make such a file with a key of their own, so nothing here says who
    published it, and the data is not read."""

    manifest: Manifest
    signer: bytes
    claimed_publisher_name: str | None  # from the bundle's own (unverified) records


def read_self_signed(path: Path) -> SelfSigned:
    with open_bundle_file(path) as source:
        envelope = source.envelope
        # Before parsing: a file whose signature does not verify costs no more than a
        # signature check, whatever its manifest holds.
        if not verify(
            envelope.signer, envelope.signature, Domain.MANIFEST, envelope.manifest_bytes
        ):
            raise SignatureError("the manifest signature does not verify: the file was altered")
        manifest = parse_manifest(envelope.manifest_bytes)
        source.check_data_size(manifest)
    claims = [
        record
        for record in map(peek_record, envelope.records)
        if record is not None and record.publisher == manifest.publisher
    ]
    name = max(claims, key=lambda r: r.version).name if claims else None
    return SelfSigned(manifest, envelope.signer, name)
