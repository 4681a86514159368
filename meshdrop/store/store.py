"""The node's store: trust, ingest, listing, reading and checking of bundles."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from meshdrop.core.bundle import Envelope, parse_envelope, parse_publisher_file
from meshdrop.core.keys import parse_fingerprint
from meshdrop.core.manifest import (
    ChunkRef,
    FileEntry,
    Manifest,
    parse_manifest,
    verify_chunk,
)
from meshdrop.core.records import peek_record
from meshdrop.core.trust import PublisherState, advance_state, pin_chain
from meshdrop.core.verify import VerifiedManifest, verify_envelope
from meshdrop.errors import (
    EquivocationError,
    IntegrityError,
    MeshdropError,
    MissingChunksError,
    OlderVersionError,
    StoreError,
    TrustError,
    UntrustedPublisherError,
    UsageError,
)
from meshdrop.fs import os_error_message
from meshdrop.store import db, search, trustdb
from meshdrop.store.bundlefile import BundleFile, open_bundle_file
from meshdrop.store.chunks import ChunkStore
from meshdrop.store.crashpoints import crash_point
from meshdrop.store.ingest import BatchPublisher, Progress, copy_chunks
from meshdrop.store.models import (
    FsckReport,
    ImportResult,
    Outcome,
    StoredBundle,
    TrustAdded,
    TrustedPublisher,
)
from meshdrop.store.staging import is_staged, staged_digests

COMMIT_ATTEMPTS = 3
BATCH_BYTES = 32 * 1024 * 1024
# Complete small bundles wait to be committed together (commit_staged) until this many,
# or BATCH_BYTES of them, are ready: a batch costs one sync and one index transaction
# instead of several syncs per bundle.
COMMIT_BATCH = 256
FREE_SPACE_RESERVE = 4 * 1024 * 1024  # MESHDROP_MIN_FREE (bytes) overrides it
CLOCK_SKEW = 86_400  # how far ahead of the node's time a signed time may be and still count

__all__ = ["ImportResult", "Outcome", "Store", "StoredBundle", "TrustedPublisher"]

_LIST_BUNDLES = (
    "SELECT b.id, p.fingerprint, p.name, b.name, b.version, b.title, b.description, "
    "b.language, b.priority, b.created, b.expires, b.size, b.file_count, b.imported, "
    "b.withdrawn FROM bundles b JOIN publishers p ON p.id = b.publisher "
    "ORDER BY b.created DESC, b.name"
)


class Store:
    def __init__(self, home: Path) -> None:
        self.home = home
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.chunks = ChunkStore(home / "chunks")
            self.chunks.create_root()
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"creating the store in {home}")) from None
        self.conn = db.connect(home / "index.sqlite")
        self._trusted: dict[bytes, PublisherState] | None = None
        self._trusted_at = -1  # PRAGMA data_version the cache was loaded at

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
    def ingesting(self, exclusive: bool = False, wait: bool = True) -> Iterator[bool]:
        """Held shared by everyone writing chunks (imports, syncs); exclusive by repair, so
        that the temp files and unreferenced chunks it removes are never someone's work
        in progress. With ``wait=False`` it yields False at once instead of waiting."""
        fd = os.open(self.home / "ingest.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            try:
                fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                held = False
            yield held
        finally:
            os.close(fd)

    def remove_leftover_temp_files(self) -> int:
        """Remove the temp files a killed writer left behind (they are never chunks), if
        no one is writing chunks right now; for a node's start. Returns how many."""
        with self.ingesting(exclusive=True, wait=False) as alone:
            if not alone:
                return 0
            try:
                return self.chunks.remove_temp_files()
            except OSError as exc:
                raise StoreError(os_error_message(exc, "removing leftover temp files")) from None

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
        except sqlite3.OperationalError as exc:
            self._rollback()
            if db.is_disk_full(exc):
                raise StoreError(
                    f"the disk is full: cannot save to the store in {self.home}"
                ) from None
            raise StoreError(f"could not save to the store index: {exc}") from None

    def _rollback(self) -> None:
        # SQLite may already have rolled back by itself (a full disk during COMMIT).
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # Trust

    def trusted(self) -> dict[bytes, PublisherState]:
        # data_version changes when another connection (another process) commits, so
        # the verified chains are reloaded only when something may have changed them.
        changed = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if self._trusted is None or changed != self._trusted_at:
            self._trusted = trustdb.load_states(self.conn)
            self._trusted_at = changed
        return self._trusted

    def now(self) -> int:
        """The node's effective time: its clock, but never before the newest signed time
        it has seen (a clock set back must not revive expired content)."""
        return max(int(time.time()), trustdb.clock_floor(self.conn, self.trusted()))

    def trust_add(self, publisher_file: bytes, what: str) -> TrustAdded:
        """Pin the publisher in a publisher.pub, for as much of its chain as verifies."""
        state, ignored = pin_chain(parse_publisher_file(publisher_file, what))
        with self.write_lock(), self.transaction() as conn:
            known = self.trusted().get(state.publisher)
            if known is not None:
                state, _problem = advance_state(known, state.signed)
            trustdb.save_state(conn, state, new=known is None)
        self._trusted = None
        return TrustAdded(state, known is None, ignored)

    def update_publisher(self, publisher_file: bytes, what: str) -> ImportResult:
        """Take newer records of an already trusted publisher (never trusts a new one).
        Every trusted publisher the file's readable records claim is advanced, so records
        of another publisher placed in front change nothing."""
        chain = parse_publisher_file(publisher_file, what)
        claimed = sorted({r.publisher for s in chain if (r := peek_record(s)) is not None})
        with self.write_lock():
            trusted = self.trusted()
            known = [trusted[p] for p in claimed if p in trusted]
            if not known:
                raise UntrustedPublisherError(f"{what} is of a publisher this node does not trust")
            reached = [(old, *advance_state(old, chain)) for old in known]
            advanced = [(old, new) for old, new, _ in reached if new.version > old.version]
            if not advanced:
                problem = next((p for _, _, p in reached if p is not None), None)
                if problem is not None:
                    raise TrustError(problem)
                state = known[0]
                return ImportResult(
                    Outcome.ALREADY_HAD, state.current.name, state.version, state.fingerprint
                )
            with self.transaction() as conn:
                for _, state in advanced:
                    trustdb.save_state(conn, state, new=False)
        self._trusted = None
        old, state = advanced[0]
        return ImportResult(
            Outcome.PUBLISHER_UPDATED,
            state.current.name,
            state.version,
            state.fingerprint,
            old.version,
        )

    def trust_list(self) -> list[TrustedPublisher]:
        rows = self.conn.execute(
            "SELECT id, fingerprint, name, version, added, updated FROM publishers ORDER BY name"
        ).fetchall()
        states = self.trusted()
        return [
            TrustedPublisher(
                fingerprint=fingerprint,
                name=name,
                version=version,
                added=added,
                updated=updated,
                newest_signed=trustdb.newest_signed(self.conn, states[publisher_id]),
            )
            for publisher_id, fingerprint, name, version, added, updated in rows
            if publisher_id in states
        ]

    def resolve_publisher(self, text: str) -> TrustedPublisher:
        """A trusted publisher by its fingerprint or a unique prefix of it."""
        wanted = parse_fingerprint(text)
        matches = [p for p in self.trust_list() if p.fingerprint.startswith(wanted)]
        if len(wanted.replace("-", "")) < 4 or not matches:
            raise UsageError(f"no trusted publisher has the fingerprint {text!r}")
        if len(matches) > 1:
            raise UsageError(f"{text!r} matches several publishers; give more of the fingerprint")
        return matches[0]

    def publisher_state(self, fingerprint: str) -> PublisherState:
        return next(s for s in self.trusted().values() if s.fingerprint == fingerprint)

    def trust_remove(self, text: str) -> TrustedPublisher:
        publisher = self.resolve_publisher(text)
        with self.write_lock(), self.transaction() as conn:
            conn.execute("DELETE FROM publishers WHERE fingerprint = ?", (publisher.fingerprint,))
        self._trusted = None
        return publisher

    # Ingest

    # Every source (a file, a stick, a peer) goes through the same three steps: accept the
    # envelope, store each missing chunk as it verifies, commit. Only commit makes a
    # bundle visible, and it re-checks everything under the write lock.

    def accept(self, envelope: Envelope) -> VerifiedManifest | ImportResult:
        """Step 1: verify an envelope against trust, the clock and the rollback marks.
        Returns the verified manifest to fetch data for, or the result if nothing is to
        be done (already had). Raises a MeshdropError saying why it is refused."""
        verified = verify_envelope(envelope, self.trusted(), self.now())
        return self._check_version(verified) or verified

    def missing_chunks(self, verified: VerifiedManifest) -> list[ChunkRef]:
        """Step 2a: the chunks of the bundle this store does not hold yet, in data order."""
        seen: set[bytes] = set()
        missing = []
        for ref in verified.manifest.chunk_refs():
            if ref.digest not in seen and not self.chunks.has(ref.digest):
                missing.append(ref)
            seen.add(ref.digest)
        return missing

    def store_chunk(self, ref: ChunkRef, data: bytes | memoryview) -> Path:
        """Step 2b: verify one chunk of an accepted bundle and store it durably. Returns the
        folder to pass to commit. Raises IntegrityError if the bytes do not match."""
        verify_chunk(ref, data)
        try:
            folder = self.chunks.write(ref.digest, data)
        except OSError as exc:
            raise StoreError(os_error_message(exc, "storing a chunk")) from None
        crash_point("after-chunk")
        return folder

    def commit(self, verified: VerifiedManifest, folders: Iterable[Path] = ()) -> ImportResult:
        """Step 3: make the bundle visible, in one transaction, if it is still acceptable
        (trust may have changed meanwhile) and every chunk is present."""
        (result,) = self.commit_many([verified], folders)
        if isinstance(result, MeshdropError):
            raise result
        return result

    def commit_many(
        self, bundles: Sequence[VerifiedManifest], folders: Iterable[Path] = ()
    ) -> list[ImportResult | MeshdropError]:
        """Step 3 for several bundles at once (a stick of many small ones): one sync of
        their chunk ``folders``, one write lock and one index transaction for all, instead
        of a sync and a transaction (with its own sync) each. Each bundle is still checked
        and committed on its own, inside a savepoint: one that fails gets its error in
        the list, in order, and the others go in."""
        what = bundles[0].manifest.name if len(bundles) == 1 else f"{len(bundles)} bundles"
        try:
            self.chunks.sync_folders(folders)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"importing {what}")) from None
        with self.write_lock():
            self._delete_pending()  # what a writer killed after its commit left behind
            try:
                with self.transaction() as conn:
                    results = [self._commit_one(conn, verified) for verified in bundles]
            finally:
                self._trusted = None  # a record saved or rolled back: read it again
            crash_point("after-commit")
            self._delete_pending()
        return results

    def commit_staged(
        self, staged: BatchPublisher | None, bundles: Sequence[VerifiedManifest]
    ) -> list[ImportResult | MeshdropError]:
        """Name every chunk ``staged`` holds (one file-system sync for the lot; a failure
        there raises), then commit ``bundles`` together; a failure of the commit as a
        whole becomes every bundle's error."""
        folders = staged.finish() if staged is not None else set()
        if not bundles:
            return []
        crash_point("before-commit")
        try:
            return self.commit_many(bundles, folders)
        except MeshdropError as exc:
            return [exc] * len(bundles)

    def _commit_one(
        self, conn: sqlite3.Connection, verified: VerifiedManifest
    ) -> ImportResult | MeshdropError:
        conn.execute("SAVEPOINT bundle")
        try:
            again = self.accept(verified.envelope)
            if isinstance(again, ImportResult):
                result: ImportResult | MeshdropError = again
            else:
                absent = self.missing_chunks(again)
                if absent:
                    raise MissingChunksError(
                        f"{len(absent)} chunks of {again.manifest.name!r} are not in the store "
                        "yet; the bundle stays invisible until they are"
                    )
                result = self._insert(conn, again)
        except MeshdropError as exc:
            conn.execute("ROLLBACK TO bundle")
            result = exc
        except BaseException:
            conn.execute("ROLLBACK TO bundle")
            raise
        finally:
            conn.execute("RELEASE bundle")
        return result

    def check_free_space(self, needed: int, name: str) -> None:
        """Refuse, before writing anything, what would leave less than FREE_SPACE_RESERVE
        on the disk: a store whose disk is completely full cannot even be opened."""
        try:
            info = os.statvfs(self.home)
            reserve = int(os.environ.get("MESHDROP_MIN_FREE", FREE_SPACE_RESERVE))
        except (OSError, ValueError):
            return
        free = info.f_bavail * info.f_frsize
        if free - needed < reserve:
            raise StoreError(
                f"not enough free disk space for {name!r}: it needs {needed // 1024**2 + 1} MiB "
                f"and {free // 1024**2} MiB are free (meshdrop keeps "
                f"{reserve // 1024**2} MiB spare)"
            )

    def _copy_from(
        self, source: BundleFile, missing: list[ChunkRef], progress: Progress | None
    ) -> set[Path]:
        """Copy and verify the missing chunks. Small bundles sync each chunk; big ones
        write batches unsynced and make each batch durable with one file-system sync
        (a sync per 1 MiB chunk costs more than hashing it), so a crash loses at most
        one batch of copying."""
        if sum(ref.size for ref in missing) < BATCH_BYTES:
            return copy_chunks(source, missing, self.store_chunk, progress)
        # One continuous copy; every BATCH_BYTES of staged chunks are synced and named on
        # a thread of their own while copying goes on.
        batches = BatchPublisher(self.publish_chunks, BATCH_BYTES)

        def stage(ref: ChunkRef, data: bytes | memoryview) -> Path:
            temp = self.stage_chunk(ref, data)
            batches.add(temp, ref.size)
            return temp

        try:
            copy_chunks(source, missing, stage, progress)
            return batches.finish()
        except BaseException:
            batches.abandon()
            for temp in batches.staged:  # a refused import leaves no temp files behind
                temp.unlink(missing_ok=True)
            raise

    def stage_chunk(self, ref: ChunkRef, data: bytes | memoryview) -> Path:
        """Like store_chunk, for batches: verify and write the chunk under a temp name,
        not yet durable. ``publish_chunks`` then makes a whole batch durable and named."""
        verify_chunk(ref, data)
        try:
            return self.chunks.write_temp(ref.digest, data)
        except OSError as exc:
            raise StoreError(os_error_message(exc, "storing a chunk")) from None

    def publish_chunks(self, temps: Iterable[Path]) -> set[Path]:
        """One file-system sync for a batch of staged chunks, then their names. Returns
        the folders to pass to commit."""
        try:
            folders = self.chunks.publish(temps)
        except OSError as exc:
            raise StoreError(os_error_message(exc, "storing chunks")) from None
        crash_point("after-chunk")
        return folders

    def import_file(self, path: Path, progress: Progress | None = None) -> ImportResult:
        with open_bundle_file(path) as source:
            verified = self.accept(source.envelope)
            if isinstance(verified, ImportResult):
                return verified
            source.check_size(verified)
            missing = self.missing_chunks(verified)
            self.check_free_space(sum(ref.size for ref in missing), verified.manifest.name)
            if progress:
                progress(verified.manifest.size - sum(ref.size for ref in missing))
            for attempt in range(COMMIT_ATTEMPTS):
                with self.ingesting():
                    folders = self._copy_from(source, missing, progress)
                    crash_point("before-commit")
                    try:
                        return self.commit(verified, folders)
                    except MissingChunksError:
                        # Another writer's clean-up removed a shared chunk we counted on
                        # between our check and our commit: fetch just those again.
                        if attempt == COMMIT_ATTEMPTS - 1:
                            raise
                missing = self.missing_chunks(verified)
            raise AssertionError("unreachable")

    def _check_version(self, verified: VerifiedManifest) -> ImportResult | None:
        m = verified.manifest
        seen = trustdb.highest_version(self.conn, verified.state, m.name)
        if seen is None:
            return None
        seen_version, seen_hash = seen
        if m.version < seen_version:
            raise OlderVersionError(
                f"version {m.version} of {m.name!r} is older than version {seen_version} "
                "already seen; refusing to go back"
            )
        if m.version == seen_version:
            if seen_hash != _manifest_hash(verified):
                raise EquivocationError(
                    f"version {m.version} of {m.name!r} differs from the copy of that version "
                    "already seen (the publisher signed two different bundles as one version)"
                )
            stored = self.conn.execute(
                "SELECT 1 FROM bundles WHERE publisher = ? AND name = ? AND version = ? "
                "AND withdrawn = 0",
                (m.publisher, m.name, m.version),
            ).fetchone()
            if stored is not None:
                return ImportResult(
                    Outcome.ALREADY_HAD, m.name, m.version, verified.state.fingerprint
                )
        return None

    def _insert(self, conn: sqlite3.Connection, verified: VerifiedManifest) -> ImportResult:
        """The index rows that make an accepted, complete bundle visible (inside the
        caller's transaction), replacing an older version of it."""
        m = verified.manifest
        old = conn.execute(
            "SELECT id, version, withdrawn FROM bundles WHERE publisher = ? AND name = ?",
            (m.publisher, m.name),
        ).fetchone()
        if old is not None:
            _drop_bundle(conn, old[0])
        self._insert_bundle(conn, verified)
        search.index_bundle(conn, self.chunks, m)  # searchable exactly when visible
        known = self.trusted()[verified.state.publisher]
        if verified.state.version > known.version:
            trustdb.save_state(conn, verified.state, new=False)
            self._trusted = None
        fingerprint = verified.state.fingerprint
        if old is None or old[2]:
            return ImportResult(Outcome.IMPORTED, m.name, m.version, fingerprint)
        return ImportResult(Outcome.REPLACED, m.name, m.version, fingerprint, old[1])

    def _insert_bundle(self, conn: sqlite3.Connection, verified: VerifiedManifest) -> None:
        m = verified.manifest
        digest = _manifest_hash(verified)
        cursor = conn.execute(
            "INSERT INTO bundles (publisher, name, version, signer, manifest_hash, envelope, "
            "title, description, language, priority, created, expires, size, file_count, "
            "imported) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.publisher,
                m.name,
                m.version,
                verified.signer.key,
                digest,
                verified.relay_envelope().encode(),
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
        digests = {d for f in m.files for d in f.chunks}
        conn.executemany(
            "INSERT INTO bundle_chunks VALUES (?, ?)", ((bundle_id, d) for d in digests)
        )
        conn.execute(
            "INSERT INTO highwater VALUES (?, ?, ?, ?, ?) ON CONFLICT(publisher, name, signer) "
            "DO UPDATE SET version = excluded.version, manifest_hash = excluded.manifest_hash "
            "WHERE excluded.version > highwater.version",
            (m.publisher, m.name, verified.signer.key, m.version, digest),
        )
        # A signing key may not drag the clock floor into the future: only times the node's
        # own view of now can vouch for count (records, signed by root keys, always count).
        if m.created <= self.now() + CLOCK_SKEW:
            trustdb.note_signed_time(conn, m.publisher, verified.signer.key, m.created)

    def _delete_pending(self) -> None:
        """Delete the chunk files that commits left unreferenced (under the write lock)."""
        candidates = {r[0] for r in self.conn.execute("SELECT hash FROM pending_deletes")}
        if not candidates:
            return
        still_used = {
            digest
            for digest in candidates
            if self.conn.execute(
                "SELECT 1 FROM bundle_chunks WHERE hash = ? LIMIT 1", (digest,)
            ).fetchone()
            or is_staged(self.conn, digest)
        }
        self.chunks.delete(candidates - still_used)
        with self.transaction() as conn:
            conn.executemany(
                "DELETE FROM pending_deletes WHERE hash = ?", ((d,) for d in candidates)
            )

    def remove_bundle(self, bundle: StoredBundle) -> None:
        """Delete a stored bundle (the owner's say). Its rollback marks stay: removing a
        version never lets an older one back in."""
        with self.write_lock():
            with self.transaction() as conn:
                _drop_bundle(conn, bundle.id)
            self._delete_pending()

    # Reading

    def list_bundles(self, include_hidden: bool = False) -> list[StoredBundle]:
        """Committed bundles of trusted publishers, newest first; withdrawn and expired
        ones only with ``include_hidden``."""
        now = self.now()
        found = []
        for row in self.conn.execute(_LIST_BUNDLES):
            bundle = StoredBundle(*row[:-1])
            if row[-1]:
                bundle = replace(bundle, state="withdrawn")
            elif bundle.expires is not None and bundle.expires < now:
                bundle = replace(bundle, state="expired")
            if bundle.state == "ok" or include_hidden:
                found.append(bundle)
        return found

    def find_bundle(self, name: str, publisher: str | None = None) -> StoredBundle:
        wanted = parse_fingerprint(publisher) if publisher else ""
        matches = [
            b
            for b in self.list_bundles(include_hidden=True)
            if b.name == name and b.state != "withdrawn" and b.publisher.startswith(wanted)
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
        with self.ingesting(exclusive=repair), self.write_lock():
            if repair:
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
                staged = staged_digests(self.conn)  # a partial bundle's chunks stay
                orphans = [
                    d for d in self.chunks.all_digests() if d not in referenced and d not in staged
                ]
                self.chunks.delete(orphans)
                report.orphans_removed = len(orphans)
        return report


def _drop_bundle(conn: sqlite3.Connection, bundle_id: int) -> None:
    """Delete a bundle's row; its chunks are queued for deletion in the same transaction."""
    conn.execute(
        "INSERT OR IGNORE INTO pending_deletes SELECT hash FROM bundle_chunks WHERE bundle_id = ?",
        (bundle_id,),
    )
    conn.execute("DELETE FROM bundles WHERE id = ?", (bundle_id,))


def _manifest_hash(verified: VerifiedManifest) -> bytes:
    return hashlib.sha256(verified.manifest_bytes).digest()
