"""Publisher chains in the index, and what follows from them: withdrawn bundles, the
rollback marks that still count, and the clock floor."""

from __future__ import annotations

import sqlite3
import time

from meshdrop.core.bundle import encode_publisher_file, parse_publisher_file
from meshdrop.core.keys import key_id
from meshdrop.core.records import Reason
from meshdrop.core.trust import PublisherState, start_state
from meshdrop.store.models import Equivocation, Withdrawal


def load_states(conn: sqlite3.Connection) -> dict[bytes, PublisherState]:
    rows = conn.execute("SELECT records FROM publishers").fetchall()
    states = (start_state(parse_publisher_file(r[0], "a stored publisher file")) for r in rows)
    return {s.publisher: s for s in states}


def save_state(conn: sqlite3.Connection, state: PublisherState, new: bool) -> list[Withdrawal]:
    """Store the publisher's chain; returns the stored bundles its revocations withdrew
    now (none were withdrawn before)."""
    now = int(time.time())
    record = state.current
    chain = encode_publisher_file(state.signed)
    if new:
        conn.execute(
            "INSERT INTO publishers VALUES (?, ?, ?, ?, ?, ?, ?)",
            (state.publisher, state.fingerprint, record.name, record.version, chain, now, now),
        )
    else:
        conn.execute(
            "UPDATE publishers SET name = ?, version = ?, records = ?, updated = ? "
            "WHERE id = ? AND version < ?",
            (record.name, record.version, chain, now, state.publisher, record.version),
        )
    note_signed_time(conn, state.publisher, b"", record.created)
    return apply_revocations(conn, state)


def apply_revocations(conn: sqlite3.Connection, state: PublisherState) -> list[Withdrawal]:
    """Withdraw what revoked keys may no longer vouch for: everything a compromised key
    signed, and what a retired key signed after its retirement. Returns the bundles
    withdrawn by this call, so that every import can say what vanished."""
    withdrawn: list[Withdrawal] = []
    for key, revocation in state.revocations().items():
        # A compromised key vouches for nothing it signed, whenever it was signed.
        since = -1 if revocation.reason is Reason.COMPROMISED else revocation.at
        where = "WHERE publisher = ? AND signer = ? AND created > ? AND withdrawn = 0"
        params = (state.publisher, key, since)
        rows = conn.execute(
            f"SELECT name, version FROM bundles {where} ORDER BY name, version",  # noqa: S608
            params,
        ).fetchall()
        if not rows:
            continue
        conn.execute(f"UPDATE bundles SET withdrawn = 1 {where}", params)  # noqa: S608
        withdrawn += [
            Withdrawal(
                name,
                version,
                state.fingerprint,
                key_id(key),
                revocation.reason.value,
                revocation.at,
            )
            for name, version in rows
        ]
    return withdrawn


def note_signed_time(conn: sqlite3.Connection, publisher: bytes, signer: bytes, when: int) -> None:
    conn.execute(
        "INSERT INTO signed_times VALUES (?, ?, ?) ON CONFLICT(publisher, signer) "
        "DO UPDATE SET time = max(time, excluded.time)",
        (publisher, signer, when),
    )


def clock_floor(conn: sqlite3.Connection, states: dict[bytes, PublisherState]) -> int:
    """The newest signed time seen from a trusted, uncompromised source."""
    floor = 0
    for publisher, signer, when in conn.execute("SELECT publisher, signer, time FROM signed_times"):
        state = states.get(publisher)
        if state is not None and signer not in state.compromised():
            floor = max(floor, when)
    return floor


def newest_signed(conn: sqlite3.Connection, state: PublisherState) -> int | None:
    compromised = state.compromised()
    times = [
        when
        for signer, when in conn.execute(
            "SELECT signer, time FROM signed_times WHERE publisher = ?", (state.publisher,)
        )
        if signer not in compromised
    ]
    return max(times) if times else None


def highest_version(
    conn: sqlite3.Connection, state: PublisherState, name: str
) -> tuple[int, bytes] | None:
    """(version, manifest hash) of the highest version of ``name`` seen from a key that is
    not compromised: marks set by a leaked key do not block the publisher's real updates."""
    compromised = state.compromised()
    rows = [
        (version, digest)
        for signer, version, digest in conn.execute(
            "SELECT signer, version, manifest_hash FROM highwater WHERE publisher = ? AND name = ?",
            (state.publisher, name),
        )
        if signer not in compromised
    ]
    # The highest version; of two copies of one version (an equivocation), the lower
    # manifest hash, the copy every node keeps whatever order the copies came in.
    return min(rows, key=lambda row: (-row[0], row[1])) if rows else None


def record_equivocation(conn: sqlite3.Connection, twin: Equivocation) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO equivocations VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            twin.publisher,
            twin.name,
            twin.version,
            twin.kept,
            twin.other,
            twin.signer,
            twin.seen or int(time.time()),
        ),
    )


def equivocations(conn: sqlite3.Connection, publisher: bytes) -> list[Equivocation]:
    rows = conn.execute(
        "SELECT publisher, name, version, kept, other, signer, seen FROM equivocations "
        "WHERE publisher = ? ORDER BY seen, name, version",
        (publisher,),
    ).fetchall()
    return [Equivocation(*row) for row in rows]
