"""Round trips (hypothesis): whatever the product's encoders write, its strict parsers read
back unchanged. The fuzz targets (tests/fuzz/) check the other direction: what the
parsers accept from strangers. Invites have their round trip in test_circles_core.py."""

from __future__ import annotations

import string

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from meshdrop.core import acks, codec, storekeys
from meshdrop.core.keys import public_bytes
from meshdrop.core.records import MAX_TIME, PublisherRecord, Signer, parse_record
from meshdrop.core.reports import Attachment, Report, decode_report, encode_report
from meshdrop.transports.courier.parts import (
    MAX_PARTS,
    PartHeader,
    encode_part_header,
    parse_part_header,
)
from meshdrop.transports.courier.want import (
    MAX_PUBLISHERS,
    STREAM_ID_BYTES,
    Want,
    parse_want,
)
from meshdrop.transports.lan import protocol

LIMITS = codec.Limits(max_bytes=1 << 20, max_depth=8, max_items=4096, max_bin=1 << 20)
KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(4)]
PUBLIC_KEYS = sorted(public_bytes(k) for k in KEYS)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_codec_unpacks_what_it_packs(value: codec.Value) -> None:
    data = codec.pack(value)
    assert codec.unpack(data, LIMITS, "value") == value
    assert codec.pack(codec.unpack(data, LIMITS, "value")) == data


@given(
    envelope_length=st.integers(0, 1 << 24),
    count=st.integers(1, MAX_PARTS),
    number=st.integers(1, MAX_PARTS),
    start=st.integers(0, 2**63 - 1),
    length=st.integers(0, 2**63 - 1),
)
def test_part_header_round_trip(
    envelope_length: int, count: int, number: int, start: int, length: int
) -> None:
    header = PartHeader(envelope_length, min(number, count), count, start, length)
    assert parse_part_header(encode_part_header(header), "part") == header


@settings(max_examples=50)
@given(
    created=st.integers(0, 2**62),
    have=st.dictionaries(
        st.binary(min_size=STREAM_ID_BYTES, max_size=STREAM_ID_BYTES),
        st.integers(0, 2**64 - 1),
        max_size=40,
    ),
    publishers=st.frozensets(st.binary(min_size=32, max_size=32), max_size=MAX_PUBLISHERS),
)
def test_want_file_round_trip(
    created: int, have: dict[bytes, int], publishers: frozenset[bytes]
) -> None:
    want = Want(created, have, publishers)
    assert parse_want(want.encode()) == want


names = st.text(string.ascii_letters + string.digits + " -", min_size=1, max_size=100)
times = st.integers(0, MAX_TIME)


@settings(max_examples=50)
@given(
    name=names,
    version=st.integers(1, 2**63 - 1),
    created=times,
    roots=st.integers(1, len(PUBLIC_KEYS)),
    threshold=st.integers(1, len(PUBLIC_KEYS)),
    signer_times=st.lists(st.tuples(times, times), max_size=len(PUBLIC_KEYS)),
)
def test_publisher_record_round_trip(
    name: str,
    version: int,
    created: int,
    roots: int,
    threshold: int,
    signer_times: list[tuple[int, int]],
) -> None:
    signers = tuple(
        Signer(key, not_before, expires, ("*",))
        for key, (not_before, expires) in zip(PUBLIC_KEYS, signer_times, strict=False)
    )
    record = PublisherRecord(
        publisher=bytes(32),
        name=name,
        version=version,
        created=created,
        roots=tuple(PUBLIC_KEYS[:roots]),
        threshold=min(threshold, roots),
        signers=signers,
    )
    data = codec.pack(record.to_value())
    assert parse_record(data) == record


@settings(max_examples=25, deadline=None)
@given(
    created=times,
    sequence=st.integers(1, 2**63 - 1),
    drops=st.sets(st.binary(min_size=32, max_size=32), min_size=1, max_size=20),
)
def test_signed_ack_list_round_trip(created: int, sequence: int, drops: set[bytes]) -> None:
    publisher = bytes([9]) * 32
    ack_list = acks.make_ack_list(publisher, created, sequence, drops)
    blob = acks.sign_ack_list(ack_list, KEYS[0])
    assert acks.verify_ack_list(blob, publisher, lambda _: [public_bytes(KEYS[0])]) == ack_list


@given(
    hello=st.builds(
        protocol.Hello,
        st.integers(0, 2**16),
        st.binary(min_size=protocol.MARK_BYTES, max_size=protocol.MARK_BYTES),
        st.binary(min_size=1, max_size=32),
    ),
    nonce=st.binary(min_size=protocol.NONCE_BYTES, max_size=protocol.NONCE_BYTES),
    publishers=st.sets(st.binary(min_size=32, max_size=32), max_size=20),
    digests=st.sets(st.binary(min_size=32, max_size=32), min_size=1, max_size=64),
)
def test_peer_messages_round_trip(
    hello: protocol.Hello, nonce: bytes, publishers: set[bytes], digests: set[bytes]
) -> None:
    assert protocol.parse_hello(protocol.encode_hello(hello)) == hello
    held = protocol.parse_held_publishers(protocol.encode_held_publishers(nonce, publishers))
    assert held.of(publishers) == tuple(sorted(publishers))
    encoded = protocol.encode_digests(digests)
    assert set(protocol.parse_digests(encoded, 64, "digests")) == digests


@given(
    scope=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=8, unique=True),
    prefixes=st.lists(
        st.text("0123456789abcdef", max_size=protocol.MAX_DEPTH), min_size=1, max_size=8
    ),
)
def test_inventory_request_round_trip(scope: list[bytes], prefixes: list[str]) -> None:
    request = protocol.InventoryRequest(tuple(scope), tuple(prefixes))
    encoded = protocol.encode_inventory_request(request)
    assert protocol.parse_inventory_request(encoded) == request


@settings(max_examples=25)
@given(
    text=st.text(max_size=200),
    files=st.lists(
        st.tuples(st.text(string.ascii_letters, min_size=1, max_size=20), st.binary(max_size=100)),
        max_size=3,
    ),
)
def test_report_round_trip(text: str, files: list[tuple[str, bytes]]) -> None:
    report = Report(
        text, tuple(Attachment(name, "text/plain", data) for name, data in files), "ABCD2345"
    )
    assert decode_report(encode_report(report)) == report


@settings(max_examples=10, deadline=None)
@given(salt=st.binary(min_size=storekeys.SALT_BYTES, max_size=storekeys.SALT_BYTES))
def test_slots_file_round_trip(salt: bytes) -> None:
    header = storekeys.Header(salt, 10, storekeys.SCRYPT_R, storekeys.SCRYPT_P)
    slots = storekeys.new_slots_file(storekeys.new_store_keys(), bytes(32), header)
    decoded = storekeys.decode_slots_file(slots.encode())
    assert decoded == slots
    assert storekeys.unwrap(decoded, bytes(32), storekeys.PASSPHRASE_PLACES).keys is not None
