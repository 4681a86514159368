"""Sending a publisher's file to a browser: its signed media type and safety headers, byte
ranges (media players seek), and every chunk re-hashed as it is read (moved out of
``app.py`` as it stands apart from the pages). HTML is sent as sanitize.py rewrites it,
CSS with its url()s pointing at the bundle's own files (links.py); every answer carries
the bundle's own CSP (headers.publisher_csp)."""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web

from meshdrop.core.articletext import HTML_TYPES
from meshdrop.core.manifest import FileEntry
from meshdrop.reader import headers
from meshdrop.reader.library import Library
from meshdrop.reader.links import BundleLinks, rewrite_css
from meshdrop.reader.ranges import ByteRange, Unsatisfiable, chunk_pieces, parse_range
from meshdrop.reader.sanitize import MAX_REWRITTEN_BYTES, rewrite_html


class Damaged(Exception):
    """A stored chunk failed its hash on reading (fsck --repair and import again)."""


async def send_publisher_file(
    request: web.Request, library: Library, entry: FileEntry, links: BundleLinks, csp: str
) -> web.StreamResponse:
    """The whole file or the range asked for, with an ETag from its chunk hashes."""
    attachment = "download" in request.query or not headers.shows_inline(entry.media_type)
    rewritten = entry.media_type in HTML_TYPES or entry.media_type == "text/css"
    if rewritten and not attachment:
        if entry.size <= MAX_REWRITTEN_BYTES:
            whole = await read_whole(library, entry)
            if entry.media_type == "text/css":
                text = whole.decode("utf-8", errors="replace")
                css = await asyncio.to_thread(rewrite_css, text, entry.path, links)
                return rewritten_response(css.encode("utf-8"), "text/css", entry, csp)
            body = await asyncio.to_thread(rewrite_html, whole, entry.path, links)
            return rewritten_response(body, "text/html", entry, csp)
        attachment = True
    etag = '"' + hashlib.sha256(b"".join(entry.chunks)).hexdigest()[:32] + '"'
    response = web.StreamResponse()
    response.headers.update(headers.PUBLISHER)
    response.headers["Content-Security-Policy"] = csp
    response.headers["ETag"] = etag
    response.headers["Content-Disposition"] = headers.content_disposition(entry.path, attachment)
    try:
        wanted = parse_range(
            request.headers.get("Range"), entry.size, request.headers.get("If-Range"), etag
        )
    except Unsatisfiable:
        response.set_status(416)
        response.headers["Content-Range"] = f"bytes */{entry.size}"
        response.content_length = 0
        await response.prepare(request)
        return response
    if wanted is None:
        part = ByteRange(0, entry.size - 1)
    else:
        part = wanted
        response.set_status(206)
        response.headers["Content-Range"] = wanted.content_range(entry.size)
    response.content_type = headers.content_type(entry.media_type)
    response.content_length = part.length if entry.size else 0
    if request.method == "HEAD" or entry.size == 0:
        await response.prepare(request)
        return response
    await _send(request, response, library, entry, part)
    return response


async def read_whole(library: Library, entry: FileEntry) -> bytes:
    """The whole file, every chunk re-hashed (for files rewritten or shown in a page)."""
    parts = []
    for index in range(len(entry.chunks)):
        data = await library.read_chunk(entry, index)
        if data is None:
            raise Damaged
        parts.append(data)
    return b"".join(parts)


def rewritten_response(body: bytes, media_type: str, entry: FileEntry, csp: str) -> web.Response:
    """A publisher file as rewritten (the rewriting runs on a worker thread, so pages
    never wait behind it): whole, no ranges (its length is not the signed file's)."""
    response = web.Response(body=body, content_type=media_type, charset="utf-8")
    response.headers.update(headers.PUBLISHER)
    response.headers["Content-Security-Policy"] = csp
    response.headers["Accept-Ranges"] = "none"
    response.headers["Content-Disposition"] = headers.content_disposition(entry.path, False)
    return response


async def _send(
    request: web.Request,
    response: web.StreamResponse,
    library: Library,
    entry: FileEntry,
    part: ByteRange,
) -> None:
    """Send ``part`` of the file chunk by chunk, each re-hashed as it is read, reading
    the next chunk while this one is sent."""
    pieces = chunk_pieces(part)

    def read(index: int) -> asyncio.Future[bytes | None]:
        return asyncio.ensure_future(library.read_chunk(entry, index))

    upcoming: asyncio.Future[bytes | None] | None = read(pieces[0][0])
    try:
        for number, (_index, begin, end) in enumerate(pieces):
            assert upcoming is not None
            data = await upcoming
            upcoming = None
            if number + 1 < len(pieces):
                upcoming = read(pieces[number + 1][0])
            if data is None:
                if number == 0:
                    raise Damaged
                response.force_close()  # the client sees a short body, never wrong bytes
                return
            if number == 0:
                await response.prepare(request)
            await response.write(data[begin:end])
    finally:
        if upcoming is not None:
            upcoming.cancel()
    await response.write_eof()
