"""The SQLite index: schema, connection settings, and the Database object that owns one
connection, its transactions and the store's write lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar, cast

import sqlcipher3.dbapi2 as sqlcipher

from meshdrop.errors import MeshdropError, SealedFileError, StoreError
from meshdrop.fs import os_error_message

T = TypeVar("T")
# A plain store's files are opened with Python's sqlite3, a sealed store's with SQLCipher
# (a separate library, with its own exception classes): catch both.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.DatabaseError, sqlcipher.DatabaseError)
OPERATIONAL_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.OperationalError,
    sqlcipher.OperationalError,
)
SQL_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, sqlcipher.Error)
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
SCHEMA_VERSION = 3

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
-- Two different bundles signed as one version (a likely stolen signing key), kept so that
-- `trust show` and `ls` still say so when the import line is long gone. ``kept`` is the
-- copy the node holds (the lower manifest hash, on every node), ``other`` the one refused
-- or replaced.
CREATE TABLE IF NOT EXISTS equivocations (
    publisher BLOB NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kept BLOB NOT NULL,
    other BLOB NOT NULL,
    signer BLOB NOT NULL,
    seen INTEGER NOT NULL,
    PRIMARY KEY (publisher, name, version, other)
) WITHOUT ROWID;
"""


def open_database(path: Path, key: bytes | None) -> sqlite3.Connection:
    """A connection to the SQLite file ``path``: plain with Python's sqlite3 if ``key`` is
    None, else encrypted with SQLCipher under the raw 32-byte ``key`` (docs/FORMAT.md,
    "Sealed store"). Temp files (sorts, indexes being built) stay in memory either way."""
    if key is None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    else:
        conn = sqlcipher.connect(os.fspath(path), isolation_level=None, timeout=30)
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")  # first: a raw key, no PBKDF
        # SQLCipher logs a failed page check on stderr; the error itself says enough.
        conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` (from either SQLite library) says the file is damaged or, sealed,
    does not decrypt: SQLITE_CORRUPT or SQLITE_NOTADB; or the SealedFileError they became."""
    if isinstance(exc, SealedFileError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    damage_codes = (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return isinstance(exc, DATABASE_ERRORS) and code is not None and code & 0xFF in damage_codes


def damaged_error(exc: BaseException, what: str) -> MeshdropError | None:
    """What to tell the user of a SQLCipher error that means the file does not decrypt
    (a wrong key, or damage: every page carries a MAC), or None for any other error."""
    if not isinstance(exc, sqlcipher.DatabaseError) or not is_damage(exc):
        return None
    return SealedFileError(f"{what} is damaged or not this store's: it does not decrypt")


def connect(path: Path, key: bytes | None = None) -> sqlite3.Connection:
    try:
        conn = open_database(path, key)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] == 2:
            _upgrade_from_2(conn)
        elif row[0] != SCHEMA_VERSION:
            raise StoreError(f"the store at {path.parent} was made by another meshdrop version")
    except DATABASE_ERRORS as exc:
        if is_disk_full(exc) or _nearly_full(path.parent):
            raise StoreError(f"the disk is full: cannot open the store in {path.parent}") from exc
        damaged = damaged_error(exc, f"the store index {path}")
        if damaged is not None:
            raise damaged from exc
        raise StoreError(f"cannot open the store index {path}: {exc}") from exc
    return conn


def _upgrade_from_2(conn: sqlite3.Connection) -> None:
    # Version 2 kept a search table in the index, written inside each commit; the search
    # index is now search.sqlite beside it (store/searchindex.py).
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DROP TABLE IF EXISTS bundle_text")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _nearly_full(folder: Path) -> bool:
    # SQLite reports a plain "disk I/O error" when it cannot even make its 32 KiB WAL index.
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < 64 * 1024


def is_disk_full(exc: Exception) -> bool:
    """SQLITE_FULL, told by its result code (the low byte of an extended code). A plain
    I/O error when even the WAL index cannot be made is ``_nearly_full``'s to tell."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL


# What SQLite says when the disk fails under it (sqlite3.h result codes).
_DISK_FAULT_CODES = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY)


def disk_error(exc: BaseException, what: str) -> StoreError | None:
    """What to tell the user of an SQLite error (either library) that means the disk
    failed under ``what``: full, an I/O error, read-only; None for any other error."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, OPERATIONAL_ERRORS) or code is None:
        return None
    if code & 0xFF not in _DISK_FAULT_CODES:
        return None
    if code & 0xFF == sqlite3.SQLITE_FULL:
        return StoreError(f"the disk is full: cannot save to {what}")
    return StoreError(f"cannot read or write {what}: {exc}")


def open_lock(path: Path) -> int:
    """A descriptor of the lock file ``path`` (made if absent); StoreError if the disk
    refuses (full, read-only, failing)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"opening {path}")) from exc


class Database:
    """The index: one SQLite connection (of the thread that made it), its transactions,
    the store's write lock, and a cheap test of whether another connection committed.
    What needs the index (trust, staging, search, fsck) takes this, not the whole store."""

    def __init__(self, home: Path, key: bytes | None = None) -> None:
        self.home = home
        self.conn = connect(home / "index.sqlite", key)
        self._cached: dict[str, tuple[int, object]] = {}

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer at a time across processes; the kernel drops it if we die."""
        fd = open_lock(self.home / "lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self._rollback()
                raise
            self.conn.execute("COMMIT")
        except DATABASE_ERRORS as exc:
            damaged = damaged_error(exc, f"the store index in {self.home}")
            if damaged is not None:
                raise damaged from exc
            if not isinstance(exc, OPERATIONAL_ERRORS):
                raise
            self._rollback()
            if is_disk_full(exc):
                raise StoreError(
                    f"the disk is full: cannot save to the store in {self.home}"
                ) from exc
            raise StoreError(f"could not save to the store index: {exc}") from exc
        finally:
            self._cached.clear()  # this connection's own commits do not move data_version

    def _rollback(self) -> None:
        # SQLite may already have rolled back by itself (a full disk during COMMIT).
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def data_version(self) -> int:
        """Changes when another connection (another process) commits."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def cached(self, key: str, load: Callable[[sqlite3.Connection], T]) -> T:
        """``load(conn)``, computed again only when the index may have changed since:
        after a commit on this connection, or when ``PRAGMA data_version`` says another
        connection (another process) committed."""
        version = self.data_version()
        hit = self._cached.get(key)
        if hit is not None and hit[0] == version:
            return cast(T, hit[1])
        value = load(self.conn)
        self._cached[key] = (version, value)
        return value

    def forget(self) -> None:
        """Drop every cached value (after a change made outside ``transaction``)."""
        self._cached.clear()
