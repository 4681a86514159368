"""The node's store: trust, ingest, listing, reading and checking of bundles."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from meshdrop.core.bundle import Envelope
from meshdrop.core.manifest import (
    ChunkRef,
    verify_chunk,
)
from meshdrop.core.verify import VerifiedManifest, check_not_expired, verify_envelope
from meshdrop.errors import (
    EquivocationError,
    MeshdropError,
    MissingChunksError,
    OlderVersionError,
    StoreError,
)
from meshdrop.fs import os_error_message
from meshdrop.store import db, fsck, reportkeys, sealconvert, sealing, trustdb
from meshdrop.store.catalog import Catalog
from meshdrop.store.chunks import ChunkStore
from meshdrop.store.crashpoints import crash_point
from meshdrop.store.ingest import Progress
from meshdrop.store.models import (
    Equivocation,
    FsckReport,
    ImportResult,
    Outcome,
    StoredBundle,
    TrustedPublisher,
    Withdrawal,
)
from meshdrop.store.publishers import Publishers
from meshdrop.store.staging import is_staged

_EQUIVOCATION_ADVICE = (
    "the publisher's signing key signed two different bundles as one version, which only "
    "someone holding that key can do (most likely it was stolen); every node keeps the same "
    "one of the two and records both ('meshdrop trust show'); tell the publisher so that "
    "they report the key compromised"
)
FREE_SPACE_RESERVE = 4 * 1024 * 1024  # MESHDROP_MIN_FREE (bytes) overrides it
CLOCK_SKEW = 86_400  # how far ahead of the node's time a signed time may be and still count

__all__ = ["ImportResult", "Outcome", "Store", "StoredBundle", "TrustedPublisher"]


class IngestHold:
    """A shared hold of the ingest lock; the kernel drops it if the process dies."""

    def __init__(self, path: Path) -> None:
        self._fd: int | None = db.open_lock(path)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Store(Publishers, Catalog):
    def __init__(self, home: Path) -> None:
        self.home = home
        # First: a seal or panic cut short by a kill is finished (or undone) before the
        # home is judged plain or sealed (store/sealconvert.py).
        sealconvert.resume(home)
        sealing.seal_new_store_for_tests(home)
        # Before any file is opened or made: a locked store raises here.
        self.keys = sealing.keys_for(home)
        sealer = None if self.keys is None else sealing.ChunkSealer(self.keys)
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.chunks = ChunkStore(home / "chunks", sealer)
            self.chunks.create_root()
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"creating the store in {home}")) from exc
        self.db = db.Database(home, None if self.keys is None else self.keys.index)
        self.conn = self.db.conn  # for the store's own modules; nothing outside store/
        self.write_lock = self.db.write_lock
        self.transaction = self.db.transaction

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextlib.contextmanager
    def ingesting(self, exclusive: bool = False, wait: bool = True) -> Iterator[bool]:
        """Held shared by everyone writing chunks (imports, syncs); exclusive by repair, so
        that the temp files and unreferenced chunks it removes are never someone's work
        in progress. With ``wait=False`` it yields False at once instead of waiting."""
        fd = db.open_lock(self.home / "ingest.lock")
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

    def hold_ingest(self) -> IngestHold:
        """The ingest lock (shared), held until ``release``: for a source whose ingest
        outlives one call (a LAN transfer). Blocks while ``fsck --repair`` runs."""
        return IngestHold(self.home / "ingest.lock")

    def remove_leftover_temp_files(self) -> int:
        """Remove the temp files a killed writer left behind (they are never chunks), if
        no one is writing chunks right now; for a node's start. Returns how many."""
        with self.ingesting(exclusive=True, wait=False) as alone:
            if not alone:
                return 0
            try:
                return self.chunks.remove_temp_files()
            except OSError as exc:
                raise StoreError(os_error_message(exc, "removing leftover temp files")) from exc

    # Trust

    def now(self) -> int:
        """The node's effective time: its clock, but never before the newest signed time
        it has seen (a clock set back must not revive expired content)."""
        return max(int(time.time()), trustdb.clock_floor(self.conn, self.trusted()))

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

    def _accept_again(
        self, verified: VerifiedManifest, now: int
    ) -> VerifiedManifest | ImportResult:
        """``accept`` once more, under the write lock: the publisher's chain, the clock and
        the version marks may have moved since. While the chain is the one the envelope
        was verified against (the same signed records), its signature needs no second
        check: expiry and the version marks are looked at again."""
        state = self.trusted().get(verified.state.publisher)
        if state is None or state.signed != verified.state.signed:
            again = verify_envelope(verified.envelope, self.trusted(), now)
            return self._check_version(again) or again
        check_not_expired(verified.manifest, now)
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
            raise StoreError(os_error_message(exc, "storing a chunk")) from exc
        crash_point("after-chunk")
        return folder

    def _commit_group(
        self, bundles: Sequence[VerifiedManifest], folders: Iterable[Path] = ()
    ) -> list[ImportResult | MeshdropError]:
        """The commit path, called only by ``IngestSession``: one sync of the chunk
        ``folders``, one write lock and one index transaction for all ``bundles``. Each
        bundle is checked again and committed on its own, inside a savepoint: one that
        fails gets its error in the list, in order, and the others go in."""
        what = bundles[0].manifest.name if len(bundles) == 1 else f"{len(bundles)} bundles"
        try:
            self.chunks.sync_folders(folders)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"importing {what}")) from exc
        with self.write_lock():
            self._delete_pending()  # what a writer killed after its commit left behind
            try:
                with self.transaction() as conn:
                    now = self.now()
                    results = [self._commit_one(conn, verified, now) for verified in bundles]
            finally:
                self.db.forget()  # a record saved or rolled back: read it again
            crash_point("after-commit")
            self._delete_pending()
        reportkeys.after_commit(self, results)
        return results

    def _commit_one(
        self, conn: sqlite3.Connection, verified: VerifiedManifest, now: int
    ) -> ImportResult | MeshdropError:
        conn.execute("SAVEPOINT bundle")
        try:
            again = self._accept_again(verified, now)
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

    def stage_chunk(self, ref: ChunkRef, data: bytes | memoryview) -> Path:
        """Like store_chunk, for batches: verify and write the chunk under a temp name,
        not yet durable. ``publish_chunks`` then makes a whole batch durable and named."""
        verify_chunk(ref, data)
        try:
            return self.chunks.write_temp(ref.digest, data)
        except OSError as exc:
            raise StoreError(os_error_message(exc, "storing a chunk")) from exc

    def publish_chunks(self, temps: Iterable[Path], cached: bool = False) -> set[Path]:
        """One file-system sync for a batch of staged chunks, then their names. Returns
        the folders to pass to commit. ``cached``: see ``ChunkStore.publish``."""
        try:
            folders = self.chunks.publish(temps, cached)
        except OSError as exc:
            raise StoreError(os_error_message(exc, "storing chunks")) from exc
        crash_point("after-chunk")
        return folders

    def import_file(self, path: Path, progress: Progress | None = None) -> ImportResult:
        """Import one bundle file (an ingest session of one)."""
        from meshdrop.store.ingest import IngestSession, import_bundle_file

        with IngestSession(self) as session:
            return import_bundle_file(session, path, progress)

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
        digest = _manifest_hash(verified)
        if m.version == seen_version and digest != seen_hash:
            if digest < seen_hash:
                return None  # this copy is the one every node keeps: it replaces the other
            twin = Equivocation(
                m.publisher, m.name, m.version, seen_hash, digest, verified.signer.key
            )
            raise EquivocationError(
                f"version {m.version} of {m.name!r} differs from the copy of that version "
                f"already seen: {_EQUIVOCATION_ADVICE}",
                twin,
            )
        if m.version == seen_version:
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
            "SELECT id, version, withdrawn, manifest_hash, signer FROM bundles "
            "WHERE publisher = ? AND name = ?",
            (m.publisher, m.name),
        ).fetchone()
        if old is not None:
            if old[1] == m.version:  # the lower-hash copy of an equivocation replaces it
                twin = Equivocation(
                    m.publisher, m.name, m.version, _manifest_hash(verified), old[3], old[4]
                )
                trustdb.record_equivocation(conn, twin)
            _drop_bundle(conn, old[0])
        self._insert_bundle(conn, verified)
        known = self.trusted()[verified.state.publisher]
        withdrawn: tuple[Withdrawal, ...] = ()
        if verified.state.version > known.version:
            withdrawn = tuple(trustdb.save_state(conn, verified.state, new=False))
            self.db.forget()  # the next bundle of this commit sees the chain it advanced
        fingerprint = verified.state.fingerprint
        if old is not None and old[1] == m.version:
            outcome, replaced = Outcome.REPLACED_TWIN, old[1]
        elif old is None or old[2]:
            outcome, replaced = Outcome.IMPORTED, None
        else:
            outcome, replaced = Outcome.REPLACED, old[1]
        return ImportResult(outcome, m.name, m.version, fingerprint, replaced, withdrawn)

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
            "WHERE excluded.version > highwater.version OR (excluded.version = "
            "highwater.version AND excluded.manifest_hash < highwater.manifest_hash)",
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

    # Checking

    def fsck(self, repair: bool, progress: Callable[[int], None] | None = None) -> FsckReport:
        """Re-verify every stored chunk; with ``repair``, drop what is damaged and remove
        leftovers, holding the ingest lock exclusively (no import or sync is writing)."""
        with self.ingesting(exclusive=repair):
            return fsck.check(self.db, self.chunks, repair, progress)


def _drop_bundle(conn: sqlite3.Connection, bundle_id: int) -> None:
    """Delete a bundle's row; its chunks are queued for deletion in the same transaction."""
    conn.execute(
        "INSERT OR IGNORE INTO pending_deletes SELECT hash FROM bundle_chunks WHERE bundle_id = ?",
        (bundle_id,),
    )
    conn.execute("DELETE FROM bundles WHERE id = ?", (bundle_id,))


def _manifest_hash(verified: VerifiedManifest) -> bytes:
    return hashlib.sha256(verified.manifest_bytes).digest()
