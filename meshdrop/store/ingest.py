"""Reading an accepted bundle's missing chunks from a file source in one pass, verifying
and storing them in parallel (hashlib and file writes release the GIL)."""

from __future__ import annotations

import os
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
        return sink(ref, source.read_chunk_view(ref.offset, ref.size)), ref.size

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
