"""The store, called from the event loop without blocking it.

SQLite connections belong to one thread each, so there are two kinds of store thread:
readers (the peer server's questions: inventory, envelopes, which chunks are visible;
and the checks of envelopes peers offer) and one writer (commit, publisher updates: it
may wait on the store's write lock while another process imports). Verifying, writing
and reading chunk files touches no SQLite and runs on a separate pool, so big transfers
hash on every core; a big bundle's staged chunks are made durable and named a batch at a
time on a thread of their own (``publish_chunks``), in the order the batches were handed
over, while fetching goes on. Many small bundles' envelopes are checked, and their chunks
stored, several per thread hand-off (``check_offers``, ``stage_chunks``: coalesce.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from meshdrop.core.bundle import Envelope, parse_envelope
from meshdrop.core.inventory import SALT_BYTES, Inventory, advertised_digest
from meshdrop.core.manifest import ChunkRef
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import (
    EquivocationError,
    FormatError,
    MeshdropError,
    RollbackError,
    SignatureError,
    StoreError,
    TrustError,
)
from meshdrop.store import staging
from meshdrop.store.db import disk_error
from meshdrop.store.ingest import IngestSession
from meshdrop.store.inventory import PeerView, Snapshot
from meshdrop.store.models import ImportResult
from meshdrop.store.store import IngestHold, Store
from meshdrop.store.threaded import ThreadedStore
from meshdrop.transports.lan.coalesce import run_each

T = TypeVar("T")


def _open_or_none(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


DATA_WORKERS = max(8, 2 * (os.cpu_count() or 2))  # chunk writes wait on fsync, not CPU

# What refuses an envelope (``Store.accept``): its own fault or the peer's, not this node's.
REFUSALS = (FormatError, SignatureError, TrustError, RollbackError)


@dataclass(frozen=True)
class Offered:
    """An envelope a peer sent (not yet checked) for the manifest hash it listed it under;
    ``what`` names it in errors."""

    data: bytes
    listed: bytes
    what: str


@dataclass(frozen=True)
class Checked:
    """An offered envelope, parsed. If its manifest hash is the one listed, ``accept``'s
    answer (``accepted``, or the ``refusal``); if accepted, the chunks this store lacks
    and, if the disk has no room for them, why (``no_room``)."""

    envelope: Envelope
    as_listed: bool
    accepted: VerifiedManifest | ImportResult | None = None
    refusal: MeshdropError | None = None
    missing: tuple[ChunkRef, ...] = ()
    no_room: StoreError | None = None


class StoreIO:
    def __init__(self, home: Path, readers: int = 4, data_workers: int = DATA_WORKERS) -> None:
        self.home = home
        self.threads = ThreadedStore(
            home,
            "store",
            readers=readers,
            writer=True,
            data_workers=data_workers,
            on_open=self._open_view,
        )
        self._publish = ThreadPoolExecutor(1, "store-publish")
        # The data threads use this store's chunk files only, never its SQLite connection
        # (which belongs to the thread that made the StoreIO).
        self._chunks = Store(home)
        # New on every start: what this node advertises of its inventory (TXT, hello)
        # links none of its starts and can be computed by no one else.
        self._digest_salt = secrets.token_bytes(SALT_BYTES)
        self.drops_mark = b""  # of the drops held (dropsync.py): advertised with the inventory

    def advertised_digest(self, inventory: Inventory) -> bytes:
        """The digest this node announces and says in hellos (PROTOCOL.md 4.4)."""
        return advertised_digest(self._digest_salt, inventory.digest + self.drops_mark)

    def _open_view(self, store: Store) -> None:
        self.threads.local.view = PeerView(store)

    def _view(self) -> PeerView:
        self.threads.store()  # opened with its view
        view: PeerView = self.threads.local.view
        return view

    # The server's side (reader threads)

    async def snapshot(self) -> Snapshot:
        return await self.threads.read(lambda _: self._view().snapshot())

    async def envelope(self, manifest_hash: bytes) -> bytes | None:
        return await self.threads.read(lambda _: self._view().envelope(manifest_hash))

    async def envelopes(
        self, manifest_hashes: Sequence[bytes], max_bytes: int
    ) -> list[bytes | None]:
        """Each envelope as ``envelope`` gives it, in order, while they total at most
        ``max_bytes``: the list stops before the first that would go past."""

        def read(_: Store) -> list[bytes | None]:
            view, found, total = self._view(), [], 0
            for manifest_hash in manifest_hashes:
                envelope = view.envelope(manifest_hash)
                total += 0 if envelope is None else len(envelope)
                if total > max_bytes:
                    break
                found.append(envelope)
            return found

        return await self.threads.read(read)

    async def visible_chunks(self, digests: Sequence[bytes], max_bytes: int) -> bytes | None:
        """The chunks' bytes back to back, as stored (see ``open_visible_chunk``), or None
        if any is not offered or not here, or they total more than ``max_bytes``."""

        def offered(_: Store) -> bool:
            view = self._view()
            return all(view.chunk_offered(digest) for digest in digests)

        def read() -> bytes | None:
            pieces, total = [], 0
            for digest in digests:
                data = self._chunks.chunks.read(digest)
                if data is None:
                    return None
                total += len(data)
                if total > max_bytes:
                    return None
                pieces.append(data)
            return b"".join(pieces)

        if not await self.threads.read(offered):
            return None
        return await self.threads.data(read)

    async def publisher_file(self, publisher: bytes) -> bytes | None:
        return await self.threads.read(lambda _: self._view().publisher_file(publisher))

    async def have(self, manifest_hash: bytes) -> bytes | None:
        """The chunk bitmap of a visible or partly held bundle (core/holdings.py)."""
        return await self.threads.read(lambda _: self._view().have(manifest_hash))

    async def open_visible_chunk(self, digest: bytes) -> BinaryIO | bytes | None:
        """A chunk of a visible or partly held bundle (PeerView.chunk_offered). In a plain
        store its file opened for reading (the caller closes it), to send as stored. Not
        hashed again here: it was verified before it was stored, every recipient verifies
        it again before using it, and damage on this disk is what ``meshdrop fsck`` finds
        (a peer that receives a damaged chunk penalises this node and fetches it
        elsewhere). In a sealed store its bytes, decrypted and verified (None if they do
        not decrypt): the file holds only ciphertext."""
        chunks = self._chunks.chunks
        if chunks.sealed:
            if not await self.threads.read(lambda _: self._view().chunk_offered(digest)):
                return None
            return await self.threads.data(lambda: chunks.read(digest))

        def visible(_: Store) -> BinaryIO | None:
            if not self._view().chunk_offered(digest):
                return None
            return _open_or_none(chunks.path(digest))

        return await self.threads.read(visible)

    # The client's side (the writer thread, and the data pool for chunks)

    async def check_offers(self, offers: Sequence[Offered]) -> list[Checked | Exception]:
        """Each offered envelope parsed, checked against its listing and ``accept``ed, and
        for one accepted its missing chunks and the disk's room for them: one reader
        thread hand-off for many small bundles (read-only: the commit checks it all again
        in its transaction; the writer thread is left to commits). The caller holds the
        ingest lock (the missing chunks must stay missing or stored until its commit). A
        parse error is that envelope's exception, in its place."""

        def check(store: Store, offered: Offered) -> Checked:
            envelope = parse_envelope(offered.data, offered.what)
            if hashlib.sha256(envelope.manifest_bytes).digest() != offered.listed:
                return Checked(envelope, as_listed=False)
            try:
                accepted = store.accept(envelope)
            except REFUSALS as exc:
                return Checked(envelope, True, refusal=exc)
            if isinstance(accepted, ImportResult):
                return Checked(envelope, True, accepted)
            missing = store.missing_chunks(accepted)
            try:
                store.check_free_space(sum(r.size for r in missing), accepted.manifest.name)
            except StoreError as exc:
                return Checked(envelope, True, accepted, missing=tuple(missing), no_room=exc)
            return Checked(envelope, True, accepted, missing=tuple(missing))

        def check_disk(store: Store, offered: Offered) -> Checked:
            try:
                return check(store, offered)
            except Exception as exc:  # SQLite's failing disk: a StoreError, as a commit's
                failed = disk_error(exc, f"the store index in {self.home}")
                if failed is None:
                    raise
                raise failed from exc

        results = await self.threads.read(
            lambda store: run_each(lambda offered: check_disk(store, offered), offers)
        )
        twins = [
            r.refusal.twin
            for r in results
            if isinstance(r, Checked) and isinstance(r.refusal, EquivocationError)
        ]
        if twins:  # kept for `trust show`, as every source does

            def record(store: Store) -> None:
                for twin in twins:
                    store.record_equivocation(twin)

            await self.threads.write(record)
        return results

    async def missing_chunks(self, verified: VerifiedManifest) -> list[ChunkRef]:
        return await self.threads.read(lambda store: store.missing_chunks(verified))

    async def stage(self, verified: VerifiedManifest) -> None:
        """Record a bundle being fetched as partly held (store/staging.py): its chunks are
        kept if the transfer stops, and offered to peers meanwhile."""
        await self.threads.write(lambda store: staging.stage(store.db, verified))

    async def unstage(self, manifest_hash: bytes) -> None:
        await self.threads.write(lambda store: staging.unstage(store.db, manifest_hash))

    async def hold_ingest(self) -> IngestHold:
        """The ingest lock, shared, for one transfer (on a thread: it waits while
        ``fsck --repair`` runs). The caller releases it when the transfer ends."""
        return await asyncio.to_thread(self._chunks.hold_ingest)

    async def store_chunk(self, ref: ChunkRef, data: bytes | memoryview) -> Path:
        return await self.threads.data(lambda: self._chunks.store_chunk(ref, data))

    async def stage_chunk(self, ref: ChunkRef, data: bytes | memoryview) -> Path:
        """Verify a chunk and write it under a temp name, not yet durable (a big bundle's
        chunks); ``publish_chunks`` makes a batch of them durable and names them."""
        return await self.threads.data(lambda: self._chunks.stage_chunk(ref, data))

    async def stage_chunks(
        self, chunks: Sequence[tuple[ChunkRef, bytes | memoryview]]
    ) -> list[Path | Exception]:
        """``stage_chunk`` for each chunk, on one data thread hand-off (many small
        bundles' chunks): each chunk's temp file, or its own error (IntegrityError)."""

        def stage(chunk: tuple[ChunkRef, bytes | memoryview]) -> Path:
            return self._chunks.stage_chunk(*chunk)

        return await self.threads.data(lambda: run_each(stage, chunks))

    async def publish_chunks(self, temps: list[Path], cached: bool = False) -> set[Path]:
        """One file-system sync for a batch of staged chunks, then their names; batches
        are published one at a time, in the order they were handed over. ``cached``:
        their pages are left in the cache (small chunks: not worth a drop each)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._publish, lambda: self._chunks.publish_chunks(temps, cached)
        )

    async def remove_leftover_temp_files(self) -> int:
        return await self.threads.data(self._chunks.remove_leftover_temp_files)

    async def commit_many(
        self, bundles: list[VerifiedManifest], folders: set[Path]
    ) -> list[ImportResult | MeshdropError]:
        return await self.threads.write(
            lambda store: IngestSession(store).commit_group(bundles, folders)
        )

    async def update_publisher(self, data: bytes, what: str) -> ImportResult:
        return await self.threads.write(lambda store: store.update_publisher(data, what))

    async def aclose(self) -> None:
        """Wait for work already started (a commit, a chunk being written) to finish, so
        that what was verified stays stored; then close every connection in its thread."""
        await self.threads.aclose()
        await asyncio.to_thread(self._publish.shutdown, wait=True)  # a batch handed over
        self._chunks.close()  # made in this (the event loop's) thread
