"""Report keys, their retirements and ack lists (core/reportkeys.py, core/acks.py,
core/signedobject.py): round trips, and every bad input refused by its own error type
with a one-line message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from meshdrop.core import codec, signedobject
from meshdrop.core.acks import (
    ACK_LIST,
    MAX_ACKED,
    make_ack_list,
    sign_ack_list,
    verify_ack_list,
)
from meshdrop.core.keys import Domain, generate_private_key, public_bytes, sign
from meshdrop.core.reportkeys import (
    REPORT_KEY,
    KeyRetirement,
    ReportKey,
    ReportPrivateKey,
    Suite,
    make_report_keypair,
    sign_report_key,
    sign_retirement,
    verify_report_key,
    verify_retirement,
)
from meshdrop.errors import (
    FormatError,
    MeshdropError,
    ReportKeyExpiredError,
    ReportKeySuiteError,
    SignedObjectKindError,
    SignedObjectPublisherError,
    SignedObjectSignerError,
)

PUBLISHER = bytes(range(32))
OTHER_PUBLISHER = bytes(32)
CREATED = 1_800_000_000
NOT_AFTER = CREATED + 365 * 86_400
NOW = CREATED + 86_400
SIGNER = generate_private_key()
STRANGER = generate_private_key()


def signer_keys_at(when: int) -> set[bytes]:
    """The publisher's signing keys: SIGNER, valid from a day before CREATED on."""
    return {public_bytes(SIGNER)} if when >= CREATED - 86_400 else set()


def keypair(suite: Suite, seed: bytes | None = None) -> tuple[ReportPrivateKey, ReportKey]:
    return make_report_keypair(suite, PUBLISHER, CREATED, NOT_AFTER, 1, seed)


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("suite", list(Suite))
def test_report_key_round_trip(suite: Suite) -> None:
    private, key = keypair(suite)
    verified = verify_report_key(sign_report_key(key, SIGNER), PUBLISHER, signer_keys_at, NOW)
    assert verified == key
    assert verified.key_id == private.key_id and len(key.public_key) == suite.public_key_bytes


@pytest.mark.parametrize("suite", list(Suite))
def test_report_key_from_a_seed_is_the_same_every_time(suite: Suite) -> None:
    _, first = keypair(suite, seed=b"\x07" * 32)
    _, again = keypair(suite, seed=b"\x07" * 32)
    _, other = keypair(suite, seed=b"\x08" * 32)
    assert first.public_key == again.public_key != other.public_key


def test_private_key_repr_shows_no_seed() -> None:
    private, _ = keypair(Suite.MLKEM768_X25519, seed=b"\x42" * 32)
    assert "42" * 4 not in repr(private) and private.key_id.hex() in repr(private)


def signed_with(kind: signedobject.Kind, value: dict[str, Any], domain: Domain) -> bytes:
    """``value`` signed by SIGNER under ``domain`` (not necessarily the kind's own)."""
    raw = codec.pack({**value, "type": kind.type_name, "format": 1})
    return codec.pack(
        {"object": raw, "signer": public_bytes(SIGNER), "sig": sign(SIGNER, domain, raw)}
    )


def key_value(**changes: Any) -> dict[str, Any]:
    _, key = keypair(Suite.X25519, seed=b"\x01" * 32)
    return {**key.to_value(), **changes}


def flip_last_signature_byte(blob: bytes) -> bytes:
    envelope = codec.unpack(blob, codec.Limits(max_bytes=1 << 20), "test")
    envelope["sig"] = envelope["sig"][:-1] + bytes([envelope["sig"][-1] ^ 1])
    return codec.pack(envelope)


@dataclass(frozen=True)
class BadKey:
    name: str
    blob: Callable[[], bytes]
    error: type[MeshdropError]
    message: str
    now: int = NOW


def good_blob(suite: Suite = Suite.X25519) -> bytes:
    return sign_report_key(keypair(suite, seed=b"\x01" * 32)[1], SIGNER)


def retirement_blob() -> bytes:
    return sign_retirement(KeyRetirement(PUBLISHER, bytes(16), NOW, NOW, 2), SIGNER)


BAD_KEYS = [
    BadKey(
        "bad-signature",
        lambda: flip_last_signature_byte(good_blob()),
        SignedObjectSignerError,
        "does not verify",
    ),
    BadKey(
        "signed-by-a-stranger",
        lambda: sign_report_key(keypair(Suite.X25519)[1], STRANGER),
        SignedObjectSignerError,
        "not a signing key",
    ),
    BadKey(
        "signed-before-the-signer-was-valid",
        lambda: sign_report_key(
            replace(keypair(Suite.X25519)[1], created=CREATED - 2 * 86_400), SIGNER
        ),
        SignedObjectSignerError,
        "not a signing key",
    ),
    BadKey(
        "signed-under-the-record-prefix",
        lambda: signed_with(REPORT_KEY, key_value(), Domain.PUBLISHER_RECORD),
        SignedObjectSignerError,
        "does not verify",
    ),
    BadKey(
        "another-publisher",
        lambda: sign_report_key(
            replace(keypair(Suite.X25519)[1], publisher=OTHER_PUBLISHER), SIGNER
        ),
        SignedObjectPublisherError,
        "another publisher",
    ),
    BadKey(
        "unknown-field",
        lambda: signed_with(REPORT_KEY, key_value(comment="hi"), Domain.REPORT_KEY),
        FormatError,
        "unknown field: comment",
    ),
    BadKey(
        "wrong-kind-retirement",
        retirement_blob,
        SignedObjectKindError,
        "not a 'meshdrop-report-key'",
    ),
    BadKey(
        "wrong-kind-ack-list",
        lambda: sign_ack_list(make_ack_list(PUBLISHER, NOW, 1, [bytes(32)]), SIGNER),
        SignedObjectKindError,
        "not a 'meshdrop-report-key'",
    ),
    BadKey("expired", good_blob, ReportKeyExpiredError, "expired", now=NOT_AFTER + 1),
    BadKey(
        "unknown-suite",
        lambda: signed_with(REPORT_KEY, key_value(suite="rsa"), Domain.REPORT_KEY),
        ReportKeySuiteError,
        "unknown suite",
    ),
    BadKey(
        "key-id-not-its-key",
        lambda: signed_with(REPORT_KEY, key_value(key_id=bytes(16)), Domain.REPORT_KEY),
        FormatError,
        "key id",
    ),
    BadKey(
        "public-key-too-short",
        lambda: signed_with(REPORT_KEY, key_value(public_key=bytes(31)), Domain.REPORT_KEY),
        FormatError,
        "exactly 32 bytes",
    ),
    BadKey(
        "low-order-x25519-key",
        lambda: signed_with(
            REPORT_KEY,
            key_value(
                public_key=bytes(32),
                key_id=ReportKey(PUBLISHER, Suite.X25519, bytes(32), 0, 1, 1).key_id,
            ),
            Domain.REPORT_KEY,
        ),
        ReportKeySuiteError,
        "not a valid key",
    ),
    BadKey(
        "ends-before-it-starts",
        lambda: sign_report_key(replace(keypair(Suite.X25519)[1], not_after=CREATED - 1), SIGNER),
        FormatError,
        "ends before it starts",
    ),
    BadKey("truncated", lambda: good_blob()[:-1], FormatError, "truncated"),
    BadKey("trailing-bytes", lambda: good_blob() + b"\x00", FormatError, "unexpected bytes"),
    BadKey("not-msgpack", lambda: b"\xc1" * 10, FormatError, "reserved msgpack byte"),
]


@pytest.mark.parametrize("case", BAD_KEYS, ids=[c.name for c in BAD_KEYS])
def test_bad_report_key_refused(case: BadKey) -> None:
    with pytest.raises(case.error) as caught:
        verify_report_key(case.blob(), PUBLISHER, signer_keys_at, case.now)
    assert type(caught.value) is case.error
    assert case.message in one_line(caught.value)


def test_invalid_mlkem_public_key_refused() -> None:
    _, key = keypair(Suite.MLKEM768_X25519)
    broken = b"\xff" * 1184 + key.public_key[1184:]
    value = {
        **key.to_value(),
        "public_key": broken,
        "key_id": replace(key, public_key=broken).key_id,
    }
    with pytest.raises(ReportKeySuiteError):
        verify_report_key(
            signed_with(REPORT_KEY, value, Domain.REPORT_KEY), PUBLISHER, signer_keys_at, NOW
        )


def test_retirement_round_trip_and_kind() -> None:
    retirement = KeyRetirement(PUBLISHER, b"\x05" * 16, NOW + 10, NOW, 7)
    blob = sign_retirement(retirement, SIGNER)
    assert verify_retirement(blob, PUBLISHER, signer_keys_at) == retirement
    with pytest.raises(SignedObjectKindError):
        verify_retirement(good_blob(), PUBLISHER, signer_keys_at)
    with pytest.raises(SignedObjectSignerError):
        verify_retirement(flip_last_signature_byte(blob), PUBLISHER, signer_keys_at)


def test_ack_list_round_trip() -> None:
    ids = [bytes([i]) * 32 for i in (3, 1, 2, 1)]
    acks = make_ack_list(PUBLISHER, NOW, 4, ids)
    assert acks.drops == (bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32)
    assert verify_ack_list(sign_ack_list(acks, SIGNER), PUBLISHER, signer_keys_at) == acks


def test_ack_list_at_its_cap_round_trips() -> None:
    acks = make_ack_list(PUBLISHER, NOW, 1, [i.to_bytes(32, "big") for i in range(MAX_ACKED)])
    assert (
        len(verify_ack_list(sign_ack_list(acks, SIGNER), PUBLISHER, signer_keys_at).drops)
        == MAX_ACKED
    )


def ack_value(drops: list[bytes]) -> dict[str, Any]:
    return {"publisher": PUBLISHER, "created": NOW, "sequence": 1, "drops": drops}


@pytest.mark.parametrize(
    ("name", "blob", "error", "message"),
    [
        (
            "out-of-order",
            lambda: signed_with(
                ACK_LIST, ack_value([b"\x02" * 32, b"\x01" * 32]), Domain.DROP_ACKS
            ),
            FormatError,
            "out of order",
        ),
        (
            "twice",
            lambda: signed_with(ACK_LIST, ack_value([b"\x01" * 32] * 2), Domain.DROP_ACKS),
            FormatError,
            "out of order or twice",
        ),
        (
            "short-id",
            lambda: signed_with(ACK_LIST, ack_value([b"\x01" * 31]), Domain.DROP_ACKS),
            FormatError,
            "32-byte values",
        ),
        (
            "empty",
            lambda: signed_with(ACK_LIST, ack_value([]), Domain.DROP_ACKS),
            FormatError,
            "a list of 1 to",
        ),
        (
            "over-the-cap",
            lambda: signed_with(
                ACK_LIST,
                ack_value([i.to_bytes(32, "big") for i in range(MAX_ACKED + 1)]),
                Domain.DROP_ACKS,
            ),
            FormatError,
            "a list of 1 to",
        ),
        (
            "report-key-prefix",
            lambda: signed_with(ACK_LIST, ack_value([b"\x01" * 32]), Domain.REPORT_KEY),
            SignedObjectSignerError,
            "does not verify",
        ),
        ("a-report-key", good_blob, SignedObjectKindError, "not a 'meshdrop-drop-acks'"),
    ],
)
def test_bad_ack_list_refused(
    name: str, blob: Callable[[], bytes], error: type[MeshdropError], message: str
) -> None:
    with pytest.raises(error) as caught:
        verify_ack_list(blob(), PUBLISHER, signer_keys_at)
    assert message in one_line(caught.value)


def test_ack_list_of_another_publisher_refused() -> None:
    blob = sign_ack_list(make_ack_list(OTHER_PUBLISHER, NOW, 1, [bytes(32)]), SIGNER)
    with pytest.raises(SignedObjectPublisherError):
        verify_ack_list(blob, PUBLISHER, signer_keys_at)


def test_signing_keys_are_distinct_prefixes() -> None:
    prefixes = [d.value for d in Domain]
    assert len(set(prefixes)) == len(prefixes)
    assert all(not a.startswith(b) for a in prefixes for b in prefixes if a != b)


@pytest.mark.parametrize("suite", list(Suite))
def test_suite_sizes_are_the_registry_values_cryptography_uses(suite: Suite) -> None:
    assert suite.enc_bytes == suite.hpke_kem.enc_length()
    _, key = keypair(suite)
    assert len(key.public_key) == suite.public_key_bytes
