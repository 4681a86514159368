"""Peers that reach us, changes that travel at once, and penalties that fit the offence
(issue 15; docs/PROTOCOL.md sections 3.1, 5 and 6.4). Real `meshdrop node` processes on
127.0.0.1 without mDNS (``--no-discovery``: every peer is named or says hello), and an
in-process node against a corrupting peer. Every wait is bounded; nothing asserts on
timing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lankit import Nodes, read_tree, wait_until
from test_lan_hostile import HostilePeer, bad_peer, listed, offer_of, wait_for, wrong_bytes
from test_lan_nodes import holding, names, trusting

from conftest import Publisher, meshdrop_in_process, pack, write_tree
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.transports.lan.events import Event


def bundle(publisher: Publisher, tmp: Path, name: str) -> Path:
    src = write_tree(tmp / f"src-{name}", {"index.html": f"<p>{name}</p>".encode()})
    return pack(publisher, src, tmp / f"{name}.mdrop", name)


def test_a_hotspot_that_names_no_peers_pulls_from_the_nodes_that_reach_it(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    """A names no peers and does not discover (a hotspot with client isolation: its
    clients cannot see each other, and mDNS does not pass); B and C name A. A learns B
    and C from their hellos and pulls from them, so everything ends on all three: B's
    bundle reaches C only through A."""
    a = holding(trusting(tmp_path / "a", publisher), bundle(publisher, tmp_path, "from-a"))
    b = holding(trusting(tmp_path / "b", publisher), bundle(publisher, tmp_path, "from-b"))
    c = holding(trusting(tmp_path / "c", publisher), bundle(publisher, tmp_path, "from-c"))
    hotspot = nodes.start(a, "--no-discovery")
    for home in (b, c):
        nodes.start(home, "--no-discovery", "--peer", hotspot.address)
    everything = {"from-a", "from-b", "from-c"}
    wait_until(
        lambda: all(set(names(home)) == everything for home in (a, b, c)),
        what="every bundle on all three",
    )
    introduced = [e for e in hotspot.events if e["event"] == "peer" and e["state"] == "introduced"]
    assert len(introduced) == 2
    got = hotspot.wait_event(lambda e: e["event"] == "bundle" and e["name"] == "from-b")
    assert got["peer"] == introduced[0]["peer"] or got["peer"] == introduced[1]["peer"]


def test_a_change_travels_a_chain_of_named_peers_at_once(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    """A - B - C, each naming the one before. Live peers are pinged only once an hour
    here (MESHDROP_LAN_TIMERS=ping=3600, a variable for tests and benchmarks), so a
    bundle imported into A can reach C within the wait bound only because each node
    tells its peers at once that its inventory changed."""
    slow = {"MESHDROP_LAN_TIMERS": "ping=3600"}
    a, b, c = (trusting(tmp_path / n, publisher) for n in "abc")
    node_a = nodes.start(a, "--no-discovery", env=slow)
    node_b = nodes.start(b, "--no-discovery", "--peer", node_a.address, env=slow)
    node_c = nodes.start(c, "--no-discovery", "--peer", node_b.address, env=slow)
    wait_until(lambda: node_a.alive_peers() == {node_b.address}, what="A to know B")
    wait_until(
        lambda: node_b.alive_peers() == {node_a.address, node_c.address}, what="B to know both"
    )
    wait_until(lambda: node_c.alive_peers() == {node_b.address}, what="C to know B")
    holding(a, bundle(publisher, tmp_path, "news"))  # imported while A runs
    wait_until(lambda: "news" in names(c), timeout=120, what="the bundle two hops away")
    got = node_c.wait_event(lambda e: e["event"] == "bundle" and e["name"] == "news")
    assert got["peer"] == node_b.address


# One transfer's burst of bad chunks is one offence


CHUNKS = 12
FILES = {"index.html": b"<p>big</p>", "media.bin": os.urandom(CHUNKS * CHUNK_SIZE - 100)}


def test_a_burst_of_bad_chunks_from_one_transfer_is_one_offence(
    tmp_path: Path, publisher: Publisher
) -> None:
    """A peer sends wrong bytes for every chunk of a 13-chunk bundle, all in one burst:
    one offence (not banned), not one per chunk. An honest peer then delivers the bundle,
    and the ``bundle`` event credits the honest peer, not the corrupting one."""
    made = pack(publisher, write_tree(tmp_path / "src", FILES), tmp_path / "b.mdrop", "big")
    honest_home = trusting(tmp_path / "honest", publisher)
    holding(honest_home, made)
    trusting(tmp_path / "node", publisher)
    offer = offer_of(honest_home)
    asyncio.run(_burst(tmp_path, offer))
    out = tmp_path / "out"
    meshdrop_in_process("--home", tmp_path / "node", "get", "big", "-o", out, check=True)
    assert read_tree(out) == FILES


async def _burst(tmp: Path, offer: object) -> None:
    from test_lan_hostile import Offer, beside

    assert isinstance(offer, Offer)
    hostile = HostilePeer(offer, chunk=wrong_bytes)
    await hostile.start()
    events: list[Event] = []
    home = tmp / "node"
    node, honest = beside(hostile.port, home, tmp / "honest", events)
    await node.start()
    await honest.start()
    try:
        await wait_for(
            lambda: any(e["event"] == "sync" and not e["complete"] for e in events),
            "the sync with the corrupting peer to end",
        )
        assert offer.requests.count("chunk") == CHUNKS + 1  # every chunk, each one bad
        assert [e for e in events if bad_peer(e)] == [
            next(e for e in events if bad_peer(e))
        ]  # one bad-peer event: one offence
        assert not any(e["event"] == "bad-peer" and e["banned"] for e in events)
        assert node.engine is not None
        [peer] = node.engine.book.peers.values()
        assert peer.offences == 1 and not peer.banned(asyncio.get_running_loop().time())
        assert await asyncio.to_thread(listed, home) == []

        node.engine.book.add_manual(("127.0.0.1", honest.port))
        node.engine.wake()
        got = await wait_for(
            lambda: next((e for e in events if e["event"] == "bundle"), None), "the bundle"
        )
        assert got["peer"] == f"127.0.0.1:{honest.port}"
    finally:
        await node.stop()
        await honest.stop()
        await hostile.stop()


def test_a_peers_pings_ride_one_kept_connection(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    """Timers shortened (MESHDROP_LAN_TIMERS, a variable for tests and benchmarks) to
    scale: a ping every 3 s (120 s by default) and a stranger's idle connection closed
    after 2 s (15 s by default), so pings come further apart than a stranger may stay
    idle. Several pings later, the server has not seen a single new connection from its
    peer: they all ride the one kept open (the idle cost of two nodes is then a ping's
    bytes, with no TCP handshake; in a circle, no TLS one)."""
    fast = {"MESHDROP_LAN_TIMERS": "ping=3,head_timeout=2"}
    a, b = (trusting(tmp_path / n, publisher) for n in "ab")
    node_a = nodes.start(a, "--no-discovery", env=fast)
    node_b = nodes.start(b, "--no-discovery", "--peer", node_a.address, env=fast)
    wait_until(lambda: node_a.alive_peers() == {node_b.address}, what="A to know B")
    wait_until(lambda: node_b.alive_peers() == {node_a.address}, what="B to know A")
    before = node_a.status()
    opened = before["connections"]["peers_opened"]
    wait_until(
        lambda: node_a.status()["served"]["requests"] >= before["served"]["requests"] + 4,
        what="four more pings from B",
    )
    after = node_a.status()["connections"]
    assert after["peers_opened"] == opened
    assert after["peers"] >= 1
