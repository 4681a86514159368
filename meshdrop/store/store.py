"""The node's store: trust, ingest, listing, reading and checking of bundles."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from meshdrop.core.bundle import encode_publisher_file, parse_envelope, parse_publisher_file
from meshdrop.core.keys import parse_fingerprint
from meshdrop.core.manifest import FileEntry, Manifest, parse_manifest
from meshdrop.core.records import PublisherRecord, SignedRecord, parse_record
from meshdrop.core.verify import VerifiedManifest, verify_envelope, verify_publisher_chain
from meshdrop.errors import IntegrityError, RollbackError, StoreError, UsageError
from meshdrop.fs import os_error_message
from meshdrop.store import db
from meshdrop.store.bundlefile import open_bundle_file
from meshdrop.store.chunks import ChunkStore
from meshdrop.store.crashpoints import crash_point
from meshdrop.store.ingest import Progress, copy_missing_chunks


class Outcome(Enum):
    IMPORTED = "imported"
    REPLACED = "imported, replacing an older version"
    ALREADY_HAD = "already had"


@dataclass(frozen=True)
class ImportResult:
    outcome: Outcome
    name: str
    version: int
    publisher: str
    replaced_version: int | None = None


@dataclass(frozen=True)
class TrustedPublisher:
    fingerprint: str
    name: str
    version: int
    added: int
    updated: int


@dataclass(frozen=True)
class StoredBundle:
    """A committed, verified bundle as the index knows it."""

    id: int
    publisher: str
    publisher_name: str
    name: str
    version: int
    title: str
    description: str
    language: str
    priority: int
    created: int
    expires: int | None
    size: int
    file_count: int
    imported: int

    def to_json(self) -> dict[str, object]:
        return {
            "publisher": self.publisher,
            "publisher_name": self.publisher_name,
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "description": self.description,
            "language": self.language,
            "priority": self.priority,
            "created": self.created,
            "expires": self.expires,
            "size": self.size,
            "files": self.file_count,
        }


@dataclass
class FsckReport:
    chunks_checked: int = 0
    damaged_chunks: int = 0
    damaged_bundles: list[str] | None = None
    dropped_bundles: int = 0
    orphans_removed: int = 0
    temp_files_removed: int = 0

    @property
    def clean(self) -> bool:
        return not self.damaged_bundles or self.dropped_bundles == len(self.damaged_bundles)


_LIST_BUNDLES = (
    "SELECT b.id, p.fingerprint, p.name, b.name, b.version, b.title, b.description, "
    "b.language, b.priority, b.created, b.expires, b.size, b.file_count, b.imported "
    "FROM bundles b JOIN publishers p ON p.id = b.publisher ORDER BY b.created DESC, b.name"
)


class Store:
    def __init__(self, home: Path) -> None:
        self.home = home
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.chunks = ChunkStore(home / "chunks")
            if not (home / "chunks" / "ff").is_dir():
                self.chunks.create_folders()
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"creating the store in {home}")) from None
        self.conn = db.connect(home / "index.sqlite")
        self._trusted: dict[bytes, PublisherRecord] | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer at a time across processes; the kernel drops it if we die."""
        fd = os.open(self.home / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self.conn.execute("ROLLBACK")
            raise StoreError(f"could not save to the store index: {exc}") from None

    # Trust

    def trusted(self) -> dict[bytes, PublisherRecord]:
        if self._trusted is None:
            rows = self.conn.execute("SELECT records FROM publishers").fetchall()
            chains = (parse_publisher_file(r[0], "a stored publisher file") for r in rows)
            records = (verify_publisher_chain(chain) for chain in chains)
            self._trusted = {r.publisher: r for r in records}
        return self._trusted

    def trust_add(self, publisher_file: bytes, what: str) -> tuple[PublisherRecord, bool]:
        """Pin the publisher in a publisher.pub; returns (record, newly added)."""
        chain = parse_publisher_file(publisher_file, what)
        record = verify_publisher_chain(chain)
        with self.write_lock(), self.transaction() as conn:
            row = conn.execute(
                "SELECT version FROM publishers WHERE id = ?", (record.publisher,)
            ).fetchone()
            if row is not None and row[0] >= record.version:
                return record, False
            now = int(time.time())
            conn.execute(
                "INSERT INTO publishers VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                "SET name=excluded.name, version=excluded.version, records=excluded.records, "
                "updated=excluded.updated",
                (
                    record.publisher,
                    record.fingerprint,
                    record.name,
                    record.version,
                    encode_publisher_file(chain),
                    now,
                    now,
                ),
            )
        self._trusted = None
        return record, row is None

    def trust_list(self) -> list[TrustedPublisher]:
        rows = self.conn.execute(
            "SELECT fingerprint, name, version, added, updated FROM publishers ORDER BY name"
        )
        return [TrustedPublisher(*row) for row in rows]

    def resolve_publisher(self, text: str) -> TrustedPublisher:
        """A trusted publisher by its fingerprint or a unique prefix of it."""
        wanted = parse_fingerprint(text)
        matches = [p for p in self.trust_list() if p.fingerprint.startswith(wanted)]
        if len(wanted.replace("-", "")) < 4 or not matches:
            raise UsageError(f"no trusted publisher has the fingerprint {text!r}")
        if len(matches) > 1:
            raise UsageError(f"{text!r} matches several publishers; give more of the fingerprint")
        return matches[0]

    def trust_remove(self, text: str) -> TrustedPublisher:
        publisher = self.resolve_publisher(text)
        with self.write_lock(), self.transaction() as conn:
            conn.execute("DELETE FROM publishers WHERE fingerprint = ?", (publisher.fingerprint,))
        self._trusted = None
        return publisher

    # Ingest

    def import_file(self, path: Path, progress: Progress | None = None) -> ImportResult:
        with open_bundle_file(path) as source, self.write_lock():
            self._trusted = None  # another process may have changed trust
            verified = verify_envelope(source.envelope, self.trusted(), int(time.time()))
            source.check_size(verified)
            early = self._check_version(verified)
            if early is not None:
                return early
            folders = copy_missing_chunks(source, verified, self.chunks, progress)
            crash_point("before-commit")
            return self._commit(verified, folders)

    def _check_version(self, verified: VerifiedManifest) -> ImportResult | None:
        m = verified.manifest
        row = self.conn.execute(
            "SELECT version, manifest_hash FROM highwater WHERE publisher = ? AND name = ?",
            (m.publisher, m.name),
        ).fetchone()
        if row is None:
            return None
        seen_version, seen_hash = row
        fp = verified.publisher.fingerprint
        if m.version < seen_version:
            raise RollbackError(
                f"version {m.version} of {m.name!r} is older than version {seen_version} "
                "already seen; refusing to go back"
            )
        if m.version == seen_version:
            if seen_hash != _manifest_hash(verified):
                raise RollbackError(
                    f"version {m.version} of {m.name!r} differs from the copy of that version "
                    "already seen (the publisher signed two different bundles as one version)"
                )
            stored = self.conn.execute(
                "SELECT 1 FROM bundles WHERE publisher = ? AND name = ? AND version = ?",
                (m.publisher, m.name, m.version),
            ).fetchone()
            if stored is not None:
                return ImportResult(Outcome.ALREADY_HAD, m.name, m.version, fp)
        return None

    def _commit(self, verified: VerifiedManifest, folders: set[Path]) -> ImportResult:
        m = verified.manifest
        try:
            self.chunks.sync_folders(folders)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"importing {m.name}")) from None
        with self.transaction() as conn:
            if self._check_version(verified) is not None:
                return ImportResult(
                    Outcome.ALREADY_HAD, m.name, m.version, verified.publisher.fingerprint
                )
            old = conn.execute(
                "SELECT id, version FROM bundles WHERE publisher = ? AND name = ?",
                (m.publisher, m.name),
            ).fetchone()
            orphan_candidates: set[bytes] = set()
            if old is not None:
                orphan_candidates = {
                    r[0]
                    for r in conn.execute(
                        "SELECT hash FROM bundle_chunks WHERE bundle_id = ?", (old[0],)
                    )
                }
                conn.execute("DELETE FROM bundles WHERE id = ?", (old[0],))
            self._insert_bundle(conn, verified)
            self._advance_publisher(conn, verified)
        crash_point("after-commit")
        self._delete_unreferenced(orphan_candidates)
        if old is None:
            return ImportResult(Outcome.IMPORTED, m.name, m.version, verified.publisher.fingerprint)
        return ImportResult(
            Outcome.REPLACED, m.name, m.version, verified.publisher.fingerprint, old[1]
        )

    def _insert_bundle(self, conn: sqlite3.Connection, verified: VerifiedManifest) -> None:
        m = verified.manifest
        cursor = conn.execute(
            "INSERT INTO bundles (publisher, name, version, manifest_hash, envelope, title, "
            "description, language, priority, created, expires, size, file_count, imported) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.publisher,
                m.name,
                m.version,
                _manifest_hash(verified),
                verified.envelope.encode(),
                m.title,
                m.description,
                m.language,
                m.priority,
                m.created,
                m.expires,
                m.size,
                len(m.files),
                int(time.time()),
            ),
        )
        bundle_id = cursor.lastrowid
        assert bundle_id is not None
        digests = {d for f in m.files for d in f.chunks}
        conn.executemany(
            "INSERT INTO bundle_chunks VALUES (?, ?)", ((bundle_id, d) for d in digests)
        )
        conn.execute(
            "INSERT INTO highwater VALUES (?, ?, ?, ?) ON CONFLICT(publisher, name) DO UPDATE "
            "SET version=excluded.version, manifest_hash=excluded.manifest_hash",
            (m.publisher, m.name, m.version, _manifest_hash(verified)),
        )

    def _advance_publisher(self, conn: sqlite3.Connection, verified: VerifiedManifest) -> None:
        """Keep a newer publisher record that arrived with the bundle, to pass it on."""
        record = verified.publisher
        row = conn.execute(
            "SELECT version, records FROM publishers WHERE id = ?", (record.publisher,)
        ).fetchone()
        if row is None or row[0] >= record.version:
            return
        chain: list[SignedRecord] = list(parse_publisher_file(row[1], "a stored publisher file"))
        known = {r.record_bytes for r in chain}
        chain += [r for r in verified.envelope.records if r.record_bytes not in known]
        chain = _ordered_chain(chain, record.version)
        conn.execute(
            "UPDATE publishers SET version = ?, name = ?, records = ?, updated = ? WHERE id = ?",
            (
                record.version,
                record.name,
                encode_publisher_file(chain),
                int(time.time()),
                record.publisher,
            ),
        )
        self._trusted = None

    def _delete_unreferenced(self, candidates: set[bytes]) -> None:
        if not candidates:
            return
        still_used = set()
        for digest in candidates:
            if self.conn.execute(
                "SELECT 1 FROM bundle_chunks WHERE hash = ? LIMIT 1", (digest,)
            ).fetchone():
                still_used.add(digest)
        self.chunks.delete(candidates - still_used)

    # Reading

    def list_bundles(self) -> list[StoredBundle]:
        rows = self.conn.execute(_LIST_BUNDLES)
        return [_stored_bundle(row) for row in rows]

    def find_bundle(self, name: str, publisher: str | None = None) -> StoredBundle:
        matches = [
            b
            for b in self.list_bundles()
            if b.name == name
            and (publisher is None or b.publisher.startswith(parse_fingerprint(publisher)))
        ]
        if not matches:
            raise UsageError(f"no stored bundle is named {name!r}")
        if len(matches) > 1:
            raise UsageError(
                f"several publishers have a bundle named {name!r}; choose one with --publisher"
            )
        return matches[0]

    def manifest(self, bundle: StoredBundle) -> Manifest:
        row = self.conn.execute(
            "SELECT envelope FROM bundles WHERE id = ?", (bundle.id,)
        ).fetchone()
        if row is None:
            raise UsageError(f"bundle {bundle.name!r} is no longer stored")
        return parse_manifest(parse_envelope(row[0], bundle.name).manifest_bytes)

    def read_file(self, entry: FileEntry, bundle_name: str) -> Iterator[bytes]:
        """The file's bytes chunk by chunk, each checked against its hash."""
        for digest in entry.chunks:
            data = self.chunks.read(digest)
            if data is None:
                raise IntegrityError(
                    f"part of {entry.path!r} in {bundle_name!r} is missing or damaged in the "
                    "store; run 'meshdrop fsck --repair' and import the bundle again"
                )
            yield data

    # Checking

    def fsck(self, repair: bool, progress: Callable[[int], None] | None = None) -> FsckReport:
        report = FsckReport(damaged_bundles=[])
        with self.write_lock():
            report.temp_files_removed = self.chunks.remove_temp_files()
            referenced: dict[bytes, list[int]] = {}
            for bundle_id, digest in self.conn.execute("SELECT bundle_id, hash FROM bundle_chunks"):
                referenced.setdefault(digest, []).append(bundle_id)
            bad_bundles: set[int] = set()
            for digest, owners in referenced.items():
                report.chunks_checked += 1
                data = self.chunks.read(digest)
                if progress:
                    progress(len(data) if data else 0)
                if data is None:
                    report.damaged_chunks += 1
                    bad_bundles.update(owners)
                    if repair:
                        self.chunks.delete([digest])
            names = {
                row[0]: f"{row[1]} v{row[2]}"
                for row in self.conn.execute("SELECT id, name, version FROM bundles")
            }
            report.damaged_bundles = sorted(names[i] for i in bad_bundles)
            if repair:
                with self.transaction() as conn:
                    conn.executemany(
                        "DELETE FROM bundles WHERE id = ?", ((i,) for i in bad_bundles)
                    )
                report.dropped_bundles = len(bad_bundles)
                orphans = [d for d in self.chunks.all_digests() if d not in referenced]
                self.chunks.delete(orphans)
                report.orphans_removed = len(orphans)
        return report


def _manifest_hash(verified: VerifiedManifest) -> bytes:
    return hashlib.sha256(verified.manifest_bytes).digest()


def _ordered_chain(chain: list[SignedRecord], newest: int) -> list[SignedRecord]:
    by_version = {parse_record(r.record_bytes).version: r for r in chain}
    return [by_version[v] for v in range(1, newest + 1) if v in by_version]


def _stored_bundle(row: tuple[object, ...]) -> StoredBundle:
    return StoredBundle(*row)  # type: ignore[arg-type]
