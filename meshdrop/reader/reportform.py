"""The report form's body, read into memory under caps (issue 18, "Writing, with nothing
but a browser"): a report's plaintext must never touch the node's disk.

aiohttp's ``request.post()`` spools every file field to a temporary file, so the form is
read with aiohttp's streaming multipart reader instead, part by part, with reads of at most
``READ_BYTES``, and refused the moment a cap is passed (at most one read beyond it is ever
held). The caps:

- ``TEXT_MAX_BYTES``: the text field, 64 KiB of UTF-8 (about 21,000 Korean letters);
- ``MAX_FILES``: at most 8 files;
- ``FILES_MAX_BYTES``: 8 MiB for all files together;
- ``BODY_MAX_BYTES``: 9 MiB for the whole body as it arrives (boundaries, part headers,
  anything before the first boundary included). A declared Content-Length above it is
  refused before any of the body is read.

The form has two field names: ``text`` (at most once) and ``file`` (each chosen file;
an empty one, what a browser sends when no file was chosen, is left out). Any other name,
a part without a name, a nested multipart, an encoded part, text that is not UTF-8, or a
body that ends before its closing boundary is refused.

Why not ``request.multipart()``: it hands aiohttp's reader the request's stream as it is,
and aiohttp then reads any number of lines before the first boundary on its own. The same
reader is used here on the request's stream seen through ``_CappedBody``, which counts
every byte aiohttp takes from it, so the whole-body cap holds inside aiohttp's loops too.

Each refusal is its own ``FormRefused`` subclass, carrying the HTTP status to answer with,
an ``i18n`` key for the page and an English sentence a writer understands.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import cast

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

TEXT_MAX_BYTES = 64 * 1024
MAX_FILES = 8
FILES_MAX_BYTES = 8 * 1024 * 1024
BODY_MAX_BYTES = 9 * 1024 * 1024
READ_BYTES = 64 * 1024  # one bounded read of a part
TEXT_FIELD = "text"
FILE_FIELD = "file"
FORM_TYPE = "multipart/form-data"
# What a browser may say of a part's encoding; anything else would need decoding.
_PLAIN_ENCODINGS = frozenset({"", "binary", "8bit", "7bit", "identity"})
_PART_HEADER_BYTES = 8190  # aiohttp's default per header line
_PART_HEADERS = 32


@dataclass(frozen=True)
class Attachment:
    """One chosen file as the browser sent it: its name and media type are the writer's
    browser's word, not checked (imageclean.py looks at the bytes)."""

    name: str
    declared_type: str
    data: bytes


@dataclass(frozen=True)
class Submission:
    text: str
    attachments: tuple[Attachment, ...]


class FormRefused(Exception):
    """A report form that is not taken. ``status`` is the HTTP status to answer with,
    ``key`` the reader's i18n key for the page; the message is one English sentence."""

    status = 400
    key = "report_refused"


class NotAForm(FormRefused):
    status = 415
    key = "report_not_a_form"

    def __init__(self) -> None:
        super().__init__(
            "this page could not read what was sent; open the form again and send it from there"
        )


class BodyTooBig(FormRefused):
    status = 413
    key = "report_too_big"

    def __init__(self) -> None:
        super().__init__(f"the report is too big: at most {_mib(BODY_MAX_BYTES)} in all")


class TextTooLong(FormRefused):
    status = 413
    key = "report_text_too_long"

    def __init__(self) -> None:
        super().__init__(
            f"the text is too long: at most {TEXT_MAX_BYTES // 1024} KiB "
            "(about 21,000 Korean or 65,000 English letters)"
        )


class TooManyFiles(FormRefused):
    status = 413
    key = "report_too_many_files"

    def __init__(self) -> None:
        super().__init__(f"too many photos or files: at most {MAX_FILES}")


class FilesTooBig(FormRefused):
    status = 413
    key = "report_files_too_big"

    def __init__(self) -> None:
        super().__init__(f"the photos are too big together: at most {_mib(FILES_MAX_BYTES)}")


class UnknownField(FormRefused):
    key = "report_unknown_field"

    def __init__(self) -> None:
        super().__init__(
            "the form held a field this page does not know; "
            "open the form again and send it from there"
        )


class NamelessPart(FormRefused):
    key = "report_nameless_part"

    def __init__(self) -> None:
        super().__init__(
            "the form held a part without a name; open the form again and send it from there"
        )


class RepeatedText(FormRefused):
    key = "report_repeated_text"

    def __init__(self) -> None:
        super().__init__("the form held the text twice; open the form again and send it once")


class UnexpectedPart(FormRefused):
    key = "report_unexpected_part"

    def __init__(self) -> None:
        super().__init__(
            "the form held a part sent in a way this page does not read; "
            "open the form again and send it from there"
        )


class TextNotReadable(FormRefused):
    key = "report_text_unreadable"

    def __init__(self) -> None:
        super().__init__(
            "the text could not be read (it was not sent as UTF-8); "
            "open the form again and send it from there"
        )


class IncompleteForm(FormRefused):
    key = "report_incomplete"

    def __init__(self) -> None:
        super().__init__("the report arrived incomplete; check the connection and send it again")


async def read_submission(request: web.Request) -> Submission:
    """The report form of ``request``, read into memory; a ``FormRefused`` the moment it
    breaks a rule."""
    if request.content_type != FORM_TYPE:
        raise NotAForm()
    declared = request.content_length
    if declared is not None and declared > BODY_MAX_BYTES:
        raise BodyTooBig()
    body = _CappedBody(request.content, BODY_MAX_BYTES)
    try:
        reader = MultipartReader(
            request.headers,
            cast(StreamReader, body),  # it offers what the reader uses of a StreamReader
            max_field_size=_PART_HEADER_BYTES,
            max_headers=_PART_HEADERS,
        )
    except ValueError as exc:  # no boundary, or one longer than RFC 2046 allows
        raise NotAForm() from exc
    try:
        return await _read_parts(reader)
    except FormRefused:
        raise
    except (ValueError, HttpProcessingError, ConnectionError, EOFError) as exc:
        # aiohttp's words for a body that ends early or breaks the multipart format.
        raise IncompleteForm() from exc


async def _read_parts(reader: MultipartReader) -> Submission:
    text: str | None = None
    attachments: list[Attachment] = []
    files_left = FILES_MAX_BYTES
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise UnexpectedPart()
        name = part.name
        if not name:
            raise NamelessPart()
        encoding = part.headers.get("Content-Transfer-Encoding", "")
        if encoding.strip().lower() not in _PLAIN_ENCODINGS or "Content-Encoding" in part.headers:
            raise UnexpectedPart()
        if name == TEXT_FIELD:
            if text is not None:
                raise RepeatedText()
            text = _decoded(await _read_part(part, TEXT_MAX_BYTES, TextTooLong))
        elif name == FILE_FIELD:
            data = await _read_file(part, files_left, len(attachments))
            if data:
                files_left -= len(data)
                attachments.append(
                    Attachment(part.filename or "", part.headers.get("Content-Type", ""), data)
                )
        else:
            raise UnknownField()
    return Submission(text or "", tuple(attachments))


async def _read_file(part: BodyPartReader, budget: int, attached: int) -> bytes:
    """A file part's bytes (empty: nothing was chosen). The count cap is checked on the
    part's first bytes, before the rest is read."""
    first = await _next_chunk(part)
    if not first:
        return b""
    if attached >= MAX_FILES:
        raise TooManyFiles()
    if len(first) > budget:
        raise FilesTooBig()
    return first + await _read_part(part, budget - len(first), FilesTooBig)


async def _read_part(part: BodyPartReader, cap: int, too_big: type[FormRefused]) -> bytes:
    data = bytearray()
    while chunk := await _next_chunk(part):
        data += chunk
        if len(data) > cap:
            raise too_big()
    return bytes(data)


async def _next_chunk(part: BodyPartReader) -> bytes:
    """The part's next bytes, b"" at its end; an early end of the body is an error."""
    if part.at_eof():
        return b""
    chunk = await part.read_chunk(READ_BYTES)
    if not chunk and not part.at_eof():
        raise IncompleteForm()
    return chunk


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextNotReadable() from exc


def _mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB"


class _CappedBody:
    """The request's stream, counting what is taken from it (less what is given back):
    past ``cap`` bytes it raises ``BodyTooBig``. It offers only what aiohttp's multipart
    reader calls."""

    def __init__(self, content: StreamReader, cap: int) -> None:
        self._content = content
        self._cap = cap
        self.taken = 0

    async def read(self, n: int) -> bytes:
        return self._count(await self._content.read(n))

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        return self._count(await self._content.readline(max_line_length=max_line_length))

    def at_eof(self) -> bool:
        return self._content.at_eof()

    def unread_data(self, data: bytes) -> None:
        self.taken -= len(data)
        with warnings.catch_warnings():
            # Deprecated in aiohttp, and what its multipart reader itself calls.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._content.unread_data(data)

    def _count(self, data: bytes) -> bytes:
        self.taken += len(data)
        if self.taken > self._cap:
            raise BodyTooBig()
        return data
