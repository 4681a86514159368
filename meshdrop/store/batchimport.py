"""Importing many bundle files in one run (``meshdrop import FOLDER``).

A small bundle's own commit costs more than copying it: a sync for its chunks, one for
their folder and one for the index transaction. So small bundles are verified and their
chunks staged as each file is read, and the complete ones are committed together
(``Store.commit_staged``) every COMMIT_BATCH bundles or BATCH_BYTES of them: one sync and
one transaction per batch, each bundle still checked and committed on its own. A bundle
of BATCH_BYTES or more goes through ``Store.import_file`` as before, after the pending
ones. Results come out in the order the files went in. A crash loses at most the
pending batch's commits; its chunks, once named, are not copied again by the next run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from meshdrop.core.manifest import ChunkRef
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import MeshdropError, MissingChunksError
from meshdrop.store.bundlefile import open_bundle_file
from meshdrop.store.ingest import BatchPublisher, Progress, copy_chunks
from meshdrop.store.models import ImportResult
from meshdrop.store.store import BATCH_BYTES, COMMIT_BATCH, Store


@dataclass
class FileResult:
    path: Path
    outcome: ImportResult | MeshdropError | None = None  # None: waiting for its batch


class BatchImport:
    """Use as a context manager around every ``add``; ``finish`` before reading the
    store, or before anything that must see the pending bundles (a publisher update)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._held = contextlib.ExitStack()
        self._batches: BatchPublisher | None = None
        self._results: list[FileResult] = []  # since the last commit, in order
        self._waiting: list[tuple[FileResult, VerifiedManifest]] = []
        self._waiting_bytes = 0

    def __enter__(self) -> BatchImport:
        self._held.enter_context(self.store.ingesting())  # fsck --repair waits for us
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._batches is not None:
                self._batches.abandon()  # staged, never named: removed at the next start
        finally:
            self._held.close()

    def add(self, path: Path, progress: Progress | None = None) -> list[FileResult]:
        """Import one bundle file; returns the results now final (maybe none yet)."""
        result = FileResult(path)
        big = False
        try:
            with open_bundle_file(path) as source:
                verified = self.store.accept(source.envelope)
                if isinstance(verified, ImportResult):
                    result.outcome = verified
                else:
                    source.check_size(verified)
                    missing = self.store.missing_chunks(verified)
                    size = sum(ref.size for ref in missing)
                    big = size >= BATCH_BYTES
                    if not big:
                        self.store.check_free_space(size, verified.manifest.name)
                        if progress:
                            progress(verified.manifest.size - size)  # already held
                        copy_chunks(source, missing, self._stage, progress)
                        self._waiting.append((result, verified))
                        self._waiting_bytes += size
        except MeshdropError as exc:
            result.outcome = exc
        if big:  # after the pending ones, so that results stay in order
            done = self.finish()
            result.outcome = self._import_alone(path, progress)
            return [*done, result]
        self._results.append(result)
        if len(self._waiting) >= COMMIT_BATCH or self._waiting_bytes >= BATCH_BYTES:
            return self.finish()
        return []

    def finish(self) -> list[FileResult]:
        """Name the staged chunks, commit the waiting bundles; every result so far."""
        waiting, self._waiting, self._waiting_bytes = self._waiting, [], 0
        staged, self._batches = self._batches, None
        try:
            outcomes = self.store.commit_staged(staged, [verified for _, verified in waiting])
        except MeshdropError as exc:  # naming the staged chunks failed: none went in
            outcomes = [exc] * len(waiting)
        for (result, _), outcome in zip(waiting, outcomes, strict=True):
            if isinstance(outcome, MissingChunksError):  # another writer's clean-up
                outcome = self._import_alone(result.path, None)
            result.outcome = outcome
        done, self._results = self._results, []
        return done

    def _stage(self, ref: ChunkRef, data: bytes | memoryview) -> Path:
        if self._batches is None:
            self._batches = BatchPublisher(self.store.publish_chunks, BATCH_BYTES)
        temp = self.store.stage_chunk(ref, data)
        self._batches.add(temp, ref.size)
        return temp

    def _import_alone(self, path: Path, progress: Progress | None) -> ImportResult | MeshdropError:
        try:
            return self.store.import_file(path, progress)
        except MeshdropError as exc:
            return exc
