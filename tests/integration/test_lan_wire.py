"""The peer client's HTTP (transports/lan/wire.py) against a scripted raw TCP server on
127.0.0.1 (port 0): each test names what a peer sends and what the client must make of
it. Real sockets; the server writes exactly the bytes the test gives it."""

from __future__ import annotations

import asyncio
import hashlib
import mmap
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from meshdrop.core.manifest import ChunkRef
from meshdrop.transports.lan.buffers import ByteBudget
from meshdrop.transports.lan.client import ClientLimits, PeerClient
from meshdrop.transports.lan.errors import (
    PeerBusy,
    PeerMisbehaved,
    PeerNotFound,
    PeerUnreachable,
)

FAST = ClientLimits(connect_timeout=1.0, read_timeout=0.5, min_rate=64 * 1024.0, min_time=0.5)
DATA = os.urandom(100_000)
REF = ChunkRef("data.bin", 0, len(DATA), hashlib.sha256(DATA).digest())

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def ok(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Scripted:
    """A TCP server that answers each request on a connection with the next script."""

    def __init__(self, answer: Callable[[int], Script]) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    def hang_up(self) -> None:
        for writer in self.writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(head)
                await self.answer(len(self.requests))(reader, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()


def send(data: bytes, close: bool = False) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        if close:
            writer.close()

    return script


@asynccontextmanager
async def serving(answer: Callable[[int], Script]) -> AsyncIterator[tuple[Scripted, PeerClient]]:
    scripted = Scripted(answer)
    server = await asyncio.start_server(scripted._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = PeerClient(FAST, local_host="127.0.0.1")
    await client.start()
    client.address = ("127.0.0.1", port)  # type: ignore[attr-defined]
    try:
        yield scripted, client
    finally:
        await client.close()
        server.close()


async def fetch_chunk(client: PeerClient) -> bytes:
    buffer = mmap.mmap(-1, 1024 * 1024)
    got = await client.chunk_into(client.address, REF, memoryview(buffer))  # type: ignore[attr-defined]
    return bytes(got)


def run(coro: Awaitable[None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await coro

    asyncio.run(bounded())


def test_a_chunk_arrives_whole_and_connections_are_reused() -> None:
    async def go() -> None:
        async with serving(lambda n: send(ok(DATA))) as (scripted, client):
            for _ in range(3):
                assert await fetch_chunk(client) == DATA
            assert scripted.connections == 1
            assert all(r.startswith(b"GET /peer/v1/chunk/") for r in scripted.requests)
            assert b"user-agent" not in b"".join(scripted.requests).lower()

    run(go())


def test_a_connection_closed_by_the_peer_between_requests_is_replaced() -> None:
    async def go() -> None:
        async with serving(lambda n: send(ok(DATA), close=True)) as (scripted, client):
            assert await fetch_chunk(client) == DATA
            await asyncio.sleep(0.1)
            assert await fetch_chunk(client) == DATA
            assert scripted.connections == 2

    run(go())


def test_connection_close_is_honoured() -> None:
    async def go() -> None:
        async with serving(lambda n: send(ok(DATA, "Connection: close"))) as (scripted, client):
            assert await fetch_chunk(client) == DATA
            assert await fetch_chunk(client) == DATA
            assert scripted.connections == 2

    run(go())


CONNECTION_HEADERS = {  # the header a peer sends -> connections two requests take
    "keep-alive, close": ("Connection: keep-alive, close", 2),
    "close, keep-alive": ("Connection: close, keep-alive", 2),
    "CLOSE in capitals": ("Connection: CLOSE", 2),
    "close among others, tab-spaced": ("Connection: upgrade,\tClose ", 2),
    "keep-alive alone": ("Connection: Keep-Alive", 1),
}


@pytest.mark.parametrize("name", CONNECTION_HEADERS)
def test_connection_close_is_honoured_among_other_tokens(name: str) -> None:
    header, connections = CONNECTION_HEADERS[name]

    async def go() -> None:
        async with serving(lambda n: send(ok(DATA, header))) as (scripted, client):
            assert await fetch_chunk(client) == DATA
            assert await fetch_chunk(client) == DATA
            assert scripted.connections == connections

    run(go())


@pytest.mark.parametrize(
    ("name", "answer", "error", "message"),
    [
        ("a malformed status line", b"HTTP/9 200 OK\r\n\r\n", PeerMisbehaved, "status line"),
        (
            "a head over 8 KiB",
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 9000,
            PeerMisbehaved,
            "head over",
        ),
        (
            "a folded header line",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n continued\r\n\r\nx",
            PeerMisbehaved,
            "malformed header",
        ),
        (
            "a chunked answer",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"10000\r\n" + b"x" * 99,
            PeerMisbehaved,
            "transfer-coded",
        ),
        (
            "an answer of no declared length",
            b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1000,
            PeerMisbehaved,
            "no declared length",
        ),
        (
            "the length declared twice",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            PeerMisbehaved,
            "twice",
        ),
        (
            "a signed length",
            b"HTTP/1.1 200 OK\r\nContent-Length: +100000\r\n\r\n",
            PeerMisbehaved,
            "malformed Content-Length",
        ),
        (
            "a huge declared length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\nxxxx",
            PeerMisbehaved,
            "declares 1099511627776 bytes",
        ),
        (
            "a compressed answer",
            ok(DATA, "Content-Encoding: gzip"),
            PeerMisbehaved,
            "compressed",
        ),
        ("status 500", b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", PeerMisbehaved, "500"),
        ("status 404", b"HTTP/1.1 404 No\r\nContent-Length: 0\r\n\r\n", PeerNotFound, "have"),
        ("status 503", b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", PeerBusy, "busy"),
        ("a hang-up mid-body", ok(DATA)[:5000], PeerUnreachable, "ConnectionResetError"),
    ],
    ids=lambda v: v.replace(" ", "-") if isinstance(v, str) and " " in v else None,
)
def test_a_bad_answer_is_refused(
    name: str, answer: bytes, error: type[Exception], message: str
) -> None:
    async def go() -> None:
        async with serving(lambda n: send(answer, close=name == "a hang-up mid-body")) as (
            scripted,
            client,
        ):
            with pytest.raises(error, match=message):
                await fetch_chunk(client)
            # The connection is never reused after a refused answer.
            scripted.answer = lambda n: send(ok(DATA))
            assert await fetch_chunk(client) == DATA
            assert scripted.connections == 2

    run(go())


def test_a_peer_silent_after_the_head_times_out() -> None:
    async def go() -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        async with serving(lambda n: send(head)) as (_, client):
            with pytest.raises(PeerUnreachable, match="too slow"):
                await fetch_chunk(client)

    run(go())


def test_a_slow_drip_is_cut_off_at_the_minimum_rate() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(DATA)[:200])
        for i in range(200, 40_000, 1000):  # ~10 KiB/s: below the minimum, never silent
            await asyncio.sleep(0.1)
            writer.write(ok(DATA)[i : i + 1000])

    async def go() -> None:
        async with serving(lambda n: drip) as (_, client):
            with pytest.raises(PeerUnreachable, match="too slow"):
                await fetch_chunk(client)

    run(go())


def test_bytes_beyond_the_declared_body_close_the_connection() -> None:
    async def go() -> None:
        async with serving(lambda n: send(ok(DATA) + b"surplus" * 1000)) as (scripted, client):
            assert await fetch_chunk(client) == DATA  # what was declared, and not a byte more
            await asyncio.sleep(0.1)
            assert await fetch_chunk(client) == DATA
            assert scripted.connections == 2

    run(go())


def test_bytes_beyond_a_small_body_in_the_same_packet_close_the_connection() -> None:
    async def go() -> None:
        async with serving(lambda n: send(ok(b"tiny") + b"surplus")) as (scripted, client):
            address = client.address  # type: ignore[attr-defined]
            for _ in range(2):
                assert bytes(await client._fetch(address, "hello", 100)) == b"tiny"
            assert scripted.connections == 2

    run(go())


def test_a_cancelled_request_stops_writing_into_the_buffer() -> None:
    """A stopped node releases a chunk buffer for reuse: the socket must not go on
    filling it."""
    release = asyncio.Event()

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(DATA)[:50_000])
        await writer.drain()
        await release.wait()
        writer.write(ok(DATA)[50_000:])
        await writer.drain()

    async def go() -> None:
        async with serving(lambda n: half) as (_, client):
            buffer = mmap.mmap(-1, 1024 * 1024)
            view = memoryview(buffer)
            address = client.address  # type: ignore[attr-defined]
            task = asyncio.ensure_future(client.chunk_into(address, REF, view))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            before = bytes(view[: len(DATA)])
            release.set()
            await asyncio.sleep(0.3)
            assert bytes(view[: len(DATA)]) == before
            assert before != DATA

    run(go())


def test_a_post_carries_its_body_and_length() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await reader.readexactly(5)
        writer.write(ok(body))
        await writer.drain()

    async def go() -> None:
        async with serving(lambda n: echo) as (scripted, client):
            address = client.address  # type: ignore[attr-defined]
            got = await client._fetch(address, "inventory", 100, body=b"hello")
            assert bytes(got) == b"hello"
            [request] = scripted.requests
            assert request.startswith(b"POST /peer/v1/inventory HTTP/1.1\r\n")
            assert b"Content-Length: 5\r\n" in request

    run(go())


def test_connections_of_peers_that_went_away_are_forgotten() -> None:
    """A node meets peers for days: idle connections the peers closed do not pile up."""

    async def go() -> None:
        client = PeerClient(FAST, local_host="127.0.0.1")
        await client.start()
        scripted = Scripted(lambda n: send(ok(DATA)))
        servers = [await asyncio.start_server(scripted._serve, "127.0.0.1", 0) for _ in range(80)]
        try:
            for server in servers:
                client.address = ("127.0.0.1", server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
                assert await fetch_chunk(client) == DATA
                server.close()
                scripted.hang_up()
            await asyncio.sleep(0.2)
            assert client._pool is not None
            assert scripted.connections == 80
            assert client._pool.idle_connections() < 70
        finally:
            await client.close()

    run(go())


def test_unchecked_envelopes_wait_for_room_in_their_byte_budget() -> None:
    """Envelopes are fetched from many peers at once and may be 24 MiB each until they
    are checked: their declared sizes are taken from one budget before their bodies are
    read, and a fetch that does not fit waits until a hold ends."""
    envelope = os.urandom(100_000)

    async def go() -> None:
        async with serving(lambda n: send(ok(envelope))) as (_, client):
            address = client.address  # type: ignore[attr-defined]
            budget = ByteBudget(150_000)
            digest = hashlib.sha256(envelope).digest()
            async with budget.hold() as first:
                assert await client.envelope(address, digest, first) == envelope
                assert budget.free == 50_000

                async def second() -> bytes:
                    async with budget.hold() as hold:
                        return await client.envelope(address, digest, hold)

                waiting = asyncio.ensure_future(second())
                await asyncio.sleep(0.3)
                assert not waiting.done()  # its head arrived; its body is not read yet
            assert await waiting == envelope
            assert budget.free == 150_000

    run(go())


def test_a_hold_larger_than_the_whole_budget_takes_all_of_it() -> None:
    async def go() -> None:
        budget = ByteBudget(1000)
        async with budget.hold() as hold:
            await hold.take(5000)
            assert budget.free == 0
        assert budget.free == 1000

    run(go())
