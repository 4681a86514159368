"""What a node may offer its peers, read from the store: the inventory of visible bundles,
trusted publisher chains and partly held bundles, a stored envelope by its manifest hash,
which chunks of a bundle it holds, a chunk, and a publisher file. Only what
``Store.list_bundles`` would show is offered, and the bundles this node holds part of
(staged: store/staging.py) whose envelope still verifies here: never a withdrawn or
expired bundle, never a publisher no longer trusted, never a superseded version.

A ``PeerView`` reads through its own Store (its own SQLite connection) and caches what
it computed until the index changes (``PRAGMA data_version``) or a bundle expires; the
chunks of partly held bundles arrive without an index change, so their holdings are
looked at again every PARTIAL_REFRESH seconds (and the inventory digest changes only
when they did).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass, field, replace

from meshdrop.core.bundle import parse_envelope
from meshdrop.core.holdings import encode_bitmap, have_tag
from meshdrop.core.inventory import (
    Entry,
    Inventory,
    bundle_slot,
    partial_slot,
    publisher_slot,
    trust_digest,
)
from meshdrop.core.manifest import parse_manifest
from meshdrop.core.trust import PublisherState
from meshdrop.core.verify import verify_envelope
from meshdrop.errors import MeshdropError
from meshdrop.store import trustdb
from meshdrop.store.staging import LIVE_STAGED
from meshdrop.store.store import Store

PARTIAL_REFRESH = 5.0  # seconds a partly held bundle's holdings may be stale in the inventory


@dataclass(frozen=True)
class PartialBundle:
    """A staged bundle this node offers the chunks of: its envelope verified against the
    current trust and clock, not superseded by a version committed or seen here."""

    manifest_hash: bytes
    publisher: bytes
    slot: bytes  # the bundle slot (its entry goes in partial_slot(slot))
    version: int
    expires: int | None
    envelope: bytes  # the relay envelope, as stored
    digests: tuple[bytes, ...]  # the manifest's chunk list in data order (the bitmap's)


@dataclass(frozen=True)
class Snapshot:
    """One consistent look at the index, valid until ``valid_until`` (the next expiry)."""

    marker: int
    valid_until: float
    states: dict[bytes, PublisherState]
    clock_floor: int
    inventory: Inventory
    known_versions: dict[bytes, int]  # slot -> highest version seen (bundles and chains)
    publisher_slots: dict[bytes, bytes]  # slot -> publisher id, for trusted publishers
    trust_digest: bytes
    partials: dict[bytes, PartialBundle] = field(default_factory=dict)  # by manifest hash


class PeerView:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._base: Snapshot | None = None  # what the index says
        self._snapshot: Snapshot | None = None  # with the partial entries of the moment
        self._partial_entries: tuple[Entry, ...] = ()
        self._holdings_until = 0.0

    def _marker(self) -> int:
        return int(self.store.conn.execute("PRAGMA data_version").fetchone()[0])

    def now(self) -> int:
        return max(int(time.time()), self.snapshot().clock_floor)

    def snapshot(self) -> Snapshot:
        marker = self._marker()
        base = self._base
        now = time.time()
        if base is None or base.marker != marker or now >= base.valid_until:
            base = self._base = self._take(marker)
            self._snapshot = None
        snap = self._snapshot
        if snap is None or (base.partials and now >= self._holdings_until):
            snap = self._snapshot = self._with_holdings(base, snap)
            self._holdings_until = now + PARTIAL_REFRESH
        return snap

    def _bitmap(self, partial: PartialBundle) -> bytes:
        has = self.store.chunks.has
        return encode_bitmap([has(digest) for digest in partial.digests])

    def _with_holdings(self, base: Snapshot, last: Snapshot | None) -> Snapshot:
        """``base`` with an entry for each partly held bundle of which a chunk is here;
        the last inventory again if no holdings changed (its digest stays)."""
        entries: dict[bytes, Entry] = {}
        for partial in base.partials.values():
            bitmap = self._bitmap(partial)
            if not any(bitmap):
                continue
            slot = partial_slot(partial.slot)
            if slot in entries and entries[slot].version >= partial.version:
                continue  # two versions partly held: the newer is offered
            entries[slot] = Entry(
                slot, partial.version, partial.manifest_hash, partial.publisher, have_tag(bitmap)
            )
        found = tuple(sorted(entries.values(), key=lambda e: e.slot))
        if last is not None and found == self._partial_entries:
            return last
        self._partial_entries = found
        if not found:
            return base
        return replace(base, inventory=Inventory([*base.inventory.entries, *found]))

    def _take(self, marker: int) -> Snapshot:
        conn = self.store.conn
        conn.execute("BEGIN")  # one read transaction: every query sees the same commit
        try:
            return self._read(conn, marker)
        finally:
            conn.execute("COMMIT")

    def _read(self, conn: sqlite3.Connection, marker: int) -> Snapshot:
        states = trustdb.load_states(conn)
        floor = trustdb.clock_floor(conn, states)
        now = max(int(time.time()), floor)
        entries: list[Entry] = []
        publisher_slots: dict[bytes, bytes] = {}
        known: dict[bytes, int] = {}
        for publisher, version, records in conn.execute(
            "SELECT id, version, records FROM publishers"
        ):
            if publisher not in states:
                continue
            slot = publisher_slot(publisher)
            publisher_slots[slot] = publisher
            known[slot] = version
            entries.append(Entry(slot, version, hashlib.sha256(records).digest(), publisher))
        next_expiry = float("inf")
        for publisher, name, version, manifest_hash, expires in conn.execute(
            "SELECT publisher, name, version, manifest_hash, expires FROM bundles "
            "WHERE withdrawn = 0"
        ):
            if publisher not in states:
                continue
            if expires is not None:
                if expires < now:
                    continue
                next_expiry = min(next_expiry, float(expires + 1))
            entries.append(Entry(bundle_slot(publisher, name), version, manifest_hash, publisher))
        compromised = {p: s.compromised() for p, s in states.items()}
        for publisher, name, signer, version in conn.execute(
            "SELECT publisher, name, signer, version FROM highwater"
        ):
            if publisher in states and signer not in compromised[publisher]:
                slot = bundle_slot(publisher, name)
                known[slot] = max(known.get(slot, 0), version)
        partials = self._partials(conn, states, now, known)
        for bundle in partials.values():
            if bundle.expires is not None:
                next_expiry = min(next_expiry, float(bundle.expires + 1))
        for slot, version in list(known.items()):
            if slot not in publisher_slots:  # a partial entry of a name seen is not new
                known[partial_slot(slot)] = version
        # The clock floor only moves with a commit (a new marker), so the next bundle to
        # expire does so when the wall clock passes its expiry.
        return Snapshot(
            marker=marker,
            valid_until=next_expiry,
            states=states,
            clock_floor=floor,
            inventory=Inventory(entries),
            known_versions=known,
            publisher_slots=publisher_slots,
            trust_digest=trust_digest((p, s.version) for p, s in states.items()),
            partials=partials,
        )

    def _partials(
        self,
        conn: sqlite3.Connection,
        states: dict[bytes, PublisherState],
        now: int,
        known: dict[bytes, int],
    ) -> dict[bytes, PartialBundle]:
        """The staged bundles this node may offer: each envelope verified again (trust,
        revocation, expiry), none older than a version of its name seen here."""
        found: dict[bytes, PartialBundle] = {}
        for digest, publisher, name, version, envelope in conn.execute(LIVE_STAGED):
            slot = bundle_slot(publisher, name)
            if publisher not in states or known.get(slot, 0) > version:
                continue
            try:
                verified = verify_envelope(parse_envelope(envelope, name), states, now)
            except MeshdropError:
                continue  # revoked, expired, no longer delegated: never offered
            m = verified.manifest
            digests = tuple(ref.digest for ref in m.chunk_refs())
            found[digest] = PartialBundle(
                digest, publisher, slot, version, m.expires, envelope, digests
            )
        return found

    def have(self, manifest_hash: bytes) -> bytes | None:
        """The chunk bitmap (core/holdings.py) of a visible or partly held bundle."""
        snap = self.snapshot()
        partial = snap.partials.get(manifest_hash)
        if partial is not None:
            return self._bitmap(partial)
        envelope = self.envelope(manifest_hash)
        if envelope is None:
            return None
        manifest = parse_manifest(parse_envelope(envelope, "a stored bundle").manifest_bytes)
        return encode_bitmap([True] * len(manifest.chunk_refs()))

    def envelope(self, manifest_hash: bytes) -> bytes | None:
        """The stored (relay) envelope of a visible or partly held bundle, by its
        manifest hash."""
        snap = self.snapshot()
        row = self.store.conn.execute(
            "SELECT publisher, name, version, envelope FROM bundles "
            "WHERE manifest_hash = ? AND withdrawn = 0",
            (manifest_hash,),
        ).fetchone()
        if row is None:
            partial = snap.partials.get(manifest_hash)
            return None if partial is None else partial.envelope
        entry = snap.inventory.get(bundle_slot(row[0], row[1]))
        if entry is None or entry.digest != manifest_hash:
            return None  # expired, or its publisher is no longer trusted
        return bytes(row[3])

    def chunk_offered(self, digest: bytes) -> bool:
        """Whether a chunk belongs to a visible bundle or to a partly held one whose
        envelope verifies here (PROTOCOL 3.4). Whether this node has its file is the
        caller's question."""
        snap = self.snapshot()
        if self._chunk_visible(snap, digest):
            return True
        if not snap.partials:
            return False
        return any(
            row[0] in snap.partials
            for row in self.store.conn.execute(
                "SELECT manifest_hash FROM staging_chunks WHERE hash = ?", (digest,)
            )
        )

    def _chunk_visible(self, snap: Snapshot, digest: bytes) -> bool:
        now = max(int(time.time()), snap.clock_floor)
        for publisher, expires in self.store.conn.execute(
            "SELECT b.publisher, b.expires FROM bundle_chunks c JOIN bundles b "
            "ON b.id = c.bundle_id WHERE c.hash = ? AND b.withdrawn = 0",
            (digest,),
        ):
            if publisher in snap.states and (expires is None or expires >= now):
                return True
        return False

    def publisher_file(self, publisher: bytes) -> bytes | None:
        """A trusted publisher's stored chain (a publisher.pub), to pass on."""
        if publisher not in self.snapshot().states:
            return None
        row = self.store.conn.execute(
            "SELECT records FROM publishers WHERE id = ?", (publisher,)
        ).fetchone()
        return None if row is None else bytes(row[0])
