"""The one ingest path: verify the envelope, copy and verify every missing chunk in a
single read of the source, then commit the bundle in one transaction."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import IntegrityError, StoreError
from meshdrop.fs import os_error_message
from meshdrop.store.bundlefile import BundleFile, chunk_offsets
from meshdrop.store.chunks import ChunkStore
from meshdrop.store.crashpoints import crash_point

Progress = Callable[[int], None]
WORKERS = max(2, os.cpu_count() or 2)


def copy_missing_chunks(
    source: BundleFile,
    verified: VerifiedManifest,
    chunks: ChunkStore | None,
    progress: Progress | None = None,
) -> set[Path]:
    """Read, verify and durably store every chunk the store lacks. Returns the chunk
    folders to fsync before the commit. Chunks already held are not read at all.
    With ``chunks`` None every chunk is read and verified, and nothing is written."""
    files = verified.manifest.files
    folders: set[Path] = set()
    pending: deque[Future[tuple[Path, int]]] = deque()

    def fetch(index: int, offset: int, size: int, digest: bytes) -> tuple[Path, int]:
        data = source.read_chunk(offset, size)
        if len(data) != size or hashlib.sha256(data).digest() != digest:
            raise IntegrityError(
                f"{source.path.name}: the data of {files[index].path!r} does not match its "
                "signed hash (the file is damaged or was altered)"
            )
        if not chunks:
            return source.path.parent, size
        folder = chunks.write(digest, data)
        crash_point("after-chunk")
        return folder, size

    def finish_oldest() -> None:
        folder, size = pending.popleft().result()
        folders.add(folder)
        if progress:
            progress(size)

    seen: set[bytes] = set()
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="ingest") as pool:
        try:
            for index, offset, size, digest in chunk_offsets(verified):
                if digest in seen or (chunks and chunks.has(digest)):
                    if progress:
                        progress(size)
                    continue
                seen.add(digest)
                pending.append(pool.submit(fetch, index, offset, size, digest))
                # Bounded read-ahead: at most this many chunks are in memory at once.
                while len(pending) > 2 * WORKERS:
                    finish_oldest()
            while pending:
                finish_oldest()
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"importing {source.path.name}")) from None
        finally:
            for future in pending:
                future.cancel()
    return folders
