"""Peers: liveness, backoff, forgetting, penalties and when to sync (docs/PROTOCOL.md
sections 5 and 6.1). Pure decisions: the caller passes ``now`` (a monotonic clock) and
does the probing and syncing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from meshdrop.transports.lan.protocol import Address, format_address

PROBE_INTERVAL = 30.0  # seconds between hellos to a live peer
PROBE_BACKOFF_FIRST = 2.0
PROBE_BACKOFF_MAX = 300.0
FORGET_AFTER = 5  # failed probes in a row before a discovered peer is forgotten
SYNC_RETRY_FIRST = 5.0
SYNC_RETRY_MAX = 600.0
PENALTY_BAN = 3  # bad answers before a peer is shut out for a while
BAN_FIRST = 600.0
BAN_MAX = 86_400.0
MAX_PEERS = 64
REFUSAL_TTL = 3600.0


@dataclass
class Peer:
    key: str  # "host:port" for a manual peer, the mDNS instance name for a discovered one
    addresses: list[Address]
    manual: bool = False
    address: Address | None = None  # the address that last answered
    advertised: bytes | None = None  # inventory digest from TXT or hello
    alive: bool = False
    probe_failures: int = 0
    next_probe: float = 0.0
    probing: bool = False
    syncing: bool = False
    synced: tuple[bytes, bytes] | None = None  # (their digest, our trust digest) when complete
    sync_failures: int = 0
    next_sync: float = 0.0
    penalty: int = 0
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
    return float(min(limit, first * 2 ** max(0, failures - 1)))


@dataclass
class PeerBook:
    """Every peer a node knows of, and the decisions about them. Callers pass ``now``
    (a monotonic clock)."""

    self_ids: set[bytes] = field(default_factory=set)
    peers: dict[str, Peer] = field(default_factory=dict)
    max_peers: int = MAX_PEERS
    probe_interval: float = PROBE_INTERVAL

    def add_manual(self, address: Address) -> Peer:
        key = format_address(address)
        peer = self.peers.setdefault(key, Peer(key, [address], manual=True))
        return peer

    def discovered(
        self, name: str, addresses: Sequence[Address], digest: bytes | None, now: float
    ) -> Peer | None:
        """An mDNS announcement (new or changed). Returns the peer, or None if ignored
        (too many peers, or every address is already a manual peer)."""
        if not addresses:
            return None
        peer = self.peers.get(name)
        if peer is None:
            manual = {p.addresses[0] for p in self.peers.values() if p.manual}
            if all(a in manual for a in addresses):
                for p in self.peers.values():
                    if p.manual and p.addresses[0] in addresses and digest is not None:
                        p.advertised = digest
                return None
            if len(self.peers) >= self.max_peers:
                return None
            peer = self.peers[name] = Peer(name, list(addresses), next_probe=now)
        else:
            if set(addresses) != set(peer.addresses):
                peer.addresses = list(addresses)
                peer.next_probe = min(peer.next_probe, now)
        if digest is not None:
            peer.advertised = digest
        return peer

    def removed(self, name: str) -> Peer | None:
        """An mDNS goodbye: the peer said it is leaving."""
        return self.peers.pop(name, None)

    def due_probes(self, now: float) -> list[Peer]:
        return [p for p in self.peers.values() if not p.probing and p.next_probe <= now]

    def probe_ok(self, peer: Peer, address: Address, digest: bytes, now: float) -> bool:
        """Returns True if the peer just came alive."""
        came_alive = not peer.alive
        peer.alive, peer.address, peer.advertised = True, address, digest
        peer.probe_failures = 0
        peer.next_probe = now + self.probe_interval
        return came_alive

    def probe_failed(self, peer: Peer, now: float) -> bool:
        """Returns True if the peer is forgotten."""
        peer.alive = False
        peer.probe_failures += 1
        peer.next_probe = now + _backoff(
            PROBE_BACKOFF_FIRST, PROBE_BACKOFF_MAX, peer.probe_failures
        )
        if not peer.manual and peer.probe_failures >= FORGET_AFTER:
            self.peers.pop(peer.key, None)
            return True
        return False

    def forget_self(self, peer: Peer) -> None:
        self.peers.pop(peer.key, None)

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
        if complete:
            peer.synced = (digest, trust_digest)
            peer.sync_failures = 0
            peer.next_sync = now
        else:
            peer.sync_failures += 1
            peer.next_sync = now + _backoff(SYNC_RETRY_FIRST, SYNC_RETRY_MAX, peer.sync_failures)

    def penalise(self, peer: Peer, now: float) -> bool:
        """A bad answer (wrong bytes, a bad signature, a malformed message). Returns True
        if the peer is now shut out for a while."""
        peer.penalty += 1
        if peer.penalty < PENALTY_BAN:
            return False
        peer.penalty = 0
        peer.bans += 1
        peer.banned_until = now + _backoff(BAN_FIRST, BAN_MAX, peer.bans)
        return True


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
