"""Hostile peers, one named test each: an in-test aiohttp server on 127.0.0.1 (port 0)
plays a peer that lies, floods, drips or hangs. The node under test (in-process, with
short time limits) must refuse what it sent, penalise it where it sent bad data, stay
responsive, and then still get the bundle from an honest peer.

Each scenario runs in two phases: first the hostile peer alone (nothing may become
visible), then an honest peer joins (the bundle must arrive, byte for byte)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lankit import read_tree

from conftest import Publisher, make_publisher, meshdrop_in_process, pack, write_tree
from meshdrop.core import codec
from meshdrop.core.bundle import Envelope, parse_envelope
from meshdrop.core.inventory import Entry, Inventory
from meshdrop.core.keys import Domain, public_bytes, sign
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.store.inventory import PeerView
from meshdrop.store.store import Store
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.client import ClientLimits
from meshdrop.transports.lan.events import Event
from meshdrop.transports.lan.node import Node, NodeConfig
from meshdrop.transports.lan.protocol import Hello, InventoryResponse

WAIT = 30.0
FAST = ClientLimits(connect_timeout=1.0, read_timeout=1.0, min_rate=256 * 1024, min_time=1.0)
FILES = {"index.html": b"<p>the real thing</p>", "media.bin": os.urandom(3 * CHUNK_SIZE + 7)}
# A small bundle (transfer.py's SMALL_BUNDLE_BYTES): its envelope and its three chunks of
# different sizes are asked for in batches (PROTOCOL 3.8, 3.9).
SMALL_FILES = {"index.html": b"<p>small</p>", "a.txt": os.urandom(5000), "b.txt": os.urandom(7)}


@dataclass
class Offer:
    """What a hostile peer offers: the publishers it says it holds, inventory entries,
    envelopes and chunks by digest; and every request it was sent (``received``: the
    path with its query, then the body)."""

    entries: list[Entry]
    envelopes: dict[bytes, bytes]
    chunks: dict[bytes, bytes]
    publishers: list[bytes] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)


def offer_of(home: Path) -> Offer:
    """Everything an honest node holding ``home`` would offer."""
    with Store(home) as store:
        view = PeerView(store)
        entries = [e for e in view.snapshot().inventory.entries if e.version]
        envelopes = {}
        chunks = {}
        for entry in entries:
            envelope = view.envelope(entry.digest)
            if envelope is None:
                continue
            envelopes[entry.digest] = envelope
            manifest_bytes = parse_envelope(envelope, "test").manifest_bytes
            from meshdrop.core.manifest import parse_manifest

            for ref in parse_manifest(manifest_bytes).chunk_refs():
                data = store.chunks.read(ref.digest)
                assert data is not None
                chunks[ref.digest] = data
    bundles = [e for e in entries if e.digest in envelopes]
    return Offer(bundles, envelopes, chunks, sorted({e.publisher for e in entries}))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OFFER = web.AppKey("offer", Offer)


class HostilePeer:
    """A peer that speaks the protocol, with one handler swapped for a bad one."""

    def __init__(self, offer: Offer, **bad: Handler) -> None:
        self.offer = offer
        self.bad = bad
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app[OFFER] = self.offer
        for name, method, path in (
            ("hello", "GET", "/peer/v1/hello"),
            ("publishers", "GET", "/peer/v1/publishers"),
            ("inventory", "POST", "/peer/v1/inventory"),
            ("envelope", "GET", "/peer/v1/envelope/{digest}"),
            ("chunk", "GET", "/peer/v1/chunk/{digest}"),
            ("envelopes", "POST", "/peer/v1/envelopes"),
            ("chunks", "POST", "/peer/v1/chunks"),
        ):
            handler = self.bad.get(name) or getattr(self, name)
            app.router.add_route(method, path, self._counting(name, handler))
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    def _counting(self, name: str, handler: Handler) -> Handler:
        async def counted(request: web.Request) -> web.StreamResponse:
            self.offer.requests.append(name)
            self.offer.received.append(request.path_qs.encode() + b"\n" + await request.read())
            return await handler(request)

        return counted

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def hello(self, request: web.Request) -> web.Response:
        hello = Hello(protocol.PROTOCOL_VERSION, os.urandom(8), b"hostile!")
        return web.Response(body=protocol.encode_hello(hello))

    async def publishers(self, request: web.Request) -> web.Response:
        body = protocol.encode_held_publishers(os.urandom(16), self.offer.publishers)
        return web.Response(body=body)

    async def inventory(self, request: web.Request) -> web.Response:
        asked = protocol.parse_inventory_request(await request.read())
        tree = Inventory(self.offer.entries)
        nodes = tuple(tree.answer(p) for p in asked.prefixes)
        return web.Response(
            body=protocol.encode_inventory_response(InventoryResponse(asked.scope, nodes))
        )

    async def envelope(self, request: web.Request) -> web.Response:
        data = self.offer.envelopes.get(bytes.fromhex(request.match_info["digest"]))
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    async def chunk(self, request: web.Request) -> web.Response:
        data = self.offer.chunks.get(bytes.fromhex(request.match_info["digest"]))
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    async def envelopes(self, request: web.Request) -> web.Response:
        asked = protocol.parse_digests(await request.read(), protocol.MAX_BATCH_ENVELOPES, "")
        found = [self.offer.envelopes.get(digest) for digest in asked]
        return web.Response(body=protocol.encode_envelope_batch(found))

    async def chunks(self, request: web.Request) -> web.Response:
        return web.Response(body=b"".join(await asked_chunks(request)))


async def asked_chunks(request: web.Request) -> list[bytes]:
    """The chunks a batch request asks for, in order (404 if one is not offered)."""
    asked = protocol.parse_digests(await request.read(), protocol.MAX_BATCH_CHUNKS, "")
    offered = request.app[OFFER].chunks
    if any(digest not in offered for digest in asked):
        raise web.HTTPNotFound()
    return [offered[digest] for digest in asked]


class SilentPeer:
    """Accepts connections and never says a word."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self._held: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self._held.append(writer)

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._held:
            writer.close()
        if self.server is not None:
            self.server.close()


# Bad handlers


async def wrong_bytes(request: web.Request) -> web.Response:
    return web.Response(body=os.urandom(CHUNK_SIZE))  # the right size, the wrong bytes


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    with pytest.raises((ConnectionError, asyncio.CancelledError)):
        for _ in range(100_000):
            await response.write(b"x" * 65536)
    return response


async def huge_length(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 2**40
    await response.prepare(request)
    await response.write(b"x" * 1000)
    await asyncio.sleep(3)
    return response


async def slow_drip(request: web.Request) -> web.StreamResponse:
    """The right bytes, honestly, one every 0.2 s: nothing to object to but the pace."""
    offer = request.app[OFFER]
    data = offer.chunks[bytes.fromhex(request.match_info["digest"])]
    response = web.StreamResponse()
    response.content_length = len(data)
    await response.prepare(request)
    for i in range(min(len(data), 50)):
        await response.write(data[i : i + 1])
        await asyncio.sleep(0.2)
    return response


async def malformed_inventory(request: web.Request) -> web.Response:
    return web.Response(body=b"\x82\xa5nodes\xc1\xa5scope\x90")


async def batch_of_wrong_bytes(request: web.Request) -> web.Response:
    """Each chunk the right size, with the wrong bytes."""
    return web.Response(body=b"".join(os.urandom(len(c)) for c in await asked_chunks(request)))


async def batch_one_byte_short(request: web.Request) -> web.Response:
    return web.Response(body=b"".join(await asked_chunks(request))[:-1])


async def batch_one_byte_long(request: web.Request) -> web.Response:
    return web.Response(body=b"".join(await asked_chunks(request)) + b"x")


async def batch_reordered(request: web.Request) -> web.Response:
    """The right chunks, the right total length, in the reverse order."""
    return web.Response(body=b"".join(reversed(await asked_chunks(request))))


async def envelopes_beyond_those_asked(request: web.Request) -> web.Response:
    found = list(request.app[OFFER].envelopes.values())
    return web.Response(body=protocol.encode_envelope_batch(found * 2))


async def batch_of_garbage_envelopes(request: web.Request) -> web.Response:
    """Bytes that are no envelope at all, one for each envelope asked for."""
    asked = protocol.parse_digests(await request.read(), protocol.MAX_BATCH_ENVELOPES, "")
    return web.Response(body=protocol.encode_envelope_batch([b"\x93not an envelope"] * len(asked)))


async def batch_of_envelopes_not_listed(request: web.Request) -> web.Response:
    """Well-formed envelopes, each of another manifest than the one it was listed under."""
    asked = protocol.parse_digests(await request.read(), protocol.MAX_BATCH_ENVELOPES, "")
    offered = request.app[OFFER].envelopes
    altered = []
    for digest in asked:
        real = parse_envelope(offered[digest], "test")
        other = Envelope(real.manifest_bytes + b"\x00", real.signer, real.signature, real.records)
        altered.append(other.encode())
    return web.Response(body=protocol.encode_envelope_batch(altered))


async def unsorted_publishers(request: web.Request) -> web.Response:
    """Every publisher the peer holds, twice: tags repeated (and so out of order)."""
    nonce = os.urandom(16)
    tags = sorted(protocol.publisher_tag(nonce, p) for p in request.app[OFFER].publishers)
    return web.Response(body=codec.pack({"nonce": nonce, "tags": b"".join(tags * 2)}))


# The scenario


@dataclass
class Case:
    name: str
    bad: dict[str, Handler] = field(default_factory=dict)
    offer: str = "honest"  # "resigned": signed by another key; "stranger": another publisher
    expect: Callable[[Event], bool] = lambda e: False
    penalised: bool = True
    small: bool = False  # a small bundle (SMALL_FILES): fetched in batches


def bad_peer(event: Event) -> bool:
    return event["event"] == "bad-peer"


CASES = [
    Case("wrong bytes for a chunk", {"chunk": wrong_bytes}, expect=bad_peer),
    Case("a manifest signed by an untrusted key", offer="resigned", expect=bad_peer),
    Case("a bundle of a publisher not asked about", offer="stranger", expect=bad_peer),
    Case("an endless response", {"chunk": endless}, expect=bad_peer),
    Case("a huge declared length", {"chunk": huge_length}, expect=bad_peer),
    Case(
        "a slow drip",
        {"chunk": slow_drip},
        expect=lambda e: e["event"] == "sync" and not e["complete"],
        penalised=False,
    ),
    Case(
        "a peer that accepts connections and never answers",
        expect=lambda e: e["event"] == "peer" and e["state"] == "unreachable",
        penalised=False,
    ),
    Case("a malformed inventory", {"inventory": malformed_inventory}, expect=bad_peer),
    Case("a malformed list of publishers", {"publishers": unsorted_publishers}, expect=bad_peer),
    Case("a batch of wrong bytes", {"chunks": batch_of_wrong_bytes}, expect=bad_peer, small=True),
    Case("a batch one byte short", {"chunks": batch_one_byte_short}, expect=bad_peer, small=True),
    Case("a batch one byte long", {"chunks": batch_one_byte_long}, expect=bad_peer, small=True),
    Case("a batch reordered", {"chunks": batch_reordered}, expect=bad_peer, small=True),
    Case(
        "a batch of garbage envelopes",
        {"envelopes": batch_of_garbage_envelopes},
        expect=bad_peer,
        small=True,
    ),
    Case(
        "a batch of envelopes not as listed",
        {"envelopes": batch_of_envelopes_not_listed},
        expect=bad_peer,
        small=True,
    ),
    Case(
        "a batch of envelopes beyond those asked",
        {"envelopes": envelopes_beyond_those_asked},
        expect=bad_peer,
        small=True,
    ),
]


async def wait_for(check: Callable[[], Any], what: str) -> Any:
    async with asyncio.timeout(WAIT):
        while not (value := check()):
            await asyncio.sleep(0.05)
    return value


def listed(home: Path) -> list[str]:
    with Store(home) as store:
        return [b.name for b in store.list_bundles()]


async def answers_hello(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/peer/v1/hello"
    async with aiohttp.ClientSession() as session, asyncio.timeout(10), session.get(url) as resp:
        return resp.status == 200


def prepare(case: Case, tmp: Path, publisher: Publisher) -> Offer:
    """Set-up, in process before any event loop runs: the honest peer's store (tmp/honest),
    the node's trust (tmp/node), and what the hostile peer will offer."""
    files = SMALL_FILES if case.small else FILES
    bundle = pack(publisher, write_tree(tmp / "src", files), tmp / "news.mdrop", "news")
    honest_home = tmp / "honest"
    meshdrop_in_process("--home", honest_home, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", honest_home, "import", "--quiet", bundle, check=True)
    meshdrop_in_process("--home", tmp / "node", "trust", "add", "--yes", publisher.pub, check=True)
    if case.offer == "stranger":
        stranger = make_publisher(tmp / "stranger", "Stranger")
        forged = pack(stranger, write_tree(tmp / "s", files), tmp / "f.mdrop", "news")
        stranger_home = tmp / "stranger-home"
        meshdrop_in_process(
            "--home", stranger_home, "trust", "add", "--yes", stranger.pub, check=True
        )
        meshdrop_in_process("--home", stranger_home, "import", "--quiet", forged, check=True)
        offer = offer_of(stranger_home)
        offer.publishers = offer_of(honest_home).publishers  # it says it holds the real one
    else:
        offer = offer_of(honest_home)
    if case.offer == "resigned":
        # The real manifest (same hash) under a signature by a key nobody delegated: it
        # must not make the node refuse the real bundle from the honest peer later.
        [digest] = offer.envelopes
        real = parse_envelope(offer.envelopes[digest], "test")
        key = Ed25519PrivateKey.generate()
        offer.envelopes[digest] = Envelope(
            real.manifest_bytes,
            public_bytes(key),
            sign(key, Domain.MANIFEST, real.manifest_bytes),
            real.records,
        ).encode()
    return offer


def beside(
    hostile_port: int, home: Path, honest_home: Path, events: list[Event]
) -> tuple[Node, Node]:
    """The node under test, whose only peer is the hostile one at first, and an honest
    node (added as its peer later in a test)."""
    node = Node(
        NodeConfig(
            home=home,
            bind="127.0.0.1",
            port=0,
            peers=(("127.0.0.1", hostile_port),),
            discovery=False,
            client=FAST,
            probe_interval=0.5,
        ),
        events.append,
    )
    honest = Node(
        NodeConfig(home=honest_home, bind="127.0.0.1", port=0, discovery=False), lambda e: None
    )
    return node, honest


async def scenario(case: Case, tmp: Path, offer: Offer) -> None:
    honest_home = tmp / "honest"
    hostile: HostilePeer | SilentPeer
    hostile = SilentPeer() if "never answers" in case.name else HostilePeer(offer, **case.bad)
    await hostile.start()
    events: list[Event] = []
    home = tmp / "node"
    node, honest = beside(hostile.port, home, honest_home, events)
    await node.start()
    await honest.start()
    try:
        # Phase 1: only the hostile peer. Nothing becomes visible; the node answers.
        await wait_for(lambda: any(case.expect(e) for e in events), f"{case.name}: reaction")
        assert await answers_hello(node.port)
        assert await asyncio.to_thread(listed, home) == []
        assert any(bad_peer(e) for e in events) == case.penalised, events
        assert not case.small or set(case.bad) <= set(offer.requests)  # the batch was asked
        # Phase 2: an honest peer too. The bundle arrives, verified.
        assert node.engine is not None
        node.engine.book.add_manual(("127.0.0.1", honest.port))
        node.engine.wake()
        await wait_for(lambda: any(e["event"] == "bundle" for e in events), "the honest bundle")
        assert await asyncio.to_thread(listed, home) == ["news"]
        assert await answers_hello(node.port)
    finally:
        await node.stop()
        await honest.stop()
        await hostile.stop()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_hostile_peer(case: Case, tmp_path: Path, publisher: Publisher) -> None:
    offer = prepare(case, tmp_path, publisher)
    asyncio.run(scenario(case, tmp_path, offer))
    out = tmp_path / "out"
    meshdrop_in_process("--home", tmp_path / "node", "get", "news", "-o", out, check=True)
    assert read_tree(out) == (SMALL_FILES if case.small else FILES)
