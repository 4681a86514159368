"""The sync loop: probe peers, walk their inventories, fetch what this node wants.

The decisions are pure and live elsewhere: which peers to probe and sync with
(peers.py), what differs between two inventories and what of it to fetch
(core/inventory.py), the messages (protocol.py). This module does the I/O around them.
Every bundle goes through the store's one ingest path: its envelope is verified
(``accept``) before a byte of data is asked for, then one ``Transfer`` (transfer.py) per
bundle, shared by every peer that offers it, fetches, stores and commits its chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from meshdrop.core.inventory import Entry, Reconciler, decide_wants
from meshdrop.core.manifest import ChunkRef
from meshdrop.core.trust import PublisherState
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import MeshdropError
from meshdrop.store.models import Outcome
from meshdrop.transports.lan.batches import ChunkBatcher, EnvelopeBatcher
from meshdrop.transports.lan.buffers import ByteBudget, ChunkBuffers
from meshdrop.transports.lan.client import PeerClient
from meshdrop.transports.lan.coalesce import Coalescer
from meshdrop.transports.lan.dropsync import DropService
from meshdrop.transports.lan.errors import PeerMisbehaved, PeerUnreachable
from meshdrop.transports.lan.events import (
    BadPeerEvent,
    BundleEvent,
    Emit,
    ErrorEvent,
    RefusedEvent,
    SyncEvent,
)
from meshdrop.transports.lan.groupcommit import GroupCommit
from meshdrop.transports.lan.liveness import Liveness, peer_status
from meshdrop.transports.lan.offers import SyncOutcome, accept_envelope, fetch_publisher
from meshdrop.transports.lan.peers import SYNC_OFFENCE, Peer, PeerBook, Refusals, Verdict
from meshdrop.transports.lan.protocol import MAX_SCOPE, Address, InventoryRequest
from meshdrop.transports.lan.sharedhold import SharedHold
from meshdrop.transports.lan.storeio import Checked, StoreIO
from meshdrop.transports.lan.transfer import SyncLimits, Totals, Transfer

T = TypeVar("T")

HANDOFF_ITEMS = 64  # envelopes checked, or chunks stored, in one store thread hand-off
HANDOFF_BYTES = 1024 * 1024  # chunks stored in one hand-off, unless one alone is bigger


def _chunk_size(chunk: tuple[ChunkRef, bytes | memoryview]) -> int:
    return chunk[0].size


class SyncEngine:
    def __init__(
        self,
        storeio: StoreIO,
        client: PeerClient,
        book: PeerBook,
        emit: Emit,
        limits: SyncLimits = SyncLimits(),  # noqa: B008 (frozen: one shared default is safe)
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
        self._batchers: dict[Address, tuple[EnvelopeBatcher, ChunkBatcher]] = {}
        # The ingest lock, held while any transfer runs (or its envelope is checked).
        self.hold = SharedHold(storeio.hold_ingest)
        self.holders: set[bytes] = set()  # the transfers that hold it
        # Small bundles' envelopes checked, and their chunks stored, many per hand-off.
        self.offer_checks = Coalescer(storeio.check_offers, self.keep_task, HANDOFF_ITEMS)
        self.chunk_stager = Coalescer(
            storeio.stage_chunks, self.keep_task, HANDOFF_ITEMS, _chunk_size, HANDOFF_BYTES
        )
        self.refusals = Refusals()
        self.totals = Totals()
        self.own_digest = b""  # as advertised (salted): never equal to a peer's
        self.trust_digest = b""
        self._wake = asyncio.Event()
        self.liveness = Liveness(client, book, emit, self.wake)
        self._tasks: set[asyncio.Task[None]] = set()
        # Storing, publishing and committing: never cancelled, waited for at a stop.
        self.keep: set[asyncio.Task[Any]] = set()
        self._syncing = 0
        self._reported: set[bytes] = set()
        self.drops: DropService | None = None  # pulled after bundles (dropsync.py)

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
            advertised = self.storeio.advertised_digest(snap.inventory)
            changed = bool(self.own_digest) and advertised != self.own_digest
            self.own_digest, self.trust_digest = advertised, snap.trust_digest
            now = time.monotonic()
            self.liveness.run_due(now, self.own_digest, changed)
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
        await self.liveness.close()
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
        self.hold.close()
        self.holders.clear()
        for batchers in self._batchers.values():
            for batcher in batchers:
                await batcher.close()

    def penalise(self, peer: Peer, reason: str) -> None:
        """A bad answer. Those of one transfer in one sync (the worker calling this is one
        of its tasks) are one offence, and so are the rest of the sync's."""
        task = asyncio.current_task()
        offence = next((d for d, t in self.transfers.items() if task in t.tasks), SYNC_OFFENCE)
        verdict = self.book.penalise(peer, time.monotonic(), offence)
        if verdict is not Verdict.IGNORED:
            banned = verdict is Verdict.BANNED
            self.emit(BadPeerEvent(event="bad-peer", peer=peer.label, reason=reason, banned=banned))

    def refused(self, digest: bytes, peer: Peer | None, reason: str) -> None:
        self.refusals.add(digest, time.monotonic())
        self.totals.refused += 1
        event = RefusedEvent(event="refused", reason=reason)
        if peer is not None:
            event["peer"] = peer.label
        self.emit(event)

    def transfer_ended(self, transfer: Transfer) -> None:
        if self.transfers.get(transfer.digest) is transfer:
            del self.transfers[transfer.digest]
            if transfer.digest in self.holders:
                self.holders.discard(transfer.digest)
                self.hold.release()

    async def _sync(self, peer: Peer) -> None:
        digest = peer.advertised or b""
        trust = self.trust_digest
        outcome = SyncOutcome()
        started = time.monotonic()
        try:
            await self._sync_with(peer, outcome)
            if self.drops is not None:
                await self.drops.pull(self, peer, outcome)
        except PeerMisbehaved as exc:
            outcome.complete = False
            self.penalise(peer, str(exc))
        except MeshdropError as exc:
            outcome.complete = False
            outcome.errors.append(str(exc))
        except Exception as exc:  # one failed sync must not stop the node
            outcome.complete = False
            self.emit(ErrorEvent(event="error", peer=peer.label, reason=repr(exc)))
        finally:
            self._syncing -= 1
            self.book.sync_done(peer, digest, trust, outcome.complete, time.monotonic())
            self.totals.syncs += 1
            self.wake()
        self.emit(
            SyncEvent(
                event="sync",
                peer=peer.label,
                bundles=outcome.bundles,
                publishers=outcome.publishers,
                refused=outcome.refused,
                bytes=outcome.bytes,
                complete=outcome.complete,
                seconds=round(time.monotonic() - started, 3),
            )
        )

    async def _sync_with(self, peer: Peer, outcome: SyncOutcome) -> None:
        address = peer.address
        if address is None:
            raise PeerUnreachable(f"peer {peer.label} has no working address")
        snap = await self.storeio.snapshot()
        # Asked of every peer, even by a node that trusts no one: the question says nothing.
        held = await self.client.held_publishers(address)
        # Only what both trust is named to the peer: one that holds nothing learns nothing.
        scope = (await asyncio.to_thread(held.of, snap.states))[:MAX_SCOPE]
        if not scope:
            return
        walk = Reconciler(snap.inventory)
        while not walk.done:
            request = InventoryRequest(scope, tuple(walk.next_prefixes()))
            answer = await self.client.inventory(address, request)
            # Pure, but O(inventory) at first.
            await asyncio.to_thread(walk.feed, answer.scope, answer.nodes)
        wants = decide_wants(
            walk.offered,
            snap.known_versions,
            snap.publisher_slots,
            self.refusals.current(time.monotonic()),
        )
        for publisher, entry in wants.publishers:
            await fetch_publisher(self, peer, address, publisher, entry, outcome)
        slots = asyncio.Semaphore(self.limits.small_bundles_per_peer)
        big = asyncio.Semaphore(self.limits.bundles_per_peer)  # of those, not small ones
        # Fewer envelopes at once than bundles: an envelope may be 24 MiB of whatever the
        # peer sends until it is checked; an accepted one is a trusted publisher's.
        envelopes = asyncio.Semaphore(self.limits.envelopes_per_peer)

        async def one(entry: Entry) -> None:
            async with slots:
                await self._fetch_bundle(peer, entry, snap.states, outcome, envelopes, big)

        if not wants.bundles:
            return
        await self.hold.acquire()  # once for all: each bundle's own use then never waits
        try:
            results = await asyncio.gather(*(one(e) for e in wants.bundles), return_exceptions=True)
        finally:
            self.hold.release()
        for result in results:
            if isinstance(result, PeerMisbehaved):
                outcome.complete = False
                self.penalise(peer, str(result))
            elif isinstance(result, MeshdropError):
                outcome.complete = False
                outcome.errors.append(str(result))
            elif isinstance(result, BaseException):
                raise result

    async def _fetch_bundle(
        self,
        peer: Peer,
        entry: Entry,
        states: Mapping[bytes, PublisherState],
        outcome: SyncOutcome,
        envelopes: asyncio.Semaphore,
        big: asyncio.Semaphore,
    ) -> None:
        transfer = self.transfers.get(entry.digest)
        if transfer is None:
            # Held from before the missing chunks are counted until the transfer ends, as
            # every ingest holds it: fsck --repair waits.
            await self.hold.acquire()
            handed = False  # to the transfer, which releases it when it ends
            try:
                checked = await self._envelope(peer, entry, states, outcome, envelopes)
                if checked is None:
                    return
                verified = checked.accepted
                assert isinstance(verified, VerifiedManifest)
                if checked.no_room is not None:  # refused before fetching (a full disk)
                    outcome.complete = False
                    reason = str(checked.no_room)
                    self.emit(RefusedEvent(event="refused", peer=peer.label, reason=reason))
                    return
                transfer = self.transfers.get(entry.digest)  # another peer may have begun it
                if transfer is None:
                    transfer = self.transfers[entry.digest] = Transfer(
                        self, verified, entry.digest, list(checked.missing)
                    )
                    self.holders.add(entry.digest)
                    handed = True
            finally:
                if not handed:
                    self.hold.release()
        async with contextlib.nullcontext() if transfer.small else big:
            transfer.add_source(peer, entry.partial)
            result = await asyncio.shield(transfer.result)
        outcome.bytes += transfer.bytes_from.get(peer.key, 0)
        if result is None:
            if not transfer.drained(peer):
                outcome.complete = False  # try again later, from whoever has it
            return
        delivered = transfer.bytes_from  # credit the peer that sent most of it, not any
        if delivered and delivered.get(peer.key, 0) < max(delivered.values()):
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
                    BundleEvent(
                        event="bundle",
                        peer=peer.label,
                        name=result.name,
                        version=result.version,
                        publisher=result.publisher,
                        size=transfer.verified.manifest.size,
                        replaced=result.replaced_version,
                    )
                )

    async def _envelope(
        self,
        peer: Peer,
        entry: Entry,
        states: Mapping[bytes, PublisherState],
        outcome: SyncOutcome,
        envelopes: asyncio.Semaphore,
    ) -> Checked | None:
        """``entry``'s envelope, checked (offers.py): asked for in a batch with the other
        bundles' (batches.py), or alone if it did not fit in one."""
        assert peer.address is not None
        data = await self.batchers(peer.address)[0].envelope(entry.digest)
        if data is not None:
            return await accept_envelope(self, peer, entry, states, outcome, data)
        async with envelopes, self.envelope_budget.hold() as hold:
            data = await self.client.envelope(peer.address, entry.digest, hold)
            return await accept_envelope(self, peer, entry, states, outcome, data)

    def batchers(self, address: Address) -> tuple[EnvelopeBatcher, ChunkBatcher]:
        """The batches of requests to the peer at ``address`` (batches.py)."""
        found = self._batchers.get(address)
        if found is None:
            if len(self._batchers) > 256:  # forget idle peers'
                self._batchers = {a: b for a, b in self._batchers.items() if b[0].busy}
            envelopes = EnvelopeBatcher(self.client, address, self.envelope_budget)
            found = self._batchers[address] = (envelopes, ChunkBatcher(self.client, address))
        return found

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "peers": [peer_status(p, now) for p in self.book.peers.values()],
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
