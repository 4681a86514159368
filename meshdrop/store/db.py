"""The SQLite index: schema and connection settings."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from meshdrop.errors import StoreError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS publishers (
    id BLOB PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    records BLOB NOT NULL,
    added INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bundles (
    id INTEGER PRIMARY KEY,
    publisher BLOB NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    signer BLOB NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0,
    manifest_hash BLOB NOT NULL,
    envelope BLOB NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    language TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER,
    size INTEGER NOT NULL,
    file_count INTEGER NOT NULL,
    imported INTEGER NOT NULL,
    UNIQUE (publisher, name)
);
CREATE TABLE IF NOT EXISTS bundle_chunks (
    bundle_id INTEGER NOT NULL REFERENCES bundles(id) ON DELETE CASCADE,
    hash BLOB NOT NULL,
    PRIMARY KEY (bundle_id, hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bundle_chunks_by_hash ON bundle_chunks(hash);
CREATE INDEX IF NOT EXISTS bundles_by_manifest_hash ON bundles(manifest_hash);
-- The highest version of each bundle name seen, per signing key, so that the marks a
-- compromised key set can be dropped without forgetting the others (rollback protection).
CREATE TABLE IF NOT EXISTS highwater (
    publisher BLOB NOT NULL,
    name TEXT NOT NULL,
    signer BLOB NOT NULL,
    version INTEGER NOT NULL,
    manifest_hash BLOB NOT NULL,
    PRIMARY KEY (publisher, name, signer)
) WITHOUT ROWID;
-- The newest signed time seen per signing key (b'' for publisher records): the clock
-- floor, so that a clock set back cannot revive expired content.
CREATE TABLE IF NOT EXISTS signed_times (
    publisher BLOB NOT NULL,
    signer BLOB NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (publisher, signer)
) WITHOUT ROWID;
-- Chunks a commit made unreferenced, deleted after it (and again by the next writer if a
-- crash came in between), so a kill at any moment leaks no space.
CREATE TABLE IF NOT EXISTS pending_deletes (hash BLOB PRIMARY KEY) WITHOUT ROWID;
-- Bundles verified but not complete yet (a courier brought only some of their parts): the
-- envelope to resume with, and the chunks to keep until the bundle commits (store/staging.py).
CREATE TABLE IF NOT EXISTS staging (
    manifest_hash BLOB PRIMARY KEY,
    publisher BLOB NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    size INTEGER NOT NULL,
    added INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staging_chunks (
    manifest_hash BLOB NOT NULL REFERENCES staging(manifest_hash) ON DELETE CASCADE,
    hash BLOB NOT NULL,
    PRIMARY KEY (manifest_hash, hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS staging_chunks_by_hash ON staging_chunks(hash);
"""


def connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise StoreError(f"the store at {path.parent} was made by another meshdrop version")
    except sqlite3.DatabaseError as exc:
        if is_disk_full(exc) or _nearly_full(path.parent):
            raise StoreError(f"the disk is full: cannot open the store in {path.parent}") from None
        raise StoreError(f"cannot open the store index {path}: {exc}") from None
    return conn


def _nearly_full(folder: Path) -> bool:
    # SQLite reports a plain "disk I/O error" when it cannot even make its 32 KiB WAL index.
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < 64 * 1024


def is_disk_full(exc: sqlite3.Error) -> bool:
    # SQLite says SQLITE_FULL, or a plain I/O error when even its 32 KiB WAL index
    # cannot be made.
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)
