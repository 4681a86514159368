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
import hashlib
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from meshdrop.core.bundle import Envelope, parse_envelope
from meshdrop.core.inventory import Entry, Reconciler, decide_wants, offered_slot
from meshdrop.core.keys import Domain, verify
from meshdrop.core.trust import PublisherState
from meshdrop.core.verify import VerifiedManifest, signing_publishers
from meshdrop.errors import (
    FormatError,
    MeshdropError,
    RollbackError,
    SignatureError,
    StoreError,
    TrustError,
)
from meshdrop.store.models import ImportResult, Outcome
from meshdrop.store.store import IngestHold
from meshdrop.transports.lan.buffers import ByteBudget, ChunkBuffers, Hold
from meshdrop.transports.lan.client import PeerClient
from meshdrop.transports.lan.errors import PeerMisbehaved, PeerUnreachable
from meshdrop.transports.lan.events import (
    BadPeerEvent,
    BundleEvent,
    Emit,
    ErrorEvent,
    PublisherEvent,
    RefusedEvent,
    SyncEvent,
    emit_withdrawals,
)
from meshdrop.transports.lan.groupcommit import GroupCommit
from meshdrop.transports.lan.liveness import Liveness, peer_status
from meshdrop.transports.lan.peers import SYNC_OFFENCE, Peer, PeerBook, Refusals, Verdict
from meshdrop.transports.lan.protocol import MAX_SCOPE, InventoryRequest
from meshdrop.transports.lan.storeio import StoreIO
from meshdrop.transports.lan.transfer import SyncLimits, Totals, Transfer

T = TypeVar("T")


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
        self.holds: dict[bytes, IngestHold] = {}  # each transfer's hold of the ingest lock
        self.refusals = Refusals()
        self.totals = Totals()
        self.own_digest = b""
        self.trust_digest = b""
        self._wake = asyncio.Event()
        self.liveness = Liveness(client, book, emit, self.wake)
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
            changed = bool(self.own_digest) and snap.inventory.digest != self.own_digest
            self.own_digest, self.trust_digest = snap.inventory.digest, snap.trust_digest
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
        for hold in self.holds.values():
            hold.release()
        self.holds.clear()

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
            hold = self.holds.pop(transfer.digest, None)
            if hold is not None:
                hold.release()

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
        scope = tuple(sorted(snap.states))[:MAX_SCOPE]
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
                PublisherEvent(
                    event="publisher",
                    peer=peer.label,
                    publisher=result.publisher,
                    version=result.version,
                )
            )
            emit_withdrawals(self.emit, result.withdrawn, peer.label)

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
            # Held until the transfer ends, as every ingest holds it: fsck --repair waits.
            ingest = await self.storeio.hold_ingest()
            try:
                missing = await self.storeio.missing_chunks(verified)
                try:  # refuse before fetching what could never be stored (a full disk)
                    await self.storeio.check_free_space(
                        sum(r.size for r in missing), verified.manifest.name
                    )
                except StoreError as exc:
                    outcome.complete = False
                    self.emit(RefusedEvent(event="refused", peer=peer.label, reason=str(exc)))
                    return
                transfer = self.transfers.get(entry.digest)  # another peer may have begun it
                if transfer is None:
                    transfer = self.transfers[entry.digest] = Transfer(
                        self, verified, entry.digest, missing
                    )
                    self.holds[entry.digest] = ingest
            finally:
                if self.holds.get(entry.digest) is not ingest:
                    ingest.release()
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
            raise PeerMisbehaved(str(exc)) from exc
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
        slot = offered_slot(m.publisher, m.name, entry.partial)
        if slot != entry.slot or m.version != entry.version:
            raise PeerMisbehaved(
                f"peer {peer.label} listed a bundle under another name or version than its own"
            )
        return accepted

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
