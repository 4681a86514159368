"""Ingest: the one way content enters the store (``IngestSession``), and reading an
accepted bundle's missing chunks from a file source in one pass, verifying and staging
them in parallel (hashlib and file writes release the GIL)."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from meshdrop.core.bundle import Envelope
from meshdrop.core.manifest import ChunkRef, verify_chunk
from meshdrop.core.trust import PublisherState
from meshdrop.core.verify import VerifiedManifest, verify_envelope
from meshdrop.errors import (
    EquivocationError,
    MeshdropError,
    MissingChunksError,
    OutOfDescriptorsError,
    StoreError,
)
from meshdrop.fs import os_error_message
from meshdrop.store.bundlefile import BundleFile, open_bundle_file
from meshdrop.store.crashpoints import crash_point
from meshdrop.store.db import OPERATIONAL_ERRORS
from meshdrop.store.models import ImportResult

if TYPE_CHECKING:
    from meshdrop.store.store import Store

Progress = Callable[[int], None]
ChunkSink = Callable[[ChunkRef, memoryview], Path]
WORKERS = 2 * max(2, os.cpu_count() or 2)  # twice the cores: writes wait on the disk


def verify_only(ref: ChunkRef, data: bytes | memoryview) -> Path:
    verify_chunk(ref, data)
    return Path()


def verify_bundle_file(
    path: Path,
    trusted: Mapping[bytes, PublisherState],
    now: int,
    progress: Progress | None = None,
) -> VerifiedManifest:
    """A whole bundle file checked without a store (``verify``, ``inspect --trust``):
    envelope, signature against ``trusted``, size and every chunk (``progress`` gets the
    bytes of each chunk checked)."""
    with open_bundle_file(path) as source:
        verified = verify_envelope(source.envelope, trusted, now)
        source.check_size(verified)
        copy_chunks(source, verified.manifest.chunk_refs(), verify_only, progress)
        return verified


def copy_chunks(
    source: BundleFile,
    refs: Sequence[ChunkRef],
    sink: ChunkSink,
    progress: Progress | None = None,
) -> set[Path]:
    """Read each chunk in ``refs`` once from ``source`` and hand it to ``sink``, which
    verifies (and stores) it. At most a few chunks are in memory at once. Returns what
    the sink returned (the chunk folders to sync before commit)."""
    folders: set[Path] = set()
    pending: deque[Future[tuple[Path, int]]] = deque()

    def fetch(ref: ChunkRef) -> tuple[Path, int]:
        # The bytes live in this thread's reusable buffer until its next read: the sink
        # verifies and writes them before returning, and keeps no reference.
        return sink(ref, source.read_chunk(ref.offset, ref.size)), ref.size

    def finish_oldest() -> None:
        folder, size = pending.popleft().result()
        folders.add(folder)
        if progress:
            progress(size)

    with ThreadPoolExecutor(WORKERS, thread_name_prefix="ingest") as pool:
        try:
            for ref in refs:
                pending.append(pool.submit(fetch, ref))
                while len(pending) > 2 * WORKERS:
                    finish_oldest()
            while pending:
                finish_oldest()
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"reading {source.path.name}")) from exc
        finally:
            for future in pending:
                future.cancel()
    return folders


class BatchPublisher:
    """Makes staged chunks durable a batch at a time, on a thread of its own, while the
    copying goes on: every ``batch_bytes`` of staged chunks get one file-system sync and
    their names (``publish``), so a crash loses at most the batches not yet published
    (temp files, never visible). ``add`` may be called from any thread."""

    def __init__(self, publish: Callable[[list[Path]], set[Path]], batch_bytes: int) -> None:
        self._publish = publish
        self._batch_bytes = batch_bytes
        self._lock = threading.Lock()
        self._batch: list[Path] = []
        self._size = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="publish")
        self._futures: list[Future[set[Path]]] = []
        self.staged: list[Path] = []  # every temp name handed over

    def add(self, temp: Path, size: int) -> None:
        with self._lock:
            self.staged.append(temp)
            self._batch.append(temp)
            self._size += size
            if self._size >= self._batch_bytes:
                self._submit()

    def finish(self) -> set[Path]:
        """Publish what is left and wait for every batch; the chunk folders to sync
        before commit."""
        with self._lock:
            batch, self._batch, self._size = self._batch, [], 0
        try:
            folders: set[Path] = set()
            for future in self._futures:
                folders |= future.result()
            if batch:  # here: a small bundle's only batch needs no thread
                folders |= self._publish(batch)
            return folders
        finally:
            self._pool.shutdown(wait=True)

    def abandon(self) -> None:
        """After a failure: stop publishing, wait for a batch already being published."""
        for future in self._futures:
            future.cancel()
        for future in self._futures:
            with contextlib.suppress(BaseException):
                future.result()
        self._pool.shutdown(wait=True)

    def _submit(self) -> None:
        if self._batch:
            self._futures.append(self._pool.submit(self._publish, self._batch))
            self._batch, self._size = [], 0


# The session: the one way anything enters the store.

BATCH_BYTES = 32 * 1024 * 1024
# Complete small bundles wait to be committed together until this many, or BATCH_BYTES of
# them, are ready: a group costs one sync and one index transaction instead of several
# syncs per bundle.
COMMIT_BATCH = 256


@dataclass(frozen=True)
class Committed:
    """What became of one bundle a session committed (or tried to)."""

    verified: VerifiedManifest
    outcome: ImportResult | MeshdropError


class IngestSession:
    """Every source (a file, a folder, a stick, a peer) brings content in through one of
    these, the only caller of the store's commit:

        with IngestSession(store) as session:
            accepted = session.accept(envelope)      # verified, or a result: nothing to do
            for ref in session.needed(accepted):     # missing chunks; free-space floor
                session.put(ref, data)               # verified, staged, durable by batches
            done = session.complete(accepted)        # committed with its group
        ...                                          # (leaving commits what is complete)

    It holds the ingest lock (shared) from start to end, so ``fsck --repair`` waits for
    it and never removes chunks it is writing. Chunks are written under temp names and
    made durable and named every ``batch_bytes`` with one file-system sync; complete
    bundles are committed together every ``commit_batch`` bundles or ``batch_bytes`` of
    them. Only a commit makes anything visible. A bundle whose commit finds chunks that
    another writer removed meanwhile comes back as a MissingChunksError: its source puts
    those chunks again and completes it again."""

    def __init__(
        self, store: Store, batch_bytes: int | None = None, commit_batch: int | None = None
    ) -> None:
        self.store = store
        self.batch_bytes = batch_bytes or BATCH_BYTES
        self.commit_batch = commit_batch or COMMIT_BATCH
        self._held = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._batches: BatchPublisher | None = None
        self._ready: list[VerifiedManifest] = []
        self._ready_bytes = 0
        self.committed: list[Committed] = []  # every commit so far, for callers that batch

    def __enter__(self) -> IngestSession:
        self._held.enter_context(self.store.ingesting())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self.flush()
            else:
                self.abandon()
        finally:
            self._held.close()

    def accept(self, envelope: Envelope) -> VerifiedManifest | ImportResult:
        """Verify an envelope against trust, the clock and the rollback marks: the
        verified manifest to bring chunks for, or the result if nothing is to be done.
        Raises a MeshdropError saying why it is refused; a second bundle signed as a
        version already seen is recorded before it is refused."""
        try:
            return self.store.accept(envelope)
        except EquivocationError as exc:
            if exc.twin is not None:
                self.store.record_equivocation(exc.twin)
            raise

    def needed(self, verified: VerifiedManifest) -> list[ChunkRef]:
        """The chunks of the bundle the store lacks, in data order; refused (StoreError)
        if storing them would take the disk below the free-space floor."""
        missing = self.store.missing_chunks(verified)
        self.store.check_free_space(sum(ref.size for ref in missing), verified.manifest.name)
        return missing

    def put(self, ref: ChunkRef, data: bytes | memoryview) -> Path:
        """Verify one chunk (IntegrityError if it does not match) and stage it; it is made
        durable and named with its batch. Thread-safe. Returns its temp path."""
        temp = self.store.stage_chunk(ref, data)
        with self._lock:
            if self._batches is None:
                self._batches = BatchPublisher(self.store.publish_chunks, self.batch_bytes)
            batches = self._batches
        batches.add(temp, ref.size)
        return temp

    def complete(self, verified: VerifiedManifest) -> list[Committed]:
        """Every chunk of ``verified`` is put (or was held): commit it with its group.
        Returns what was committed now (maybe nothing yet; ``flush`` commits the rest)."""
        self._ready.append(verified)
        self._ready_bytes += verified.manifest.size
        if len(self._ready) >= self.commit_batch or self._ready_bytes >= self.batch_bytes:
            return self.flush()
        return []

    def flush(self) -> list[Committed]:
        """Name every staged chunk (one file-system sync for the lot), then commit the
        complete bundles together; what was committed, in order."""
        with self._lock:
            staged, self._batches = self._batches, None
        ready, self._ready, self._ready_bytes = self._ready, [], 0
        folders = staged.finish() if staged is not None else set()
        if not ready:
            return []
        crash_point("before-commit")
        return self._record(ready, self.commit_group(ready, folders))

    def commit_group(
        self, bundles: Sequence[VerifiedManifest], folders: Iterable[Path] = ()
    ) -> list[ImportResult | MeshdropError]:
        """Commit ``bundles`` whose chunks are durable (in ``folders``, synced first) in one
        transaction, each in its own savepoint: one that fails gets its error, in order.
        For sources that stage and publish chunks themselves (the LAN's pipeline)."""
        try:
            results = self.store._commit_group(bundles, folders)
        except _COMMIT_FAILURES as exc:
            failed = out_of_descriptors(exc)
            if failed is not None:
                return [failed] * len(bundles)
            if isinstance(exc, MeshdropError):
                return [exc] * len(bundles)
            raise
        for result in results:  # a twin that arrived while the other copy was in flight
            if isinstance(result, EquivocationError) and result.twin is not None:
                self.store.record_equivocation(result.twin)
        return results

    def abandon(self) -> None:
        """After a failure: nothing more is named or committed; staged temp files go."""
        with self._lock:
            staged, self._batches = self._batches, None
        self._ready, self._ready_bytes = [], 0
        if staged is not None:
            staged.abandon()
            for temp in staged.staged:
                with contextlib.suppress(OSError):
                    temp.unlink(missing_ok=True)

    def _record(
        self, bundles: Sequence[VerifiedManifest], outcomes: list[ImportResult | MeshdropError]
    ) -> list[Committed]:
        done = [Committed(v, o) for v, o in zip(bundles, outcomes, strict=True)]
        self.committed += done
        return done


COMMIT_ATTEMPTS = 3
_COMMIT_FAILURES: tuple[type[Exception], ...] = (MeshdropError, OSError, *OPERATIONAL_ERRORS)
_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def out_of_descriptors(exc: BaseException) -> OutOfDescriptorsError | None:
    """``exc`` (or what caused it) as an OutOfDescriptorsError if the process ran out of
    file descriptors (a commit that is worth trying again in a moment), else None."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in _NO_DESCRIPTORS:
            return OutOfDescriptorsError(f"too many open files ({cause.strerror}); will retry")
        # SQLite says only that it could not open a file: EMFILE is the likely reason
        # when the process is this short of descriptors.
        unopened = isinstance(cause, OPERATIONAL_ERRORS) and "unable to open" in str(cause)
        if unopened and _descriptors_scarce():
            return OutOfDescriptorsError("too many open files (the index); will retry")
        cause = cause.__cause__
    return None


def _descriptors_scarce() -> bool:
    try:
        probe = os.open(os.devnull, os.O_RDONLY)
    except OSError as exc:
        return exc.errno in _NO_DESCRIPTORS
    os.close(probe)
    return False


def import_bundle_file(
    session: IngestSession, path: Path, progress: Progress | None = None
) -> ImportResult:
    """Import one bundle file through ``session``, committed on its own (after whatever
    the session had waiting). Raises a MeshdropError saying why it was refused."""
    with open_bundle_file(path) as source:
        verified = session.accept(source.envelope)
        if isinstance(verified, ImportResult):
            return verified
        source.check_size(verified)
        missing = session.needed(verified)
        if progress:
            progress(verified.manifest.size - sum(ref.size for ref in missing))
        session.flush()  # what was waiting goes first, so that results stay in order
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                copy_chunks(source, missing, session.put, progress)
            except BaseException:
                session.abandon()  # a refused import leaves no temp files behind
                raise
            (done,) = session.complete(verified) or session.flush()
            if not isinstance(done.outcome, MissingChunksError) or attempt == COMMIT_ATTEMPTS - 1:
                if isinstance(done.outcome, MeshdropError):
                    raise done.outcome
                return done.outcome
            # Another writer removed a shared chunk we counted on between our check and
            # our commit (replacing the bundle that held it): bring just those again.
            missing = session.store.missing_chunks(verified)
    raise AssertionError("unreachable")
