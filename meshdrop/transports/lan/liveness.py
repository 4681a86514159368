"""Keeping track of peers (docs/PROTOCOL.md section 5): the hellos this node sends and
receives, and asking mDNS afresh while no peer answers. The decisions are PeerBook's
(peers.py); this module does the I/O around them.

Every hello this node sends introduces it (introduce.py): the peer learns where this
node serves and what it holds, so a node that names no peers still pulls from those
that reach it, and a hello sent the moment this node's inventory changed makes its peers
sync at once. Live peers are pinged rarely (every 2 minutes while nothing changes);
unreachable ones are probed again with a backoff capped at 30 seconds, for a day.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from meshdrop.errors import UsageError
from meshdrop.transports.lan.client import PeerClient
from meshdrop.transports.lan.discovery import acceptable_peer_address
from meshdrop.transports.lan.errors import PeerMisbehaved, PeerNotFound, PeerUnreachable
from meshdrop.transports.lan.events import Emit, PeerEvent
from meshdrop.transports.lan.introduce import Introduction, encode_query
from meshdrop.transports.lan.peers import Peer, PeerBook, PeerTimers
from meshdrop.transports.lan.protocol import PROTOCOL_VERSION, Address

TIMERS_ENV = "MESHDROP_LAN_TIMERS"  # for tests and benchmarks: "ping=3600,backoff_max=1"
REQUERY_BACKOFF = 16  # while alone, mDNS is asked afresh at most this many requeries apart


def timers_from_env(ping: float, environ: dict[str, str] | None = None) -> PeerTimers:
    """The peer timers, ``ping`` seconds between hellos to live peers, overridden by
    ``MESHDROP_LAN_TIMERS`` (tests and benchmarks shorten or lengthen them)."""
    text = (os.environ if environ is None else environ).get(TIMERS_ENV, "")
    try:
        return PeerTimers.parse(text, PeerTimers(ping=ping))
    except ValueError as exc:
        raise UsageError(f"{TIMERS_ENV}: {exc}") from exc


def peer_status(peer: Peer, now: float) -> dict[str, Any]:
    """One peer as the owner's status shows it (``meshdrop status``)."""
    return {
        "peer": peer.label,
        "discovered": not peer.manual and not peer.inbound,
        "inbound": peer.inbound,
        "alive": peer.alive,
        "syncing": peer.syncing,
        "banned": peer.banned(now),
        "offences": peer.offences,
        "probe_failures": peer.probe_failures,
        "last_sync_seconds_ago": None if peer.last_sync is None else round(now - peer.last_sync, 1),
        "bundles": peer.fetched_bundles,
        "bytes": peer.fetched_bytes,
    }


class Liveness:
    """Sends the hellos PeerBook says are due, and takes the hellos peers send."""

    def __init__(
        self, client: PeerClient, book: PeerBook, emit: Emit, wake: Callable[[], None]
    ) -> None:
        self.client = client
        self.book = book
        self.emit = emit
        self.wake = wake
        self.node_id = b""
        self.port = 0
        self.bind = "127.0.0.1"
        # The port a hello to an address introduces, when not ``port`` (a circle's).
        self.port_for: Callable[[Address], int | None] = lambda _: None
        self._tasks: set[asyncio.Task[None]] = set()

    def introduce(self, node_id: bytes, port: int, bind: str) -> None:
        """From now on, hellos say who this node is and where it serves, and hellos from
        peers are taken (those from addresses ``bind`` would not contact are ignored)."""
        self.node_id, self.port, self.bind = node_id, port, bind

    def run_due(self, now: float, own_digest: bytes, changed: bool) -> None:
        """Start the probes that are due; with ``changed`` (this node's inventory just
        changed), hello every live peer now."""
        if changed:
            self.book.changed(now)
        for peer in self.book.due_probes(now):
            peer.probing = True
            task = asyncio.ensure_future(self._probe(peer, own_digest))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _probe(self, peer: Peer, own_digest: bytes) -> None:
        try:
            for address in list(peer.addresses):
                query = ""
                port = self.port_for(address) or self.port  # a circle's listener, or ours
                if port:
                    query = encode_query(Introduction(self.node_id, own_digest, port))
                try:
                    async with asyncio.timeout(self.book.timers.probe_timeout):
                        hello = await self.client.hello(address, query)
                except (PeerUnreachable, PeerMisbehaved, PeerNotFound, TimeoutError):
                    continue
                if hello.protocol != PROTOCOL_VERSION:
                    continue  # another version of the protocol: not a peer of ours
                now = time.monotonic()
                if hello.node in self.book.self_ids:
                    self.book.forget_self(peer)
                    return
                if self.book.probe_ok(peer, address, hello.digest, now, hello.node):
                    self.emit(PeerEvent(event="peer", peer=peer.label, state="alive"))
                self.wake()
                return
            if self.book.probe_failed(peer, time.monotonic()):
                self.emit(PeerEvent(event="peer", peer=peer.label, state="forgotten"))
            elif peer.probe_failures == 1:
                self.emit(PeerEvent(event="peer", peer=peer.label, state="unreachable"))
        finally:
            peer.probing = False

    def heard(self, host: str, intro: Introduction) -> None:
        """A peer said hello from ``host`` (the peer API server calls this)."""
        if not self.port or not acceptable_peer_address(self.bind, host):
            return
        address: Address = (host, intro.port)
        peer, new = self.book.hello_from(address, intro.node, intro.digest, time.monotonic())
        if peer is None:
            return
        if new:
            self.emit(PeerEvent(event="peer", peer=peer.label, state="introduced"))
        self.wake()  # a probe or a sync may be due now

    async def requery_while_alone(self, requery: Callable[[], Awaitable[Any]]) -> None:
        """Run until cancelled: while no peer is alive, ask mDNS afresh (a network that
        came back, records that expired meanwhile), backing off to REQUERY_BACKOFF
        times the interval while nobody answers."""
        interval = self.book.timers.requery
        waited = interval
        while True:
            await asyncio.sleep(waited)
            if self.book.alive():
                waited = interval
                continue
            await requery()
            waited = min(waited * 2, interval * REQUERY_BACKOFF)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
