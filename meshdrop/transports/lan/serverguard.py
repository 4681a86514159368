"""The node's HTTP server (and the standalone reader's), bounded and quiet: the I/O side
of ``limits.py``.

- ``raise_descriptor_limit``: the soft RLIMIT_NOFILE raised to the hard one at start.
- ``GuardedSite``: an aiohttp site whose every connection is counted (``ConnectionTable``)
  and refused or made room for past the caps; each is served by a ``QuietRequestHandler``.
- aiohttp answers requests it cannot parse itself, with bodies such as "Invalid method
  encountered" that name its parser to any prober: ``QuietRequestHandler`` answers them
  (and any unhandled error) with the node's own short body; ``plain_errors`` does the same
  for every HTTP error an application raises ("404: Not Found" is aiohttp's wording).
  No answer carries a ``Server:`` header.
- ``quiet_exceptions``: the event loop's complaints (a failed accept under EMFILE, a task
  that failed with nobody waiting) said in one line per kind per minute, no traceback.

A connection is idle when aiohttp's handler waits for the next request head
(``RequestHandler._waiter`` set). That attribute is aiohttp's; tests/test_lan_limits.py
checks it still means what this module assumes. ``ConnectionGuard.sweep`` closes idle
connections after ``limits.idle_expired`` (a short head timeout; long for a peer's
connection, marked by ``mark_peer``); aiohttp's own keep-alive timer is only a backstop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web, web_response
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from meshdrop.transports.lan.limits import (
    HEAD_TIMEOUT,
    PEER_KEEPALIVE,
    Admit,
    ConnectionLimits,
    ConnectionTable,
    Throttle,
    idle_expired,
)
from meshdrop.transports.lan.protocol import format_address

REASONS = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    413: "Too large",
    414: "Too long",
    416: "Range not satisfiable",
    431: "Header too large",
    500: "Error",
    501: "Not implemented",
    503: "Busy",
    504: "Timeout",
}
_KEPT_HEADERS = ("Allow", "Retry-After", "Location", "Content-Range")
HANDSHAKE_TIMEOUT = 15.0  # a TLS handshake holds a connection no longer than a head may


async def strip_banner(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp adds "Server: Python/x aiohttp/y" to every answer: a version banner that
    # says what runs here. Nothing else needs it.
    response.headers.popall("Server", None)


def quiet_server() -> None:
    """No banner and no logs, process-wide. aiohttp answers a malformed request itself,
    before any application sees it (so on_response_prepare never runs): its default
    Server value is emptied so that answer names no versions either. Its loggers would
    print a traceback per malformed request and, at INFO, every request: a node keeps no
    record of who asked for what."""
    setattr(web_response, "SERVER_SOFTWARE", "")  # noqa: B010 (a Final constant to mypy)
    for name in ("aiohttp.access", "aiohttp.server", "aiohttp.web", "zeroconf"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (a common default
    is a soft 1,024 under a far higher hard limit). Returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses more than fs.nr_open (2^20 by default), "unlimited" included.
    target = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft)


class BareResponse(web.Response):
    """A response without a ``Server:`` header even where no application's
    on_response_prepare runs (aiohttp's own answers to requests it could not parse)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall("Server", None)


def plain_error(status: int) -> BareResponse:
    """The node's own short answer for an error status: a few neutral words (nothing for
    a redirect), never the server software's wording."""
    text = "" if 300 <= status < 400 else REASONS.get(status, "Error") + "\n"
    return BareResponse(status=status, text=text, content_type="text/plain")


@web.middleware
async def plain_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every HTTP error an application (or aiohttp's router) raises, answered with
    ``plain_error``; the headers that matter (Allow, Retry-After, Location) kept."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 300:
            raise
        response = plain_error(exc.status)
        for name in _KEPT_HEADERS:
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        for cookie in exc.cookies.values():  # a redirect that sets the language
            response.cookies[cookie.key] = cookie
        return response


class QuietRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering what it cannot parse (and unhandled
    errors) with ``plain_error``, and logging nothing about it."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer was under way: only closing is left
            raise ConnectionError("the answer was already being sent")
        response = plain_error(status)
        response.force_close()
        return response


class GuardedProtocol(asyncio.Protocol):
    """One accepted connection: counted by the guard, then handed to aiohttp's handler,
    or closed at once if the guard refuses it. With ``tls`` (a circle's listener), the
    TLS handshake runs after the guard counted the connection, so half-open handshakes
    count against the caps like idle connections (and are closed for room first)."""

    def __init__(
        self, handler: RequestHandler, guard: ConnectionGuard, tls: ssl.SSLContext | None = None
    ) -> None:
        self.handler = handler
        self.guard = guard
        self.tls = tls
        self.transport: asyncio.BaseTransport | None = None
        self.refused = False
        self.handshaking = False
        self.handed = False  # the handler has the connection
        self.peer = False  # carried a peer API request: kept open longer when idle
        self.idle_seen: float | None = None  # when the sweep first saw it idle
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.guard.opened(self, transport):
            self.refused = True
            transport.abort()  # type: ignore[attr-defined]
            return
        if self.tls is None:
            self._hand(transport)
            return
        self.handshaking = True
        self._handshake = asyncio.ensure_future(self._secure(transport, self.tls))

    async def _secure(self, transport: asyncio.BaseTransport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            secured = await loop.start_tls(
                transport,  # type: ignore[arg-type]
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except (OSError, TimeoutError, ConnectionError, asyncio.CancelledError):
            self.handshaking = False
            transport.abort()  # type: ignore[attr-defined]
            self.guard.closed(self)
            return
        self.handshaking = False
        if secured is None:  # closed meanwhile
            self.guard.closed(self)
            return
        self.guard.rebind(self, secured)
        self.transport = secured
        self._hand(secured)

    def _hand(self, transport: asyncio.BaseTransport) -> None:
        self.handed = True
        self.handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.guard.closed(self)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
        if self.handed:
            self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        self.handler.eof_received()
        return None

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def idle(self) -> bool:
        """Waiting for the next request (or the rest of its head), or still in its TLS
        handshake: may be closed."""
        return self.handshaking or getattr(self.handler, "_waiter", None) is not None

    def close_for_room(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]


class ConnectionGuard:
    """Counts the server's connections against ``ConnectionLimits``."""

    def __init__(self, limits: ConnectionLimits, head_timeout: float = HEAD_TIMEOUT) -> None:
        self.limits = limits
        self.head_timeout = head_timeout
        self.table: ConnectionTable[GuardedProtocol] = ConnectionTable(limits, _is_idle)
        self.refused = 0
        self.evicted = 0
        self.expired = 0
        self.peer_connections = 0  # ever opened by peers: pings must not add to it
        self._by_transport: dict[int, GuardedProtocol] = {}

    def mark_peer(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection on ``transport`` carries a peer's requests: keep it when idle."""
        connection = self._by_transport.get(id(transport))
        if connection is not None and not connection.peer:
            connection.peer = True
            self.peer_connections += 1

    def sweep(self, now: float) -> None:
        """Close the connections idle for longer than they may be (``idle_expired``)."""
        for connection in self.table:
            if not connection.idle():
                connection.idle_seen = None
            elif connection.idle_seen is None:
                connection.idle_seen = now
            elif idle_expired(now - connection.idle_seen, connection.peer, self.head_timeout):
                self.expired += 1
                connection.close_for_room()

    async def run_sweeps(self, interval: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            self.sweep(loop.time())

    def opened(self, connection: GuardedProtocol, transport: asyncio.BaseTransport) -> bool:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        decision = self.table.admit(connection, address)
        if not isinstance(decision, Admit):
            self.refused += 1
            return False
        if isinstance(decision.evict, GuardedProtocol):
            self.evicted += 1
            decision.evict.close_for_room()
        self._by_transport[id(transport)] = connection
        return True

    def closed(self, connection: GuardedProtocol) -> None:
        self.table.remove(connection)
        if connection.transport is not None:
            self._by_transport.pop(id(connection.transport), None)

    def rebind(self, connection: GuardedProtocol, transport: asyncio.BaseTransport) -> None:
        """``connection`` now speaks through ``transport`` (TLS over its socket)."""
        if connection.transport is not None:
            self._by_transport.pop(id(connection.transport), None)
        self._by_transport[id(transport)] = connection

    def status(self) -> dict[str, int]:
        return {
            "open": len(self.table),
            "limit": self.limits.total,
            "per_address": self.limits.per_address,
            "peers": sum(1 for c in self.table if c.peer),
            "peers_opened": self.peer_connections,
            "closed_for_room": self.evicted,
            "closed_idle": self.expired,
            "refused": self.refused,
        }


def _is_idle(connection: GuardedProtocol) -> bool:
    return connection.idle()


class GuardedSite(web.BaseSite):
    """A TCP site like aiohttp's TCPSite, its connections counted by ``guard`` and served
    by ``QuietRequestHandler`` with ``handler_options`` (keepalive_timeout, ...)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        guard: ConnectionGuard,
        *,
        backlog: int = 128,
        tls: ssl.SSLContext | None = None,
        **handler_options: Any,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._tls = tls
        self._options = handler_options

    @property
    def name(self) -> str:
        return f"http://{format_address((self._host or '0.0.0.0', self._port))}"  # noqa: S104

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def protocol() -> GuardedProtocol:
            handler = QuietRequestHandler(server, loop=loop, **self._options)
            return GuardedProtocol(handler, self._guard, self._tls)

        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


async def serve_guarded(
    runner: web.BaseRunner,
    host: str,
    port: int,
    guard: ConnectionGuard,
    tls: ssl.SSLContext | None = None,
) -> GuardedSite:
    """Listen on ``host`` ("::": every address) for the node (its main server, or a
    circle's listener with ``tls``): connections counted by ``guard``, idle ones (and
    ones that send no head) closed by its sweeps; aiohttp's keep-alive timer is only a
    backstop, past the peers' keep-alive."""
    site = GuardedSite(
        runner,
        None if host == "::" else host,
        port,
        guard,
        backlog=128,
        tls=tls,
        keepalive_timeout=PEER_KEEPALIVE + 5.0,
        access_log=None,
    )
    await site.start()
    return site


def quiet_exceptions(
    loop: asyncio.AbstractEventLoop,
    throttle: Throttle | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """The event loop's complaints, one line per kind per interval and no traceback
    (MESHDROP_DEBUG=1 adds asyncio's full report)."""
    limiter = throttle or Throttle()

    def write(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    speak = say or write

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message") or "error")
        kind = f"{message}|{type(exc).__name__ if exc is not None else ''}"
        held = limiter.allow(kind, loop.time())
        if held is None:
            return
        detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        more = f"; {held} more like it since the last report" if held else ""
        speak(f"node: {message}{detail}{more}")
        if os.environ.get("MESHDROP_DEBUG"):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
