"""Inventories and how two of them are compared: the pure half of sync, shared by the store
(which fills an inventory) and the LAN (which walks a peer's). Bytes and numbers in,
values or FormatError out; no sockets, files, clocks or asyncio.

An inventory is a set of *slots*, one per bundle name of a publisher and one per
publisher chain, each holding a version and a digest (the manifest hash, or the hash of
the publisher file). Slots live at the leaves of a fixed 16-way trie over the slot key's
hex digits; every trie node has a 64-bit XOR of its entries' marks, so two nodes compare
by walking down only where the hashes differ. docs/PROTOCOL.md section 4 is the exact
spec; the messages that carry a walk are transports/lan/protocol.py's.

A bundle a node holds only part of (its envelope verified, some chunks stored) has an
entry of its own, in a slot of its own (``partial_slot``), that also carries a short
hash of which chunks it holds (``have``): two nodes holding different parts of one
bundle differ there, so they sync and complete each other; the same parts, no change.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from meshdrop.errors import FormatError

SLOT_BYTES = 32
DIGEST_BYTES = 32
MARK_BYTES = 8
HAVE_BYTES = 8  # a partial entry's tag: a hash of its holdings bitmap (core/holdings.py)
FANOUT = 16
MAX_DEPTH = 16  # hex digits of a prefix; deeper than this only a forged inventory goes
LEAF_MAX = 8  # a node with at most this many entries is sent as its entries
MAX_LEAF_ENTRIES = 256  # what a node at MAX_DEPTH may list (an honest one holds ~1)
MAX_PREFIXES = 1024  # nodes a walk asks for at once (and a peer may ask for in one request)
MAX_WALK_NODES = 200_000  # nodes one inventory walk may ask for in all
MAX_WALK_ENTRIES = 200_000  # entries one inventory walk may collect
HEX = "0123456789abcdef"

_SLOT_BUNDLE = b"meshdrop/v1/slot-bundle\0"
_SLOT_PUBLISHER = b"meshdrop/v1/slot-publisher\0"
_SLOT_PARTIAL = b"meshdrop/v1/slot-partial\0"
_MARK = b"meshdrop/v1/inventory-entry\0"
_ADVERTISED = b"meshdrop/v1/advertised-digest\0"
SALT_BYTES = 32


def bundle_slot(publisher: bytes, name: str) -> bytes:
    return hashlib.sha256(_SLOT_BUNDLE + publisher + name.encode()).digest()


def publisher_slot(publisher: bytes) -> bytes:
    return hashlib.sha256(_SLOT_PUBLISHER + publisher).digest()


def partial_slot(slot: bytes) -> bytes:
    """The slot of a partly held bundle, derived from its bundle slot (so a node that
    has a version of that name can tell what the entry is about without the name)."""
    return hashlib.sha256(_SLOT_PARTIAL + slot).digest()


def offered_slot(publisher: bytes, name: str, partial: bool) -> bytes:
    """The slot an entry for this bundle sits in: its own, or its partial one."""
    slot = bundle_slot(publisher, name)
    return partial_slot(slot) if partial else slot


@dataclass(frozen=True)
class Entry:
    """One slot of an inventory. ``publisher`` is known for a node's own entries only;
    it is not sent (a peer learns it from the envelope or chain it fetches). ``have`` is
    set (HAVE_BYTES) for a partly held bundle only, and sent with it."""

    slot: bytes
    version: int
    digest: bytes
    publisher: bytes = b""
    have: bytes = b""

    @property
    def partial(self) -> bool:
        return bool(self.have)

    @property
    def held(self) -> tuple[int, bytes, bytes]:
        """What two entries of one slot are compared on."""
        return self.version, self.digest, self.have

    @cached_property
    def mark(self) -> int:
        data = _MARK + self.slot + self.version.to_bytes(8, "big") + self.digest + self.have
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

    def feed(self, scope: Iterable[bytes], nodes: Iterable[Node]) -> None:
        """One answer: the trie ``nodes`` asked for, and the ``scope`` of publishers the
        peer holds of those asked about."""
        if not self._scoped:
            # Compare only over the publishers both sides hold: our own bundles of a
            # publisher the peer does not know would otherwise differ at every level.
            self.own = self._all_own.restricted(scope)
            self._scoped = True
        for node in nodes:
            if node.entries is not None:
                for entry in node.entries:
                    mine = self.own.get(entry.slot)
                    if mine is None or mine.held != entry.held:
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
    """What to fetch of what a peer offers: a publisher chain newer than ours; a bundle,
    whole or partly held, newer than any version of its name this node has seen (a
    removed bundle does not come back at the same version; ``known_versions`` also holds
    the ``partial_slot`` of each bundle slot); never a digest refused lately."""
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


def trust_digest(chains: Iterable[tuple[bytes, int]]) -> bytes:
    """A short digest of (publisher id, chain version) for every trusted publisher: a
    sync is redone when it changes (a newly trusted publisher, a new key)."""
    h = hashlib.sha256(b"meshdrop/v1/trust-digest\0")
    for publisher, version in sorted(chains):
        h.update(publisher + version.to_bytes(8, "big"))
    return h.digest()[:MARK_BYTES]


def advertised_digest(salt: bytes, digest: bytes) -> bytes:
    """What a node tells others of its inventory digest (TXT ``d=``, hello): HMAC-SHA256
    of it under a random ``salt`` of this start, MARK_BYTES long. It changes when the
    inventory does, and says nothing else: no one can compute it from publisher files
    and bundles, compare it with another node's, or match two starts of one node."""
    return hmac.new(salt, _ADVERTISED + digest, hashlib.sha256).digest()[:MARK_BYTES]
