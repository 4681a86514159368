"""Reading an accepted bundle's missing chunks from a file source in one pass, verifying
and storing them in parallel (hashlib and file writes release the GIL)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from meshdrop.core.manifest import ChunkRef, verify_chunk
from meshdrop.errors import StoreError
from meshdrop.fs import os_error_message
from meshdrop.store.bundlefile import BundleFile

Progress = Callable[[int], None]
ChunkSink = Callable[[ChunkRef, memoryview], Path]
WORKERS = 2 * max(2, os.cpu_count() or 2)  # twice the cores: writes wait on the disk


def verify_only(ref: ChunkRef, data: bytes | memoryview) -> Path:
    verify_chunk(ref, data)
    return Path()


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
            raise StoreError(os_error_message(exc, f"reading {source.path.name}")) from None
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
