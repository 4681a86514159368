"""The sans-IO decisions of LAN sync: inventory walks and what they cost on the wire
(core/inventory.py), the peer API's message parsers (transports/lan/protocol.py), peers'
liveness and penalties (peers.py), chunk plans (plan.py)."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshdrop.core import codec
from meshdrop.core.inventory import (
    MAX_DEPTH,
    Entry,
    Inventory,
    Node,
    Reconciler,
    bundle_slot,
    decide_wants,
    publisher_slot,
)
from meshdrop.core.manifest import ChunkRef
from meshdrop.errors import FormatError
from meshdrop.transports.lan import peers, protocol
from meshdrop.transports.lan.peers import PeerBook, Verdict
from meshdrop.transports.lan.plan import ChunkPlan
from meshdrop.transports.lan.protocol import InventoryRequest, InventoryResponse

HTTP_OVERHEAD = 400  # bytes of request line and headers (either way) counted per request
PUBLISHERS = [hashlib.sha256(b"publisher %d" % i).digest() for i in range(3)]


def inventory(n: int, seed: int) -> list[Entry]:
    rng = random.Random(seed)
    entries = [Entry(publisher_slot(p), 1, rng.randbytes(32), p) for p in PUBLISHERS]
    for i in range(n):
        publisher = PUBLISHERS[i % len(PUBLISHERS)]
        slot = bundle_slot(publisher, f"bundle-{i}")
        entries.append(Entry(slot, 1, rng.randbytes(32), publisher))
    return entries


@dataclass
class Walk:
    requests: int
    up: int  # bytes client -> server, with HTTP_OVERHEAD per request
    down: int
    offered: list[Entry]


def walk(mine: list[Entry], theirs: list[Entry], scope: list[bytes] = PUBLISHERS) -> Walk:
    """A whole inventory walk through the real encoders and parsers."""
    server = Inventory(theirs).restricted(scope)
    held = tuple(p for p in scope if any(e.publisher == p for e in theirs))
    reconciler = Reconciler(Inventory(mine))
    requests = up = down = 0
    while not reconciler.done:
        request = InventoryRequest(tuple(scope), tuple(reconciler.next_prefixes()))
        body = protocol.encode_inventory_request(protocol.parse_inventory_request(
            protocol.encode_inventory_request(request)))  # fmt: skip
        answer = InventoryResponse(held, tuple(server.answer(p) for p in request.prefixes))
        data = protocol.encode_inventory_response(answer)
        parsed = protocol.parse_inventory_response(data, request)
        reconciler.feed(parsed.scope, parsed.nodes)
        requests += 1
        up += len(body) + HTTP_OVERHEAD
        down += len(data) + HTTP_OVERHEAD
    return Walk(requests, up, down, reconciler.offered)


def test_ten_thousand_bundles_differing_by_ten_cost_under_20_kb_each_way() -> None:
    mine = inventory(10_000, seed=1)
    theirs = list(mine)
    changed = []
    for i in range(10):
        old = theirs[3 + i * 997]
        theirs[3 + i * 997] = new = Entry(old.slot, 2, os.urandom(32), old.publisher)
        changed.append(new)
    result = walk(mine, theirs)
    assert sorted(result.offered, key=lambda e: e.slot) == sorted(
        (Entry(e.slot, e.version, e.digest) for e in changed), key=lambda e: e.slot
    )
    assert result.up < 20_000 and result.down < 20_000, result
    wants = decide_wants(result.offered, {e.slot: e.version for e in mine}, {})
    assert len(wants.bundles) == 10 and not wants.publishers


def test_identical_inventories_cost_one_small_request() -> None:
    mine = inventory(10_000, seed=2)
    result = walk(mine, list(mine))
    assert result.requests == 1 and result.offered == []
    assert result.up < 600 and result.down < 800, result
    assert Inventory(mine).digest == Inventory(list(reversed(mine))).digest


def test_a_peer_that_trusts_more_publishers_is_compared_only_on_shared_ones() -> None:
    mine = inventory(300, seed=3)
    extra = hashlib.sha256(b"someone else").digest()
    theirs = [*mine, Entry(bundle_slot(extra, "x"), 1, os.urandom(32), extra)]
    # The client asks about its own publishers only, so the extra one never shows.
    assert walk(mine, theirs).offered == []
    # The server holds only one of the client's publishers: our other bundles do not count.
    only_first = [e for e in mine if e.publisher == PUBLISHERS[0]]
    assert walk(mine, only_first).requests == 1


entry_sets = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 3), st.integers(0, 2)), max_size=80
).map(
    lambda items: list(
        {
            bundle_slot(PUBLISHERS[0], f"b{n}"): Entry(
                bundle_slot(PUBLISHERS[0], f"b{n}"),
                version,
                hashlib.sha256(b"%d %d %d" % (n, version, flavour)).digest(),
                PUBLISHERS[0],
            )
            for n, version, flavour in items
        }.values()
    )
)


@settings(max_examples=200, deadline=None)
@given(entry_sets, entry_sets)
def test_a_walk_offers_exactly_what_the_peer_holds_differently(
    mine: list[Entry], theirs: list[Entry]
) -> None:
    own = {(e.slot, e.version, e.digest) for e in mine}
    expected = {(e.slot, e.version, e.digest) for e in theirs} - own
    offered = walk(mine, theirs, [PUBLISHERS[0]]).offered
    assert {(e.slot, e.version, e.digest) for e in offered} == expected
    assert len(offered) == len(expected)


def test_wants_newer_versions_and_chains_only_and_never_a_refused_digest() -> None:
    p = PUBLISHERS[0]
    chain = Entry(publisher_slot(p), 3, b"c" * 32)
    newer = Entry(bundle_slot(p, "news"), 5, b"n" * 32)
    older = Entry(bundle_slot(p, "old"), 1, b"o" * 32)
    same = Entry(bundle_slot(p, "same"), 2, b"s" * 32)
    refused = Entry(bundle_slot(p, "bad"), 9, b"r" * 32)
    fresh = Entry(bundle_slot(p, "fresh"), 1, b"f" * 32)
    known = {chain.slot: 2, newer.slot: 4, older.slot: 2, same.slot: 2}
    wants = decide_wants(
        [chain, newer, older, same, refused, fresh], known, {chain.slot: p}, {refused.digest}
    )
    assert wants.publishers == ((p, chain),)
    assert wants.bundles == (newer, fresh)


# Parsers: every malformed message is a FormatError, named.

SCOPE = (PUBLISHERS[0],)
REQUEST = InventoryRequest(SCOPE, ("", "a"))
SLOT_A = bytes.fromhex("a" + "0" * 63)


def response(*nodes: object, scope: object = (PUBLISHERS[0],)) -> bytes:
    return codec.pack({"scope": list(scope), "nodes": list(nodes)})  # type: ignore[call-overload]


BAD_RESPONSES = {
    "not msgpack": b"\xc1",
    "a float": codec.pack({"scope": [], "nodes": []})[:-1] + b"\xcb" + bytes(8),
    "unknown field": codec.pack({"scope": [], "nodes": [], "more": 1}),
    "publisher not asked about": response(scope=[os.urandom(32)]),
    "node not asked for": response({"prefix": "b", "children": bytes(128)}),
    "node twice": response({"prefix": "a", "entries": []}, {"prefix": "a", "entries": []}),
    "short children": response({"prefix": "", "children": bytes(127)}),
    "entry outside its node": response(
        {"prefix": "a", "entries": [[bytes.fromhex("b" + "0" * 63), 1, bytes(32)]]}
    ),
    "version zero": response({"prefix": "a", "entries": [[SLOT_A, 0, bytes(32)]]}),
    "version a bool": response({"prefix": "a", "entries": [[SLOT_A, True, bytes(32)]]}),
    "short digest": response({"prefix": "a", "entries": [[SLOT_A, 1, bytes(31)]]}),
    "entry of two": response({"prefix": "a", "entries": [[SLOT_A, 1]]}),
    "both kinds": response({"prefix": "a", "entries": [], "children": bytes(128)}),
    "too many nodes": response(*({"prefix": p, "entries": []} for p in ("", "a", "a"))),
    "over the size cap": b"\x00" * (protocol.MAX_INVENTORY_RESPONSE_BYTES + 1),
}


@pytest.mark.parametrize("name", BAD_RESPONSES)
def test_a_malformed_inventory_response_is_refused(name: str) -> None:
    with pytest.raises(FormatError):
        protocol.parse_inventory_response(BAD_RESPONSES[name], REQUEST)


def test_a_well_formed_response_parses() -> None:
    data = response({"prefix": "a", "entries": [[SLOT_A, 7, bytes(32)]]})
    parsed = protocol.parse_inventory_response(data, REQUEST)
    assert parsed.nodes[0].entries == (Entry(SLOT_A, 7, bytes(32)),)


BAD_REQUESTS = {
    "no scope": codec.pack({"scope": [], "prefixes": [""]}),
    "no prefixes": codec.pack({"scope": [bytes(32)], "prefixes": []}),
    "prefix not hex": codec.pack({"scope": [bytes(32)], "prefixes": ["xyz"]}),
    "prefix upper case": codec.pack({"scope": [bytes(32)], "prefixes": ["AB"]}),
    "prefix too deep": codec.pack({"scope": [bytes(32)], "prefixes": ["0" * 17]}),
    "short publisher": codec.pack({"scope": [bytes(31)], "prefixes": [""]}),
    "too many prefixes": codec.pack({"scope": [bytes(32)], "prefixes": ["a"] * 1025}),
    "over the size cap": bytes(protocol.MAX_REQUEST_BYTES + 1),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_a_malformed_inventory_request_is_refused(name: str) -> None:
    with pytest.raises(FormatError):
        protocol.parse_inventory_request(BAD_REQUESTS[name])


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80", codec.pack({"protocol": 1, "digest": bytes(7), "node": b"x"})],
    ids=["empty", "empty map", "short digest"],
)
def test_a_malformed_hello_is_refused(data: bytes) -> None:
    with pytest.raises(FormatError):
        protocol.parse_hello(data)


def test_a_walk_against_a_server_that_never_reaches_leaves_ends() -> None:
    reconciler = Reconciler(Inventory([]))
    with pytest.raises(FormatError, match="does not end"):
        while True:
            prefixes = reconciler.next_prefixes()
            nodes = [Node(p, children=b"\x01" * 128) for p in prefixes if len(p) < MAX_DEPTH]
            reconciler.feed((), nodes)


# Peers


def test_a_dead_discovered_peer_is_backed_off_then_forgotten_a_manual_one_never() -> None:
    book = PeerBook()
    found = book.discovered("x._meshdrop._tcp.local.", [("10.0.0.2", 1)], None, now=0.0)
    manual = book.add_manual(("10.0.0.3", 2))
    assert found is not None
    waits = []
    now = 0.0
    forgotten = False
    while not forgotten:  # probed again and again, a day long (PROTOCOL section 5)
        assert found in book.due_probes(now) and manual in book.due_probes(now)
        forgotten = book.probe_failed(found, now)
        book.probe_failed(manual, now)
        waits.append(found.next_probe - now)
        now = found.next_probe
    assert found.key not in book.peers and now >= book.timers.forget_after
    assert waits == sorted(waits) and waits[0] < waits[-1] == book.timers.backoff_max
    assert manual.key in book.peers and manual.probe_failures == len(waits)


def test_a_goodbye_forgets_at_once_and_a_manual_address_is_not_doubled() -> None:
    book = PeerBook()
    book.add_manual(("10.0.0.3", 2))
    assert book.discovered("y._meshdrop._tcp.local.", [("10.0.0.3", 2)], b"d" * 8, 0.0) is None
    assert book.peers["10.0.0.3:2"].advertised == b"d" * 8
    book.discovered("z._meshdrop._tcp.local.", [("10.0.0.4", 2)], None, 0.0)
    assert book.removed("z._meshdrop._tcp.local.") is not None
    assert "z._meshdrop._tcp.local." not in book.peers


def test_sync_is_skipped_when_nothing_changed_and_redone_when_anything_did() -> None:
    book = PeerBook()
    peer = book.add_manual(("10.0.0.3", 2))
    book.probe_ok(peer, ("10.0.0.3", 2), b"T" * 8, now=0.0)
    assert book.due_syncs(0.0, own_digest=b"T" * 8, trust_digest=b"t") == []  # identical
    assert book.due_syncs(0.0, own_digest=b"M" * 8, trust_digest=b"t") == [peer]
    book.sync_done(peer, b"T" * 8, b"t", complete=True, now=1.0)
    assert book.due_syncs(1.0, b"M" * 8, b"t") == []  # nothing new since
    assert book.due_syncs(1.0, b"M" * 8, b"u") == [peer]  # we trust someone new
    peer.advertised = b"U" * 8
    assert book.due_syncs(1.0, b"M" * 8, b"t") == [peer]  # they got something new
    book.sync_done(peer, b"U" * 8, b"t", complete=False, now=1.0)
    assert book.due_syncs(1.0, b"M" * 8, b"t") == []  # failed: retry later
    assert book.due_syncs(1.0 + peers.SYNC_RETRY_FIRST, b"M" * 8, b"t") == [peer]


def test_a_peer_that_keeps_sending_bad_data_is_shut_out_for_longer_each_time() -> None:
    book = PeerBook()
    peer = book.add_manual(("10.0.0.3", 2))
    bans = []
    for round_ in range(3):
        now = 100_000.0 * round_
        results = [book.penalise(peer, now) for _ in range(peers.PENALTY_BAN)]
        assert results == [Verdict.COUNTED] * (peers.PENALTY_BAN - 1) + [Verdict.BANNED]
        bans.append(peer.banned_until - now)
        book.probe_ok(peer, ("10.0.0.3", 2), b"x" * 8, now)
        assert book.due_syncs(now, b"y" * 8, b"t") == []
    assert bans[0] < bans[1] < bans[2]


def ref(n: int) -> ChunkRef:
    return ChunkRef("f", n, 1, bytes([n]) * 32)


def test_a_chunk_one_peer_got_wrong_goes_to_another_and_is_not_blacklisted() -> None:
    plan = ChunkPlan([ref(1), ref(2)])
    first = plan.take("bad")
    assert first == ref(1)
    plan.failed(first, "bad", bad_data=True)
    assert plan.take("bad") == ref(2)  # it may still serve the others
    assert plan.take("bad") is None and not plan.can_serve("bad")
    assert plan.take("good") == ref(1)  # the same chunk, from someone else
    plan.finished(ref(1))
    plan.failed(ref(2), "bad", bad_data=False)  # a timeout is not bad data
    assert plan.take("bad") == ref(2)
    plan.finished(ref(2))
    assert plan.complete and plan.remaining == 0
