"""One bundle being fetched from every peer that offers it (docs/PROTOCOL.md section 6).

Its envelope was verified (``accept``, in engine.py) before a byte of data is asked for.
Each chunk is verified as it arrives and stored (``store_chunk``, or for a big bundle
``stage_chunk`` then ``publish_chunks`` a batch at a time, like a big import); the bundle
becomes visible only at its commit, together with the others that finished meanwhile
(groupcommit.py). Its chunks come from several peers at once, whole holders and partial
ones (plan.py decides which from whom, rarest first); a chunk a peer got wrong goes to
another peer, and the peer is penalised. Chunks are received into reused buffers
(buffers.py) by the client's own HTTP (wire.py).

A bundle of PARTIAL_SHARE_BYTES or more is staged while it is fetched (store/staging.py):
its chunks are kept if the transfer stops, and offered to peers as they arrive, so two
nodes that each got part of it before its source left complete each other.

A bundle of at most SMALL_BUNDLE_BYTES still to fetch is *small*: its chunks are asked
for in batches with other small bundles' (batches.py), and written under temp names
without a sync each; its group commit names them after one sync (groupcommit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from mmap import mmap
from pathlib import Path
from typing import Any, Protocol, TypeVar

from meshdrop.core.holdings import held_digests
from meshdrop.core.manifest import ChunkRef
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import (
    FormatError,
    IntegrityError,
    MeshdropError,
    MissingChunksError,
    StoreError,
)
from meshdrop.store.crashpoints import crash_point
from meshdrop.store.ingest import BATCH_BYTES
from meshdrop.store.models import ImportResult
from meshdrop.transports.lan.batches import ChunkBatcher, EnvelopeBatcher
from meshdrop.transports.lan.buffers import ChunkBuffers
from meshdrop.transports.lan.client import PeerClient
from meshdrop.transports.lan.coalesce import Coalescer
from meshdrop.transports.lan.errors import (
    PeerMisbehaved,
    PeerNotFound,
    PeerUnreachable,
)
from meshdrop.transports.lan.events import Emit, ErrorEvent, emit_withdrawals
from meshdrop.transports.lan.groupcommit import GroupCommit
from meshdrop.transports.lan.peers import Peer
from meshdrop.transports.lan.plan import ChunkPlan
from meshdrop.transports.lan.protocol import Address
from meshdrop.transports.lan.storeio import Checked, Offered, StoreIO

T = TypeVar("T")

# A transfer this big is staged, so that its chunks are offered while it runs: one more
# index transaction, worth it only where fetching takes longer than a moment.
PARTIAL_SHARE_BYTES = 4 * 1024 * 1024
# A transfer this small fetches its chunks in batches, and has them synced by its commit.
SMALL_BUNDLE_BYTES = 1024 * 1024

# The limits and totals are the whole sync's; they live here, below engine.py, so that the
# engine imports the transfer and never the other way round.


@dataclass(frozen=True)
class SyncLimits:
    peers: int = 4  # peers synced with at once
    bundles_per_peer: int = 32  # bundles fetched (chunks, then commit) at once from one peer
    # ... of which small ones (SMALL_BUNDLE_BYTES) count apart, so that many of them are
    # under way while a group commits (their requests travel in batches: batches.py).
    small_bundles_per_peer: int = 128
    envelopes_per_peer: int = 8  # envelopes fetched and accepted at once from one peer
    chunk_workers_per_peer: int = 8  # chunks of one bundle fetched or stored at once, per peer
    chunks_in_memory: int = 24  # chunks fetched but not yet stored, in all (~1 MiB each)
    envelope_bytes: int = 48 * 1024 * 1024  # envelopes fetched but not yet checked, in all
    worker_errors: int = 3  # transport errors in a row before a peer's worker gives up
    commit_attempts: int = 3
    batches_publishing: int = 2  # staged batches handed over but not yet durable, at most
    tick: float = 1.0


@dataclass
class Totals:
    bundles: int = 0
    bytes: int = 0
    chunks: int = 0
    stored: int = 0  # chunks durably stored under their names (the crash points count these)
    publishers: int = 0
    refused: int = 0
    syncs: int = 0


class TransferHost(Protocol):
    """What a transfer uses of the sync engine that runs it (engine.py's SyncEngine)."""

    limits: SyncLimits
    totals: Totals
    storeio: StoreIO
    client: PeerClient
    buffers: ChunkBuffers
    committer: GroupCommit
    offer_checks: Coalescer[Offered, Checked]
    chunk_stager: Coalescer[tuple[ChunkRef, bytes | memoryview], Path]
    emit: Emit

    def keep_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]: ...

    def batchers(self, address: Address) -> tuple[EnvelopeBatcher, ChunkBatcher]: ...

    def penalise(self, peer: Peer, reason: str) -> None: ...

    def refused(self, digest: bytes, peer: Peer | None, reason: str) -> None: ...

    def transfer_ended(self, transfer: Transfer) -> None: ...


class Transfer:
    """One bundle being fetched: its plan, its sources, and the commit at the end.

    A bundle of BATCH_BYTES or more is stored like a big import: each chunk is verified
    and written under a temp name (``stage_chunk``), and every BATCH_BYTES of them are
    made durable with one file-system sync and named (``publish_chunks``) while fetching
    goes on; the rest before commit. A sync per 1 MiB chunk costs more than fetching and
    hashing it. A node killed meanwhile loses at most the batches not yet published (temp
    files, never visible, removed when the node starts again or by ``fsck --repair``); it
    resumes from the chunks published before, as from those stored one by one."""

    def __init__(
        self,
        engine: TransferHost,
        verified: VerifiedManifest,
        digest: bytes,
        missing: list[ChunkRef],
    ) -> None:
        self.engine = engine
        self.verified = verified
        self.digest = digest
        self.plan = ChunkPlan(missing)
        self.total_chunks = len(missing)
        self.sources: dict[str, Peer] = {}
        self.holdings: dict[str, frozenset[bytes]] = {}  # partial sources' chunks, last told
        self._asking: set[str] = set()  # partial sources whose bitmap is being fetched
        self.workers: dict[str, int] = Counter()
        self.folders: set[Path] = set()
        self.bytes_from: Counter[str] = Counter()
        self.batched = sum(ref.size for ref in missing) >= BATCH_BYTES
        self.batch: list[tuple[ChunkRef, Path]] = []  # staged, not yet handed to publish
        self.batch_bytes = 0
        self.publishing: list[asyncio.Task[None]] = []  # in the order handed over
        self.store_error: StoreError | None = None
        self.result: asyncio.Future[ImportResult | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._changed = asyncio.Event()
        self._committing = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.staged = sum(ref.size for ref in missing) >= PARTIAL_SHARE_BYTES
        self.small = sum(ref.size for ref in missing) <= SMALL_BUNDLE_BYTES
        self.temps: list[Path] = []  # a small bundle's chunks, verified, not yet named
        if self.staged:
            engine.keep_task(engine.storeio.stage(verified))
        if not missing:
            self._spawn(self._finish())

    @property
    def name(self) -> str:
        return self.verified.manifest.name

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def add_source(self, peer: Peer, partial: bool = False) -> None:
        """``peer`` offers this bundle, whole or (``partial``) only some of its chunks:
        then its bitmap is fetched first, and again when it offers more later."""
        if self.result.done():
            return
        known = peer.key in self.sources
        if not partial:
            self.holdings.pop(peer.key, None)
            self.plan.add_source(peer.key, None)  # it may have completed since
        elif peer.key in self._asking or (known and peer.key not in self.holdings):
            return  # being asked already, or known to hold everything
        if partial:
            self.sources[peer.key] = peer
            self._asking.add(peer.key)
            self.workers[peer.key] += 1  # the bitmap's fetch keeps the source open
            self._spawn(self._ask_holdings(peer))
        elif not known:
            self.sources[peer.key] = peer
            self._start_workers(peer)
        self._notify()

    def _start_workers(self, peer: Peer) -> None:
        workers = self.engine.limits.chunk_workers_per_peer
        for _ in range(min(workers, self.total_chunks) if self.small else workers):
            self.workers[peer.key] += 1
            self._spawn(self._worker(peer))

    async def _ask_holdings(self, peer: Peer) -> None:
        """Which chunks a partial source holds (PROTOCOL 3.6), then its workers."""
        engine = self.engine
        try:
            if peer.address is None:
                return
            digests = [ref.digest for ref in self.verified.manifest.chunk_refs()]
            try:
                bitmap = await engine.client.have(peer.address, self.digest, len(digests))
                held = held_digests(bitmap, digests)
            except (PeerMisbehaved, FormatError) as exc:
                engine.penalise(peer, str(exc))
                return
            except (PeerUnreachable, PeerNotFound):
                return  # gone, or no longer holds it: the others go on
            self.holdings[peer.key] = held
            self.plan.add_source(peer.key, held)
            if self.workers[peer.key] <= 1:  # only this fetch: its workers ended, or none yet
                self._start_workers(peer)
        finally:
            self._asking.discard(peer.key)
            self._leave(peer)

    def drained(self, peer: Peer) -> bool:
        """Whether nothing more can be had from ``peer`` now: the bundle is complete, or
        the peer holds only part of it and none of what is still missing. A sync that
        got all a partial holder had is complete; its next offer (a new ``have``) starts
        another."""
        held = self.holdings.get(peer.key)
        return self.plan.complete or (held is not None and self.plan.holds_none_left(held))

    async def _worker(self, peer: Peer) -> None:
        engine = self.engine
        errors = 0
        try:
            while not self.result.done():
                if peer.banned(time.monotonic()) or peer.address is None:
                    return
                if self.store_error is not None:
                    return  # this node's disk failed a batch: stop here
                ref = self.plan.take(peer.key)
                if ref is None:
                    if self.plan.complete:
                        await self._finish()
                        return
                    if not self.plan.in_flight and not self.plan.can_serve(peer.key):
                        return  # everything left is what this peer got wrong
                    await self._changed.wait()
                    continue
                buffer = None if self.small else await engine.buffers.acquire()
                stored: asyncio.Task[Path | None] | None = None
                try:
                    data = await self._fetch(peer.address, ref, buffer)
                    # The store works on the buffer in a thread, which a cancelled worker
                    # (a stop) cannot interrupt: the buffer is released when that ends,
                    # and a chunk written under a temp name is still handed to publish.
                    stored = self.engine.keep_task(self._store(ref, data))
                    folder = await asyncio.shield(stored)
                except IntegrityError:
                    self.plan.failed(ref, peer.key, bad_data=True)
                    engine.penalise(peer, f"sent wrong bytes for a chunk of {self.name}")
                except (PeerMisbehaved, FormatError) as exc:
                    self.plan.failed(ref, peer.key, bad_data=True)
                    engine.penalise(peer, str(exc))
                except PeerNotFound:
                    self.plan.failed(ref, peer.key, bad_data=True)  # replaced meanwhile
                except PeerUnreachable:
                    self.plan.failed(ref, peer.key, bad_data=False)
                    errors += 1
                    if errors >= engine.limits.worker_errors:
                        return
                except StoreError as exc:  # this node's disk (full, read-only): stop here
                    self.plan.failed(ref, peer.key, bad_data=False)
                    engine.emit(ErrorEvent(event="error", peer=peer.label, reason=str(exc)))
                    return
                except BaseException:
                    self.plan.failed(ref, peer.key, bad_data=False)
                    raise
                else:
                    errors = 0
                    self.plan.finished(ref)
                    self.bytes_from[peer.key] += len(data)
                    engine.totals.chunks += 1
                    engine.totals.bytes += len(data)
                    peer.fetched_bytes += len(data)
                    if folder is not None:
                        self.folders.add(folder)
                        self._stored(1)
                finally:
                    if buffer is not None:
                        engine.buffers.release_after(buffer, stored)
                    self._notify()
                if len(self.publishing) >= engine.limits.batches_publishing:
                    await asyncio.shield(self.publishing[0])  # the disk is behind: wait
        finally:
            self._leave(peer)

    async def _fetch(self, address: Address, ref: ChunkRef, buffer: mmap | None) -> memoryview:
        """A chunk's bytes as sent: into ``buffer``, or for a small bundle (no buffer) in
        a batch, or alone if the peer refused the batch."""
        if buffer is not None:
            return await self.engine.client.chunk_into(address, ref, memoryview(buffer))
        data = await self.engine.batchers(address)[1].fetch(ref)
        if data is not None:
            return data
        own = memoryview(bytearray(ref.size))
        return await self.engine.client.chunk_into(address, ref, own)

    def _leave(self, peer: Peer) -> None:
        """One of ``peer``'s workers (or its bitmap's fetch) ended."""
        self.workers[peer.key] -= 1
        if self.workers[peer.key] <= 0:
            self.sources.pop(peer.key, None)
            self.plan.remove_source(peer.key)
        if not self.result.done() and not self.sources and not self._committing:
            self.result.set_result(None)  # nobody can supply the rest now
            self.publish_staged()  # what verified is kept for the next try
            self._drop_temps()
            self.engine.transfer_ended(self)
        self._notify()

    def _stored(self, count: int) -> None:
        """``count`` more chunks are durable under their names: a crash point for each."""
        totals = self.engine.totals
        for _ in range(count):
            totals.stored += 1
            crash_point(f"lan-after-chunk-{totals.stored}")

    async def _store(self, ref: ChunkRef, data: memoryview) -> Path | None:
        """Verify a fetched chunk and store it: durably (the folder to sync at commit is
        returned), or for a big bundle staged under a temp name (None)."""
        if self.small:  # with the other small bundles' chunks of this turn
            self.temps.append(await self.engine.chunk_stager.call((ref, data)))
            return None
        if not self.batched:
            return await self.engine.storeio.store_chunk(ref, data)
        temp = await self.engine.storeio.stage_chunk(ref, data)
        self.batch.append((ref, temp))
        self.batch_bytes += ref.size
        if self.batch_bytes >= BATCH_BYTES:
            self.publish_staged()
        return None

    def publish_staged(self) -> None:
        """Hand the staged chunks to the store's publishing thread."""
        if self.batch:
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            self.publishing.append(self.engine.keep_task(self._publish(batch)))

    async def _publish(self, batch: list[tuple[ChunkRef, Path]]) -> None:
        try:
            if self.store_error is not None:
                raise self.store_error  # after a failed batch, no later one is named
            self.folders |= await self.engine.storeio.publish_chunks([t for _, t in batch])
        except StoreError as exc:
            if self.store_error is None:
                self.store_error = exc
                self.engine.emit(ErrorEvent(event="error", reason=f"{self.name}: {exc}"))
            await asyncio.to_thread(_remove, [temp for _, temp in batch])
            for ref, _ in batch:  # not stored after all: fetch again another time
                self.plan.failed(ref, "", bad_data=False)
        else:
            self._stored(len(batch))
        finally:
            me = asyncio.current_task()
            self.publishing = [task for task in self.publishing if task is not me]
            self._notify()

    async def flush(self) -> None:
        """Publish what is staged and wait until every batch handed over is durable."""
        self.publish_staged()
        while self.publishing:
            await asyncio.shield(self.publishing[0])

    async def _finish(self) -> None:
        if self._committing or self.result.done():
            return
        self._committing = True
        engine = self.engine
        try:
            await self.flush()
            if self.store_error is not None:
                self.result.set_result(None)  # the chunks of a failed batch are missing
                return
            for _ in range(engine.limits.commit_attempts):
                temps, self.temps = self.temps, []  # the group names them, or removes them
                try:
                    result = await engine.committer.commit(self.verified, self.folders, temps)
                except MissingChunksError:
                    # Another writer removed a shared chunk we counted on: fetch it again.
                    missing = await engine.storeio.missing_chunks(self.verified)
                    self.plan.reset(missing)
                    self.total_chunks += len(missing)
                    if self.sources:
                        self._committing = False
                        self._notify()
                        return
                    continue
                peer = next((p.label for p in self.sources.values()), None)
                emit_withdrawals(engine.emit, result.withdrawn, peer)  # once, by the commit
                if self.staged:  # complete: no longer a partial bundle to offer
                    engine.keep_task(engine.storeio.unstage(self.digest))
                self.result.set_result(result)
                return
            self.result.set_result(None)
        except MeshdropError as exc:
            engine.refused(self.digest, None, f"{self.name}: {exc}")
            self.result.set_result(None)
        finally:
            if self.result.done():
                self._drop_temps()
                engine.transfer_ended(self)
                self._notify()

    def status(self) -> dict[str, Any]:
        m = self.verified.manifest
        return {
            "name": m.name,
            "version": m.version,
            "size": m.size,
            "chunks_total": self.total_chunks,
            "chunks_left": self.plan.remaining,
            "sources": sorted(p.label for p in self.sources.values()),
        }

    def _drop_temps(self) -> None:
        """A small bundle's chunks staged but never committed: removed (a stopped node
        removes those left when it starts again)."""
        if self.temps:
            temps, self.temps = self.temps, []
            self.engine.keep_task(asyncio.to_thread(_remove, temps))


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
