"""reader/reportform.py on a real aiohttp server (127.0.0.1, port 0) with real multipart
bodies: aiohttp's client FormData (what a browser's form sends), bodies written out by hand
where they must be malformed, and raw bytes over a socket where a body lies about its
length. Each cap and each malformed form is a named case: a one-line refusal with its
status, nothing kept; and a check that nothing of a form touches the disk."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from meshdrop.reader import reportform
from meshdrop.reader.reportform import (
    BODY_MAX_BYTES,
    FILES_MAX_BYTES,
    MAX_FILES,
    TEXT_MAX_BYTES,
    Submission,
)

KOREAN = "여권을 빼앗겼습니다. 임금은 석 달째 받지 못했습니다."
PATH = "/write"
MIB = 1024 * 1024


@dataclass
class Outcomes:
    """What the server's handler saw: each submission read, or each refusal's name."""

    read: list[Submission] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


async def answer(request: web.Request, outcomes: Outcomes) -> web.Response:
    try:
        submission = await reportform.read_submission(request)
    except reportform.FormRefused as refused:
        outcomes.refused.append(type(refused).__name__)
        body = {"refused": type(refused).__name__, "message": str(refused), "key": refused.key}
        return web.json_response(body, status=refused.status)
    outcomes.read.append(submission)
    files = [
        [a.name, a.declared_type, len(a.data), hashlib.sha256(a.data).hexdigest()]
        for a in submission.attachments
    ]
    return web.json_response({"text": submission.text, "files": files})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answering(outcomes: Outcomes) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await answer(request, outcomes)

    return handler


@asynccontextmanager
async def serving(handler: Handler, max_size: int = 1024**2) -> AsyncIterator[tuple[str, int]]:
    app = web.Application(client_max_size=max_size)  # for request.post() only
    app.router.add_post(PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield "127.0.0.1", runner.addresses[0][1]
    finally:
        await runner.cleanup()


def post(body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Outcomes]:
    """POST ``body`` (FormData, bytes, chunks) to a fresh server: the status, the
    JSON answer and what the handler saw."""
    outcomes = Outcomes()

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with serving(answering(outcomes)) as (host, port), aiohttp.ClientSession() as client:
            url = f"http://{host}:{port}{PATH}"
            async with client.post(url, data=body, headers=headers) as response:
                return response.status, await response.json()

    status, reply = asyncio.run(scenario())
    return status, reply, outcomes


def form(text: str | None = KOREAN, files: Sequence[tuple[str, bytes]] = ()) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)  # as a browser's form with a file input
    if text is not None:
        data.add_field("text", text)
    for name, content in files:
        data.add_field("file", content, filename=name, content_type="image/jpeg")
    return data


def assert_refused(
    result: tuple[int, dict[str, Any], Outcomes], name: str, status: int, words: str
) -> None:
    code, reply, outcomes = result
    assert (code, reply["refused"]) == (status, name), reply
    assert words in reply["message"], reply["message"]
    assert "\n" not in reply["message"] and "Traceback" not in reply["message"]
    assert reply["key"].startswith("report_")
    assert outcomes.read == [] and outcomes.refused == [name]


# Taken


def test_a_form_with_text_and_photos_is_read_into_memory() -> None:
    photos = [("IMG_0001.jpg", os.urandom(300_000)), ("room.jpg", b"\xff\xd8\xff" + b"x" * 10)]
    body = form(KOREAN, photos)
    body.add_field("file", b"", filename="", content_type="application/octet-stream")

    status, reply, outcomes = post(body)

    assert status == 200, reply
    assert reply["text"] == KOREAN
    assert reply["files"] == [
        [name, "image/jpeg", len(data), hashlib.sha256(data).hexdigest()] for name, data in photos
    ]
    assert outcomes.read[0].attachments[0].data == photos[0][1]


def test_a_form_with_no_file_chosen_has_no_attachments() -> None:
    body = form("only words")
    body.add_field("file", b"", filename="", content_type="application/octet-stream")

    status, reply, _ = post(body)

    assert (status, reply) == (200, {"text": "only words", "files": []})


def test_everything_at_its_cap_is_taken() -> None:
    text = "가" * (TEXT_MAX_BYTES // 3) + "a" * (TEXT_MAX_BYTES % 3)
    assert len(text.encode()) == TEXT_MAX_BYTES
    size = FILES_MAX_BYTES // MAX_FILES
    files = [(f"{i}.jpg", bytes([i]) * size) for i in range(MAX_FILES)]

    status, reply, _ = post(form(text, files))

    assert status == 200, reply
    assert reply["text"] == text and len(reply["files"]) == MAX_FILES


# Caps


def test_text_over_64_kib_is_refused() -> None:
    assert_refused(
        post(form("a" * (TEXT_MAX_BYTES + 1))),
        "TextTooLong",
        413,
        "the text is too long: at most 64 KiB",
    )


def test_a_ninth_file_is_refused() -> None:
    files = [(f"{i}.jpg", b"photo %d" % i) for i in range(MAX_FILES + 1)]

    assert_refused(
        post(form("x", files)), "TooManyFiles", 413, "too many photos or files: at most 8"
    )


def test_files_over_8_mib_together_are_refused() -> None:
    files = [("a.jpg", b"a" * (5 * MIB)), ("b.jpg", b"b" * (3 * MIB + 1))]

    assert_refused(
        post(form("x", files)),
        "FilesTooBig",
        413,
        "the photos are too big together: at most 8 MiB",
    )


def test_one_file_over_8_mib_is_refused() -> None:
    assert_refused(
        post(form("x", [("a.jpg", b"a" * (FILES_MAX_BYTES + 1))])), "FilesTooBig", 413, "8 MiB"
    )


def test_a_body_over_9_mib_is_refused_as_it_is_read() -> None:
    """Sent chunked (no declared length): 9 MiB of lines before the first boundary, which
    aiohttp's multipart reader itself would skip without end."""
    form_itself = raw_form(('Content-Disposition: form-data; name="text"', b"x"))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(BODY_MAX_BYTES // 4096 + 1):
            yield b"preamble lines\r\n" * 256  # 4096 bytes
        yield b"\r\n" + form_itself

    assert_refused(
        post(chunks(), FORM_HEADERS),
        "BodyTooBig",
        413,
        "the report is too big: at most 9 MiB in all",
    )


# Bodies that lie about their length (raw bytes over a socket)


async def _raw_exchange(host: str, port: int, request: bytes, close_after: bool) -> bytes:
    """Send ``request``, maybe end the sending side, and read one whole answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        if close_after:
            writer.write_eof()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as cut:
            return cut.partial
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        return head + await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


def raw_post(body: bytes, declared: int, close_after: bool = False) -> tuple[bytes, Outcomes]:
    """POST ``body`` with ``declared`` as its Content-Length, over a plain socket."""
    outcomes = Outcomes()

    async def scenario() -> bytes:
        async with serving(answering(outcomes)) as (host, port):
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {declared}\r\nConnection: close\r\n\r\n"
            ).encode()
            return await _raw_exchange(host, port, head + body, close_after)

    return asyncio.run(scenario()), outcomes


def lying_body() -> bytes:
    return raw_form(('Content-Disposition: form-data; name="text"', KOREAN.encode()))


def test_a_body_longer_than_its_declared_length_is_refused_as_incomplete() -> None:
    """The server reads only the declared length: the form it sees stops before its
    closing boundary (the rest, sent later, would be another request)."""
    body = lying_body()
    declared = len(body) - 20

    answer_bytes, outcomes = raw_post(body[:declared], declared)

    assert answer_bytes.startswith(b"HTTP/1.1 400")
    assert b"the report arrived incomplete" in answer_bytes
    assert outcomes.refused == ["IncompleteForm"] and outcomes.read == []


def test_a_body_shorter_than_its_declared_length_is_refused_when_it_ends() -> None:
    body = lying_body()

    _answer, outcomes = raw_post(body[:-20], declared=len(body), close_after=True)

    assert outcomes.refused == ["IncompleteForm"] and outcomes.read == []


def test_a_declared_length_over_9_mib_is_refused_before_the_body_is_sent() -> None:
    # Only the head is sent: the answer comes without a byte of the body.
    answer_bytes, outcomes = raw_post(b"", declared=BODY_MAX_BYTES + 1)

    assert answer_bytes.startswith(b"HTTP/1.1 413")
    assert b"the report is too big: at most 9 MiB in all" in answer_bytes
    assert outcomes.refused == ["BodyTooBig"]


# Malformed forms


BOUNDARY = "formboundary0123"
FORM_HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def raw_form(*parts: tuple[str, bytes]) -> bytes:
    """A form-data body written out by hand: each part's header lines as given (aiohttp's
    writer refuses to write the malformed ones), then its bytes."""
    body = b"".join(
        f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode() + content + b"\r\n" for head, content in parts
    )
    return body + f"--{BOUNDARY}--\r\n".encode()


def test_a_part_without_a_name_is_refused() -> None:
    body = raw_form(("Content-Disposition: form-data", b"x"))

    assert_refused(post(body, FORM_HEADERS), "NamelessPart", 400, "a part without a name")


def test_a_part_without_any_disposition_is_refused() -> None:
    body = raw_form(("Content-Type: text/plain", b"x"))

    assert_refused(post(body, FORM_HEADERS), "NamelessPart", 400, "a part without a name")


def test_an_unknown_field_is_refused() -> None:
    body = form("x")
    body.add_field("publisher", "someone")

    assert_refused(post(body), "UnknownField", 400, "a field this page does not know")


def test_the_text_twice_is_refused() -> None:
    body = form("first")
    body.add_field("text", "second")

    assert_refused(post(body), "RepeatedText", 400, "the text twice")


def test_text_that_is_not_utf8_is_refused() -> None:
    body = raw_form(('Content-Disposition: form-data; name="text"', "안녕".encode("euc-kr")))

    assert_refused(post(body, FORM_HEADERS), "TextNotReadable", 400, "not sent as UTF-8")


def test_a_base64_encoded_part_is_refused() -> None:
    head = 'Content-Disposition: form-data; name="text"\r\nContent-Transfer-Encoding: base64'

    assert_refused(
        post(raw_form((head, b"aGk=")), FORM_HEADERS), "UnexpectedPart", 400, "does not read"
    )


def test_a_compressed_part_is_refused() -> None:
    head = 'Content-Disposition: form-data; name="text"\r\nContent-Encoding: gzip'

    assert_refused(
        post(raw_form((head, b"\x1f\x8b")), FORM_HEADERS), "UnexpectedPart", 400, "does not read"
    )


def test_a_nested_multipart_is_refused() -> None:
    head = (
        'Content-Disposition: form-data; name="file"\r\nContent-Type: multipart/mixed; boundary=in'
    )
    inner = b"--in\r\nContent-Type: text/plain\r\n\r\nx\r\n--in--"

    assert_refused(
        post(raw_form((head, inner)), FORM_HEADERS), "UnexpectedPart", 400, "does not read"
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/json",
        "multipart/mixed; boundary=abc",
        "multipart/form-data",  # no boundary
        "multipart/form-data; boundary=" + "b" * 71,  # longer than RFC 2046 allows
    ],
)
def test_a_body_that_is_not_a_multipart_form_is_refused(content_type: str) -> None:
    assert_refused(
        post(b"text=hello", {"Content-Type": content_type}),
        "NotAForm",
        415,
        "this page could not read what was sent",
    )


@pytest.mark.parametrize(
    "head",
    [
        'Content-Disposition: form-data; name="text"\r\n' + "X-Pad: 1\r\n" * 40,
        'Content-Disposition: form-data; name="text"\r\nX-Pad: ' + "x" * 9000,
    ],
    ids=["too many header lines", "a header line too long"],
)
def test_a_part_with_oversized_headers_is_refused(head: str) -> None:
    assert_refused(post(raw_form((head, b"x")), FORM_HEADERS), "IncompleteForm", 400, "incomplete")


def test_a_body_with_no_boundary_in_it_is_refused_as_incomplete() -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=abc"}

    assert_refused(post(b"no boundary here\r\n", headers), "IncompleteForm", 400, "incomplete")


# Nothing on disk


def regular_files_open() -> dict[int, str]:
    """This process's open regular files (deleted and unnamed ones too), by descriptor."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISREG(os.fstat(int(name)).st_mode):
                found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listing itself, closed meanwhile
            continue
    return found


def files_opened_while(
    read: Callable[[web.Request], Awaitable[object]], body: aiohttp.FormData
) -> list[str]:
    """The regular files that were open in this process after ``read`` took the form and
    not before the request came: what it spooled to disk and still holds."""
    opened: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        before = regular_files_open()
        kept = await read(request)  # held: a spooled file closes when its field goes
        after = regular_files_open()
        del kept
        opened.extend(path for fd, path in after.items() if before.get(fd) != path)
        return web.Response(text="ok")

    async def scenario() -> None:
        async with (
            serving(handler, 16 * MIB) as (host, port),
            aiohttp.ClientSession() as client,
            client.post(f"http://{host}:{port}{PATH}", data=body) as response,
        ):
            assert response.status == 200

    asyncio.run(scenario())
    return opened


@pytest.fixture
def empty_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR an empty folder, and tempfile made to look at it again."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert tempfile.gettempdir() == str(folder)
    return folder


def test_a_report_form_touches_no_file(empty_tmpdir: Path) -> None:
    photo = os.urandom(2 * MIB)
    body = form(KOREAN, [("a.jpg", photo), ("b.jpg", photo[:1000])])

    opened = files_opened_while(reportform.read_submission, body)

    assert opened == []
    assert list(empty_tmpdir.iterdir()) == []


def test_the_disk_check_sees_what_request_post_spools(empty_tmpdir: Path) -> None:
    """The check above can fail: aiohttp's own ``request.post()`` spools each file field
    over 1 MiB to a temporary file (unnamed, in TMPDIR), which the check finds."""

    async def spooling(request: web.Request) -> object:
        return await request.post()

    opened = files_opened_while(spooling, form(KOREAN, [("a.jpg", os.urandom(2 * MIB))]))

    assert opened and all(path.startswith(str(empty_tmpdir)) for path in opened), opened
