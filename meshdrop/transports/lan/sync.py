"""The sync loop: probe peers, walk their inventories, fetch what this node wants.

The decisions are core/sync.py's (sans-IO); this module does the I/O around them. Every
bundle goes through the store's one ingest path: its envelope is verified (``accept``)
before a byte of data is asked for; each chunk is verified as it arrives and stored
(``store_chunk``, or for a big bundle ``stage_chunk`` then ``publish_chunks`` a batch at
a time, like a big import); the bundle becomes visible only at its commit, together with
the others that finished meanwhile (groupcommit.py). One ``Transfer`` per bundle is
shared by every peer that offers it, so its chunks come from several peers at once; a
chunk a peer got wrong goes to another peer, and the peer is penalised. Chunks are
received into reused buffers (buffers.py) by the client's own HTTP (wire.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from meshdrop.core.bundle import Envelope, parse_envelope
from meshdrop.core.keys import Domain, verify
from meshdrop.core.manifest import ChunkRef
from meshdrop.core.sync import (
    MAX_SCOPE,
    PROTOCOL_VERSION,
    ChunkPlan,
    Entry,
    InventoryRequest,
    Peer,
    PeerBook,
    Reconciler,
    Refusals,
    bundle_slot,
    decide_wants,
)
from meshdrop.core.trust import PublisherState
from meshdrop.core.verify import VerifiedManifest, signing_publishers
from meshdrop.errors import (
    FormatError,
    IntegrityError,
    MeshdropError,
    MissingChunksError,
    RollbackError,
    SignatureError,
    StoreError,
    TrustError,
)
from meshdrop.store.crashpoints import crash_point
from meshdrop.store.models import ImportResult, Outcome
from meshdrop.store.store import BATCH_BYTES
from meshdrop.transports.lan.buffers import ByteBudget, ChunkBuffers, Hold
from meshdrop.transports.lan.client import PeerClient
from meshdrop.transports.lan.errors import (
    PeerMisbehaved,
    PeerNotFound,
    PeerUnreachable,
)
from meshdrop.transports.lan.groupcommit import GroupCommit
from meshdrop.transports.lan.storeio import StoreIO

T = TypeVar("T")
Event = dict[str, Any]
Emit = Callable[[Event], None]


@dataclass(frozen=True)
class SyncLimits:
    peers: int = 4  # peers synced with at once
    bundles_per_peer: int = 32  # bundles fetched (chunks, then commit) at once from one peer
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
        self, engine: SyncEngine, verified: VerifiedManifest, digest: bytes, missing: list[ChunkRef]
    ) -> None:
        self.engine = engine
        self.verified = verified
        self.digest = digest
        self.plan = ChunkPlan(missing)
        self.total_chunks = len(missing)
        self.sources: dict[str, Peer] = {}
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

    def add_source(self, peer: Peer) -> None:
        if self.result.done() or peer.key in self.sources:
            return
        self.sources[peer.key] = peer
        for _ in range(self.engine.limits.chunk_workers_per_peer):
            self.workers[peer.key] += 1
            self._spawn(self._worker(peer))

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
                buffer = await engine.buffers.acquire()
                stored: asyncio.Task[Path | None] | None = None
                try:
                    data = await engine.client.chunk_into(peer.address, ref, memoryview(buffer))
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
                    engine.emit({"event": "error", "peer": peer.label, "reason": str(exc)})
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
                    engine.buffers.release_after(buffer, stored)
                    self._notify()
                if len(self.publishing) >= engine.limits.batches_publishing:
                    await asyncio.shield(self.publishing[0])  # the disk is behind: wait
        finally:
            self.workers[peer.key] -= 1
            if self.workers[peer.key] <= 0:
                self.sources.pop(peer.key, None)
            if not self.result.done() and not self.sources and not self._committing:
                self.result.set_result(None)  # nobody can supply the rest now
                self.publish_staged()  # what verified is kept for the next try
                engine.transfer_ended(self)
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
                self.engine.emit({"event": "error", "reason": f"{self.name}: {exc}"})
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
                try:
                    result = await engine.committer.commit(self.verified, self.folders)
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
                self.result.set_result(result)
                return
            self.result.set_result(None)
        except MeshdropError as exc:
            engine.refused(self.digest, None, f"{self.name}: {exc}")
            self.result.set_result(None)
        finally:
            if self.result.done():
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


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def forged(envelope: Envelope, states: Mapping[bytes, PublisherState]) -> bool:
    """Whether a refused envelope is one no honest peer could hold: of a publisher not
    asked about, with a bad signature, or signed by a key its own chain does not
    delegate. (An expired bundle, or one a newer record revoked, is no one's fault.)"""
    try:
        if not signing_publishers(envelope, states):
            return True
        return not verify(
            envelope.signer, envelope.signature, Domain.MANIFEST, envelope.manifest_bytes
        )
    except MeshdropError:
        return True


@dataclass
class SyncOutcome:
    complete: bool = True
    bundles: int = 0
    publishers: int = 0
    refused: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


class SyncEngine:
    def __init__(
        self,
        storeio: StoreIO,
        client: PeerClient,
        book: PeerBook,
        emit: Emit,
        limits: SyncLimits = SyncLimits(),
    ) -> None:
        self.storeio = storeio
        self.client = client
        self.book = book
        self.emit = emit
        self.limits = limits
        self.buffers = ChunkBuffers(limits.chunks_in_memory)
        self.envelope_budget = ByteBudget(limits.envelope_bytes)
        self.committer = GroupCommit(storeio, self.keep_task)
        self.transfers: dict[bytes, Transfer] = {}
        self.refusals = Refusals()
        self.totals = Totals()
        self.own_digest = b""
        self.trust_digest = b""
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Storing, publishing and committing: never cancelled, waited for at a stop.
        self.keep: set[asyncio.Task[Any]] = set()
        self._syncing = 0
        self._reported: set[bytes] = set()

    def wake(self) -> None:
        self._wake.set()

    def keep_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task that stopping the node waits for instead of cancelling."""
        task = asyncio.ensure_future(coro)
        self.keep.add(task)
        task.add_done_callback(self.keep.discard)
        return task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        while True:
            snap = await self.storeio.snapshot()
            if snap.trust_digest != self.trust_digest:
                self.refusals.clear()
            self.own_digest, self.trust_digest = snap.inventory.digest, snap.trust_digest
            now = time.monotonic()
            for peer in self.book.due_probes(now):
                peer.probing = True
                self._spawn(self._probe(peer))
            for peer in self.book.due_syncs(now, self.own_digest, self.trust_digest):
                if self._syncing >= self.limits.peers:
                    break
                peer.syncing = True
                self._syncing += 1
                self._spawn(self._sync(peer))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.limits.tick):
                    await self._wake.wait()

    async def close(self) -> None:
        """Stop all work. Chunks already stored stay for the next run to resume from, and
        so do those staged: they are published before the node stops."""
        tasks = list(self._tasks)
        transfers = list(self.transfers.values())
        for transfer in transfers:
            tasks.extend(transfer.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self.keep, return_exceptions=True)  # chunks being staged
        for transfer in transfers:
            transfer.publish_staged()
        await asyncio.gather(*self.keep, return_exceptions=True)

    async def _probe(self, peer: Peer) -> None:
        try:
            for address in list(peer.addresses):
                try:
                    hello = await self.client.hello(address)
                except (PeerUnreachable, PeerMisbehaved, PeerNotFound):
                    continue
                if hello.protocol != PROTOCOL_VERSION:
                    continue  # another version of the protocol: not a peer of ours
                now = time.monotonic()
                if hello.node in self.book.self_ids:
                    self.book.forget_self(peer)
                    return
                if self.book.probe_ok(peer, address, hello.digest, now):
                    self.emit({"event": "peer", "peer": peer.label, "state": "alive"})
                self.wake()
                return
            if self.book.probe_failed(peer, time.monotonic()):
                self.emit({"event": "peer", "peer": peer.label, "state": "forgotten"})
            elif peer.probe_failures == 1:
                self.emit({"event": "peer", "peer": peer.label, "state": "unreachable"})
        finally:
            peer.probing = False

    def penalise(self, peer: Peer, reason: str) -> None:
        banned = self.book.penalise(peer, time.monotonic())
        self.emit({"event": "bad-peer", "peer": peer.label, "reason": reason, "banned": banned})

    def refused(self, digest: bytes, peer: Peer | None, reason: str) -> None:
        self.refusals.add(digest, time.monotonic())
        self.totals.refused += 1
        event: Event = {"event": "refused", "reason": reason}
        if peer is not None:
            event["peer"] = peer.label
        self.emit(event)

    def transfer_ended(self, transfer: Transfer) -> None:
        if self.transfers.get(transfer.digest) is transfer:
            del self.transfers[transfer.digest]

    async def _sync(self, peer: Peer) -> None:
        digest = peer.advertised or b""
        trust = self.trust_digest
        outcome = SyncOutcome()
        started = time.monotonic()
        try:
            await self._sync_with(peer, outcome)
        except PeerMisbehaved as exc:
            outcome.complete = False
            self.penalise(peer, str(exc))
        except MeshdropError as exc:
            outcome.complete = False
            outcome.errors.append(str(exc))
        except Exception as exc:  # one failed sync must not stop the node
            outcome.complete = False
            self.emit({"event": "error", "peer": peer.label, "reason": repr(exc)})
        finally:
            self._syncing -= 1
            self.book.sync_done(peer, digest, trust, outcome.complete, time.monotonic())
            self.totals.syncs += 1
            self.wake()
        self.emit(
            {
                "event": "sync",
                "peer": peer.label,
                "bundles": outcome.bundles,
                "publishers": outcome.publishers,
                "refused": outcome.refused,
                "bytes": outcome.bytes,
                "complete": outcome.complete,
                "seconds": round(time.monotonic() - started, 3),
            }
        )

    async def _sync_with(self, peer: Peer, outcome: SyncOutcome) -> None:
        address = peer.address
        if address is None:
            raise PeerUnreachable(f"peer {peer.label} has no working address")
        snap = await self.storeio.snapshot()
        scope = tuple(sorted(snap.states))[:MAX_SCOPE]
        if not scope:
            return
        walk = Reconciler(snap.inventory)
        while not walk.done:
            request = InventoryRequest(scope, tuple(walk.next_prefixes()))
            answer = await self.client.inventory(address, request)
            await asyncio.to_thread(walk.feed, answer)  # pure, but O(inventory) at first
        wants = decide_wants(
            walk.offered,
            snap.known_versions,
            snap.publisher_slots,
            self.refusals.current(time.monotonic()),
        )
        for publisher, entry in wants.publishers:
            await self._fetch_publisher(peer, address, publisher, entry, outcome)
        slots = asyncio.Semaphore(self.limits.bundles_per_peer)
        # Fewer envelopes at once than bundles: an envelope may be 24 MiB of whatever the
        # peer sends until it is checked; an accepted one is a trusted publisher's.
        envelopes = asyncio.Semaphore(self.limits.envelopes_per_peer)

        async def one(entry: Entry) -> None:
            async with slots:
                await self._fetch_bundle(peer, entry, snap.states, outcome, envelopes)

        results = await asyncio.gather(*(one(e) for e in wants.bundles), return_exceptions=True)
        for result in results:
            if isinstance(result, PeerMisbehaved):
                outcome.complete = False
                self.penalise(peer, str(result))
            elif isinstance(result, MeshdropError):
                outcome.complete = False
                outcome.errors.append(str(result))
            elif isinstance(result, BaseException):
                raise result

    async def _fetch_publisher(
        self,
        peer: Peer,
        address: tuple[str, int],
        publisher: bytes,
        entry: Entry,
        outcome: SyncOutcome,
    ) -> None:
        data = await self.client.publisher_file(address, publisher)
        if hashlib.sha256(data).digest() != entry.digest:
            raise PeerMisbehaved(f"peer {peer.label} sent another publisher file than it listed")
        try:
            result = await self.storeio.update_publisher(
                data, f"a publisher file from {peer.label}"
            )
        except MeshdropError as exc:
            self.refused(entry.digest, peer, str(exc))
            outcome.refused += 1
            if isinstance(exc, (FormatError, SignatureError, TrustError)):
                self.penalise(peer, str(exc))
            return
        if result.outcome is Outcome.PUBLISHER_UPDATED:
            outcome.publishers += 1
            self.totals.publishers += 1
            self.emit(
                {
                    "event": "publisher",
                    "peer": peer.label,
                    "publisher": result.publisher,
                    "version": result.version,
                }
            )

    async def _fetch_bundle(
        self,
        peer: Peer,
        entry: Entry,
        states: Mapping[bytes, PublisherState],
        outcome: SyncOutcome,
        envelopes: asyncio.Semaphore,
    ) -> None:
        transfer = self.transfers.get(entry.digest)
        if transfer is None:
            async with envelopes, self.envelope_budget.hold() as hold:
                verified = await self._accept_envelope(peer, entry, states, outcome, hold)
            if verified is None:
                return
            missing = await self.storeio.missing_chunks(verified)
            try:  # refuse before fetching what could never be stored (a full disk)
                await self.storeio.check_free_space(
                    sum(r.size for r in missing), verified.manifest.name
                )
            except StoreError as exc:
                outcome.complete = False
                self.emit({"event": "refused", "peer": peer.label, "reason": str(exc)})
                return
            transfer = self.transfers.get(entry.digest)  # another peer may have begun it
            if transfer is None:
                transfer = self.transfers[entry.digest] = Transfer(
                    self, verified, entry.digest, missing
                )
        transfer.add_source(peer)
        result = await asyncio.shield(transfer.result)
        outcome.bytes += transfer.bytes_from.get(peer.key, 0)
        if result is None:
            if not transfer.plan.complete:
                outcome.complete = False  # try again later, from whoever has it
            return
        if result.outcome in (Outcome.IMPORTED, Outcome.REPLACED):
            outcome.bundles += 1
            if transfer.digest not in self._reported:
                if len(self._reported) > 100_000:
                    self._reported.clear()
                self._reported.add(transfer.digest)
                peer.fetched_bundles += 1
                self.totals.bundles += 1
                self.emit(
                    {
                        "event": "bundle",
                        "peer": peer.label,
                        "name": result.name,
                        "version": result.version,
                        "publisher": result.publisher,
                        "size": transfer.verified.manifest.size,
                        "replaced": result.replaced_version,
                    }
                )

    async def _accept_envelope(
        self,
        peer: Peer,
        entry: Entry,
        states: Mapping[bytes, PublisherState],
        outcome: SyncOutcome,
        hold: Hold,
    ) -> VerifiedManifest | None:
        assert peer.address is not None
        data = await self.client.envelope(peer.address, entry.digest, hold)
        try:
            envelope = await asyncio.to_thread(
                parse_envelope, data, f"an envelope from {peer.label}"
            )
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from None
        if hashlib.sha256(envelope.manifest_bytes).digest() != entry.digest:
            raise PeerMisbehaved(f"peer {peer.label} sent another envelope than it listed")
        try:
            accepted = await self.storeio.accept(envelope)
        except (FormatError, SignatureError, TrustError, RollbackError) as exc:
            outcome.refused += 1
            if not isinstance(exc, RollbackError) and await asyncio.to_thread(
                forged, envelope, states
            ):
                # The peer's fault, not the manifest's: an honest peer may offer the same
                # manifest hash with a good envelope, so nothing is remembered about it.
                self.penalise(peer, str(exc))
            else:
                self.refused(entry.digest, peer, str(exc))
            return None
        if isinstance(accepted, ImportResult):
            return None
        m = accepted.manifest
        if bundle_slot(m.publisher, m.name) != entry.slot or m.version != entry.version:
            raise PeerMisbehaved(
                f"peer {peer.label} listed a bundle under another name or version than its own"
            )
        return accepted

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "peers": [
                {
                    "peer": p.label,
                    "discovered": not p.manual,
                    "alive": p.alive,
                    "syncing": p.syncing,
                    "banned": p.banned(now),
                    "last_sync_seconds_ago": None
                    if p.last_sync is None
                    else round(now - p.last_sync, 1),
                    "bundles": p.fetched_bundles,
                    "bytes": p.fetched_bytes,
                }
                for p in self.book.peers.values()
            ],
            "transfers": [t.status() for t in self.transfers.values()],
            "fetched": {
                "bundles": self.totals.bundles,
                "bytes": self.totals.bytes,
                "chunks": self.totals.chunks,
                "publishers": self.totals.publishers,
                "refused": self.totals.refused,
                "syncs": self.totals.syncs,
            },
        }
