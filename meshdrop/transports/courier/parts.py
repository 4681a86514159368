"""Part files: a bundle too big for FAT32 travels as several files, each complete in
itself: a part header, the bundle's whole envelope, then a run of whole chunks of its
data. Any part verifies on its own, so parts can arrive on different sticks in any order.

offset 0   8 bytes   magic b"\\x89MDPRT\\r\\n"
offset 8   u16 BE    part format (1)
offset 10  u16 BE    flags (0)
offset 12  u32 BE    envelope length L
offset 16  u16 BE    part number (1-based)
offset 18  u16 BE    part count
offset 20  u64 BE    where this part's data starts in the bundle's data section
offset 28  u64 BE    how many bytes of data follow
offset 36  L bytes   the envelope, exactly as in the .mdrop file
36 + L     data      the bytes of the bundle's data section from that offset
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from meshdrop.core.bundle import MAX_ENVELOPE_BYTES
from meshdrop.core.manifest import ChunkRef, Manifest
from meshdrop.errors import FormatError, UsageError
from meshdrop.transports.courier.layout import FAT32_MAX_FILE, MAX_PARTS

PART_MAGIC = b"\x89MDPRT\r\n"
PART_FORMAT = 1
PART_HEADER = struct.Struct(">8sHHIHHQQ")
PART_HEADER_SIZE = PART_HEADER.size  # 36


@dataclass(frozen=True)
class PartHeader:
    envelope_length: int
    number: int
    count: int
    start: int
    length: int


def encode_part_header(header: PartHeader) -> bytes:
    return PART_HEADER.pack(
        PART_MAGIC,
        PART_FORMAT,
        0,
        header.envelope_length,
        header.number,
        header.count,
        header.start,
        header.length,
    )


def parse_part_header(data: bytes, what: str) -> PartHeader:
    if len(data) < PART_HEADER_SIZE:
        raise FormatError(f"{what} is too short to be a part of a meshdrop bundle")
    magic, fmt, flags, length, number, count, start, size = PART_HEADER.unpack_from(data)
    if magic != PART_MAGIC:
        raise FormatError(f"{what} is not a part of a meshdrop bundle (wrong magic bytes)")
    if fmt != PART_FORMAT:
        raise FormatError(f"{what} uses part format {fmt}, which this meshdrop cannot read")
    if flags != 0:
        raise FormatError(f"{what} has unknown header flags {flags:#06x}")
    if length > MAX_ENVELOPE_BYTES:
        raise FormatError(f"{what} declares an envelope of {length} bytes, over the limit")
    if not 1 <= number <= count <= MAX_PARTS:
        raise FormatError(f"{what} claims to be part {number} of {count}")
    return PartHeader(length, number, count, start, size)


def check_part_fits(header: PartHeader, manifest: Manifest, what: str) -> None:
    """After the envelope verified: the part's data must be a run of whole chunks."""
    end = header.start + header.length
    if end > manifest.size:
        raise FormatError(f"{what} claims data beyond the end of its bundle")
    bounds = {0, manifest.size}
    for ref in manifest.chunk_refs():
        bounds.add(ref.offset)
    if header.start not in bounds or end not in bounds:
        raise FormatError(f"{what} does not start and end on chunk boundaries")


def refs_in_range(refs: list[ChunkRef], start: int, end: int) -> list[ChunkRef]:
    return [r for r in refs if r.offset >= start and r.offset + r.size <= end]


def fitting_part_size(wanted: int, file_size: int) -> int:
    """``wanted``, or bigger for a bundle so big that it would need more than MAX_PARTS
    parts of that size (room is left for each part's header, envelope and a chunk cut
    short at its end), never over what FAT32 can hold."""
    return max(wanted, min(FAT32_MAX_FILE, file_size // (MAX_PARTS - 99) + 1))


def plan_parts(manifest: Manifest, envelope_length: int, part_size: int) -> list[PartHeader]:
    """Cut the data section into runs of whole chunks so that every part file (header,
    envelope and data) is at most ``part_size`` bytes."""
    room = part_size - PART_HEADER_SIZE - envelope_length
    refs = manifest.chunk_refs()
    if room < max((r.size for r in refs), default=1):
        raise UsageError(
            f"the part size {part_size} is too small for {manifest.name!r}: a part must hold "
            f"its {envelope_length}-byte envelope and at least one 1 MiB chunk"
        )
    runs: list[tuple[int, int]] = []
    start = end = 0
    for ref in refs:
        if ref.offset + ref.size - start > room:
            runs.append((start, end))
            start = ref.offset
        end = ref.offset + ref.size
    runs.append((start, end))
    if len(runs) > MAX_PARTS:
        raise UsageError(
            f"{manifest.name!r} would need {len(runs)} parts at this part size; "
            f"the most is {MAX_PARTS}"
        )
    return [
        PartHeader(envelope_length, i + 1, len(runs), s, e - s) for i, (s, e) in enumerate(runs)
    ]
