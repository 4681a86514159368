"""Writing a stored bundle back out as bytes: from its verified envelope and its chunk
files, each chunk re-checked against its hash as it is read, so a damaged store never
spreads damage. The caller chooses the layout (one .mdrop file, or parts); every file is
written crash-safely (temp name, fsync, rename, fsync of the folder)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meshdrop.core.bundle import encode_header
from meshdrop.core.manifest import ChunkRef, Manifest, parse_manifest
from meshdrop.errors import IntegrityError, UsageError
from meshdrop.fs import atomic_writer
from meshdrop.store.ingest import WORKERS
from meshdrop.store.models import StoredBundle

if TYPE_CHECKING:
    from meshdrop.store.store import Store

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ExportableBundle:
    """A committed bundle ready to be written out: its stored (relay) envelope bytes, the
    manifest parsed from them, and the SHA-256 of the manifest bytes (its identity)."""

    bundle: StoredBundle
    envelope: bytes
    manifest: Manifest
    manifest_hash: bytes

    @property
    def file_size(self) -> int:
        """The size of the whole bundle as one .mdrop file."""
        return len(self.head()) + self.manifest.size

    def head(self) -> bytes:
        """The .mdrop header and envelope: everything before the data."""
        return encode_header(len(self.envelope)) + self.envelope


def load_exportable(store: Store, bundle: StoredBundle) -> ExportableBundle:
    from meshdrop.core.bundle import parse_envelope

    row = store.conn.execute(
        "SELECT envelope, manifest_hash FROM bundles WHERE id = ?", (bundle.id,)
    ).fetchone()
    if row is None:
        raise UsageError(f"bundle {bundle.name!r} is no longer stored")
    envelope, digest = row
    manifest = parse_manifest(parse_envelope(envelope, bundle.name).manifest_bytes)
    return ExportableBundle(bundle, envelope, manifest, digest)


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


def read_chunks(store: Store, item: ExportableBundle, refs: Sequence[ChunkRef]) -> Iterator[bytes]:
    """The bytes of ``refs`` in order, each re-hashed (on a few threads, reading ahead)."""

    def read(ref: ChunkRef) -> bytes:
        data = store.chunks.read(ref.digest)
        if data is None or len(data) != ref.size:
            raise IntegrityError(
                f"part of {ref.path!r} in {item.bundle.name!r} is missing or damaged in the "
                "store; run 'meshdrop fsck --repair' and import the bundle again"
            )
        return data

    pending: deque[Future[bytes]] = deque()
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="export") as pool:
        try:
            for ref in refs:
                pending.append(pool.submit(read, ref))
                if len(pending) > 2 * WORKERS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def write_bundle_file(
    store: Store,
    item: ExportableBundle,
    target: Path,
    *,
    head: bytes,
    refs: Sequence[ChunkRef],
    progress: Progress | None = None,
) -> int:
    """Write ``head`` then the data of ``refs`` to ``target`` crash-safely (the old file,
    if any, stays until the new one is complete and durable). Returns the bytes written."""
    written = 0
    with atomic_writer(target) as handle:
        handle.write(head)
        written += len(head)
        for data in read_chunks(store, item, refs):
            handle.write(data)
            written += len(data)
            if progress:
                progress(len(data))
    return written
