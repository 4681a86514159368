"""What a node may offer its peers, read from the store: the inventory of visible bundles
and trusted publisher chains, a stored envelope by its manifest hash, a chunk, and a
publisher file. Only what ``Store.list_bundles`` would show is ever offered: never a
withdrawn or expired bundle, never a publisher no longer trusted, never a chunk that
only an uncommitted (partial) transfer holds.

A ``PeerView`` reads through its own Store (its own SQLite connection) and caches what
it computed until the index changes (``PRAGMA data_version``) or a bundle expires.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass

from meshdrop.core.inventory import Entry, Inventory, bundle_slot, publisher_slot, trust_digest
from meshdrop.core.trust import PublisherState
from meshdrop.store import trustdb
from meshdrop.store.store import Store


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


class PeerView:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._snapshot: Snapshot | None = None

    def _marker(self) -> int:
        return int(self.store.conn.execute("PRAGMA data_version").fetchone()[0])

    def now(self) -> int:
        return max(int(time.time()), self.snapshot().clock_floor)

    def snapshot(self) -> Snapshot:
        marker = self._marker()
        snap = self._snapshot
        if snap is None or snap.marker != marker or time.time() >= snap.valid_until:
            snap = self._snapshot = self._take(marker)
        return snap

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
        )

    def envelope(self, manifest_hash: bytes) -> bytes | None:
        """The stored (relay) envelope of a visible bundle, by its manifest hash."""
        snap = self.snapshot()
        row = self.store.conn.execute(
            "SELECT publisher, name, version, envelope FROM bundles "
            "WHERE manifest_hash = ? AND withdrawn = 0",
            (manifest_hash,),
        ).fetchone()
        if row is None:
            return None
        entry = snap.inventory.get(bundle_slot(row[0], row[1]))
        if entry is None or entry.digest != manifest_hash:
            return None  # expired, or its publisher is no longer trusted
        return bytes(row[3])

    def chunk_visible(self, digest: bytes) -> bool:
        """Whether a chunk belongs to at least one visible bundle."""
        snap = self.snapshot()
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
