"""Partial bundles: verified envelopes whose data has only partly arrived.

A courier's stick may bring some parts of a big bundle and not others, or a damaged copy.
The chunks that verified are kept in the chunk store like any other, and the envelope is
recorded here with the list of its chunk hashes, so that another stick (or a peer) that
brings the rest completes the bundle without copying again what verified, and so that
neither ``fsck --repair`` nor the clean-up after a commit throws the kept chunks away.
Nothing staged is visible: only commit makes a bundle listed or readable.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshdrop.core.bundle import Envelope, parse_envelope
from meshdrop.core.keys import format_fingerprint
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import MeshdropError
from meshdrop.store.models import ImportResult

if TYPE_CHECKING:
    from meshdrop.store.db import Database

Accept = Callable[[Envelope], "VerifiedManifest | ImportResult"]

# A staged row counts only while no committed bundle of the same name is as new or newer.
_STAGED_DIGESTS = (
    "SELECT c.hash FROM staging_chunks c JOIN staging s ON s.manifest_hash = c.manifest_hash "
    "WHERE NOT EXISTS (SELECT 1 FROM bundles b WHERE b.publisher = s.publisher "
    "AND b.name = s.name AND b.version >= s.version AND b.withdrawn = 0)"
)
_IS_STAGED = (
    "SELECT 1 FROM staging_chunks c JOIN staging s ON s.manifest_hash = c.manifest_hash "
    "WHERE c.hash = ? AND NOT EXISTS (SELECT 1 FROM bundles b WHERE b.publisher = s.publisher "
    "AND b.name = s.name AND b.version >= s.version AND b.withdrawn = 0) LIMIT 1"
)
_LIST = (
    "SELECT s.manifest_hash, s.publisher, s.name, s.version, s.size, s.added, s.envelope "
    "FROM staging s WHERE NOT EXISTS (SELECT 1 FROM bundles b WHERE b.publisher = s.publisher "
    "AND b.name = s.name AND b.version >= s.version AND b.withdrawn = 0) ORDER BY s.added"
)
# The staged bundles not superseded by a committed one, for the LAN's partial offers.
LIVE_STAGED = (
    "SELECT s.manifest_hash, s.publisher, s.name, s.version, s.envelope FROM staging s "
    "WHERE NOT EXISTS (SELECT 1 FROM bundles b WHERE b.publisher = s.publisher "
    "AND b.name = s.name AND b.version >= s.version AND b.withdrawn = 0)"
)
_DEAD = (
    "SELECT s.manifest_hash FROM staging s WHERE EXISTS (SELECT 1 FROM bundles b "
    "WHERE b.publisher = s.publisher AND b.name = s.name AND b.version >= s.version "
    "AND b.withdrawn = 0)"
)


@dataclass(frozen=True)
class StagedBundle:
    manifest_hash: bytes
    publisher: str  # fingerprint
    name: str
    version: int
    size: int
    added: int
    envelope: Envelope


def manifest_hash(verified: VerifiedManifest) -> bytes:
    return hashlib.sha256(verified.manifest_bytes).digest()


def stage(db: Database, verified: VerifiedManifest) -> bool:
    """Record ``verified`` as partly present; returns True if it was not staged yet."""
    m = verified.manifest
    digest = manifest_hash(verified)
    with db.write_lock(), db.transaction() as conn:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO staging VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                digest,
                m.publisher,
                m.name,
                m.version,
                verified.relay_envelope().encode(),
                m.size,
                int(time.time()),
            ),
        )
        if cursor.rowcount == 0:
            return False
        chunks = {d for f in m.files for d in f.chunks}
        conn.executemany(
            "INSERT OR IGNORE INTO staging_chunks VALUES (?, ?)", ((digest, c) for c in chunks)
        )
    return True


def unstage(db: Database, digest: bytes) -> None:
    """Forget a staged bundle (it committed); cheap when it was never staged."""
    if db.conn.execute("SELECT 1 FROM staging WHERE manifest_hash = ?", (digest,)).fetchone():
        with db.transaction() as conn:
            conn.execute("DELETE FROM staging WHERE manifest_hash = ?", (digest,))


def staged_digests(conn: sqlite3.Connection) -> set[bytes]:
    """Chunk hashes that live staged bundles still need kept."""
    return {row[0] for row in conn.execute(_STAGED_DIGESTS)}


def is_staged(conn: sqlite3.Connection, digest: bytes) -> bool:
    row = conn.execute(_IS_STAGED, (digest,)).fetchone()
    return row is not None


def list_staged(db: Database) -> list[StagedBundle]:
    rows = db.conn.execute(_LIST).fetchall()
    return [
        StagedBundle(
            digest,
            format_fingerprint(publisher),
            name,
            version,
            size,
            added,
            parse_envelope(envelope, f"the staged bundle {name}"),
        )
        for digest, publisher, name, version, size, added, envelope in rows
    ]


def prune(db: Database, accept: Accept) -> int:
    """Drop staged bundles that can never complete usefully: committed meanwhile, superseded
    by a newer version, expired, or no longer acceptable (trust removed, key revoked).
    Their chunks become ordinary leftovers for ``fsck --repair``. Returns how many."""
    dead = [row[0] for row in db.conn.execute(_DEAD)]
    for digest, envelope in db.conn.execute(
        "SELECT manifest_hash, envelope FROM staging"
    ).fetchall():
        if digest in dead:
            continue
        try:
            if isinstance(accept(parse_envelope(envelope, "a staged bundle")), ImportResult):
                dead.append(digest)
        except MeshdropError:
            dead.append(digest)
    if dead:
        with db.write_lock(), db.transaction() as conn:
            conn.executemany("DELETE FROM staging WHERE manifest_hash = ?", ((d,) for d in dead))
    return len(dead)
