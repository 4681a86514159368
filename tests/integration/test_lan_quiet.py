"""An open node volunteers nothing (issue 16; docs/PROTOCOL.md 3.1, 3.7, 4.4, 6.1): a fake
peer (tests/integration/test_lan_hostile.py's HostilePeer, recording every request) that a
real node reaches (named with --peer, announced over real mDNS on loopback, or having said
hello) is told no publisher id the fake does not hold, and no digest anyone could compute
from publisher files and bundles. Every wait is bounded; nothing asserts on timing."""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from lankit import Nodes
from test_lan_hostile import FAST, HostilePeer, Offer, offer_of, wait_for
from test_lan_nodes import _advertised, holding, trusting

from conftest import Publisher, make_publisher, pack, write_tree
from meshdrop.store.inventory import PeerView
from meshdrop.store.store import Store
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.discovery import Discovery
from meshdrop.transports.lan.events import Event
from meshdrop.transports.lan.introduce import Introduction, encode_query
from meshdrop.transports.lan.node import Node, NodeConfig


def bundle(publisher: Publisher, tmp: Path, name: str) -> Path:
    src = write_tree(tmp / f"src-{name}", {"index.html": f"<p>{name}</p>".encode()})
    return pack(publisher, src, tmp / f"{name}.mdrop", name)


def unsalted_digest(home: Path) -> bytes:
    """The inventory digest as TXT and hello carried it before issue 16: computable by
    anyone from the publisher files and bundles that make up ``home``."""
    with Store(home) as store:
        return PeerView(store).snapshot().inventory.digest


def publisher_ids(home: Path) -> list[bytes]:
    with Store(home) as store:
        return sorted(PeerView(store).snapshot().states)


def assert_never_sent(offer: Offer, *secrets: bytes) -> None:
    """None of ``secrets`` in any request the fake peer received, raw or in hex."""
    sent = b"\n".join(offer.received)
    for secret in secrets:
        assert secret not in sent and secret.hex().encode() not in sent, secret.hex()


def inventory_scopes(offer: Offer) -> list[tuple[bytes, ...]]:
    prefix = b"/peer/v1/inventory\n"
    return [
        protocol.parse_inventory_request(r[len(prefix) :]).scope
        for r in offer.received
        if r.startswith(prefix)
    ]


def hello_digests(offer: Offer) -> set[bytes]:
    """The digests the node put in the hellos it sent the fake peer (its introductions)."""
    found = (re.search(rb"digest=([0-9a-f]{16})", r) for r in offer.received)
    return {bytes.fromhex(m.group(1).decode()) for m in found if m}


async def meet_fake_peer(home: Path, offer: Offer, how: str, until: str = "sync") -> None:
    """Run the node of ``home`` until it has synced with a fake peer offering ``offer``
    (``until="bundle"``: until it has fetched a bundle from it), the fake reached as
    ``how``: "named" (--peer), "announced" (real mDNS) or "said hello" (an introduction)."""
    fake = HostilePeer(offer)
    await fake.start()
    events: list[Event] = []
    label = f"127.0.0.1:{fake.port}"
    config = NodeConfig(
        home=home,
        bind="127.0.0.1",
        port=0,
        peers=(("127.0.0.1", fake.port),) if how == "named" else (),
        discovery=how == "announced",
        client=FAST,
        probe_interval=0.5,
    )
    node = Node(config, events.append)
    announcer = Discovery("127.0.0.1", fake.port, lambda *found: None, lambda gone: None)
    await node.start()
    try:
        if how == "announced":
            await announcer.start(os.urandom(8))
        elif how == "said hello":
            query = encode_query(Introduction(os.urandom(8), os.urandom(8), fake.port))
            url = f"http://127.0.0.1:{node.port}/peer/v1/hello{query}"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                assert response.status == 200
        await wait_for(
            lambda: any(e["event"] == until and e.get("peer") == label for e in events),
            f"the node's {until} with the fake peer",
        )
    finally:
        await announcer.close()
        await node.stop()
        await fake.stop()


@pytest.mark.parametrize("how", ["named", "announced", "said hello"])
def test_a_fake_peer_that_holds_nothing_is_told_no_publisher(
    how: str, tmp_path: Path, publisher: Publisher
) -> None:
    """The node trusts a publisher and holds its bundle; the fake peer holds nothing. It
    is asked which publishers it holds, and then nothing: no inventory request, no
    publisher id, and no digest computable from the node's public files."""
    home = holding(trusting(tmp_path / "node", publisher), bundle(publisher, tmp_path, "news"))
    offer = Offer([], {}, {})
    asyncio.run(meet_fake_peer(home, offer, how))
    assert "publishers" in offer.requests
    assert "inventory" not in offer.requests
    assert_never_sent(offer, *publisher_ids(home), unsalted_digest(home))
    assert hello_digests(offer)  # the node's hellos introduced it, with a salted digest


@pytest.mark.parametrize("trusts_x", [True, False], ids=["trusts-x", "does-not-trust-x"])
def test_a_fake_peer_holding_x_learns_only_whether_the_node_trusts_x(
    trusts_x: bool, tmp_path: Path
) -> None:
    """The fake peer holds publisher X's bundle (and X's publisher file). The node trusts
    Y (and holds Y's bundle), and X or not. Trusting X, it asks the fake about X alone and
    fetches X's bundle; not trusting X, it asks nothing. Y is never named either way."""
    x = make_publisher(tmp_path / "x", "Publisher X")
    y = make_publisher(tmp_path / "y", "Publisher Y")
    x_home = holding(trusting(tmp_path / "x-home", x), bundle(x, tmp_path, "x-news"))
    offer = offer_of(x_home)
    [x_id] = offer.publishers
    home = holding(trusting(tmp_path / "node", y), bundle(y, tmp_path, "y-news"))
    if trusts_x:
        trusting(home, x)
    [y_id] = [p for p in publisher_ids(home) if p != x_id]
    asyncio.run(meet_fake_peer(home, offer, "named", until="bundle" if trusts_x else "sync"))
    assert_never_sent(offer, y_id, unsalted_digest(home))
    if trusts_x:
        scopes = inventory_scopes(offer)
        assert scopes and all(scope == (x_id,) for scope in scopes)
    else:
        assert "inventory" not in offer.requests
        assert_never_sent(offer, x_id)


def test_the_advertised_digest_is_salted_per_start(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    """Two starts of one node with one store announce (TXT ``d=``) and say in their hello
    two different digests, the same in both places within a start, and neither is the
    inventory digest computable from the publisher file and the bundle (the old ``d=``)."""
    made = bundle(publisher, tmp_path, "news")
    home = holding(trusting(tmp_path / "node", publisher), made)
    public = unsalted_digest(holding(trusting(tmp_path / "from-public-files", publisher), made))
    assert public == unsalted_digest(home)
    said = []
    for _ in range(2):
        node = nodes.start(home)
        _, info = _advertised(node)
        txt = bytes.fromhex(info.properties[b"d"].decode())  # type: ignore[union-attr]
        url = f"http://{node.address}/peer/v1/hello"
        with urllib.request.urlopen(url, timeout=10) as response:
            hello = protocol.parse_hello(response.read())
        assert hello.digest == txt
        said.append(txt)
        node.stop()
    first, second = said
    assert first != second
    assert public not in said
