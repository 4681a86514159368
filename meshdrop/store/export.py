"""Writing a stored bundle back out as bytes: from its verified envelope and its chunk
files, each chunk re-checked against its hash as it is read, so a damaged store never
spreads damage. The caller chooses the layout (one .mdrop file, or parts) and makes each
file crash-safely (fs.DurableBatch: temp name, fsync, rename, fsync of the folder)."""

from __future__ import annotations

import contextlib
import functools
import mmap
import queue
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshdrop.bulkio import SequentialWriter, new_buffer
from meshdrop.core.bundle import encode_header
from meshdrop.core.manifest import ChunkRef, Manifest, parse_manifest
from meshdrop.errors import IntegrityError, StoreError, UsageError
from meshdrop.fs import os_error_message
from meshdrop.store.ingest import WORKERS
from meshdrop.store.models import StoredBundle

if TYPE_CHECKING:
    from meshdrop.store.store import Store

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ExportableBundle:
    """A committed bundle ready to be written out: its stored (relay) envelope bytes, the
    SHA-256 of its manifest bytes (its identity) and its publisher's id. The manifest is
    parsed from the envelope (strictly, as on import) only when asked for: a top-up that
    finds most bundles already on the stick never needs theirs."""

    bundle: StoredBundle
    envelope: bytes
    manifest_hash: bytes
    publisher_id: bytes

    @functools.cached_property
    def manifest(self) -> Manifest:
        from meshdrop.core.bundle import parse_envelope

        manifest = parse_manifest(parse_envelope(self.envelope, self.bundle.name).manifest_bytes)
        if manifest.size != self.bundle.size or manifest.publisher != self.publisher_id:
            raise StoreError(f"the store's index disagrees with the envelope of {manifest.name}")
        return manifest

    @property
    def file_size(self) -> int:
        """The size of the whole bundle as one .mdrop file."""
        return len(self.head()) + self.bundle.size

    def head(self) -> bytes:
        """The .mdrop header and envelope: everything before the data."""
        return encode_header(len(self.envelope)) + self.envelope


def load_exportable(store: Store, bundle: StoredBundle) -> ExportableBundle:
    row = store.conn.execute(
        "SELECT envelope, manifest_hash, publisher FROM bundles WHERE id = ?", (bundle.id,)
    ).fetchone()
    if row is None:
        raise UsageError(f"bundle {bundle.name!r} is no longer stored")
    envelope, digest, publisher = row
    return ExportableBundle(bundle, envelope, digest, publisher)


def publisher_file(store: Store, fingerprint: str) -> bytes:
    """The verified record chain the store holds for a trusted publisher, as a
    publisher.pub file (the chain a revocation travels in)."""
    row = store.conn.execute(
        "SELECT records FROM publishers WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    if row is None:
        raise UsageError(f"no trusted publisher has the fingerprint {fingerprint}")
    data: bytes = row[0]
    return data


class ChunkReader:
    """Reads bundles' chunks back out of the store, in order, for writing elsewhere. Each
    chunk is re-hashed as it is read, on a few threads reading ahead, into buffers that
    are reused (no allocation per chunk). One per export: use it as a context manager."""

    AHEAD = 2 * WORKERS

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="export")
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def chunks(self, item: ExportableBundle, refs: Sequence[ChunkRef]) -> Iterator[memoryview]:
        """The bytes of ``refs`` in order. Each view is valid until the next is asked for."""
        if len(refs) == 1:  # a small bundle: handing it to a thread costs more
            buffer, data = self._read(item, refs[0])
            try:
                yield data
            finally:
                self._release(buffer)
            return
        pending: deque[Future[tuple[mmap.mmap, memoryview]]] = deque()
        current: mmap.mmap | None = None
        try:
            for ref in refs:
                pending.append(self._pool.submit(self._read, item, ref))
                if len(pending) > self.AHEAD:
                    self._release(current)
                    current = None
                    current, data = pending.popleft().result()
                    yield data
            while pending:
                self._release(current)
                current = None
                current, data = pending.popleft().result()
                yield data
        finally:
            self._release(current)
            for future in pending:
                if not future.cancel():
                    with contextlib.suppress(Exception):
                        self._free.put(future.result()[0])

    def _read(self, item: ExportableBundle, ref: ChunkRef) -> tuple[mmap.mmap, memoryview]:
        try:
            buffer = self._free.get_nowait()
        except queue.Empty:
            buffer = new_buffer()
        try:
            data = self.store.chunks.read_into(ref.digest, ref.size, buffer)
        except BaseException:
            self._free.put(buffer)
            raise
        if data is None:
            self._free.put(buffer)
            raise IntegrityError(
                f"part of {ref.path!r} in {item.bundle.name!r} is missing or damaged in the "
                "store; run 'meshdrop fsck --repair' and import the bundle again"
            )
        return buffer, data

    def _release(self, buffer: mmap.mmap | None) -> None:
        if buffer is not None:
            self._free.put(buffer)


def write_bundle_data(
    reader: ChunkReader,
    item: ExportableBundle,
    fd: int,
    *,
    head: bytes,
    refs: Sequence[ChunkRef],
    progress: Progress | None = None,
) -> int:
    """Write ``head`` then the data of ``refs`` to ``fd`` (a new file, from its start).
    Returns the bytes written. The caller makes the file durable and names it
    (fs.DurableBatch)."""
    written = len(head)
    try:
        out = SequentialWriter(fd)
        out.write(head)
        for data in reader.chunks(item, refs):
            out.write(data)
            written += len(data)
            if progress:
                progress(len(data))
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"writing {item.bundle.name!r}")) from exc
    return written
