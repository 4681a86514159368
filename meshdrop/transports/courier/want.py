"""The want file: what the node a stick goes to already has, so that the node filling the
stick puts what that node lacks first.

want.mdw = magic b"\\x89MDWANT\\n" + a canonical msgpack map:
    format      1
    created     Unix seconds
    have        list of 16-byte bins: 8 bytes stream id, then the version (u64 BE)
    publishers  list of 32-byte publisher ids the node asks for first (may be empty)
stream id = SHA-256(b"meshdrop/v1/stream\\0" + publisher id + bundle name UTF-8)[:8]

It is untrusted like everything on a stick: read with a size cap and strict caps, and
it can only reorder what an export writes, never add, drop or change anything.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from meshdrop.core import codec
from meshdrop.core.schema import Fields
from meshdrop.errors import FormatError
from meshdrop.fs import atomic_write, open_regular_file, read_exactly

WANT_MAGIC = b"\x89MDWANT\n"
WANT_FORMAT = 1
MAX_WANT_BYTES = 1024 * 1024
MAX_HAVE = 50_000
MAX_PUBLISHERS = 256
STREAM_ID_BYTES = 8
_LIMITS = codec.Limits(
    max_bytes=MAX_WANT_BYTES - len(WANT_MAGIC),
    max_depth=2,
    max_items=MAX_HAVE + MAX_PUBLISHERS + 8,
    max_str=64,
    max_bin=32,
)


def stream_id(publisher: bytes, name: str) -> bytes:
    return hashlib.sha256(b"meshdrop/v1/stream\0" + publisher + name.encode()).digest()[
        :STREAM_ID_BYTES
    ]


@dataclass(frozen=True)
class Want:
    created: int
    have: dict[bytes, int]  # stream id -> the highest version the node has
    publishers: frozenset[bytes]

    def lacks(self, publisher: bytes, name: str, version: int) -> bool:
        return self.have.get(stream_id(publisher, name), 0) < version

    def encode(self) -> bytes:
        entries = sorted(sid + struct.pack(">Q", v) for sid, v in self.have.items())
        return WANT_MAGIC + codec.pack(
            {
                "format": WANT_FORMAT,
                "created": self.created,
                "have": entries[:MAX_HAVE],
                "publishers": sorted(self.publishers)[:MAX_PUBLISHERS],
            }
        )


def parse_want(data: bytes, what: str = "the want file") -> Want:
    if len(data) > MAX_WANT_BYTES:
        raise FormatError(f"{what} is larger than {MAX_WANT_BYTES} bytes")
    if not data.startswith(WANT_MAGIC):
        raise FormatError(f"{what} is not a meshdrop want file")
    fields = Fields(codec.unpack(data[len(WANT_MAGIC) :], _LIMITS, what), what)
    if fields.integer("format", 0, 2**16) != WANT_FORMAT:
        raise FormatError(f"{what} uses a format this meshdrop does not know")
    created = fields.integer("created", 0, 2**62)
    have: dict[bytes, int] = {}
    for entry in fields.bytes_list("have", STREAM_ID_BYTES + 8, 0, MAX_HAVE):
        sid = entry[:STREAM_ID_BYTES]
        have[sid] = max(have.get(sid, 0), struct.unpack(">Q", entry[STREAM_ID_BYTES:])[0])
    publishers = frozenset(fields.bytes_list("publishers", 32, 0, MAX_PUBLISHERS))
    fields.done()
    return Want(created, have, publishers)


def read_want(path: Path) -> Want:
    """Read at most the cap (never a FIFO, never through a link) and parse strictly."""
    from meshdrop.errors import UsageError

    try:
        fd = open_regular_file(path)
    except UsageError as exc:
        raise FormatError(str(exc)) from exc
    try:
        data = read_exactly(fd, MAX_WANT_BYTES + 1)
    except OSError as exc:
        raise FormatError(f"{path.name} cannot be read ({exc.strerror})") from exc
    finally:
        os.close(fd)
    return parse_want(data, path.name)


def write_want(path: Path, want: Want) -> int:
    data = want.encode()
    atomic_write(path, data)
    return len(data)
