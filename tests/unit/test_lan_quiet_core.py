"""What an open node says of itself (issue 16): the blinded list of held publishers
(transports/lan/protocol.py, PROTOCOL.md 3.7) and the salted advertised digest
(core/inventory.py, PROTOCOL.md 4.4). Pure: no sockets."""

from __future__ import annotations

import hashlib
import os

import pytest

from meshdrop.core import codec
from meshdrop.core.inventory import MARK_BYTES, advertised_digest
from meshdrop.errors import FormatError
from meshdrop.transports.lan import protocol

IDS = [hashlib.sha256(b"publisher %d" % i).digest() for i in range(5)]
NONCE = bytes(range(16))


def test_a_client_learns_which_of_the_publishers_it_knows_the_server_holds() -> None:
    data = protocol.encode_held_publishers(NONCE, IDS[:3])
    held = protocol.parse_held_publishers(data)
    assert held.of([IDS[4], IDS[2], IDS[0]]) == tuple(sorted([IDS[0], IDS[2]]))
    assert held.of(IDS[3:]) == ()
    assert not any(p in data or p.hex().encode() in data for p in IDS)


def test_the_same_publishers_are_listed_unlike_under_another_nonce() -> None:
    first = protocol.parse_held_publishers(protocol.encode_held_publishers(NONCE, IDS))
    other = protocol.parse_held_publishers(protocol.encode_held_publishers(os.urandom(16), IDS))
    assert not first.tags & other.tags
    assert first.of(IDS) == other.of(IDS) == tuple(sorted(IDS))


def test_a_server_that_holds_nothing_lists_nothing() -> None:
    held = protocol.parse_held_publishers(protocol.encode_held_publishers(NONCE, []))
    assert held.tags == frozenset() and held.of(IDS) == ()


def _tags(*publishers: bytes) -> bytes:
    return b"".join(sorted(protocol.publisher_tag(NONCE, p) for p in publishers))


def _descending(*publishers: bytes) -> bytes:
    tags = sorted((protocol.publisher_tag(NONCE, p) for p in publishers), reverse=True)
    return b"".join(tags)


BAD_LISTS = {
    "empty": b"",
    "not a map": codec.pack([NONCE, b""]),
    "no nonce": codec.pack({"tags": _tags(IDS[0])}),
    "a short nonce": codec.pack({"nonce": NONCE[:15], "tags": b""}),
    "a nonce as text": codec.pack({"nonce": "0" * 16, "tags": b""}),
    "a torn tag": codec.pack({"nonce": NONCE, "tags": _tags(IDS[0])[:15]}),
    "a tag repeated": codec.pack({"nonce": NONCE, "tags": _tags(IDS[0]) * 2}),
    "tags out of order": codec.pack({"nonce": NONCE, "tags": _descending(IDS[0], IDS[1])}),
    "tags as a list": codec.pack({"nonce": NONCE, "tags": [_tags(IDS[0])]}),
    "another key": codec.pack({"nonce": NONCE, "tags": b"", "x": 1}),
    "more tags than a scope": codec.pack(
        {"nonce": NONCE, "tags": bytes(protocol.TAG_BYTES * (protocol.MAX_SCOPE + 1))}
    ),
    "over the size cap": bytes(protocol.MAX_HELD_RESPONSE_BYTES + 1),
}


@pytest.mark.parametrize("name", BAD_LISTS)
def test_a_malformed_list_of_publishers_is_refused(name: str) -> None:
    with pytest.raises(FormatError):
        protocol.parse_held_publishers(BAD_LISTS[name])


def test_the_advertised_digest_changes_with_the_inventory_and_the_start_only() -> None:
    digest, other = bytes(8), b"\x01" * 8
    salt, next_start = os.urandom(32), os.urandom(32)
    said = advertised_digest(salt, digest)
    assert len(said) == MARK_BYTES
    assert said == advertised_digest(salt, digest)  # nothing changed: nothing to notice
    assert said != advertised_digest(salt, other)  # the inventory changed
    assert said != advertised_digest(next_start, digest)  # another start: unlinkable
    assert said != digest
