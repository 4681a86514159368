"""The batch messages of the peer API (transports/lan/protocol.py, PROTOCOL.md 3.8, 3.9):
every malformed request or answer refused by name. Pure: no sockets."""

from __future__ import annotations

import pytest

from meshdrop.core import codec
from meshdrop.errors import FormatError
from meshdrop.transports.lan import protocol

D1, D2 = b"\x01" * 32, b"\x02" * 32

BAD_REQUESTS = {
    "empty": b"",
    "not a list": codec.pack({"digests": [D1]}),
    "no digest": codec.pack([]),
    "a short digest": codec.pack([D1[:31]]),
    "a digest as text": codec.pack(["01" * 32]),
    "a digest twice": codec.pack([D1, D1]),
    "more than the cap": codec.pack([i.to_bytes(32, "big") for i in range(65)]),
    "over the size cap": bytes(protocol.MAX_BATCH_REQUEST_BYTES + 1),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_a_malformed_batch_request_is_refused(name: str) -> None:
    with pytest.raises(FormatError):
        protocol.parse_digests(BAD_REQUESTS[name], protocol.MAX_BATCH_ENVELOPES, "a request")


def test_a_batch_request_round_trips_in_order() -> None:
    data = protocol.encode_digests([D2, D1])
    assert protocol.parse_digests(data, protocol.MAX_BATCH_CHUNKS, "a request") == (D2, D1)


BAD_ANSWERS = {
    "empty": b"",
    "not a list": codec.pack({"a": b"x"}),
    "more items than asked": codec.pack([b"a", b"b", b"c"]),
    "an empty envelope": codec.pack([b""]),
    "an envelope as text": codec.pack(["envelope"]),
    "a nested list": codec.pack([[b"a"]]),
    "over the size cap": bytes(protocol.MAX_BATCH_ENVELOPE_BYTES + 1025),
}


@pytest.mark.parametrize("name", BAD_ANSWERS)
def test_a_malformed_batch_of_envelopes_is_refused(name: str) -> None:
    with pytest.raises(FormatError):
        protocol.parse_envelope_batch(BAD_ANSWERS[name], asked=2)


def test_a_batch_of_envelopes_may_be_cut_short_and_say_what_is_not_served() -> None:
    data = protocol.encode_envelope_batch([b"envelope", None])
    assert protocol.parse_envelope_batch(data, asked=3) == [b"envelope", None]
