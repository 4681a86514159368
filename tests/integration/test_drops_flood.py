"""A flood of drops (issue 18, "Abuse"): a hostile peer lists 10,000 junk drops, and a few
validly stamped ones, to a real node (in process, with the reader on its server and a
small drops quota). The node must store nothing invalid, stay within its quota, keep
answering its reader all along, penalise (and ban) the peer, and still take an honest
peer's drop afterwards.

The junk is made from a recipe per index (bytes regenerated when asked for), so the
test never holds 160 MiB of it; only the valid drops cost a stamp (about 0.2 s each).
The form's own flood (the rate limit per address) is in test_reader_reports.py."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from dropkit import drop_id, expired_drop, make_drop

from meshdrop.core import codec
from meshdrop.core.drops import SIZE_CLASSES, STAMP_BYTES, check_drop
from meshdrop.errors import DropStampError
from meshdrop.reader import install_reader
from meshdrop.store.drops import DropStore, StoredDrop
from meshdrop.store.store import Store
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.client import ClientLimits
from meshdrop.transports.lan.dropsync import MAX_LISTED, DropTotals, encode_held, parse_held
from meshdrop.transports.lan.events import Event
from meshdrop.transports.lan.node import Node, NodeConfig
from meshdrop.transports.lan.protocol import Hello

WAIT = 40.0  # a bound, not a timing claim: the flood takes seconds on a busy machine
STOP_SECONDS = 60.0  # a bound on each stop, not a timing claim
FAST = ClientLimits(connect_timeout=2.0, read_timeout=5.0, min_rate=64 * 1024, min_time=5.0)
SMALL = SIZE_CLASSES[0]
JUNK = 10_000
ROUNDS = 3  # a listing holds at most 4,096 drops: the junk comes over three syncs
VALID = 20
QUOTA = 8 * SMALL
# The junk, in turn by index; "expired" is listed with its past expiry, so never asked.
KINDS = ("garbage", "bad version", "unstamped", "short", "another than asked", "expired", "nil")
REFUSED_KINDS = {"garbage", "bad version", "unstamped", "short", "another than asked"}


def noise(index: int, size: int) -> bytes:
    return hashlib.shake_256(b"flood %d" % index).digest(size)


@dataclass
class Junk:
    """The recipe of every junk drop, and its listing: ``kind[i]`` says how drop ``i`` is
    made; ``listed[i]`` is what the peer lists for it ([id, size, expiry])."""

    template: bytes  # a valid drop whose body the unstamped junk reuses
    kinds: list[str] = field(default_factory=list)
    listed: list[list[Any]] = field(default_factory=list)

    def make(self) -> None:
        now = int(time.time())
        alive = now + 86_400
        for index in range(JUNK):
            kind = KINDS[index % len(KINDS)]
            blob = self.blob(index, kind)
            if kind == "unstamped" and blob is not None:  # a nonce that stamps it: valid
                try:
                    check_drop(blob, now)
                except DropStampError:
                    pass
                else:
                    kind, blob = "garbage", self.blob(index, "garbage")
            ident = os.urandom(32)
            if blob is not None and kind != "another than asked":
                ident = drop_id(blob)
            expiry = now - 60 if kind == "expired" else alive
            self.kinds.append(kind)
            self.listed.append([ident, SMALL, expiry])

    def blob(self, index: int, kind: str) -> bytes | None:
        if kind == "garbage":
            return b"\x01" + noise(index, SMALL - 1)  # version 1: reaches the stamp check
        if kind == "bad version":
            return b"\x07" + noise(index, SMALL - 1)
        if kind == "unstamped":
            return self.template[:-STAMP_BYTES] + index.to_bytes(STAMP_BYTES, "big")
        if kind == "short":
            return b"\x01" + noise(index, SMALL - 2 - index % 97)  # no drop size
        if kind == "another than asked":
            return b"\x01" + noise(index, SMALL - 1)  # served under a random id
        return None  # "expired" (never asked) and "nil" (answered nil)

    def served(self, index: int) -> bytes | None:
        return self.blob(index, self.kinds[index])


@dataclass
class FloodPeer:
    """A peer whose every hello says something changed, whose listing of drops is the next
    of ``rounds`` each time it is asked, and which serves junk (or a valid drop) by id."""

    rounds: list[list[list[Any]]]
    serve: Callable[[bytes], bytes | None]
    node: bytes = b"flooder!"
    asked: Counter[bytes] = field(default_factory=Counter)
    listings: int = 0
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/peer/v1/hello", self.hello)
        app.router.add_get("/peer/v1/publishers", self.publishers)
        app.router.add_get("/peer/v1/drops", self.held)
        app.router.add_post("/peer/v1/drops", self.drops)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def hello(self, request: web.Request) -> web.Response:
        hello = Hello(protocol.PROTOCOL_VERSION, os.urandom(8), self.node)
        return web.Response(body=protocol.encode_hello(hello))

    async def publishers(self, request: web.Request) -> web.Response:
        return web.Response(body=protocol.encode_held_publishers(os.urandom(16), []))

    async def held(self, request: web.Request) -> web.Response:
        listing = self.rounds[self.listings] if self.listings < len(self.rounds) else []
        self.listings += 1
        return web.Response(body=codec.pack(listing))

    async def drops(self, request: web.Request) -> web.Response:
        asked = protocol.parse_digests(await request.read(), 64, "")
        self.asked.update(asked)
        return web.Response(body=codec.pack([self.serve(i) for i in asked]))


class ReaderProbe:
    """Fetches the reader's home page over and over on a thread until stopped; every
    answer's status is kept (an error is kept as 0)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                with urllib.request.urlopen(self.url, timeout=60) as answer:
                    answer.read()
                    self.statuses.append(answer.status)
            except OSError:
                self.statuses.append(0)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(90)
        return self.statuses


def make_home(home: Path) -> None:
    Store(home).close()
    DropStore(home)


async def wait_for(check: Callable[[], Any], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def stop_within(seconds: float, *stops: Callable[[], Awaitable[None]]) -> None:
    """Each stop in turn, bounded: one that does not return fails the test with the
    stacks of what was still pending (a full suite run once hung here under load, the
    loop idle, with no trace of what it waited for)."""
    for stop in stops:
        try:
            async with asyncio.timeout(seconds):
                await stop()
        except TimeoutError:
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.print_stack()
            raise AssertionError(
                f"{stop.__qualname__} did not return in {seconds} s; pending: {pending}"
            ) from None


def test_a_flood_of_10000_junk_drops_stays_within_the_quota_and_the_reader_answers(
    tmp_path: Path,
) -> None:
    valid = [make_drop(f"flooded {n}") for n in range(VALID)]
    lying = [expired_drop() for _ in range(2)]  # stamped, past expiry, listed as alive
    honest_drop = make_drop("the honest one")
    earlier_drop = make_drop("held before the flood")
    junk = Junk(template=valid[0])
    junk.make()
    by_id = {entry[0]: index for index, entry in enumerate(junk.listed)}
    alive = int(time.time()) + 86_400
    extra = [[drop_id(b), SMALL, int.from_bytes(b[1:9], "big")] for b in valid]
    extra += [[drop_id(b), SMALL, alive] for b in lying]
    whole = {drop_id(b): b for b in valid + lying}
    listing = junk.listed + extra
    step = -(-len(listing) // ROUNDS)
    mixed = [listing[i] for i in sorted(range(len(listing)), key=lambda i: (i * 7919) % 10007)]
    rounds = [mixed[start : start + step] for start in range(0, len(mixed), step)]

    def serve(ident: bytes) -> bytes | None:
        if ident in whole:
            return whole[ident]
        index = by_id.get(ident)
        return None if index is None else junk.served(index)

    hostile = FloodPeer(rounds, serve)
    honest = FloodPeer([], {drop_id(honest_drop): honest_drop}.get, node=b"honest!!")
    events: list[Event] = []
    b_home = tmp_path / "b"
    make_home(b_home)
    DropStore(b_home, quota=QUOTA).add(earlier_drop, int(time.time()))
    statuses: list[int] = []
    totals: list[DropTotals] = []  # the node's, kept after it stopped

    async def run() -> None:
        await hostile.start()
        await honest.start()
        config = NodeConfig(
            home=b_home,
            bind="127.0.0.1",
            port=0,
            peers=(("127.0.0.1", hostile.port), ("127.0.0.1", honest.port)),
            discovery=False,
            client=FAST,
            probe_interval=0.5,
            drops_quota=QUOTA,
        )
        b = Node(config, events.append, hook=with_reader(b_home))
        await b.start()
        probe = ReaderProbe(f"http://127.0.0.1:{b.port}/")
        try:
            assert b.drops is not None
            drops = b.drops
            totals.append(drops.totals)
            refusals = sum(1 for kind in junk.kinds if kind in REFUSED_KINDS)
            await wait_for(lambda: drops.totals.refused >= refusals, "every junk drop refused")
            await wait_for(lambda: drops.totals.fetched >= VALID, "every valid drop taken")
            await wait_for(lambda: banned(events, hostile.port), "the flooder banned")
            statuses.extend(await asyncio.to_thread(probe.stop))
            # An honest peer's drop, once the flood is over, still comes (and, newest, stays).
            honest.rounds = [[[drop_id(honest_drop), SMALL, alive]]]
            honest.listings = 0
            await wait_for(lambda: honest.asked, "the honest drop asked for")
            await wait_for(lambda: drops.totals.fetched > VALID, "the honest drop")
        finally:  # shown by pytest if the test failed
            print("listings", hostile.listings, "asked", len(hostile.asked), totals)
            print([e for e in events if e["event"] != "refused"][:40])
            await asyncio.to_thread(probe.stop)  # not on the loop: the reader answers on it
            await stop_within(STOP_SECONDS, b.stop, honest.stop, hostile.stop)

    asyncio.run(run())

    assert statuses and all(status == 200 for status in statuses), Counter(statuses)
    refused = [e for e in events if e["event"] == "refused"]
    assert len(refused) == sum(1 for kind in junk.kinds if kind in REFUSED_KINDS)
    assert totals[0].fetched == VALID + 1  # the valid ones once each, then the honest one
    held = DropStore(b_home).held()
    assert sum(d.size for d in held) <= QUOTA
    honest_ids = {drop_id(honest_drop), drop_id(earlier_drop)}
    assert {d.drop_id for d in held} <= {drop_id(b) for b in valid} | honest_ids
    # The flooder's valid drops evicted its own, not the drop held before nor the honest one.
    assert honest_ids <= {d.drop_id for d in held}
    names = {p.name for p in (b_home / "drops").iterdir()}
    assert {n for n in names if len(n) == 64} == {d.drop_id.hex() for d in held}
    assert names - {d.drop_id.hex() for d in held} <= {"acked", "receipts", "drops.lock"}
    # Junk listed as expired was never asked for; nothing was asked for twice.
    expired = [e[0] for e, kind in zip(junk.listed, junk.kinds, strict=True) if kind == "expired"]
    assert not any(hostile.asked[ident] for ident in expired)
    assert max(hostile.asked.values()) == 1
    assert hostile.listings >= ROUNDS


def with_reader(home: Path) -> Callable[[web.Application], None]:
    """The node's hook that serves the reader on its server, as `meshdrop node` does."""

    def hook(app: web.Application) -> None:
        install_reader(app, home)

    return hook


def banned(events: list[Event], port: int) -> bool:
    label = f"127.0.0.1:{port}"
    return any(e["event"] == "bad-peer" and e["peer"] == label and e["banned"] for e in events)


def test_a_full_listing_of_the_smallest_drops_is_not_taken_for_a_flood() -> None:
    """A node whose quota is full of 16 KiB drops lists 4,096 of them: its peers must
    read that list, not penalise it (before the fix, over 3,072 entries were refused)."""
    held = [StoredDrop(os.urandom(32), SMALL, 2**40, 0) for _ in range(MAX_LISTED)]
    assert [d.drop_id for d in parse_held(encode_held(held))] == [d.drop_id for d in held]
