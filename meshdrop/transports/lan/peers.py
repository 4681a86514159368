"""Peers: liveness, backoff, forgetting, penalties and when to sync (docs/PROTOCOL.md
sections 5 and 6). Pure decisions: the caller passes ``now`` (a monotonic clock) and
does the probing and syncing.

A peer comes from one of three places: ``--peer`` (manual, never forgotten), an mDNS
announcement (discovered), or a hello it sent us (inbound: a hotspot learns its clients
this way, and a peer that lost us finds us again). A peer that stops answering is probed
again and again with a capped backoff, so it is found again soon after it returns; only
a peer silent for a long time (a day) is forgotten, or one that said goodbye.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

from meshdrop.transports.lan.limits import HEAD_TIMEOUT
from meshdrop.transports.lan.protocol import Address, format_address

SYNC_RETRY_FIRST = 5.0
SYNC_RETRY_MAX = 600.0
PENALTY_BAN = 3  # offences before a peer is shut out for a while
BAN_FIRST = 600.0
BAN_MAX = 86_400.0
MAX_PEERS = 64
MAX_INBOUND = 32  # of MAX_PEERS: peers known only because they said hello to us
MAX_INBOUND_PER_HOST = 8
REFUSAL_TTL = 3600.0
SYNC_OFFENCE = "sync"  # the key of offences not tied to one bundle's transfer


@dataclass(frozen=True)
class PeerTimers:
    """How often peers are probed and how long they are remembered (seconds).

    Tests and benchmarks shorten or lengthen them through ``MESHDROP_LAN_TIMERS``
    (``parse``), e.g. ``ping=3600`` so that only a change notification can explain a
    quick sync, or ``backoff_max=1`` to watch many failed probes in a short test."""

    ping: float = 120.0  # between hellos to a live peer while nothing changes
    backoff_first: float = 2.0  # after the first failed probe ...
    backoff_max: float = 30.0  # ... doubling up to this: back within 30 s of a return
    forget_after: float = 86_400.0  # a discovered or inbound peer silent this long goes
    requery: float = 30.0  # mDNS asked afresh this often while no peer is alive
    probe_timeout: float = 5.0  # a hello not answered within this has failed
    # At most one change notice per this many seconds: while many small bundles arrive,
    # a notice per commit would make every peer walk our inventory again and again.
    notice_gap: float = 2.0
    # The server's: how long a connection that is not a peer's may wait for a request.
    head_timeout: float = HEAD_TIMEOUT

    @classmethod
    def parse(cls, text: str, base: PeerTimers | None = None) -> PeerTimers:
        """``name=seconds`` pairs separated by commas, over ``base``; ValueError if an
        unknown name or a value that is not a positive number."""
        timers = base or cls()
        names = {f.name for f in fields(cls)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise ValueError(f"unknown timer {name!r} (known: {', '.join(sorted(names))})")
            seconds = float(value)
            if not seconds > 0 or seconds == float("inf"):
                raise ValueError(f"timer {name} must be a positive number of seconds")
            timers = replace(timers, **{name: seconds})
        return timers


class Verdict(enum.Enum):
    """What a bad answer costs a peer."""

    IGNORED = "ignored"  # part of an offence already counted, or the peer is banned
    COUNTED = "counted"  # a new offence, not yet a ban
    BANNED = "banned"  # a new offence, and the peer is now shut out


@dataclass
class Peer:
    key: (
        str  # "host:port" for a manual or inbound peer, the mDNS instance name for a discovered one
    )
    addresses: list[Address]
    manual: bool = False
    inbound: bool = False  # known only because it said hello to us
    address: Address | None = None  # the address that last answered
    node: bytes | None = None  # its node id (random per start), from a hello
    advertised: bytes | None = None  # inventory digest from TXT or hello
    alive: bool = False
    last_heard: float = 0.0  # when it last answered, said hello, or was announced
    probe_failures: int = 0
    next_probe: float = 0.0
    probing: bool = False
    syncing: bool = False
    synced: tuple[bytes, bytes] | None = None  # (their digest, our trust digest) when complete
    sync_failures: int = 0
    next_sync: float = 0.0
    penalty: int = 0  # offences since the last ban
    offences: int = 0  # every offence counted, for the owner's status
    counted: set[object] = field(default_factory=set)  # this sync's offences already counted
    bans: int = 0
    banned_until: float = 0.0
    last_sync: float | None = None
    fetched_bundles: int = 0
    fetched_bytes: int = 0

    @property
    def label(self) -> str:
        return format_address(self.address or self.addresses[0])

    def banned(self, now: float) -> bool:
        return now < self.banned_until


def _backoff(first: float, limit: float, failures: int) -> float:
    return float(min(limit, first * 2 ** min(max(0, failures - 1), 40)))


@dataclass
class PeerBook:
    """Every peer a node knows of, and the decisions about them. Callers pass ``now``
    (a monotonic clock)."""

    self_ids: set[bytes] = field(default_factory=set)
    peers: dict[str, Peer] = field(default_factory=dict)
    max_peers: int = MAX_PEERS
    timers: PeerTimers = field(default_factory=PeerTimers)
    next_notice: float = 0.0  # the earliest time the next change notice may go out

    def add_manual(self, address: Address) -> Peer:
        key = format_address(address)
        peer = self.peers.setdefault(key, Peer(key, [address], manual=True))
        return peer

    def discovered(
        self, name: str, addresses: Sequence[Address], digest: bytes | None, now: float
    ) -> Peer | None:
        """An mDNS announcement (new or changed). Returns the peer, or None if ignored
        (too many peers, or every address is already a manual peer's). A peer known
        from its hello at one of these addresses becomes this discovered one."""
        if not addresses:
            return None
        peer = self.peers.get(name)
        if peer is None:
            introduced = [p for p in self.peers.values() if p.inbound]
            peer = next((p for p in introduced if p.addresses[0] in addresses), None)
            if peer is not None:  # it said hello first: now it is a discovered peer
                del self.peers[peer.key]
                peer.key, peer.inbound, peer.addresses = name, False, list(addresses)
                self.peers[name] = peer
        if peer is None:
            known = [p for p in self.peers.values() if p.manual]
            if all(any(a in p.addresses for p in known) for a in addresses):
                for p in known:
                    if p.addresses[0] in addresses and digest is not None:
                        p.advertised = digest
                    if p.addresses[0] in addresses:
                        self._heard(p, now)
                return None
            if len(self.peers) >= self.max_peers and not self._evict_for_announced():
                return None
            peer = self.peers[name] = Peer(name, list(addresses), next_probe=now)
        elif set(addresses) != set(peer.addresses):
            peer.addresses = list(addresses)
            peer.next_probe = min(peer.next_probe, now)
        if digest is not None:
            peer.advertised = digest
        self._heard(peer, now)
        return peer

    def _heard(self, peer: Peer, now: float) -> None:
        """A sign of life other than an answer: it is still around, so remember it, and
        if it was unreachable, try it now rather than at the end of its backoff."""
        peer.last_heard = max(peer.last_heard, now)
        if not peer.alive:
            peer.next_probe = min(peer.next_probe, now)

    def removed(self, name: str) -> Peer | None:
        """An mDNS goodbye: the peer said it is leaving."""
        return self.peers.pop(name, None)

    def hello_from(
        self, address: Address, node: bytes, digest: bytes, now: float
    ) -> tuple[Peer | None, bool]:
        """A peer said hello to us, from ``address`` (its host as we saw it, the port it
        serves on). Returns the peer (None if ignored: ourselves, or too many peers) and
        whether it is new to us. Its digest tells whether to sync; only our own probe
        makes it alive (we may not be able to reach it)."""
        if node in self.self_ids:
            return None, False
        peer = next((p for p in self.peers.values() if p.node == node), None)
        if peer is None:
            peer = next((p for p in self.peers.values() if address in p.addresses), None)
        new = peer is None
        if peer is None:
            inbound = [p for p in self.peers.values() if p.inbound]
            same_host = [p for p in inbound if p.addresses[0][0] == address[0]]
            full = len(self.peers) >= self.max_peers or len(inbound) >= MAX_INBOUND
            if len(same_host) >= MAX_INBOUND_PER_HOST:
                room = self._evict_inbound(address[0])
            else:
                room = not full or self._evict_inbound(None)
            if not room:
                return None, False
            key = format_address(address)
            peer = self.peers[key] = Peer(key, [address], inbound=True, next_probe=now)
        elif address not in peer.addresses and peer.inbound:
            peer.addresses = [address]  # the same node, serving elsewhere now
        peer.node = node
        peer.advertised = digest
        self._heard(peer, now)
        if peer.alive:
            # It just showed it is up: our own ping can wait a full interval (one ping
            # per pair of peers and interval, not two).
            peer.next_probe = max(peer.next_probe, now + self.timers.ping)
        return peer, new

    def _evict_inbound(self, host: str | None) -> bool:
        """Make room by forgetting the inbound peer (of ``host``, if given) silent for
        longest, if one is not alive. Manual and discovered peers are never evicted."""
        candidates = [
            p
            for p in self.peers.values()
            if p.inbound and not p.alive and not p.probing and host in (None, p.addresses[0][0])
        ]
        if not candidates:
            return False
        del self.peers[min(candidates, key=lambda p: p.last_heard).key]
        return True

    def _evict_for_announced(self) -> bool:
        """Make room for a newly announced peer: an introduced peer as for a hello, else
        the discovered one silent for longest that is not alive. A node killed or
        unplugged says no goodbye, its pointer record lives 75 minutes, and it comes back
        under a new name: without this, a long-running node's book fills with such dead
        entries and it stops learning of anyone (found by scripts/soak)."""
        if self._evict_inbound(None):
            return True
        dead = [p for p in self.peers.values() if not p.manual and not p.alive and not p.probing]
        if not dead:
            return False
        del self.peers[min(dead, key=lambda p: p.last_heard).key]
        return True

    def changed(self, now: float) -> list[Peer]:
        """Our inventory changed: hello every live peer (the hello carries the new digest),
        so they sync now instead of at their next ping; at once, or ``notice_gap`` after
        the previous notice if that one was more recent."""
        told = [p for p in self.peers.values() if p.alive]
        when = max(now, self.next_notice)
        self.next_notice = when + self.timers.notice_gap
        for peer in told:
            peer.next_probe = min(peer.next_probe, when)
        return told

    def due_probes(self, now: float) -> list[Peer]:
        return [p for p in self.peers.values() if not p.probing and p.next_probe <= now]

    def probe_ok(
        self, peer: Peer, address: Address, digest: bytes, now: float, node: bytes | None = None
    ) -> bool:
        """Returns True if the peer just came alive."""
        came_alive = not peer.alive
        peer.alive, peer.address, peer.advertised = True, address, digest
        peer.probe_failures = 0
        peer.last_heard = now
        peer.next_probe = now + self.timers.ping
        if node is not None:
            peer.node = node
            self._merge(peer)
        return came_alive

    def _merge(self, peer: Peer) -> None:
        """One node known twice (announced, and said hello from another address): keep
        the manual or discovered entry, drop the inbound one."""
        for other in list(self.peers.values()):
            if other is peer or other.node != peer.node:
                continue
            drop = other if other.inbound or not peer.inbound else peer
            if self.peers.get(drop.key) is drop:
                del self.peers[drop.key]

    def probe_failed(self, peer: Peer, now: float) -> bool:
        """Returns True if the peer is forgotten: not manual, and silent for
        ``forget_after`` seconds. Until then it is probed with a capped backoff."""
        peer.alive = False
        peer.probe_failures += 1
        timers = self.timers
        peer.next_probe = now + _backoff(
            timers.backoff_first, timers.backoff_max, peer.probe_failures
        )
        if not peer.manual and now - peer.last_heard >= timers.forget_after:
            if self.peers.get(peer.key) is peer:
                del self.peers[peer.key]
            return True
        return False

    def forget_self(self, peer: Peer) -> None:
        if self.peers.get(peer.key) is peer:
            del self.peers[peer.key]

    def alive(self) -> bool:
        return any(p.alive for p in self.peers.values())

    def due_syncs(self, now: float, own_digest: bytes, trust_digest: bytes) -> list[Peer]:
        due = []
        for peer in self.peers.values():
            if not peer.alive or peer.syncing or peer.banned(now) or peer.next_sync > now:
                continue
            if peer.advertised is None or peer.advertised == own_digest:
                continue
            if peer.synced == (peer.advertised, trust_digest):
                continue
            due.append(peer)
        due.sort(key=lambda p: (p.sync_failures, p.last_sync or 0.0))
        return due

    def sync_done(
        self, peer: Peer, digest: bytes, trust_digest: bytes, complete: bool, now: float
    ) -> None:
        peer.syncing = False
        peer.last_sync = now
        peer.counted.clear()  # the next sync's offences are new ones
        if complete:
            peer.synced = (digest, trust_digest)
            peer.sync_failures = 0
            peer.next_sync = now
        else:
            peer.sync_failures += 1
            peer.next_sync = now + _backoff(SYNC_RETRY_FIRST, SYNC_RETRY_MAX, peer.sync_failures)

    def penalise(self, peer: Peer, now: float, offence: object = None) -> Verdict:
        """A bad answer (wrong bytes, a bad signature, a malformed message). ``offence``
        names what it belongs to within the current sync (one bundle's transfer, or the
        sync itself): bad answers of one offence count once, however many arrive (a
        burst of bad chunks from one transfer is one offence). Nothing counts while the
        peer is banned. ``PENALTY_BAN`` offences ban it: 10 minutes, doubling each time,
        at most a day. None is an offence of its own."""
        if peer.banned(now):
            return Verdict.IGNORED
        if offence is not None:
            if offence in peer.counted:
                return Verdict.IGNORED
            peer.counted.add(offence)
        peer.offences += 1
        peer.penalty += 1
        if peer.penalty < PENALTY_BAN:
            return Verdict.COUNTED
        peer.penalty = 0
        peer.bans += 1
        peer.banned_until = now + _backoff(BAN_FIRST, BAN_MAX, peer.bans)
        return Verdict.BANNED


@dataclass
class Refusals:
    """Digests (manifest hashes) refused lately, so a peer offering the same refused
    bundle over and over costs one envelope, not one per sync."""

    ttl: float = REFUSAL_TTL
    until: dict[bytes, float] = field(default_factory=dict)

    def add(self, digest: bytes, now: float) -> None:
        if len(self.until) > 100_000:
            self.until.clear()
        self.until[digest] = now + self.ttl

    def current(self, now: float) -> set[bytes]:
        for digest in [d for d, t in self.until.items() if t <= now]:
            del self.until[digest]
        return set(self.until)

    def clear(self) -> None:
        self.until.clear()
