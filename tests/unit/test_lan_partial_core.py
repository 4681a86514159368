"""The pure side of sharing partly held bundles (docs/PROTOCOL.md 3.6, 4.1, 6.3): chunk
bitmaps (core/holdings.py), partial inventory entries and how walks and wants treat them
(core/inventory.py, transports/lan/protocol.py), and rarest-first chunk plans (plan.py)."""

from __future__ import annotations

import hashlib

import pytest

from meshdrop.core.holdings import decode_bitmap, encode_bitmap, have_tag, held_digests
from meshdrop.core.inventory import (
    Entry,
    Inventory,
    Node,
    Reconciler,
    bundle_slot,
    decide_wants,
    partial_slot,
)
from meshdrop.core.manifest import ChunkRef
from meshdrop.errors import FormatError
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.plan import ChunkPlan
from meshdrop.transports.lan.protocol import InventoryRequest, InventoryResponse

PUBLISHER = hashlib.sha256(b"publisher").digest()
SLOT = bundle_slot(PUBLISHER, "big")
MANIFEST = hashlib.sha256(b"manifest").digest()


def ref(n: int) -> ChunkRef:
    return ChunkRef("f", n, 1, bytes([n]) * 32)


def partial(have: bytes) -> Entry:
    return Entry(partial_slot(SLOT), 7, MANIFEST, PUBLISHER, have_tag(have))


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 16, 1000])
def test_a_bitmap_round_trips_first_chunk_in_the_top_bit(count: int) -> None:
    bits = [i % 3 == 0 for i in range(count)]
    data = encode_bitmap(bits)
    assert len(data) == (count + 7) // 8
    assert decode_bitmap(data, count) == bits
    if count:
        assert data[0] & 0x80  # chunk 0 is held


@pytest.mark.parametrize(
    ("name", "data", "count"),
    [
        ("one byte short", b"\xff", 9),
        ("one byte over", b"\xff\x80\x00", 9),
        ("a bit past the last chunk", b"\xff\xc0", 9),
        ("bits for no chunk at all", b"\x01", 0),
    ],
)
def test_a_malformed_bitmap_is_refused(name: str, data: bytes, count: int) -> None:
    with pytest.raises(FormatError):
        decode_bitmap(data, count)


def test_held_digests_counts_a_repeated_chunk_once_held_at_either_place() -> None:
    digests = [b"a" * 32, b"b" * 32, b"a" * 32]
    assert held_digests(encode_bitmap([False, True, True]), digests) == {b"a" * 32, b"b" * 32}


def test_a_partial_entry_round_trips_on_the_wire_and_a_bad_tag_is_refused() -> None:
    entry = partial(b"\xf0")
    request = InventoryRequest((PUBLISHER,), ("",))
    data = protocol.encode_inventory_response(
        InventoryResponse((PUBLISHER,), (Node("", entries=(entry,)),))
    )
    [node] = protocol.parse_inventory_response(data, request).nodes
    assert node.entries == (Entry(entry.slot, 7, MANIFEST, have=entry.have),)
    bad = data.replace(entry.have, b"")  # a have of 0 bytes
    with pytest.raises(FormatError):
        protocol.parse_inventory_response(bad, request)


def test_nodes_holding_different_parts_differ_and_the_same_parts_do_not() -> None:
    whole = Entry(SLOT, 6, b"o" * 32, PUBLISHER)  # an older version held whole by both
    first, second = partial(b"\xf0"), partial(b"\x0f")
    assert Inventory([whole, first]).digest == Inventory([whole, partial(b"\xf0")]).digest
    assert Inventory([whole, first]).digest != Inventory([whole, second]).digest
    assert Inventory([whole, first]).digest != Inventory([whole]).digest
    walk = Reconciler(Inventory([whole, first]))
    theirs = Inventory([whole, second])
    while not walk.done:
        walk.feed([PUBLISHER], [theirs.answer(p) for p in walk.next_prefixes()])
    assert [(e.slot, e.held) for e in walk.offered] == [(second.slot, second.held)]


def test_a_partial_entry_is_wanted_unless_that_version_of_its_name_was_seen() -> None:
    offered = [Entry(partial_slot(SLOT), 7, MANIFEST, have=b"h" * 8)]
    assert decide_wants(offered, {}, {}).bundles == tuple(offered)
    seen = {SLOT: 7, partial_slot(SLOT): 7}  # the store's snapshot maps both slots
    assert decide_wants(offered, seen, {}).bundles == ()
    older = {SLOT: 6, partial_slot(SLOT): 6}
    assert decide_wants(offered, older, {}).bundles == tuple(offered)


def test_rarest_first_each_peer_only_what_it_holds_and_nothing_twice() -> None:
    plan = ChunkPlan([ref(1), ref(2), ref(3), ref(4)])
    plan.add_source("p1", frozenset({ref(1).digest, ref(2).digest}))
    plan.add_source("p2", frozenset({ref(2).digest, ref(3).digest}))
    assert plan.take("whole") == ref(4)  # held by no partial source: rarest
    assert plan.take("p1") == ref(1)  # only p1 has it; chunk 2 has two holders
    assert plan.take("p2") == ref(3)
    assert plan.take("p1") == ref(2)
    assert plan.take("p2") is None and plan.take("whole") is None
    taken = [plan.in_flight.get(r.digest) for r in map(ref, (1, 2, 3, 4))]
    assert taken == ["p1", "p1", "p2", "whole"]
    plan.failed(ref(2), "p1", bad_data=True)  # p1 got it wrong: p2 holds it too
    assert not plan.can_serve("p1") and plan.take("p2") == ref(2)
    for n in (1, 2, 3, 4):
        plan.finished(ref(n))
    assert plan.complete and plan.remaining == 0


def test_a_partial_source_that_gave_all_it_had_is_drained() -> None:
    plan = ChunkPlan([ref(1), ref(2)])
    held = frozenset({ref(1).digest})
    plan.add_source("p", held)
    assert not plan.holds_none_left(held)
    got = plan.take("p")
    assert got == ref(1) and plan.take("p") is None
    assert not plan.holds_none_left(held)  # still in flight
    plan.finished(ref(1))
    assert plan.holds_none_left(held) and not plan.complete
    plan.remove_source("p")
    assert plan.take("whole") == ref(2)
