"""Peers that are lost and found again, that introduce themselves, and that pay for what
they did wrong (docs/PROTOCOL.md sections 3.1, 5 and 6.4): PeerBook's pure decisions
and the hello's introduction, with ``now`` passed in (no clock, no sockets)."""

from __future__ import annotations

import pytest

from meshdrop.errors import FormatError
from meshdrop.transports.lan import peers
from meshdrop.transports.lan.introduce import Introduction, encode_query, parse_query
from meshdrop.transports.lan.peers import PeerBook, PeerTimers, Verdict

HOST = ("10.0.0.7", 8470)
NODE = b"\x01" * 8
DIGEST = b"D" * 8


# Penalties (PROTOCOL 6.4)


def test_a_burst_of_bad_chunks_from_one_transfer_is_one_offence() -> None:
    book = PeerBook()
    peer = book.add_manual(HOST)
    verdicts = [book.penalise(peer, 0.0, offence=b"bundle-1") for _ in range(12)]
    assert verdicts == [Verdict.COUNTED] + [Verdict.IGNORED] * 11
    assert peer.offences == 1 and not peer.banned(0.0)


def test_offences_of_other_transfers_or_a_later_sync_count_anew() -> None:
    book = PeerBook()
    peer = book.add_manual(HOST)
    assert book.penalise(peer, 0.0, b"bundle-1") is Verdict.COUNTED
    assert book.penalise(peer, 0.0, b"bundle-2") is Verdict.COUNTED
    assert book.penalise(peer, 0.0, b"bundle-2") is Verdict.IGNORED
    book.sync_done(peer, DIGEST, b"t", complete=False, now=1.0)
    assert book.penalise(peer, 1.0, b"bundle-1") is Verdict.BANNED  # the third offence
    assert peer.offences == 3


def test_the_first_ban_is_ten_minutes_and_nothing_counts_while_banned() -> None:
    book = PeerBook()
    peer = book.add_manual(HOST)
    for key in ("a", "b", "c"):
        verdict = book.penalise(peer, 0.0, key)
    assert verdict is Verdict.BANNED and peer.banned_until == 600.0 == peers.BAN_FIRST
    for n in range(20):  # whatever it sends while banned costs it nothing more
        assert book.penalise(peer, 10.0 + n, f"more-{n}") is Verdict.IGNORED
    assert peer.offences == 3 and peer.bans == 1 and peer.banned_until == 600.0
    for key in ("d", "e", "f"):  # misbehaving again once the ban ended: twice as long
        verdict = book.penalise(peer, 1000.0, key)
    assert verdict is Verdict.BANNED and peer.banned_until == 1000.0 + 1200.0


def test_bans_double_up_to_a_day() -> None:
    book = PeerBook()
    peer = book.add_manual(HOST)
    now = 0.0
    for _ in range(12):
        for key in range(peers.PENALTY_BAN):
            book.penalise(peer, now, key)
        length = peer.banned_until - now
        now = peer.banned_until
        book.sync_done(peer, DIGEST, b"t", complete=False, now=now)
    assert length == peers.BAN_MAX


# Lost peers (PROTOCOL 5)


def test_an_unreachable_peer_is_probed_with_a_capped_backoff_for_a_day() -> None:
    timers = PeerTimers()
    book = PeerBook(timers=timers)
    peer = book.discovered("x._meshdrop._tcp.local.", [HOST], DIGEST, now=0.0)
    assert peer is not None
    book.probe_ok(peer, HOST, DIGEST, 0.0, NODE)
    now, waits = 100.0, []
    while now < 600.0:  # ten minutes cut off: never forgotten, probed every 30 s at least
        assert not book.probe_failed(peer, now)
        waits.append(peer.next_probe - now)
        now = peer.next_probe
    assert peer.key in book.peers and peer.probe_failures == len(waits) > 5
    assert waits[:3] == [2.0, 4.0, 8.0] and max(waits) == timers.backoff_max == 30.0
    assert book.probe_ok(peer, HOST, b"N" * 8, now, NODE)  # it came back: alive again


def test_an_announcement_during_the_backoff_makes_the_peer_due_at_once() -> None:
    book = PeerBook()
    peer = book.discovered("x._meshdrop._tcp.local.", [HOST], DIGEST, now=0.0)
    assert peer is not None
    for n in range(6):
        book.probe_failed(peer, float(n))
    assert peer.next_probe > 10.0
    book.discovered("x._meshdrop._tcp.local.", [HOST], b"N" * 8, now=10.0)
    assert peer in book.due_probes(10.0) and peer.advertised == b"N" * 8


def test_a_peer_silent_for_a_day_is_forgotten_unless_it_was_named() -> None:
    book = PeerBook(timers=PeerTimers(forget_after=1000.0))
    found = book.discovered("x._meshdrop._tcp.local.", [HOST], None, now=0.0)
    introduced, _ = book.hello_from(("10.0.0.8", 1), b"\x02" * 8, DIGEST, now=0.0)
    manual = book.add_manual(("10.0.0.9", 2))
    assert found is not None and introduced is not None
    for peer in (found, introduced, manual):
        assert not book.probe_failed(peer, 999.0)
    assert book.probe_failed(found, 1000.0) and book.probe_failed(introduced, 1000.0)
    assert not book.probe_failed(manual, 10**9)
    assert list(book.peers) == [manual.key]


# Hellos that introduce their caller (PROTOCOL 3.1)


def test_a_hello_from_an_unknown_node_adds_a_peer_to_probe_and_pull_from() -> None:
    book = PeerBook()
    peer, new = book.hello_from(HOST, NODE, DIGEST, now=5.0)
    assert new and peer is not None and peer.inbound and not peer.alive
    assert peer in book.due_probes(5.0)  # alive only once our own hello reaches it
    book.probe_ok(peer, HOST, DIGEST, 5.0, NODE)
    assert book.due_syncs(5.0, own_digest=b"o" * 8, trust_digest=b"t") == [peer]
    again, new = book.hello_from(HOST, NODE, b"N" * 8, now=6.0)
    assert again is peer and not new and peer.advertised == b"N" * 8
    assert peer not in book.due_probes(6.0 + book.timers.ping - 1)  # one ping per pair


def test_our_own_hello_is_ignored_and_a_known_node_is_not_added_twice() -> None:
    book = PeerBook(self_ids={NODE})
    assert book.hello_from(HOST, NODE, DIGEST, 0.0) == (None, False)
    manual = book.add_manual(HOST)
    assert book.hello_from(HOST, b"\x03" * 8, DIGEST, 0.0) == (manual, False)
    found = book.discovered("y._meshdrop._tcp.local.", [("10.0.0.5", 9)], None, 0.0)
    assert found is not None
    book.probe_ok(found, ("10.0.0.5", 9), DIGEST, 0.0, b"\x04" * 8)
    # The same node, saying hello from another of its addresses: still one peer.
    assert book.hello_from(("10.0.0.6", 9), b"\x04" * 8, DIGEST, 0.0) == (found, False)
    assert len(book.peers) == 2


def test_a_peer_known_by_its_hello_becomes_the_discovered_peer_when_announced() -> None:
    book = PeerBook()
    introduced, _ = book.hello_from(HOST, NODE, DIGEST, 0.0)
    found = book.discovered("z._meshdrop._tcp.local.", [HOST], DIGEST, 1.0)
    assert found is introduced and found is not None
    assert list(book.peers) == ["z._meshdrop._tcp.local."] and not found.inbound


def test_hellos_from_strangers_cannot_crowd_out_known_peers() -> None:
    book = PeerBook()
    manual = book.add_manual(("10.0.0.1", 1))
    for n in range(200):
        book.hello_from((f"10.1.{n // 250}.{n % 250}", 1), n.to_bytes(8, "big"), DIGEST, n)
    inbound = [p for p in book.peers.values() if p.inbound]
    assert len(inbound) == peers.MAX_INBOUND and manual.key in book.peers
    for n in range(20):  # one host, many ports: a few of them only
        book.hello_from(("10.2.0.1", 1000 + n), (10**6 + n).to_bytes(8, "big"), DIGEST, 500)
    assert sum(p.addresses[0][0] == "10.2.0.1" for p in book.peers.values()) <= 8
    found = book.discovered("w._meshdrop._tcp.local.", [("10.3.0.1", 1)], None, 600.0)
    assert found is not None  # an announced peer still gets in, evicting a silent stranger


def test_a_change_of_our_inventory_makes_every_live_peer_due_for_a_hello() -> None:
    book = PeerBook()
    alive = book.add_manual(("10.0.0.1", 1))
    dead = book.add_manual(("10.0.0.2", 1))
    book.probe_ok(alive, ("10.0.0.1", 1), DIGEST, 0.0)
    book.probe_failed(dead, 0.0)
    assert book.due_probes(1.0) == []
    assert book.changed(1.0) == [alive]
    assert book.due_probes(1.0) == [alive]


def test_changes_close_together_send_one_notice_per_gap() -> None:
    book = PeerBook()
    peer = book.add_manual(("10.0.0.1", 1))
    book.probe_ok(peer, ("10.0.0.1", 1), DIGEST, 0.0)
    book.changed(1.0)
    assert book.due_probes(1.0) == [peer]
    book.probe_ok(peer, ("10.0.0.1", 1), DIGEST, 1.0)  # the notice went out
    book.changed(1.5)  # another change half a second later: held back until 1.0 + gap
    assert book.due_probes(1.5) == []
    assert book.due_probes(1.0 + book.timers.notice_gap) == [peer]


def test_introductions_round_trip_and_malformed_ones_are_refused() -> None:
    intro = Introduction(NODE, DIGEST, 8470)
    query = encode_query(intro)
    pairs = dict(p.split("=") for p in query.lstrip("?").split("&"))
    assert parse_query(pairs, len(pairs)) == intro
    assert parse_query({}) is None


@pytest.mark.parametrize(
    "query",
    [
        {"node": "01", "digest": "00" * 8},  # no port
        {"node": "01", "digest": "00" * 8, "port": "1", "extra": "1"},
        {"node": "", "digest": "00" * 8, "port": "1"},
        {"node": "0", "digest": "00" * 8, "port": "1"},  # odd length
        {"node": "AB", "digest": "00" * 8, "port": "1"},  # upper case
        {"node": "00" * 33, "digest": "00" * 8, "port": "1"},
        {"node": "01", "digest": "00" * 7, "port": "1"},
        {"node": "01", "digest": "00" * 8, "port": "0"},
        {"node": "01", "digest": "00" * 8, "port": "65536"},
        {"node": "01", "digest": "00" * 8, "port": "080"},
        {"node": "01", "digest": "00" * 8, "port": "+80"},
    ],
)
def test_a_malformed_introduction_is_refused(query: dict[str, str]) -> None:
    with pytest.raises(FormatError):
        parse_query(query)


def test_a_repeated_parameter_is_refused() -> None:
    with pytest.raises(FormatError):
        parse_query({"node": "01", "digest": "00" * 8, "port": "1"}, keys=4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", PeerTimers()),
        ("ping=3600", PeerTimers(ping=3600.0)),
        (" backoff_max=1, probe_timeout=0.5 ", PeerTimers(backoff_max=1.0, probe_timeout=0.5)),
    ],
)
def test_timers_parse(text: str, expected: PeerTimers) -> None:
    assert PeerTimers.parse(text) == expected


@pytest.mark.parametrize("text", ["ping", "pong=1", "ping=0", "ping=-1", "ping=x", "ping=inf"])
def test_bad_timers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        PeerTimers.parse(text)
