"""The sans-IO side of LAN sync: inventories and how two of them are compared, the peer
API's messages, and the decisions about what to fetch from whom. Bytes and numbers in,
values or FormatError out; no sockets, files, clocks or asyncio (callers pass ``now``).

An inventory is a set of *slots*, one per bundle name of a publisher and one per
publisher chain, each holding a version and a digest (the manifest hash, or the hash of
the publisher file). Slots live at the leaves of a fixed 16-way trie over the slot key's
hex digits; every trie node has a 64-bit XOR of its entries' marks, so two nodes compare
by walking down only where the hashes differ. docs/PROTOCOL.md is the exact spec.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from meshdrop.core import codec
from meshdrop.core.manifest import ChunkRef
from meshdrop.errors import FormatError

PROTOCOL_VERSION = 1
PEER_API_PREFIX = "/peer/v1/"  # every peer API path starts with this
MSGPACK_TYPE = "application/x-msgpack"  # the Content-Type of hello and inventory
SLOT_BYTES = 32
DIGEST_BYTES = 32
MARK_BYTES = 8
FANOUT = 16
MAX_DEPTH = 16  # hex digits of a prefix; deeper than this only a forged inventory goes
LEAF_MAX = 8  # a node with at most this many entries is sent as its entries
MAX_LEAF_ENTRIES = 256  # what a node at MAX_DEPTH may list (an honest one holds ~1)
MAX_SCOPE = 4096  # publishers a client may ask about in one request
MAX_PREFIXES = 1024  # nodes a client may ask for in one request
MAX_VERSION = 2**63 - 1
MAX_WALK_NODES = 200_000  # nodes one inventory walk may ask for in all
MAX_WALK_ENTRIES = 200_000  # entries one inventory walk may collect

MAX_REQUEST_BYTES = 256 * 1024
MAX_INVENTORY_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_HELLO_BYTES = 1024
HEX = "0123456789abcdef"

_SLOT_BUNDLE = b"meshdrop/v1/slot-bundle\0"
_SLOT_PUBLISHER = b"meshdrop/v1/slot-publisher\0"
_MARK = b"meshdrop/v1/inventory-entry\0"


def bundle_slot(publisher: bytes, name: str) -> bytes:
    return hashlib.sha256(_SLOT_BUNDLE + publisher + name.encode()).digest()


def publisher_slot(publisher: bytes) -> bytes:
    return hashlib.sha256(_SLOT_PUBLISHER + publisher).digest()


@dataclass(frozen=True)
class Entry:
    """One slot of an inventory. ``publisher`` is known for a node's own entries only;
    it is not sent (a peer learns it from the envelope or chain it fetches)."""

    slot: bytes
    version: int
    digest: bytes
    publisher: bytes = b""

    @cached_property
    def mark(self) -> int:
        data = _MARK + self.slot + self.version.to_bytes(8, "big") + self.digest
        return int.from_bytes(hashlib.sha256(data).digest()[:MARK_BYTES], "big")


@dataclass(frozen=True)
class Node:
    """A trie node as sent: either the 16 child hashes, or the entries under it."""

    prefix: str
    children: bytes | None = None  # FANOUT * MARK_BYTES
    entries: tuple[Entry, ...] | None = None


class Inventory:
    """A node's slots, sorted by key, answering trie questions in time proportional to
    the entries under the node asked about."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        by_slot = {e.slot: e for e in entries}
        self.entries: list[Entry] = [by_slot[s] for s in sorted(by_slot)]
        self._keys = [e.slot.hex() for e in self.entries]
        self._marks = [e.mark for e in self.entries]
        self._by_slot = by_slot
        self.digest = self.hash("").to_bytes(MARK_BYTES, "big")

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, slot: bytes) -> Entry | None:
        return self._by_slot.get(slot)

    def restricted(self, publishers: Iterable[bytes]) -> Inventory:
        keep = set(publishers)
        return Inventory(e for e in self.entries if e.publisher in keep)

    def _range(self, prefix: str) -> tuple[int, int]:
        start = bisect.bisect_left(self._keys, prefix)
        end = bisect.bisect_left(self._keys, prefix + "g")  # "g" sorts after every hex digit
        return start, end

    def hash(self, prefix: str) -> int:
        start, end = self._range(prefix)
        value = 0
        for mark in self._marks[start:end]:
            value ^= mark
        return value

    def children(self, prefix: str) -> bytes:
        start, end = self._range(prefix)
        depth = len(prefix)
        hashes = [0] * FANOUT
        for key, mark in zip(self._keys[start:end], self._marks[start:end], strict=True):
            hashes[int(key[depth], 16)] ^= mark
        return b"".join(h.to_bytes(MARK_BYTES, "big") for h in hashes)

    def answer(self, prefix: str) -> Node:
        """What a server sends for ``prefix``."""
        start, end = self._range(prefix)
        if end - start <= LEAF_MAX or len(prefix) >= MAX_DEPTH:
            return Node(
                prefix, entries=tuple(self.entries[start : min(end, start + MAX_LEAF_ENTRIES)])
            )
        return Node(prefix, children=self.children(prefix))


def digest_hex(digest: bytes) -> str:
    return digest.hex()


# Messages. Every message is canonical msgpack (core/codec.py), parsed with caps.

_HELLO_LIMITS = codec.Limits(max_bytes=MAX_HELLO_BYTES, max_depth=2, max_items=16, max_bin=64)
_REQUEST_LIMITS = codec.Limits(
    max_bytes=MAX_REQUEST_BYTES,
    max_depth=3,
    max_items=MAX_SCOPE + MAX_PREFIXES + 8,
    max_str=MAX_DEPTH,
    max_bin=SLOT_BYTES,
)
_RESPONSE_LIMITS = codec.Limits(
    max_bytes=MAX_INVENTORY_RESPONSE_BYTES,
    max_depth=5,
    max_items=200_000,
    max_str=MAX_DEPTH,
    max_bin=FANOUT * MARK_BYTES,
)


@dataclass(frozen=True)
class Hello:
    protocol: int
    digest: bytes  # MARK_BYTES: the inventory digest (as in the mDNS TXT record)
    node: bytes  # a random id per start, so a node can recognise itself


def encode_hello(hello: Hello) -> bytes:
    return codec.pack({"protocol": hello.protocol, "digest": hello.digest, "node": hello.node})


def parse_hello(data: bytes) -> Hello:
    value = codec.unpack(data, _HELLO_LIMITS, "a peer's hello")
    if not isinstance(value, dict) or set(value) != {"protocol", "digest", "node"}:
        raise FormatError("a peer's hello does not have the fields protocol, digest, node")
    protocol, digest, node = value["protocol"], value["digest"], value["node"]
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise FormatError("a peer's hello has a protocol that is not a number")
    if not isinstance(digest, bytes) or len(digest) != MARK_BYTES:
        raise FormatError("a peer's hello has a malformed digest")
    if not isinstance(node, bytes) or not 1 <= len(node) <= 32:
        raise FormatError("a peer's hello has a malformed node id")
    return Hello(protocol, digest, node)


@dataclass(frozen=True)
class InventoryRequest:
    scope: tuple[bytes, ...]  # publisher ids the client trusts
    prefixes: tuple[str, ...]


def _is_prefix(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_DEPTH and all(c in HEX for c in value)


def encode_inventory_request(request: InventoryRequest) -> bytes:
    return codec.pack({"scope": list(request.scope), "prefixes": list(request.prefixes)})


def parse_inventory_request(data: bytes) -> InventoryRequest:
    value = codec.unpack(data, _REQUEST_LIMITS, "an inventory request")
    if not isinstance(value, dict) or set(value) != {"scope", "prefixes"}:
        raise FormatError("an inventory request does not have the fields scope, prefixes")
    scope, prefixes = value["scope"], value["prefixes"]
    if not isinstance(scope, list) or not 1 <= len(scope) <= MAX_SCOPE:
        raise FormatError(f"an inventory request must name 1 to {MAX_SCOPE} publishers")
    if not all(isinstance(p, bytes) and len(p) == SLOT_BYTES for p in scope):
        raise FormatError("an inventory request names a publisher that is not 32 bytes")
    if not isinstance(prefixes, list) or not 1 <= len(prefixes) <= MAX_PREFIXES:
        raise FormatError(f"an inventory request must ask for 1 to {MAX_PREFIXES} nodes")
    if not all(_is_prefix(p) for p in prefixes):
        raise FormatError("an inventory request asks for a node that is not a hex prefix")
    return InventoryRequest(tuple(scope), tuple(prefixes))


@dataclass(frozen=True)
class InventoryResponse:
    scope: tuple[bytes, ...]  # the asked-for publishers the server holds
    nodes: tuple[Node, ...]


def encode_inventory_response(response: InventoryResponse) -> bytes:
    nodes: list[codec.Value] = []
    for node in response.nodes:
        if node.children is not None:
            nodes.append({"prefix": node.prefix, "children": node.children})
        else:
            entries = [[e.slot, e.version, e.digest] for e in node.entries or ()]
            nodes.append({"prefix": node.prefix, "entries": entries})
    return codec.pack({"scope": list(response.scope), "nodes": nodes})


def parse_inventory_response(
    data: bytes, request: InventoryRequest, max_entries: int = 100_000
) -> InventoryResponse:
    """Check a server's answer against what was asked: only asked-for nodes, each once,
    entries really under their node, nothing but asked-for publishers in scope."""
    what = "a peer's inventory"
    value = codec.unpack(data, _RESPONSE_LIMITS, what)
    if not isinstance(value, dict) or set(value) != {"scope", "nodes"}:
        raise FormatError(f"{what} does not have the fields scope, nodes")
    scope, raw_nodes = value["scope"], value["nodes"]
    asked_scope = set(request.scope)
    if not isinstance(scope, list) or not all(
        isinstance(p, bytes) and p in asked_scope for p in scope
    ):
        raise FormatError(f"{what} names publishers that were not asked about")
    if not isinstance(raw_nodes, list) or len(raw_nodes) > len(request.prefixes):
        raise FormatError(f"{what} has more nodes than were asked for")
    asked = set(request.prefixes)
    nodes: list[Node] = []
    seen: set[str] = set()
    total = 0
    for raw in raw_nodes:
        if not isinstance(raw, dict) or "prefix" not in raw or len(raw) != 2:
            raise FormatError(f"{what} has a malformed node")
        prefix = raw["prefix"]
        if prefix not in asked or prefix in seen:
            raise FormatError(f"{what} has a node that was not asked for")
        seen.add(prefix)
        if "children" in raw:
            children = raw["children"]
            if not isinstance(children, bytes) or len(children) != FANOUT * MARK_BYTES:
                raise FormatError(f"{what} has a node with malformed child hashes")
            if len(prefix) >= MAX_DEPTH:
                raise FormatError(f"{what} goes deeper than {MAX_DEPTH} levels")
            nodes.append(Node(prefix, children=children))
            continue
        entries = _parse_entries(raw.get("entries"), prefix, what)
        total += len(entries)
        if total > max_entries:
            raise FormatError(f"{what} lists more than {max_entries} entries")
        nodes.append(Node(prefix, entries=entries))
    return InventoryResponse(tuple(scope), tuple(nodes))


def _parse_entries(raw: object, prefix: str, what: str) -> tuple[Entry, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_LEAF_ENTRIES:
        raise FormatError(f"{what} has a node with a malformed or overlong entry list")
    entries = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 3:
            raise FormatError(f"{what} has a malformed entry")
        slot, version, digest = item
        if not isinstance(slot, bytes) or len(slot) != SLOT_BYTES:
            raise FormatError(f"{what} has an entry with a malformed slot")
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or not 1 <= version <= MAX_VERSION
        ):
            raise FormatError(f"{what} has an entry with a malformed version")
        if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
            raise FormatError(f"{what} has an entry with a malformed digest")
        if not slot.hex().startswith(prefix):
            raise FormatError(f"{what} has an entry outside the node it is listed under")
        entries.append(Entry(slot, version, digest))
    return tuple(entries)


class Reconciler:
    """The client's walk down a peer's trie. ``next_prefixes`` says what to ask for
    next; ``feed`` takes each answer; ``offered`` collects the peer's entries that differ
    from ours (or may). Bounded: at most MAX_DEPTH + 1 levels."""

    def __init__(self, own: Inventory) -> None:
        self._all_own = own
        self.own = own
        self.offered: list[Entry] = []
        self._queue: deque[str] = deque([""])
        self._scoped = False
        self.asked = 0

    def next_prefixes(self) -> list[str]:
        batch: list[str] = []
        while self._queue and len(batch) < MAX_PREFIXES:
            batch.append(self._queue.popleft())
        self.asked += len(batch)
        if self.asked > MAX_WALK_NODES:
            raise FormatError("a peer's inventory walk does not end")
        return batch

    @property
    def done(self) -> bool:
        return not self._queue

    def feed(self, response: InventoryResponse) -> None:
        if not self._scoped:
            # Compare only over the publishers both sides hold: our own bundles of a
            # publisher the peer does not know would otherwise differ at every level.
            self.own = self._all_own.restricted(response.scope)
            self._scoped = True
        for node in response.nodes:
            if node.entries is not None:
                for entry in node.entries:
                    mine = self.own.get(entry.slot)
                    if mine is None or (mine.version, mine.digest) != (entry.version, entry.digest):
                        self.offered.append(entry)
                if len(self.offered) > MAX_WALK_ENTRIES:
                    raise FormatError("a peer's inventory offers too many entries")
                continue
            assert node.children is not None
            if node.children == self.own.children(node.prefix):
                continue
            for i in range(FANOUT):
                theirs = node.children[i * MARK_BYTES : (i + 1) * MARK_BYTES]
                child = node.prefix + HEX[i]
                if theirs != bytes(MARK_BYTES) and int.from_bytes(theirs, "big") != self.own.hash(
                    child
                ):
                    self._queue.append(child)


@dataclass(frozen=True)
class Wants:
    publishers: tuple[tuple[bytes, Entry], ...]  # (publisher id, entry), chains first
    bundles: tuple[Entry, ...]


def decide_wants(
    offered: Iterable[Entry],
    known_versions: Mapping[bytes, int],
    publisher_slots: Mapping[bytes, bytes],
    refused: Iterable[bytes] = (),
) -> Wants:
    """What to fetch of what a peer offers: a publisher chain newer than ours; a bundle
    newer than any version of its name this node has seen (a removed bundle does not come
    back at the same version); never a digest refused lately."""
    skip = set(refused)
    publishers: list[tuple[bytes, Entry]] = []
    bundles: list[Entry] = []
    for entry in offered:
        if entry.digest in skip or entry.version <= known_versions.get(entry.slot, 0):
            continue
        publisher = publisher_slots.get(entry.slot)
        if publisher is not None:
            publishers.append((publisher, entry))
        else:
            bundles.append(entry)
    return Wants(tuple(publishers), tuple(bundles))


# Peers: liveness, backoff, forgetting, penalties and when to sync.

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

Address = tuple[str, int]


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


class ChunkPlan:
    """The chunks of one bundle still to fetch, shared by every peer that has it: each
    chunk is handed to one peer at a time; a chunk a peer got wrong goes back to the queue
    for the others (never blacklisted, only that peer is avoided for it)."""

    def __init__(self, refs: Iterable[ChunkRef]) -> None:
        self.pending: deque[ChunkRef] = deque()
        self.in_flight: dict[bytes, str] = {}
        self.avoid: dict[bytes, set[str]] = {}
        self.reset(refs)

    def reset(self, refs: Iterable[ChunkRef]) -> None:
        self.pending = deque(r for r in refs if r.digest not in self.in_flight)

    def take(self, peer: str) -> ChunkRef | None:
        for i, ref in enumerate(self.pending):
            if peer not in self.avoid.get(ref.digest, ()):
                del self.pending[i]
                self.in_flight[ref.digest] = peer
                return ref
        return None

    def finished(self, ref: ChunkRef) -> None:
        self.in_flight.pop(ref.digest, None)

    def failed(self, ref: ChunkRef, peer: str, bad_data: bool) -> None:
        self.in_flight.pop(ref.digest, None)
        if bad_data:
            self.avoid.setdefault(ref.digest, set()).add(peer)
        self.pending.appendleft(ref)

    def can_serve(self, peer: str) -> bool:
        return any(peer not in self.avoid.get(r.digest, ()) for r in self.pending)

    @property
    def complete(self) -> bool:
        return not self.pending and not self.in_flight

    @property
    def remaining(self) -> int:
        return len(self.pending) + len(self.in_flight)


def trust_digest(chains: Iterable[tuple[bytes, int]]) -> bytes:
    """A short digest of (publisher id, chain version) for every trusted publisher: a
    sync is redone when it changes (a newly trusted publisher, a new key)."""
    h = hashlib.sha256(b"meshdrop/v1/trust-digest\0")
    for publisher, version in sorted(chains):
        h.update(publisher + version.to_bytes(8, "big"))
    return h.digest()[:MARK_BYTES]
