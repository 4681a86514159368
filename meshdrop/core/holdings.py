"""Which chunks of a bundle a node holds, in the compact form peers exchange
(docs/PROTOCOL.md section 3.6): one bit per entry of the manifest's chunk list in data
order (a chunk that appears twice has two bits), the first entry in the most significant
bit of the first byte, the unused bits of the last byte zero. Pure: bytes in, values or
FormatError out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from meshdrop.core.inventory import HAVE_BYTES
from meshdrop.errors import FormatError

_HAVE = b"meshdrop/v1/have\0"


def bitmap_bytes(count: int) -> int:
    """The exact size of the bitmap of a bundle of ``count`` chunk entries."""
    return (count + 7) // 8


def encode_bitmap(held: Sequence[bool]) -> bytes:
    data = bytearray(bitmap_bytes(len(held)))
    for index, present in enumerate(held):
        if present:
            data[index >> 3] |= 0x80 >> (index & 7)
    return bytes(data)


def decode_bitmap(data: bytes, count: int) -> list[bool]:
    """The bits of a peer's bitmap for a bundle of ``count`` chunk entries."""
    if len(data) != bitmap_bytes(count):
        raise FormatError(f"a chunk bitmap of {len(data)} bytes for {count} chunks")
    bits = [bool(data[i >> 3] & (0x80 >> (i & 7))) for i in range(count)]
    if count % 8 and data[-1] & (0xFF >> (count % 8)):
        raise FormatError("a chunk bitmap sets bits past its last chunk")
    return bits


def have_tag(bitmap: bytes) -> bytes:
    """A partial inventory entry's ``have`` (PROTOCOL 4.1): it changes exactly when the
    holdings do, so peers sync again when there is something new to fetch."""
    return hashlib.sha256(_HAVE + bitmap).digest()[:HAVE_BYTES]


def held_digests(bitmap: bytes, digests: Sequence[bytes]) -> frozenset[bytes]:
    """The chunk hashes a peer's bitmap says it holds, of the manifest's chunk list."""
    bits = decode_bitmap(bitmap, len(digests))
    return frozenset(d for d, present in zip(digests, bits, strict=True) if present)
