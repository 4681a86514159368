"""A full peer book and nodes that come back under new names (found by scripts/soak,
docs/THREATS.md "Churning mesh (soak)"): a node killed or unplugged says no goodbye, its
mDNS pointer record lives 75 minutes, and it returns under a new random name. Once 64 such
dead entries filled a long-running node's book, it ignored every new announcement and
was cut off from the restarted nodes for a day."""

from __future__ import annotations

from meshdrop.transports.lan import peers
from meshdrop.transports.lan.peers import PeerBook

DIGEST = b"D" * 8


def announce(book: PeerBook, n: int, now: float) -> peers.Peer | None:
    return book.discovered(f"n{n}._meshdrop._tcp.local.", [(f"10.0.{n // 250}.{n % 250}", 1)],
                           DIGEST, now)  # fmt: skip


def test_a_node_back_under_a_new_name_gets_in_a_book_full_of_dead_entries() -> None:
    book = PeerBook()
    for n in range(peers.MAX_PEERS):
        peer = announce(book, n, float(n))
        assert peer is not None
        book.probe_failed(peer, float(n) + 0.5)  # killed: no goodbye, no answer
    assert len(book.peers) == peers.MAX_PEERS
    back = announce(book, 1000, 100.0)
    assert back is not None and back.key in book.peers
    assert len(book.peers) == peers.MAX_PEERS
    assert "n0._meshdrop._tcp.local." not in book.peers  # the one silent for longest went


def test_live_and_named_peers_are_never_evicted_for_an_announcement() -> None:
    book = PeerBook()
    manual = book.add_manual(("10.9.9.9", 1))
    book.probe_failed(manual, 0.0)  # unreachable, yet named by the owner
    for n in range(peers.MAX_PEERS - 1):
        peer = announce(book, n, float(n))
        assert peer is not None
        book.probe_ok(peer, peer.addresses[0], DIGEST, float(n))
    assert announce(book, 1000, 100.0) is None
    assert manual.key in book.peers and len(book.peers) == peers.MAX_PEERS
