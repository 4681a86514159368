"""HTTP Range requests (RFC 9110 section 14) for one stored file: pure, no I/O.

Audio and video seek with ``Range: bytes=START-END``; the answer is 206 with that part,
or 416 when no byte of it exists. Only single ranges are served: a request for several
ranges gets the whole file (200), which RFC 9110 allows ("a server MAY ignore the Range
header field") and which no media player needs otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshdrop.core.manifest import CHUNK_SIZE

_SPEC = re.compile(r"(\d{0,19})-(\d{0,19})", re.ASCII)


class Unsatisfiable(Exception):
    """Answer 416 Range Not Satisfiable, with ``Content-Range: bytes */SIZE``."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int, if_range: str | None, etag: str) -> ByteRange | None:
    """The part of a ``size``-byte file that ``header`` asks for; None for the whole file
    (no Range, another unit, several ranges, or an If-Range that no longer matches).
    Raises Unsatisfiable for a malformed bytes range or one that starts past the end."""
    if header is None:
        return None
    if if_range is not None and if_range.strip() != etag:
        return None  # the client's copy is of other bytes: send all of the current ones
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    found = _SPEC.fullmatch(spec.strip())
    if found is None or found.group(1) == found.group(2) == "":
        raise Unsatisfiable(header)
    first, last = found.group(1), found.group(2)
    if first == "":  # a suffix: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise Unsatisfiable(header)
        return ByteRange(max(size - count, 0), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if end < start:
        raise Unsatisfiable(header)
    if start >= size:
        raise Unsatisfiable(header)
    return ByteRange(start, min(end, size - 1))


def chunk_pieces(byte_range: ByteRange) -> list[tuple[int, int, int]]:
    """(chunk index, start within the chunk, end within the chunk, exclusive) for each
    stored chunk the range touches, in order."""
    pieces = []
    position = byte_range.start
    while position <= byte_range.end:
        index, offset = divmod(position, CHUNK_SIZE)
        stop = min(CHUNK_SIZE, byte_range.end - index * CHUNK_SIZE + 1)
        pieces.append((index, offset, stop))
        position = (index + 1) * CHUNK_SIZE
    return pieces
