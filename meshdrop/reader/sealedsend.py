"""A report sealed in the writer's browser (static/seal.js, issue 18, "The first hop is the
weak one"): the write page's script cleans the photos, builds the report, seals and
stamps it into a drop exactly as core/drops.py does, and POSTs only the drop.

The request: ``POST /w/<id>`` with ``Content-Type: application/octet-stream``, the drop as
the whole body (at most ``MAX_DROP_BYTES``, read into memory in bounded reads) and the
receipt code the browser drew and showed in the ``Receipt-Code`` header (the node
keeps only its HMAC, store/drops.py). The node never sees the plaintext: it runs
``check_drop`` (through ``DropStore.add``) like any relaying node.
"""

from __future__ import annotations

from aiohttp import web

from meshdrop.core.drops import MAX_DROP_BYTES
from meshdrop.core.reports import RECEIPT_ALPHABET, RECEIPT_CHARS

DROP_TYPE = "application/octet-stream"
RECEIPT_HEADER = "Receipt-Code"
READ_BYTES = 64 * 1024


class SealedRefused(Exception):
    """A sealed POST that is not taken; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_sealed(request: web.Request) -> bool:
    return request.content_type == DROP_TYPE


def receipt_of(request: web.Request) -> str:
    code = request.headers.get(RECEIPT_HEADER, "")
    if len(code) != RECEIPT_CHARS or not set(code) <= RECEIPT_ALPHABET:
        raise SealedRefused(400, "the sealed report came without a valid receipt code")
    return code


async def read_drop(request: web.Request) -> bytes:
    """The request's body, refused once it passes the largest drop size."""
    declared = request.content_length
    if declared is not None and declared > MAX_DROP_BYTES:
        raise SealedRefused(413, f"the sealed report is over {MAX_DROP_BYTES} bytes")
    body = bytearray()
    while chunk := await request.content.read(READ_BYTES):
        body += chunk
        if len(body) > MAX_DROP_BYTES:
            raise SealedRefused(413, f"the sealed report is over {MAX_DROP_BYTES} bytes")
    return bytes(body)
