"""HTTP/1.1 for the peer client: keep-alive connections that read a response body straight
into memory the caller owns, and accept only the HTTP that the peer API uses.

Why not aiohttp's client (the node's server stays aiohttp): a chunk is 1 MiB, and
aiohttp's client copies each one once more than the socket did (into its stream buffer,
then joined into one bytes) and spends a fraction of a millisecond of event-loop time
per request. Reading into the caller's buffer with ``asyncio.BufferedProtocol`` halved
the event loop's CPU over a 512 MiB transfer (figures in CHANGELOG.md). Being narrow is
also a defence: what a hostile peer can send is checked here in a few lines, not by a
general parser (the rules: docs/PROTOCOL.md section 2).

Accepted responses: a status line ``HTTP/1.x NNN reason``, at most MAX_HEAD bytes of
head, header lines ``name: value``; a body only as one ``Content-Length`` of digits. A
``Transfer-Encoding`` (chunked or other), a duplicated length, or a folded or nameless
header line is a protocol error (``PeerMisbehaved``). The socket receives exactly the
declared body; a byte beyond it closes the connection. A connection is reused only after
a complete 200 response that did not ask to close (no ``close`` token in ``Connection``).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshdrop.transports.lan.errors import PeerMisbehaved
from meshdrop.transports.lan.protocol import Address, format_address

MAX_HEAD = 8 * 1024
MAX_HEADERS = 64
MAX_IDLE_PEERS = 64  # peers with idle connections kept before closed ones are swept out
_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\r\n]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIGITS = re.compile(r"[0-9]{1,15}")
_SINGLE = frozenset({"content-length", "transfer-encoding", "content-encoding", "connection"})


@dataclass(frozen=True)
class ClientLimits:
    """The peer client's bounds: time is enforced here, concurrency by client.py."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0  # no byte for this long: give up
    min_rate: float = 16 * 1024.0  # bytes per second a response must average ...
    min_time: float = 10.0  # ... once this long has passed (any request may take it)
    per_peer: int = 6
    total: int = 24
    # Under the servers' PEER_KEEPALIVE (limits.py), above the ping interval: a peer's
    # pings ride one connection (a new one would cost a TCP, and in a circle a TLS,
    # handshake each time).
    keepalive: float = 240.0


@dataclass(frozen=True)
class Head:
    status: int
    headers: dict[str, str]  # lower-case names
    keep_alive: bool

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return None if value is None else int(value)


class Slow(TimeoutError):
    """The peer sent nothing for the read timeout, or less than the minimum rate."""


def parse_head(raw: bytes, who: str) -> Head:
    lines = raw.split(b"\r\n")
    status = _STATUS.fullmatch(lines[0])
    if status is None:
        raise PeerMisbehaved(f"peer {who} sent a malformed status line")
    if len(lines) - 1 > MAX_HEADERS:
        raise PeerMisbehaved(f"peer {who} sent more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise PeerMisbehaved(f"peer {who} sent a malformed header line")
        key = name.decode("ascii").lower()
        if key in headers and key in _SINGLE:
            raise PeerMisbehaved(f"peer {who} sent the {key} header twice")
        headers[key] = value.strip(b" \t").decode("latin-1")
    if "transfer-encoding" in headers:
        raise PeerMisbehaved(f"peer {who} sent a transfer-coded answer (only Content-Length)")
    length = headers.get("content-length")
    if length is not None and not _DIGITS.fullmatch(length):
        raise PeerMisbehaved(f"peer {who} sent a malformed Content-Length")
    # A list of tokens, in any case (RFC 9110 section 7.6.1): "keep-alive, close" closes.
    connection = {token.strip(" \t").lower() for token in headers.get("connection", "").split(",")}
    keep_alive = status.group(1) == b"1" and "close" not in connection
    return Head(int(status.group(2)), headers, keep_alive)


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection to a peer, one request at a time: ``send`` a request and
    await its head, then ``receive_into`` a buffer of exactly the body's length. Whatever
    arrives is received into that buffer by the socket itself (no copy in between)."""

    def __init__(self, limits: ClientLimits, who: str) -> None:
        self.limits = limits
        self.who = who
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = 0  # requests sent on this connection
        self.answered = False  # any byte of the current answer arrived
        self.idle_since = self.loop.time()
        self._head = bytearray(MAX_HEAD)
        self._head_view = memoryview(self._head)
        self._head_len = 0
        self._head_end = -1  # where the head ends in _head, once it has
        self._body: memoryview | None = None
        self._got = 0
        self._state = "idle"  # idle, head, paused (head done, no buffer yet), body
        self._waiter: asyncio.Future[None] | None = None
        self._started = 0.0
        self._activity = 0.0
        self._watch: asyncio.TimerHandle | None = None

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._state == "body":
            assert self._body is not None
            return self._body[self._got :]
        if self._state == "head" and self._head_len < MAX_HEAD:
            return self._head_view[self._head_len :]
        return self._head_view  # unexpected bytes: buffer_updated refuses them

    def buffer_updated(self, nbytes: int) -> None:
        self._activity = self.loop.time()
        self.answered = True
        if self._state == "body":
            assert self._body is not None
            self._got += nbytes
            if self._got == len(self._body):
                self._state = "idle"
                self._wake()
            return
        if self._state != "head":
            self._fail(PeerMisbehaved(f"peer {self.who} sent bytes nobody asked for"))
            return
        seen = self._head_len
        self._head_len += nbytes
        end = self._head.find(b"\r\n\r\n", max(0, seen - 3), self._head_len)
        if end >= 0:
            self._head_end = end
            self._state = "paused"
            assert self.transport is not None
            self.transport.pause_reading()  # until the caller says where the body goes
            self._wake()
        elif self._head_len >= MAX_HEAD:
            self._fail(PeerMisbehaved(f"peer {self.who} sent a head over {MAX_HEAD} bytes"))

    def eof_received(self) -> bool:
        return False  # close; connection_lost tells a waiting request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_watch()
        self._fail(ConnectionResetError(f"peer {self.who} closed the connection"))

    # Requests

    async def send(self, request: bytes) -> Head:
        """Send ``request`` and wait for the head of the answer."""
        if self.closed or self.transport is None:
            raise ConnectionResetError(f"peer {self.who} closed the connection")
        self.used += 1
        self._head_len, self._head_end, self._got, self._body = 0, -1, 0, None
        self.answered = False
        self._state = "head"
        self._started = self._activity = self.loop.time()
        self.transport.write(request)
        await self._wait()
        return parse_head(bytes(self._head_view[: self._head_end]), self.who)

    async def receive_into(self, body: memoryview) -> None:
        """Fill ``body`` (exactly the declared length) with the rest of the answer."""
        assert self._state == "paused" and self.transport is not None
        early = self._head_view[self._head_end + 4 : self._head_len]
        surplus = len(early) > len(body)  # bytes beyond the body: never reused
        early = early[: len(body)]
        body[: len(early)] = early
        self._body, self._got = body, len(early)
        if self._got == len(body):
            self._state = "idle"
            if surplus:
                self.abort()
                return
        else:
            self._state = "body"
            self.transport.resume_reading()
            await self._wait()
        self.transport.resume_reading()  # idle: a stray byte, or the peer closing, is seen
        self._body = None

    def finished(self) -> None:
        """The exchange is over and the connection may be reused."""
        assert self._state == "idle"
        self.idle_since = self.loop.time()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    # Waiting, bounded in time

    async def _wait(self) -> None:
        if self.closed:  # lost while nobody waited (a reset while the body was paused)
            raise ConnectionResetError(f"peer {self.who} closed the connection")
        self._waiter = self.loop.create_future()
        self._arm()
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._stop_watch()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if not isinstance(exc, ConnectionResetError):
            self.abort()

    def _arm(self) -> None:
        self._stop_watch()
        self._watch = self.loop.call_at(
            self._activity + min(self.limits.read_timeout, 1.0), self._check
        )

    def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _check(self) -> None:
        self._watch = None
        now = self.loop.time()
        elapsed = now - self._started
        received = self._head_len + self._got
        if now - self._activity >= self.limits.read_timeout:
            self._fail(Slow(f"peer {self.who} sent nothing for {self.limits.read_timeout:g} s"))
        elif elapsed > self.limits.min_time and received < elapsed * self.limits.min_rate:
            self._fail(Slow(f"peer {self.who} is too slow"))
        else:
            self._watch = self.loop.call_at(
                min(self._activity + self.limits.read_timeout, now + 1.0), self._check
            )


TLSFor = Callable[[Address], ssl.SSLContext | None]


def no_tls(_: Address) -> ssl.SSLContext | None:
    return None


class Pool:
    """Idle keep-alive connections per peer; new ones from ``local_host`` when given,
    over TLS with the context ``tls(address)`` gives (a circle member), else plain."""

    def __init__(self, limits: ClientLimits, local_host: str | None, tls: TLSFor = no_tls) -> None:
        self.limits = limits
        self.local_host = local_host
        self.tls = tls
        self._idle: dict[Address, list[Connection]] = {}

    async def request(self, address: Address, request: bytes) -> tuple[Connection, Head]:
        """A connection with ``request`` sent on it, and the head of its answer. A reused
        connection that the peer closed before answering (it keeps them open for less
        long than it says) is dropped and the request sent on the next one; a new
        connection is not retried."""
        while True:
            connection = self._take(address) or await self._connect(address)
            try:
                return connection, await connection.send(request)
            except ConnectionResetError:
                connection.abort()
                if connection.used > 1 and not connection.answered:
                    continue
                raise
            except BaseException:
                connection.abort()
                raise

    def give_back(self, address: Address, connection: Connection) -> None:
        connection.finished()
        if address not in self._idle and len(self._idle) >= MAX_IDLE_PEERS:
            self._sweep()
        self._idle.setdefault(address, []).append(connection)

    def _sweep(self) -> None:
        """Forget connections that closed or expired (peers come and go for days)."""
        now = asyncio.get_running_loop().time()
        for address, idle in list(self._idle.items()):
            for connection in idle:
                if self._stale(connection, now):
                    connection.abort()
            idle[:] = [c for c in idle if not c.closed]
            if not idle:
                del self._idle[address]

    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def _stale(self, connection: Connection, now: float) -> bool:
        return connection.closed or now - connection.idle_since >= self.limits.keepalive

    def _take(self, address: Address) -> Connection | None:
        idle = self._idle.get(address)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if not self._stale(connection, now):
                return connection
            connection.abort()
        self._idle.pop(address, None)
        return None

    async def _connect(self, address: Address) -> Connection:
        loop = asyncio.get_running_loop()
        who = format_address(address)
        host, port = address
        context = self.tls(address)
        # No server name: no SNI in the clear, and circle certificates name no host.
        secure: dict[str, Any] = {} if context is None else {"ssl": context, "server_hostname": ""}
        async with asyncio.timeout(self.limits.connect_timeout):
            _, protocol = await loop.create_connection(
                lambda: Connection(self.limits, who),
                host,
                port,
                local_addr=(self.local_host, 0) if self.local_host else None,
                **secure,
            )
        return protocol

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()


def request_bytes(
    method: str, address: Address, path: str, body: bytes | None, content_type: str
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {format_address(address)}"]
    if body is not None:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head + body if body is not None else head
