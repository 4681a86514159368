"""Drops over the LAN (docs/PROTOCOL.md, "Drops"): the two peer API routes that serve the
drops this node holds, and the pull that fetches from a peer the drops this node lacks.

A drop is opaque to every node but its recipient's, so nothing here trusts a peer: what
a peer lists is only a hint of what to ask for, and every drop it sends goes through
the one ingest path for drops (``DropStore.add``: structure, size class, expiry, stamp,
quota, dedupe) exactly as one read from a stick or written by the reader does.

The messages are canonical msgpack (core/codec.py), parsed with caps:

- ``GET /peer/v1/drops`` answers ``[[id, size, expiry], ...]``, newest first, at most
  ``MAX_LISTED`` entries of at most ``DROPS_QUOTA`` bytes all told;
- ``POST /peer/v1/drops`` takes ``[id, ...]`` (1 to ``MAX_WANTED`` distinct ids) and
  answers one item per id, in the order asked: the drop's bytes, or nil (not held); the
  list stops before the first drop that would take the answer past ``MAX_BATCH_BYTES``
  (the first always goes, whatever its size).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshdrop.core import codec
from meshdrop.core.drops import MAX_DROP_BYTES, SIZE_CLASSES, drop_id
from meshdrop.errors import DropError, DropExpiredError, FormatError, MeshdropError
from meshdrop.store.drops import DROPS_QUOTA, DropStore, StoredDrop, from_peer
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.errors import PeerMisbehaved, PeerNotFound
from meshdrop.transports.lan.events import RefusedEvent
from meshdrop.transports.lan.protocol import Address, format_address

if TYPE_CHECKING:
    from meshdrop.transports.lan.engine import SyncEngine
    from meshdrop.transports.lan.offers import SyncOutcome
    from meshdrop.transports.lan.peers import Peer

ID_BYTES = 32
MAX_LISTED = DROPS_QUOTA // SIZE_CLASSES[0]  # 4096: a full quota of the smallest drops
MAX_LIST_BYTES = MAX_LISTED * 64 + 64  # an entry packs into at most 50 bytes
MAX_WANTED = 64  # ids in one request for drops
MAX_BATCH_BYTES = MAX_DROP_BYTES  # drops in one answer, all told (but always the first)
_FRAMING = 16  # msgpack's bytes around one drop in an answer, and some to spare
MAX_EXPIRY = 2**63 - 1
# Drops also arrive from other processes (an import, a stick, the reader's form): the
# folder's modification time is looked at every POLL seconds (one stat), and the drops
# held are listed again when it changed, or every FULL_LOOK seconds whatever it says.
POLL = 1.0
FULL_LOOK = 5.0
SWEEP_EVERY = 60.0  # seconds between removals of drops past their expiry
MAX_REMEMBERED = 100_000  # ids refused or found unwanted, remembered in this run


@dataclass(frozen=True)
class ListedDrop:
    """A drop as a peer lists it: a hint, checked only once its bytes arrive."""

    drop_id: bytes
    size: int
    expiry: int


def encode_held(held: Iterable[StoredDrop]) -> bytes:
    """What ``GET drops`` answers: the held drops in the order given (newest first), up
    to ``MAX_LISTED`` of them and ``DROPS_QUOTA`` bytes."""
    entries: list[codec.Value] = []
    total = 0
    for drop in held:
        if len(entries) >= MAX_LISTED or total + drop.size > DROPS_QUOTA:
            break
        total += drop.size
        entries.append([drop.drop_id, drop.size, drop.expiry])
    return codec.pack(entries)


def parse_held(data: bytes) -> list[ListedDrop]:
    what = "a peer's list of drops"
    # Items are counted in every list: one per entry, and the three inside each entry.
    limits = codec.Limits(
        max_bytes=MAX_LIST_BYTES, max_depth=2, max_items=MAX_LISTED * 4, max_bin=ID_BYTES
    )
    value = codec.unpack(data, limits, what)
    if not isinstance(value, list) or len(value) > MAX_LISTED:
        raise FormatError(f"{what} is not a list of at most {MAX_LISTED} drops")
    listed, seen, total = [], set(), 0
    for item in value:
        if not isinstance(item, list) or len(item) != 3:
            raise FormatError(f"{what} has a malformed entry")
        ident, size, expiry = item
        if not isinstance(ident, bytes) or len(ident) != ID_BYTES or ident in seen:
            raise FormatError(f"{what} has a malformed or repeated drop id")
        if isinstance(size, bool) or size not in SIZE_CLASSES:
            raise FormatError(f"{what} has a drop whose size is not a drop size")
        if isinstance(expiry, bool) or not isinstance(expiry, int) or not 0 <= expiry <= MAX_EXPIRY:
            raise FormatError(f"{what} has a drop with a malformed expiry")
        total += size
        if total > DROPS_QUOTA:
            raise FormatError(f"{what} lists more than {DROPS_QUOTA} bytes of drops")
        seen.add(ident)
        listed.append(ListedDrop(ident, size, expiry))
    return listed


def parse_wanted(data: bytes) -> tuple[bytes, ...]:
    """A ``POST drops`` request: 1 to ``MAX_WANTED`` distinct 32-byte ids."""
    return protocol.parse_digests(data, MAX_WANTED, "a request for drops")


def encode_batch(drops: Iterable[bytes | None]) -> bytes:
    return codec.pack(list(drops))


def parse_batch(data: bytes, asked: Sequence[ListedDrop]) -> list[bytes | None]:
    """The answer to a request for the ``asked`` drops: an item per drop, in order, each
    its bytes as sent (not yet checked) or None; fewer when the rest did not fit."""
    what = "a peer's batch of drops"
    limits = codec.Limits(
        max_bytes=answer_cap(asked), max_depth=1, max_items=len(asked), max_bin=MAX_DROP_BYTES
    )
    value = codec.unpack(data, limits, what)
    if not isinstance(value, list) or len(value) > len(asked):
        raise FormatError(f"{what} has more drops than were asked for")
    if not all(item is None or isinstance(item, bytes) for item in value):
        raise FormatError(f"{what} has an item that is neither a drop nor nil")
    return value


def answer_cap(asked: Sequence[ListedDrop]) -> int:
    """The most bytes an honest answer for ``asked`` can take: their listed sizes."""
    return sum(d.size for d in asked) + _FRAMING * (len(asked) + 1)


def batches(wanted: Sequence[ListedDrop]) -> list[list[ListedDrop]]:
    """``wanted`` in requests of at most ``MAX_WANTED`` ids and ``MAX_BATCH_BYTES``."""
    out: list[list[ListedDrop]] = []
    current: list[ListedDrop] = []
    weight = 0
    for drop in wanted:
        if current and (len(current) >= MAX_WANTED or weight + drop.size > MAX_BATCH_BYTES):
            out.append(current)
            current, weight = [], 0
        current.append(drop)
        weight += drop.size
    if current:
        out.append(current)
    return out


def drops_mark(held: Iterable[StoredDrop]) -> bytes:
    """What the node folds into its advertised digest, so that a peer syncs again when
    the drops held change: empty when none are (the digest is then as without drops)."""
    ids = sorted(drop.drop_id for drop in held)
    return hashlib.sha256(b"".join(ids)).digest() if ids else b""


@dataclass
class DropTotals:
    fetched: int = 0
    refused: int = 0
    served: int = 0


@dataclass
class DropService:
    """The node's drops on the LAN: serving them, pulling them, and keeping the mark
    that is advertised. ``drops`` is used from worker threads, one add at a time."""

    drops: DropStore
    clock: Callable[[], float] = time.time
    totals: DropTotals = field(default_factory=DropTotals)
    mark: bytes = b""
    on_change: Callable[[], None] | None = None  # told when the mark changed
    _unwanted: set[bytes] = field(default_factory=set)  # refused, or not taken by add
    _adding: asyncio.Lock = field(default_factory=asyncio.Lock)

    def now(self) -> int:
        return int(self.clock())

    # Serving

    async def held_answer(self) -> bytes:
        return encode_held(await asyncio.to_thread(self.drops.held))

    async def batch_answer(self, asked: Sequence[bytes]) -> bytes:
        def read() -> list[bytes | None]:
            found: list[bytes | None] = []
            total = 0
            for ident in asked:
                blob = self.drops.read(ident)
                size = len(blob) if blob is not None else 0
                if found and total + size > MAX_BATCH_BYTES:
                    break
                total += size
                found.append(blob)
            return found

        found = await asyncio.to_thread(read)
        self.totals.served += sum(1 for blob in found if blob is not None)
        return encode_batch(found)

    # The advertised mark, and the expiry sweep

    async def refresh(self) -> None:
        mark = drops_mark(await asyncio.to_thread(self.drops.held))
        if mark != self.mark:
            self.mark = mark
            if self.on_change is not None:
                self.on_change()

    async def watch(self) -> None:
        """Keep the mark current (drops also arrive from the reader, an import, a stick)
        and remove expired drops, until cancelled."""
        swept = looked = 0.0
        stamp: int | None = None
        while True:
            try:
                if time.monotonic() - swept >= SWEEP_EVERY:
                    swept = time.monotonic()
                    await asyncio.to_thread(self.drops.sweep, self.now())
                changed = await asyncio.to_thread(self.drops.folder_stamp)
                if changed != stamp or time.monotonic() - looked >= FULL_LOOK:
                    stamp, looked = changed, time.monotonic()  # before listing: none missed
                    await self.refresh()
            except MeshdropError:
                stamp = None  # the disk, for now: the next look tries again
            await asyncio.sleep(POLL)

    # Pulling

    async def pull(self, engine: SyncEngine, peer: Peer, outcome: SyncOutcome) -> None:
        """Fetch from ``peer`` the drops it lists that this node lacks, after its bundles.
        A bad drop is refused on its own (and penalises the peer once per sync); the
        others still come. A peer without the route (404) has no drops to give."""
        address = peer.address
        if address is None:
            return
        try:
            data = await engine.client.request(address, "drops", MAX_LIST_BYTES)
        except PeerNotFound:
            return
        try:
            listed = await asyncio.to_thread(parse_held, data)
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from exc
        now = self.now()
        held = {d.drop_id for d in await asyncio.to_thread(self.drops.held)}
        wanted = [
            d
            for d in listed
            if d.expiry > now
            and d.size <= self.drops.quota
            and d.drop_id not in held
            and d.drop_id not in self._unwanted
        ]
        for batch in batches(wanted):
            await self._fetch(engine, peer, address, batch, outcome)
        await self.refresh()

    async def _fetch(
        self,
        engine: SyncEngine,
        peer: Peer,
        address: Address,
        batch: list[ListedDrop],
        outcome: SyncOutcome,
    ) -> None:
        try:
            answers = await self._ask(engine, address, batch)
        except PeerMisbehaved as exc:
            engine.penalise(peer, str(exc))
            if len(batch) == 1:
                self._remember(batch[0].drop_id)
                return
            # One bad drop spoils the answer: ask for each alone, so the rest still come.
            for drop in batch:
                await self._fetch(engine, peer, address, [drop], outcome)
            return
        for listed, blob in zip(batch, answers, strict=False):
            if blob is not None:
                await self._take(engine, peer, address, listed, blob, outcome)
        if len(batch) > 1:  # the rest did not fit in the answer: each alone
            for listed in batch[len(answers) :]:
                await self._fetch(engine, peer, address, [listed], outcome)

    async def _ask(
        self, engine: SyncEngine, address: Address, batch: list[ListedDrop]
    ) -> list[bytes | None]:
        body = protocol.encode_digests(d.drop_id for d in batch)
        try:
            data = await engine.client.request(address, "drops", answer_cap(batch), body=body)
        except PeerNotFound:
            return []
        try:
            return await asyncio.to_thread(parse_batch, data, batch)
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from exc

    async def _take(
        self,
        engine: SyncEngine,
        peer: Peer,
        address: Address,
        listed: ListedDrop,
        blob: bytes,
        outcome: SyncOutcome,
    ) -> None:
        if drop_id(blob) != listed.drop_id:
            self._refuse(engine, peer, f"peer {peer.label} sent another drop than the one asked")
            return
        try:
            async with self._adding:
                origin = from_peer(format_address(address))
                stored = await asyncio.to_thread(self.drops.add, blob, self.now(), origin)
        except DropExpiredError:
            self._remember(listed.drop_id)  # expired on the way: no fault of the peer's
            return
        except DropError as exc:
            self._remember(listed.drop_id)
            self._refuse(engine, peer, f"a drop from peer {peer.label}: {exc}")
            return
        except MeshdropError as exc:  # this node's disk: try again at the next sync
            outcome.complete = False
            outcome.errors.append(str(exc))
            return
        # Either way not fetched again in this run: held meanwhile or acknowledged, or taken
        # now (if it is ever not held again, the quota evicted it or it was acknowledged or
        # expired, and fetching it anew would only evict another).
        self._remember(listed.drop_id)
        if stored is not None:
            self.totals.fetched += 1
            outcome.bytes += len(blob)

    def _refuse(self, engine: SyncEngine, peer: Peer, reason: str) -> None:
        self.totals.refused += 1
        engine.penalise(peer, reason)
        engine.emit(RefusedEvent(event="refused", peer=peer.label, reason=reason))

    def _remember(self, ident: bytes) -> None:
        if len(self._unwanted) >= MAX_REMEMBERED:
            self._unwanted.clear()
        self._unwanted.add(ident)
