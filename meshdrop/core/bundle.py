"""The .mdrop container: a fixed header, the signed envelope, then the file data.

offset 0   8 bytes   magic b"\\x89MDROP\\r\\n"
offset 8   u16 BE    container format (1)
offset 10  u16 BE    flags (0; anything else is refused)
offset 12  u32 BE    envelope length L
offset 16  L bytes   envelope (canonical msgpack)
16 + L     data      every file's bytes, in manifest order, nothing after
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from meshdrop.core import codec
from meshdrop.core.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from meshdrop.core.manifest import MAX_MANIFEST_BYTES
from meshdrop.core.records import MAX_CHAIN, SignedRecord, parse_signed_records
from meshdrop.core.schema import Fields
from meshdrop.errors import FormatError

MAGIC = b"\x89MDROP\r\n"
CONTAINER_FORMAT = 1
HEADER = struct.Struct(">8sHHI")
HEADER_SIZE = HEADER.size
MAX_ENVELOPE_BYTES = MAX_MANIFEST_BYTES + 8 * 1024 * 1024

_LIMITS = codec.Limits(
    max_bytes=MAX_ENVELOPE_BYTES, max_depth=6, max_items=65536, max_bin=MAX_MANIFEST_BYTES
)


@dataclass(frozen=True)
class Envelope:
    manifest_bytes: bytes
    signer: bytes
    signature: bytes
    records: tuple[SignedRecord, ...]

    def encode(self) -> bytes:
        return codec.pack(
            {
                "format": CONTAINER_FORMAT,
                "manifest": self.manifest_bytes,
                "signer": self.signer,
                "signature": self.signature,
                "records": [r.to_value() for r in self.records],
            }
        )


def encode_header(envelope_length: int) -> bytes:
    return HEADER.pack(MAGIC, CONTAINER_FORMAT, 0, envelope_length)


def parse_header(header: bytes, what: str) -> int:
    """The envelope length from the first 16 bytes of a bundle file."""
    if len(header) < HEADER_SIZE:
        raise FormatError(f"{what} is too short to be a meshdrop bundle")
    magic, fmt, flags, length = HEADER.unpack_from(header)
    if magic != MAGIC:
        raise FormatError(f"{what} is not a meshdrop bundle (wrong magic bytes)")
    if fmt != CONTAINER_FORMAT:
        raise FormatError(f"{what} uses bundle format {fmt}, which this meshdrop cannot read")
    if flags != 0:
        raise FormatError(f"{what} has unknown header flags {flags:#06x}")
    if length > MAX_ENVELOPE_BYTES:
        raise FormatError(f"{what} declares an envelope of {length} bytes, over the limit")
    return int(length)


def parse_envelope(data: bytes, what: str) -> Envelope:
    fields = Fields(
        codec.unpack(data, _LIMITS, f"the envelope of {what}"), f"the envelope of {what}"
    )
    if fields.integer("format", 0, 2**16) != CONTAINER_FORMAT:
        raise FormatError(f"the envelope of {what} has an unknown format")
    records = fields.map_list("records", 1, MAX_CHAIN)
    envelope = Envelope(
        manifest_bytes=fields.binary("manifest", None, max_len=MAX_MANIFEST_BYTES),
        signer=fields.binary("signer", PUBLIC_KEY_BYTES),
        signature=fields.binary("signature", SIGNATURE_BYTES),
        records=parse_signed_records(records, what),
    )
    fields.done()
    return envelope


# The publisher file (publisher.pub): what a node owner pins and what carries trust changes.
PUB_MAGIC = b"\x89MDPUB\r\n"
_PUB_LIMITS = codec.Limits(
    max_bytes=16 * 1024 * 1024, max_depth=5, max_items=65536, max_bin=64 * 1024
)


def encode_publisher_file(records: Sequence[SignedRecord]) -> bytes:
    return PUB_MAGIC + codec.pack([r.to_value() for r in records])


def parse_publisher_file(data: bytes, what: str) -> tuple[SignedRecord, ...]:
    if not data.startswith(PUB_MAGIC):
        raise FormatError(f"{what} is not a meshdrop publisher file (publisher.pub)")
    items = codec.unpack(data[len(PUB_MAGIC) :], _PUB_LIMITS, what)
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_CHAIN:
        raise FormatError(f"{what} does not hold 1 to {MAX_CHAIN} publisher records")
    return parse_signed_records(items, what)
