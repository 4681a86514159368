"""How one bundle's chunks are fetched, with in-process nodes on 127.0.0.1: from several
peers at once, never twice, and never when the store already holds them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web
from lankit import read_tree
from test_lan_hostile import FAST, HostilePeer, listed, offer_of, wait_for

from conftest import Publisher, chunk_files, meshdrop_in_process, pack, write_tree
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.store.ingest import BATCH_BYTES
from meshdrop.transports.lan.events import Event
from meshdrop.transports.lan.node import Node, NodeConfig

# The nodes under test run in process here; so do the set-up steps and the looks at what
# they stored (the same commands as a user's, without a process each).


def holder(tmp: Path, name: str, publisher: Publisher, *bundles: Path) -> Path:
    home = tmp / name
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    if bundles:
        meshdrop_in_process("--home", home, "import", "--quiet", *bundles, check=True)
    return home


def node_for(home: Path, events: list[Event], *peers: int) -> Node:
    config = NodeConfig(
        home=home,
        bind="127.0.0.1",
        port=0,
        peers=tuple(("127.0.0.1", p) for p in peers),
        discovery=False,
        client=FAST,
        probe_interval=0.5,
    )
    return Node(config, events.append)


async def served_until_stored(source_home: Path, sink_home: Path) -> int:
    """Run a node on ``source_home`` and one on ``sink_home`` that pulls from it until
    the sink stores a bundle; the number of chunks the source served."""
    source = node_for(source_home, [])
    await source.start()
    events: list[Event] = []
    sink = node_for(sink_home, events, source.port)
    await sink.start()
    try:
        await wait_for(lambda: any(e["event"] == "bundle" for e in events), "a bundle")
        assert source.server is not None
        return source.server.stats.chunks
    finally:
        await sink.stop()
        await source.stop()


def test_the_chunks_of_one_bundle_come_from_several_peers_at_once_and_never_twice(
    tmp_path: Path, publisher: Publisher
) -> None:
    files = {"big.bin": os.urandom(24 * CHUNK_SIZE)}
    bundle = pack(publisher, write_tree(tmp_path / "src", files), tmp_path / "b.mdrop", "big")
    fast_home = holder(tmp_path, "fast", publisher, bundle)
    slow = HostilePeer(offer_of(fast_home))

    async def slowly(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)  # an honest peer on a poor link
        return await slow.chunk(request)

    slow.bad["chunk"] = slowly
    sink_home = holder(tmp_path, "sink", publisher)

    async def scenario() -> tuple[int, int]:
        await slow.start()
        fast = node_for(fast_home, [])
        events: list[Event] = []
        sink = node_for(sink_home, events, slow.port)
        await fast.start()
        await sink.start()
        try:
            assert sink.engine is not None and fast.server is not None
            engine = sink.engine
            await wait_for(lambda: slow.offer.requests.count("chunk") >= 2, "the slow peer")
            engine.book.add_manual(("127.0.0.1", fast.port))
            engine.wake()
            await wait_for(lambda: any(e["event"] == "bundle" for e in events), "the bundle")
            return slow.offer.requests.count("chunk"), fast.server.stats.chunks
        finally:
            await sink.stop()
            await fast.stop()
            await slow.stop()

    from_slow, from_fast = asyncio.run(scenario())
    assert from_slow >= 1 and from_fast >= 1
    assert from_slow + from_fast == 24  # each chunk fetched once
    out = tmp_path / "out"
    meshdrop_in_process("--home", tmp_path / "sink", "get", "big", "-o", out, check=True)
    assert read_tree(out) == files


def test_chunks_already_held_are_not_fetched_again(tmp_path: Path, publisher: Publisher) -> None:
    shared = os.urandom(5 * CHUNK_SIZE)
    v1 = pack(publisher, write_tree(tmp_path / "v1", {"shared.bin": shared, "a": b"one"}),
              tmp_path / "v1.mdrop", "news", "--version", "1")  # fmt: skip
    v2 = pack(publisher, write_tree(tmp_path / "v2", {"shared.bin": shared, "a": b"two"}),
              tmp_path / "v2.mdrop", "news", "--version", "2")  # fmt: skip
    source_home = holder(tmp_path, "source", publisher, v2)
    sink_home = holder(tmp_path, "sink", publisher, v1)

    # Only the changed file: shared.bin was held already.
    assert asyncio.run(served_until_stored(source_home, sink_home)) == 1
    assert listed(sink_home) == ["news"]
    out = tmp_path / "a"
    meshdrop_in_process("--home", sink_home, "get", "news", "a", "-o", out, check=True)
    assert out.read_bytes() == b"two"


def test_a_node_stopped_mid_transfer_of_a_big_bundle_keeps_what_it_staged(
    tmp_path: Path, publisher: Publisher
) -> None:
    # A big bundle's chunks are staged under temp names and named a batch at a time;
    # stopping the node publishes what it staged, so nothing is fetched twice.
    total = BATCH_BYTES // CHUNK_SIZE + 8
    files = {"big.bin": os.urandom(total * CHUNK_SIZE)}
    bundle = pack(publisher, write_tree(tmp_path / "src", files), tmp_path / "b.mdrop", "big")
    fast_home = holder(tmp_path, "fast", publisher, bundle)
    sink_home = holder(tmp_path, "sink", publisher)
    served_first = 5
    stalling = HostilePeer(offer_of(fast_home))
    stalled = asyncio.Event()

    async def then_stall(request: web.Request) -> web.Response:
        if stalling.offer.requests.count("chunk") > served_first:
            await stalled.wait()  # never set: a peer that stops sending
        return await stalling.chunk(request)

    stalling.bad["chunk"] = then_stall

    async def first_part() -> tuple[int, list[Path]]:
        await stalling.start()
        sink = node_for(sink_home, [], stalling.port)
        await sink.start()
        try:
            assert sink.engine is not None
            engine = sink.engine
            await wait_for(lambda: engine.totals.chunks == served_first, "the first chunks")
            staged = list((sink_home / "chunks").rglob(".tmp-*"))
            named = len(chunk_files(sink_home))
        finally:
            await sink.stop()
            await stalling.stop()
        return named, staged

    named_before_stop, staged = asyncio.run(first_part())
    assert named_before_stop == 0 and len(staged) == served_first  # staged, not yet named
    assert len(chunk_files(sink_home)) == served_first  # named when the node stopped
    assert not list((sink_home / "chunks").rglob(".tmp-*"))
    assert listed(sink_home) == []

    assert asyncio.run(served_until_stored(fast_home, sink_home)) == total - served_first
    out = tmp_path / "out"
    meshdrop_in_process("--home", sink_home, "get", "big", "-o", out, check=True)
    assert read_tree(out) == files
