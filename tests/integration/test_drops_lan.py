"""Drops (sealed reports) over the LAN (docs/PROTOCOL.md, "Drops"): real nodes on
127.0.0.1 pass them on; a node keeps within its quota, never asks for a drop past its
expiry, and refuses a hostile peer's bad drops one by one while the good ones still come."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from dropkit import (
    add_drops,
    drop_id,
    expired_drop,
    held_ids,
    make_drop,
    tampered,
    unstamped,
)
from lankit import Nodes, wait_until

from meshdrop.core import codec
from meshdrop.core.drops import MAX_DROP_BYTES
from meshdrop.store.drops import DropStore
from meshdrop.store.store import Store
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.client import ClientLimits
from meshdrop.transports.lan.events import Event
from meshdrop.transports.lan.node import Node, NodeConfig
from meshdrop.transports.lan.protocol import Hello

WAIT = 30.0
FAST = ClientLimits(connect_timeout=1.0, read_timeout=1.0, min_rate=256 * 1024, min_time=1.0)
GOOD = [make_drop(f"good {n}") for n in range(3)]
LATE = make_drop("good, and later")


def test_a_drop_added_on_a_reaches_b_over_the_lan(tmp_path: Path, nodes: Nodes) -> None:
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    add_drops(a_home, GOOD[0])
    a = nodes.start(a_home)
    nodes.start(b_home)
    wait_until(lambda: drop_id(GOOD[0]) in held_ids(b_home), what="the drop held before")
    add_drops(a_home, GOOD[1])  # while A runs: its mark changes, and B asks again
    wait_until(lambda: drop_id(GOOD[1]) in held_ids(b_home), what="the drop added later")
    assert held_ids(b_home) == held_ids(a_home) == {drop_id(GOOD[0]), drop_id(GOOD[1])}
    assert a.status()["drops"]["served"] >= 2
    for home in (a_home, b_home):
        assert DropStore(home).read(drop_id(GOOD[1])) == GOOD[1]


def in_process(home: Path, peer_port: int, events: list[Event], **config: Any) -> Node:
    """A node run in this process whose one peer is at ``peer_port``."""
    return Node(
        NodeConfig(
            home=home,
            bind="127.0.0.1",
            port=0,
            peers=(("127.0.0.1", peer_port),),
            discovery=False,
            client=FAST,
            probe_interval=0.5,
            **config,
        ),
        events.append,
    )


def make_home(home: Path) -> None:
    """A node's home, made before its event loop runs (nothing may block the loop)."""
    Store(home).close()
    DropStore(home)


async def wait_for(check: Callable[[], Any], what: str) -> Any:
    async with asyncio.timeout(WAIT):
        while not (value := check()):
            await asyncio.sleep(0.05)
    return value


def test_b_keeps_within_its_quota_what_a_holds(tmp_path: Path) -> None:
    add_drops(tmp_path / "a", *GOOD)
    make_home(tmp_path / "a")

    quota = 2 * len(GOOD[0])
    make_home(tmp_path / "b")

    async def run() -> None:
        a = Node(
            NodeConfig(home=tmp_path / "a", bind="127.0.0.1", port=0, discovery=False),
            lambda e: None,
        )
        await a.start()
        b = in_process(tmp_path / "b", a.port, [], drops_quota=quota)
        await b.start()
        try:
            assert b.drops is not None
            drops = b.drops
            await wait_for(lambda: drops.totals.fetched == len(GOOD), "all three fetched")
            held = await asyncio.to_thread(lambda: DropStore(tmp_path / "b").held())
            assert sum(d.size for d in held) <= quota and len(held) == 2
            # A new drop on A makes B pull again: it takes the new one only, never the one
            # its quota evicted (fetching that anew would only evict another).
            await asyncio.to_thread(add_drops, tmp_path / "a", LATE)
            await wait_for(lambda: drops.totals.fetched > len(GOOD), "the new drop")
            await asyncio.sleep(2.0)  # another round of pulls, had there been a reason for one
            assert drops.totals.fetched == len(GOOD) + 1
            assert drop_id(LATE) in await asyncio.to_thread(held_ids, tmp_path / "b")
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(run())
    assert held_ids(tmp_path / "a") == {drop_id(blob) for blob in [*GOOD, LATE]}  # A keeps all


@dataclass
class DropPeer:
    """A peer that lists ``listed`` (id, size, expiry) and answers a request for drops
    with ``served[id]`` (or nil); it records every id it was asked for."""

    listed: list[list[Any]]
    served: dict[bytes, bytes]
    asked: list[bytes] = field(default_factory=list)
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
        hello = Hello(protocol.PROTOCOL_VERSION, os.urandom(8), b"hostile!")
        return web.Response(body=protocol.encode_hello(hello))

    async def publishers(self, request: web.Request) -> web.Response:
        return web.Response(body=protocol.encode_held_publishers(os.urandom(16), []))

    async def held(self, request: web.Request) -> web.Response:
        return web.Response(body=codec.pack(self.listed))

    async def drops(self, request: web.Request) -> web.Response:
        asked = protocol.parse_digests(await request.read(), 64, "")
        self.asked.extend(asked)
        return web.Response(body=codec.pack([self.served.get(i) for i in asked]))


def listing(blob: bytes, expiry: int | None = None) -> list[Any]:
    return [
        drop_id(blob),
        len(GOOD[0]),
        int.from_bytes(blob[1:9], "big") if expiry is None else expiry,
    ]


def bad_drop_case(kind: str) -> tuple[bytes, bytes]:
    """(the id the peer lists, the bytes it serves for it)."""
    good = GOOD[1]
    if kind == "tampered":
        bad = tampered(good)
        return drop_id(bad), bad
    if kind == "unstamped":
        bad = unstamped(good)
        return drop_id(bad), bad
    if kind == "oversized":
        return os.urandom(32), good + bytes(MAX_DROP_BYTES + 1 - len(good))
    assert kind == "another drop than asked"
    return os.urandom(32), GOOD[2]


def refused_or_bad_peer(event: Event) -> bool:
    return event["event"] in ("refused", "bad-peer")


@pytest.mark.parametrize("kind", ["tampered", "unstamped", "oversized", "another drop than asked"])
def test_a_hostile_peer_serving_a_bad_drop_is_refused_and_the_good_drop_still_comes(
    kind: str, tmp_path: Path
) -> None:
    bad_id, bad_bytes = bad_drop_case(kind)
    good = GOOD[0]
    peer = DropPeer(
        listed=[[bad_id, len(good), int.from_bytes(good[1:9], "big")], listing(good)],
        served={bad_id: bad_bytes, drop_id(good): good},
    )
    events: list[Event] = []
    make_home(tmp_path / "b")

    async def run() -> None:
        await peer.start()
        node = in_process(tmp_path / "b", peer.port, events)
        await node.start()
        try:
            assert node.drops is not None
            drops = node.drops
            await wait_for(lambda: drops.totals.fetched == 1, "the good drop")
            await wait_for(lambda: any(refused_or_bad_peer(e) for e in events), "a refusal")
        finally:
            await node.stop()
            await peer.stop()

    asyncio.run(run())
    assert held_ids(tmp_path / "b") == {drop_id(good)}
    drops_folder = tmp_path / "b" / "drops"
    assert sorted(p.name for p in drops_folder.iterdir() if len(p.name) == 64) == [
        drop_id(good).hex()
    ]
    assert bad_id in peer.asked


def test_a_drop_past_its_expiry_is_not_fetched(tmp_path: Path) -> None:
    old = expired_drop()
    good = GOOD[0]
    peer = DropPeer(
        listed=[listing(old), listing(good)], served={drop_id(old): old, drop_id(good): good}
    )
    make_home(tmp_path / "b")

    async def run() -> None:
        await peer.start()
        node = in_process(tmp_path / "b", peer.port, [])
        await node.start()
        try:
            assert node.drops is not None
            drops = node.drops
            await wait_for(lambda: drops.totals.fetched == 1, "the good drop")
        finally:
            await node.stop()
            await peer.stop()

    asyncio.run(run())
    assert drop_id(old) not in peer.asked
    assert held_ids(tmp_path / "b") == {drop_id(good)}
