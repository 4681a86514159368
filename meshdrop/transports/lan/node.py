"""The node: one aiohttp application, zeroconf discovery, and the sync loop, run until
stopped.

The web application is built by ``make_node_app`` so that other parts (the reader's
human pages) can live on the same server: they pass their own sub-applications with
prefixes, or a hook that adds routes to the main application. The peer API keeps its
own prefix (/peer/v1/) and its own limits; the owner's status lives under /node/ and
answers only a local caller that read the token from the node's home.

While running, the node writes ``<home>/node.json`` (atomically, mode 0600) with its
process id, a loopback URL and the status token, and removes it when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from meshdrop.core.circles import Circle
from meshdrop.errors import StoreError
from meshdrop.fs import atomic_write
from meshdrop.store.drops import DROPS_QUOTA, DropStore
from meshdrop.transports.lan.circlemesh import CircleMesh, clock_behind, mode_event
from meshdrop.transports.lan.client import ClientLimits, PeerClient
from meshdrop.transports.lan.discovery import Discovery, is_loopback, is_wildcard
from meshdrop.transports.lan.dropsync import DropService
from meshdrop.transports.lan.engine import SyncEngine
from meshdrop.transports.lan.errors import cannot_listen
from meshdrop.transports.lan.events import (
    AddressesEvent,
    Emit,
    ErrorEvent,
    ListeningEvent,
    NoDiscoveryEvent,
    PeerEvent,
    StoppedEvent,
)
from meshdrop.transports.lan.interfaces import chosen_address
from meshdrop.transports.lan.limits import ConnectionLimits
from meshdrop.transports.lan.liveness import timers_from_env
from meshdrop.transports.lan.nodeapp import AppHook, ExtraApps, make_node_app
from meshdrop.transports.lan.nodefile import (
    NODE_FILE,
    TOKEN_HEADER,
    refuse_second_node,
)
from meshdrop.transports.lan.peerapi import PREFIX, PeerServer, ServerLimits
from meshdrop.transports.lan.peers import PeerBook
from meshdrop.transports.lan.protocol import Address, format_address
from meshdrop.transports.lan.serverguard import (
    ConnectionGuard,
    GuardedSite,
    quiet_exceptions,
    quiet_server,
    raise_descriptor_limit,
    serve_guarded,
)
from meshdrop.transports.lan.storeio import StoreIO
from meshdrop.transports.lan.transfer import SyncLimits
from meshdrop.transports.lan.wire import no_tls

DEFAULT_PORT = 8470
DIGEST_POLL = 1.0  # seconds between looks at whether the inventory changed
NETWORK_POLL = 5.0  # seconds between looks at which network to serve (no --bind)
NO_NETWORK = "127.0.0.1"  # served while no network qualifies, until one does


@dataclass(frozen=True)
class NodeConfig:
    home: Path
    # None: one private network's address, chosen and followed (interfaces.py); an
    # address: only that one ("0.0.0.0" or "::": every interface, the owner's choice).
    bind: str | None = None
    port: int = DEFAULT_PORT
    # The circles this node is in (store/circles.py). With any, the node is quiet: it
    # syncs only with their members, over TLS, unless ``open_mesh`` (--open) keeps the
    # open peer API and announcement too.
    circles: tuple[Circle, ...] = ()
    circle_ports: tuple[int, ...] = ()  # per circle; 0 or none: a new port at each start
    open_mesh: bool = False
    peers: tuple[Address, ...] = ()
    discovery: bool = True
    client: ClientLimits = field(default_factory=ClientLimits)
    server: ServerLimits = field(default_factory=ServerLimits)
    sync: SyncLimits = field(default_factory=SyncLimits)
    probe_interval: float = 120.0  # between hellos to a live peer (MESHDROP_LAN_TIMERS)
    background: tuple[Callable[[], Awaitable[None]], ...] = field(default=())
    drops_quota: int = DROPS_QUOTA  # bytes of drops (sealed reports) kept to pass on


def _local_url(bind: str, port: int) -> str:
    host = ("::1" if bind == "::" else "127.0.0.1") if is_wildcard(bind) else bind
    return f"http://{format_address((host, port))}"


class Node:
    def __init__(
        self,
        config: NodeConfig,
        emit: Emit,
        extra_apps: ExtraApps = (),
        hook: AppHook | None = None,
    ) -> None:
        self.config = config
        self.emit = emit
        self.extra_apps = extra_apps
        self.hook = hook
        self.node_id = secrets.token_bytes(8)
        self.token = secrets.token_urlsafe(24)
        self.started = time.time()
        self.storeio: StoreIO | None = None
        self.server: PeerServer | None = None
        self.client: PeerClient | None = None
        self.engine: SyncEngine | None = None
        self.drops: DropService | None = None
        self.discovery: Discovery | None = None
        self.mesh: CircleMesh | None = None
        self.runner: web.AppRunner | None = None
        self.site: GuardedSite | None = None
        self.guard: ConnectionGuard | None = None
        self.bind = config.bind or NO_NETWORK  # where it serves now
        self.port = 0
        self.urls: list[str] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._node_file = config.home / NODE_FILE
        self._drops_moved = asyncio.Event()  # set: _watch_inventory looks at once

    # The status sub-application

    def _status_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/status", self._status)
        return app

    async def _status(self, request: web.Request) -> web.Response:
        remote = request.remote or ""
        given = request.headers.get(TOKEN_HEADER, "")
        if not is_loopback(remote) and remote != self.bind:
            raise web.HTTPNotFound()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPForbidden()
        return web.json_response(await self.status())

    async def status(self) -> dict[str, Any]:
        assert self.storeio is not None and self.engine is not None and self.server is not None
        snap = await self.storeio.snapshot()
        stats = self.server.stats
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "urls": self.urls,
            "uptime_seconds": round(time.time() - self.started),
            "discovery": self.discovery is not None or bool(self.mesh and self.mesh.discovery),
            "mode": "quiet" if self.mesh is not None and self.mesh.quiet else "open",
            "circles": self.mesh.ports() if self.mesh is not None else {},
            "connections": self.guard.status() if self.guard else {},
            "inventory": {
                "entries": len(snap.inventory),
                "digest": snap.inventory.digest.hex(),
                "publishers": len(snap.states),
            },
            "served": {
                "requests": stats.requests,
                "chunks": stats.chunks,
                "envelopes": stats.envelopes,
                "bytes": stats.bytes_sent,
                "busy": stats.refused_busy,
            },
            "client": {
                "requests": self.client.requests if self.client else 0,
                "bytes": self.client.bytes_received if self.client else 0,
            },
            **self.engine.status(),
            "drops": vars(self.drops.totals) if self.drops is not None else {},
        }
        return info

    # Life cycle

    async def start(self) -> None:
        config = self.config
        refuse_second_node(self._node_file)
        quiet_server()
        quiet_exceptions(asyncio.get_running_loop())
        descriptors = raise_descriptor_limit()
        timers = timers_from_env(config.probe_interval)
        limits = ConnectionLimits.for_descriptors(descriptors)
        self.guard = guard = ConnectionGuard(limits, timers.head_timeout)
        if config.bind is None:
            self.bind = await _choose_network()
        self.storeio = StoreIO(config.home)
        self.server = PeerServer(self.storeio, self.node_id, config.server)
        drop_store = await asyncio.to_thread(DropStore, config.home, config.drops_quota)
        self.drops = DropService(drop_store)
        self.drops.on_change = self._drops_changed
        await self.drops.refresh()  # before the first announcement: it carries the mark
        self.server.drops = self.drops
        quiet = bool(config.circles) and not config.open_mesh
        open_app = None if quiet else self.server.app()
        app = make_node_app(open_app, self._status_app(), self.extra_apps, self.hook, guard)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
        await self.runner.setup()
        try:
            self.site = await self._serve_on(self.bind, config.port)
        except OSError as exc:
            await self.runner.cleanup()
            await self.storeio.aclose()
            raise cannot_listen(format_address((self.bind, config.port)), exc) from exc
        self.port = int(self.runner.addresses[0][1])
        if config.circles:
            self.mesh = CircleMesh(config.circles, guard, quiet, self.server.app)
            try:
                await self.mesh.start(self.bind, config.circle_ports)
            except OSError as exc:
                await self.mesh.close()
                await self.runner.cleanup()
                await self.storeio.aclose()
                raise cannot_listen(f"{self.bind} (a circle's port)", exc) from exc
        self.urls = self._advertised_urls()
        about = {"pid": os.getpid(), "url": _local_url(self.bind, self.port), "token": self.token}
        await asyncio.to_thread(
            atomic_write, self._node_file, json.dumps(about).encode(), mode=0o600
        )
        local = None if config.bind is None or is_wildcard(config.bind) else config.bind
        tls = self.mesh.tls_for if self.mesh is not None else no_tls
        self.client = PeerClient(config.client, local_host=local, tls=tls)
        await self.client.start()
        book = PeerBook(self_ids={self.node_id}, timers=timers)
        for address in config.peers:
            book.add_manual(address)
        self.engine = SyncEngine(self.storeio, self.client, book, self.emit, config.sync)
        self.engine.drops = self.drops
        self.engine.liveness.introduce(self.node_id, self.port, self.bind)
        if self.mesh is not None:
            self.engine.liveness.port_for = self.mesh.port_for
        self.server.on_hello = self.engine.liveness.heard
        # What a killed node (or import) was still staging is of no use: its transfers
        # resume from the chunks it had named. Before this node stages anything itself.
        try:
            await self.storeio.remove_leftover_temp_files()
        except StoreError as exc:
            self.emit(ErrorEvent(event="error", reason=str(exc)))
        snap = await self.storeio.snapshot()
        self.emit(
            ListeningEvent(
                event="listening",
                urls=self.urls,
                port=self.port,
                peer_api="" if quiet else PREFIX,  # none in the open: circles' own
                bundles=len(snap.inventory) - len(snap.states),
                publishers=len(snap.states),
            )
        )
        self.emit(mode_event(self.mesh, quiet))
        late = clock_behind(time.time(), snap.clock_floor) if self.mesh is not None else None
        if late is not None:
            self.emit(ErrorEvent(event="error", reason=late))
        if self.mesh is not None:
            self._tasks.append(asyncio.ensure_future(self.mesh.follow_epochs()))
            if config.discovery:
                await self._start_circle_discovery()
                requery = self.engine.liveness.requery_while_alone(self._requery)
                self._tasks.append(asyncio.ensure_future(requery))
        if config.discovery and not quiet:
            discovery = self._discovery()
            try:
                await discovery.start(self.storeio.advertised_digest(snap.inventory))
            except Exception as exc:  # no multicast here (a phone, a locked-down network)
                await discovery.close()
                self.emit(
                    NoDiscoveryEvent(event="no-discovery", reason=f"{type(exc).__name__}: {exc}")
                )
            else:
                self.discovery = discovery
                self._tasks.append(asyncio.ensure_future(discovery.watch_addresses()))
                requery = self.engine.liveness.requery_while_alone(self._requery)
                self._tasks.append(asyncio.ensure_future(requery))
        if config.bind is None:
            self._tasks.append(asyncio.ensure_future(self._follow_network()))
        self._tasks.append(asyncio.ensure_future(self.engine.run()))
        self._tasks.append(asyncio.ensure_future(guard.run_sweeps()))
        self._tasks.append(asyncio.ensure_future(self._watch_inventory(snap.inventory.digest)))
        self._tasks.append(asyncio.ensure_future(self.drops.watch()))
        for job in config.background:
            self._tasks.append(asyncio.ensure_future(job()))

    async def _serve_on(self, host: str, port: int) -> GuardedSite:
        assert self.runner is not None and self.guard is not None
        return await serve_guarded(self.runner, host, port, self.guard)

    async def _start_circle_discovery(self) -> None:
        assert self.mesh is not None
        try:
            await self.mesh.discover(self.bind, self._found, self._gone)
        except Exception as exc:  # no multicast here
            reason = f"{type(exc).__name__}: {exc}"
            self.emit(NoDiscoveryEvent(event="no-discovery", reason=reason))

    def _discovery(self) -> Discovery:
        return Discovery(self.bind, self.port, self._found, self._gone, self._addresses_changed)

    async def _requery(self) -> None:
        if self.discovery is not None:
            await self.discovery.requery()
        if self.mesh is not None and self.mesh.discovery is not None:
            await self.mesh.discovery.requery()

    async def _follow_network(self) -> None:
        """Without --bind: when the chosen network changes (another Wi-Fi, a new DHCP
        lease), serve and announce on the new address only, at the same port."""
        while True:
            await asyncio.sleep(NETWORK_POLL)
            chosen = await _choose_network()
            if chosen != self.bind:
                await self._move(chosen)

    async def _move(self, host: str) -> None:
        assert self.storeio is not None and self.engine is not None
        try:
            site = await self._serve_on(host, self.port)
        except OSError as exc:
            self.emit(ErrorEvent(event="error", reason=f"cannot listen on {host}: {exc}"))
            return
        if self.site is not None:
            await self.site.stop()
        self.site, self.bind = site, host
        if self.mesh is not None:
            await self.mesh.move(host)
            if self.config.discovery:
                await self._start_circle_discovery()
        self.engine.liveness.introduce(self.node_id, self.port, host)
        quiet = self.mesh is not None and self.mesh.quiet
        if self.config.discovery and not quiet:
            if self.discovery is not None:
                await self.discovery.close()  # goodbye on the old network
            self.discovery = self._discovery()
            try:
                snap = await self.storeio.snapshot()
                await self.discovery.start(self.storeio.advertised_digest(snap.inventory))
            except Exception as exc:  # no multicast on the new network
                await self.discovery.close()
                self.discovery = None
                self.emit(
                    NoDiscoveryEvent(event="no-discovery", reason=f"{type(exc).__name__}: {exc}")
                )
        self.urls = self._advertised_urls()
        self.emit(AddressesEvent(event="addresses", urls=self.urls))

    def _advertised_urls(self) -> list[str]:
        bind = self.bind
        if is_wildcard(bind):
            from meshdrop.transports.lan.discovery import own_addresses

            hosts = own_addresses(bind) or ["127.0.0.1"]
        else:
            hosts = [bind]
        return [f"http://{format_address((h, self.port))}" for h in hosts]

    def _found(self, name: str, addresses: list[Address], digest: bytes | None) -> None:
        assert self.engine is not None
        known = name in self.engine.book.peers
        peer = self.engine.book.discovered(name, addresses, digest, time.monotonic())
        if peer is not None:
            if not known:
                self.emit(PeerEvent(event="peer", peer=peer.label, state="discovered"))
            self.engine.wake()

    def _gone(self, name: str) -> None:
        assert self.engine is not None
        peer = self.engine.book.removed(name)
        if peer is not None:
            self.emit(PeerEvent(event="peer", peer=peer.label, state="left"))

    def _addresses_changed(self, addresses: list[str]) -> None:
        self.urls = self._advertised_urls()
        self.emit(AddressesEvent(event="addresses", urls=self.urls))

    def _drops_changed(self) -> None:
        if self.storeio is not None and self.drops is not None:
            self.storeio.drops_mark = self.drops.mark  # _watch_inventory announces it
            self._drops_moved.set()  # now, not at its next look: a drop moves as fast as a bundle

    async def _watch_inventory(self, digest: bytes) -> None:
        """Tell peers (TXT) and the sync loop when what this node holds changed."""
        assert self.storeio is not None and self.engine is not None
        mark = self.storeio.drops_mark
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drops_moved.wait(), DIGEST_POLL)
            self._drops_moved.clear()
            snap = await self.storeio.snapshot()
            if snap.inventory.digest != digest or self.storeio.drops_mark != mark:
                digest, mark = snap.inventory.digest, self.storeio.drops_mark
                if self.discovery is not None:
                    advertised = self.storeio.advertised_digest(snap.inventory)
                    await self.discovery.update_digest(advertised)
                self.engine.wake()

    async def stop(self) -> None:
        """Goodbye to peers, stop serving, stop syncing. Verified chunks already stored stay
        for the next start to resume from; a commit under way finishes first."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.discovery is not None:
            await self.discovery.close()
        if self.engine is not None:
            await self.engine.close()
        if self.mesh is not None:
            await self.mesh.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.client is not None:
            await self.client.close()
        if self.storeio is not None:
            await self.storeio.aclose()
        with contextlib.suppress(OSError):
            current = json.loads(self._node_file.read_text(encoding="utf-8"))
            if current.get("token") == self.token:
                self._node_file.unlink()
        self.emit(StoppedEvent(event="stopped"))

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


async def _choose_network() -> str:
    """The address to serve without --bind (interfaces.py), or loopback while none
    qualifies (no Wi-Fi yet): the node then moves when one appears."""
    chosen: str | None = await asyncio.to_thread(chosen_address)
    return chosen or NO_NETWORK
