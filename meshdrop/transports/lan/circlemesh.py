"""The node in its circles (docs/PROTOCOL.md sections 10-12): per circle, a listener that
speaks TLS 1.3 with members only and serves them the peer API, nothing else. Which peer
is a member of which circle is known here: the peer client asks ``tls_for(address)``
before it connects, and hellos tell the peer which of our ports to call back on
(``port_for``). In a quiet node (a circle and no ``--open``) no connection is ever plain:
a peer of unknown circle (one named with ``--peer``) is called with the first circle's
certificate.

The announcements are circlediscovery.py's; the node wires the two together.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from meshdrop.core.circles import EPOCH_SECONDS, WINDOW_EPOCHS, Circle
from meshdrop.transports.lan.circlediscovery import CircleDiscovery, CircleService
from meshdrop.transports.lan.circletls import CircleTLS
from meshdrop.transports.lan.events import ModeEvent
from meshdrop.transports.lan.nodeapp import make_node_app
from meshdrop.transports.lan.protocol import Address
from meshdrop.transports.lan.serverguard import ConnectionGuard, GuardedSite, serve_guarded

Found = Callable[[str, list[Address], bytes | None], None]
EPOCH_CHECK = 60.0  # seconds between looks at whether the epoch changed
MAX_MEMBERS = 4096  # addresses remembered as members (peers come and go for days)


@dataclass
class CircleListener:
    circle: Circle
    tls: CircleTLS
    runner: web.AppRunner
    site: GuardedSite | None = None
    port: int = 0


class CircleMesh:
    """Listeners for ``circles`` on one address, counted by the node's ``guard``."""

    def __init__(
        self,
        circles: Sequence[Circle],
        guard: ConnectionGuard,
        quiet: bool,
        make_peer_app: Callable[[], web.Application],
    ) -> None:
        self.circles = tuple(circles)
        self.guard = guard
        self.quiet = quiet
        self._make_peer_app = make_peer_app
        self.listeners: list[CircleListener] = []
        self.discovery: CircleDiscovery | None = None
        self._watching: list[asyncio.Task[None]] = []
        self._members: OrderedDict[Address, CircleListener] = OrderedDict()

    async def start(self, host: str, ports: Sequence[int] = ()) -> None:
        """A listener per circle on ``host``, at ``ports`` (0 or none: a port the system
        picks, a different one at each start). Making the TLS contexts writes a private
        temporary folder: done on a thread."""
        now = time.time()
        for index, circle in enumerate(self.circles):
            tls = await asyncio.to_thread(CircleTLS, circle.current.secret, now)
            listener = CircleListener(circle, tls, await self._runner(len(self.listeners)))
            self.listeners.append(listener)
            port = ports[index] if index < len(ports) else 0
            listener.site = await self._serve(listener, host, port)
            listener.port = int(listener.runner.addresses[0][1])

    async def _runner(self, index: int) -> web.AppRunner:
        app = make_node_app(self._make_peer_app(), guard=self.guard)
        app.middlewares.append(self._hello_marker(index))
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
        await runner.setup()
        return runner

    def _hello_marker(self, index: int) -> Any:
        """A hello that arrived on this circle's listener came from a member: the port it
        introduces is called back with this circle's certificate."""

        @web.middleware
        async def mark(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            port = request.query.get("port", "")
            hello = request.path.endswith("/hello") and request.remote
            if hello and port.isdigit() and 0 < int(port) < 65536:
                self.member((str(request.remote), int(port)), self.listeners[index].circle)
            return await handler(request)

        return mark

    async def _serve(self, listener: CircleListener, host: str, port: int) -> GuardedSite:
        tls = listener.tls.server_context()
        return await serve_guarded(listener.runner, host, port, self.guard, tls)

    async def move(self, host: str) -> None:
        """Serve on ``host`` instead (the chosen network changed), at the same ports."""
        for listener in self.listeners:
            site = await self._serve(listener, host, listener.port)
            if listener.site is not None:
                await listener.site.stop()
            listener.site = site

    async def discover(self, bind: str, found: Found, gone: Callable[[str], None]) -> None:
        """Announce every circle on ``bind`` (circlediscovery.py, replacing an earlier
        announcement) and report members found: their addresses are remembered as
        members of their circle, then ``found(instance name, addresses, None)``."""
        await self._stop_discovery()
        services = [CircleService(ls.circle, ls.port) for ls in self.listeners]

        def member(circle: Circle, name: str, addresses: list[Address]) -> None:
            for address in addresses:
                self.member(address, circle)
            found(name, addresses, None)

        discovery = CircleDiscovery(bind, services, member, lambda _, name: gone(name))
        try:
            await discovery.start()
        except BaseException:
            await discovery.close()
            raise
        self.discovery = discovery
        self._watching = [
            asyncio.ensure_future(discovery.watch_epochs()),
            asyncio.ensure_future(discovery.watch_addresses()),
        ]

    async def _stop_discovery(self) -> None:
        for task in self._watching:
            task.cancel()
        await asyncio.gather(*self._watching, return_exceptions=True)
        self._watching = []
        if self.discovery is not None:
            await self.discovery.close()
            self.discovery = None

    def member(self, address: Address, circle: Circle) -> None:
        """``address`` serves members of ``circle`` (found by its token, or it said hello
        on that circle's listener)."""
        for listener in self.listeners:
            if listener.circle is circle:
                self._members[address] = listener
                self._members.move_to_end(address)
                while len(self._members) > MAX_MEMBERS:
                    self._members.popitem(last=False)
                return

    def _listener_for(self, address: Address) -> CircleListener | None:
        listener = self._members.get(address)
        if listener is None and self.quiet and self.listeners:
            return self.listeners[0]
        return listener

    def tls_for(self, address: Address) -> Any:
        """The client context to call ``address`` with, or None: plain (an open peer)."""
        listener = self._listener_for(address)
        return None if listener is None else listener.tls.client_context()

    def port_for(self, address: Address) -> int | None:
        """Our port for ``address``'s circle (what a hello introduces), or None."""
        listener = self._listener_for(address)
        return None if listener is None else listener.port

    def ports(self) -> dict[str, int]:
        return {listener.circle.name: listener.port for listener in self.listeners}

    async def follow_epochs(self) -> None:
        """Run until cancelled: a new leaf and the new window's trust when the epoch
        changes (the listeners stay up; their SNI callback hands out the new context)."""
        while True:
            await asyncio.sleep(EPOCH_CHECK)
            now = time.time()
            for listener in self.listeners:
                await asyncio.to_thread(listener.tls.refresh, now)

    async def close(self) -> None:
        await self._stop_discovery()
        for listener in self.listeners:
            await listener.runner.cleanup()
        self.listeners.clear()
        self._members.clear()


def mode_event(mesh: CircleMesh | None, quiet: bool) -> ModeEvent:
    """What the node tells its owner at start about who can see it."""
    circles = mesh.ports() if mesh is not None else {}
    mode: Literal["open", "quiet", "open+circles"] = (
        "quiet" if quiet else "open+circles" if circles else "open"
    )
    return ModeEvent(event="mode", mode=mode, circles=circles)


def clock_behind(now: float, floor: int) -> str | None:
    """A warning when this machine's clock is more than the circles' window behind the
    newest signed time its store has seen (a Raspberry Pi without a real-time clock
    starts in 1970): members then recognise neither its announcements nor its
    certificates, nor it theirs."""
    behind = floor - now
    if behind <= WINDOW_EPOCHS * EPOCH_SECONDS:
        return None
    return (
        f"this machine's clock is {behind / 86400:.0f} days behind the newest signed content "
        "it holds: circle members will not recognise it until the clock is set"
    )
