"""Drops (core/drops.py, core/reports.py): sealing and opening with both suites, what a
relaying node checks without a key, and every altered, cut, oversized, expired or
unstamped drop refused by its own error type with a one-line message."""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshdrop.core import drops
from meshdrop.core.drops import (
    HEADER_BYTES,
    MAX_DROP_BYTES,
    MAX_LIFETIME,
    SIZE_CLASSES,
    STAMP_BITS,
    STAMP_BYTES,
    check_drop,
    drop_id,
    find_stamp,
    open_drop,
    open_drop_with_key,
    seal,
)
from meshdrop.core.reportkeys import ReportKey, ReportPrivateKey, Suite, make_report_keypair
from meshdrop.core.reports import (
    ATTACHMENTS_MAX,
    ATTACHMENTS_MAX_BYTES,
    TEXT_MAX_BYTES,
    Attachment,
    Report,
    make_receipt,
)
from meshdrop.errors import (
    DropContentError,
    DropError,
    DropExpiredError,
    DropExpiryTooFarError,
    DropOversizedError,
    DropStampError,
    DropTruncatedError,
    DropVersionError,
    FormatError,
    ReportKeyExpiredError,
    ReportTooLargeError,
)

PUBLISHER = bytes(range(32))
NOW = 1_800_000_000
EXPIRY = NOW + 30 * 86_400
KOREAN = "임금을 석 달째 받지 못했습니다. 여권도 빼앗겼습니다."
PHOTO = bytes(range(256)) * 40


def keypair(suite: Suite, seed: bytes | None = None) -> tuple[ReportPrivateKey, ReportKey]:
    return make_report_keypair(suite, PUBLISHER, NOW - 86_400, NOW + 365 * 86_400, 1, seed)


def report(text: str = KOREAN, receipt: bytes = b"\x01\x02\x03\x04\x05") -> Report:
    return Report(text, (Attachment("사진.jpg", "image/jpeg", PHOTO),), make_receipt(receipt))


KEYS = {suite: keypair(suite) for suite in Suite}


@pytest.fixture(scope="module", params=list(Suite), ids=[s.value for s in Suite])
def sealed(request: pytest.FixtureRequest) -> tuple[Suite, bytes]:
    suite: Suite = request.param
    return suite, seal(report(), KEYS[suite][1], EXPIRY, NOW)


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def failing_nonce(body: bytes) -> bytes:
    """A nonce that does not stamp ``body`` (the first one tried that fails)."""
    start = hashlib.sha256(b"meshdrop/v1/drop-stamp\0" + hashlib.sha256(body).digest())
    for counter in range(100):
        nonce = counter.to_bytes(8, "big")
        digest = start.copy()
        digest.update(nonce)
        if int.from_bytes(digest.digest()[:8], "big") >> (64 - STAMP_BITS):
            return nonce
    raise AssertionError("no failing nonce in 100 tries")


def restamp(blob: bytes, bits: int = STAMP_BITS) -> bytes:
    body = blob[:-STAMP_BYTES]
    return body + find_stamp(body, bits)[0]


def flip(blob: bytes, position: int) -> bytes:
    """``blob`` with one bit at ``position`` flipped: the lowest bit whose flip leaves the
    stamp failing (one in 2**17 flips would stamp by chance: never a flaky test)."""
    for bit in range(8):
        altered = blob[:position] + bytes([blob[position] ^ 1 << bit]) + blob[position + 1 :]
        body_hash = hashlib.sha256(altered[:-STAMP_BYTES]).digest()
        if not drops._stamp_ok(drops._stamp_digest(body_hash, altered[-STAMP_BYTES:]), STAMP_BITS):
            return altered
    raise AssertionError("eight flips in a row kept the stamp")


def test_round_trip(sealed: tuple[Suite, bytes]) -> None:
    suite, blob = sealed
    private, _ = KEYS[suite]
    assert open_drop(blob, [private]) == report()
    opened = open_drop_with_key(blob, [KEYS[s][0] for s in Suite])
    assert opened is not None and opened[1] is private


def test_node_check_passes_and_names_the_drop(sealed: tuple[Suite, bytes]) -> None:
    _, blob = sealed
    checked = check_drop(blob, NOW)
    assert checked.drop_id == hashlib.sha256(blob).digest() == drop_id(blob)
    assert checked.expiry == EXPIRY and checked.size == len(blob) == SIZE_CLASSES[0]


def test_wrong_key_gives_none(sealed: tuple[Suite, bytes]) -> None:
    _, blob = sealed
    strangers = [keypair(s)[0] for s in Suite]
    assert open_drop(blob, strangers) is None
    assert open_drop(blob, []) is None


def test_the_clear_bytes_hold_no_key_id_or_publisher(sealed: tuple[Suite, bytes]) -> None:
    suite, blob = sealed
    _, key = KEYS[suite]
    for secret in (key.key_id, PUBLISHER, key.public_key[:16], KOREAN.encode(), PHOTO[:64]):
        assert secret not in blob


# Where in a drop a byte is altered, and what every node (and the recipient) says.
@dataclass(frozen=True)
class Tamper:
    name: str
    position: Callable[[int], int]  # of the drop's length
    error: type[DropError]


TAMPERS = [
    Tamper("header-version", lambda n: 0, DropVersionError),
    Tamper("header-expiry", lambda n: HEADER_BYTES - 1, DropStampError),
    Tamper("enc", lambda n: HEADER_BYTES + 5, DropStampError),
    Tamper("ciphertext", lambda n: HEADER_BYTES + 1200, DropStampError),
    Tamper("padding", lambda n: n - STAMP_BYTES - 40, DropStampError),  # encrypted zeros
    Tamper("aead-tag", lambda n: n - STAMP_BYTES - 1, DropStampError),
    Tamper("stamp", lambda n: n - 1, DropStampError),
]


@pytest.mark.parametrize("case", TAMPERS, ids=[t.name for t in TAMPERS])
def test_tampered_byte_refused(sealed: tuple[Suite, bytes], case: Tamper) -> None:
    suite, blob = sealed
    bad = flip(blob, case.position(len(blob)))
    with pytest.raises(case.error) as caught:
        check_drop(bad, NOW)
    one_line(caught.value)
    with pytest.raises(case.error):
        open_drop(bad, [KEYS[suite][0]])


@pytest.mark.parametrize("name", ["header-expiry", "enc", "ciphertext", "padding", "aead-tag"])
def test_tampered_and_stamped_again_is_relayed_but_never_opens(
    sealed: tuple[Suite, bytes], name: str
) -> None:
    suite, blob = sealed
    case = next(t for t in TAMPERS if t.name == name)
    bad = restamp(flip(blob, case.position(len(blob))))
    check_drop(bad, NOW)  # a node cannot tell: only the recipient's AEAD can
    assert open_drop(bad, [KEYS[suite][0]]) is None


def test_unstamped_drop_refused(sealed: tuple[Suite, bytes]) -> None:
    _, blob = sealed
    body = blob[:-STAMP_BYTES]
    with pytest.raises(DropStampError, match="never stamped"):
        check_drop(body + failing_nonce(body), NOW)


@pytest.mark.parametrize(
    ("name", "cut", "error"),
    [
        ("empty", lambda b: b"", DropTruncatedError),
        ("last-byte-missing", lambda b: b[:-1], DropTruncatedError),
        ("header-only", lambda b: b[:HEADER_BYTES], DropTruncatedError),
        ("one-byte-extra", lambda b: b + b"\0", DropTruncatedError),
        ("between-classes", lambda b: b + bytes(SIZE_CLASSES[1] - len(b) - 1), DropTruncatedError),
        ("over-the-largest", lambda b: b + bytes(MAX_DROP_BYTES + 1 - len(b)), DropOversizedError),
    ],
)
def test_wrong_length_refused(
    sealed: tuple[Suite, bytes], name: str, cut: Callable[[bytes], bytes], error: type[DropError]
) -> None:
    suite, blob = sealed
    bad = cut(blob)
    with pytest.raises(error) as caught:
        check_drop(bad, NOW)
    assert "bytes" in one_line(caught.value)
    with pytest.raises(error):
        open_drop(bad, [KEYS[suite][0]])


def test_wrong_version_refused(sealed: tuple[Suite, bytes]) -> None:
    _, blob = sealed
    with pytest.raises(DropVersionError, match="version 2"):
        check_drop(restamp(b"\x02" + blob[1:]), NOW)


def test_expired_drop_refused_but_its_recipient_can_open_it(sealed: tuple[Suite, bytes]) -> None:
    suite, blob = sealed
    for now in (EXPIRY, EXPIRY + 1):
        with pytest.raises(DropExpiredError, match="expired"):
            check_drop(blob, now)
    assert open_drop(blob, [KEYS[suite][0]]) == report()


def test_expiry_too_far_ahead_refused(sealed: tuple[Suite, bytes]) -> None:
    _, blob = sealed
    far = NOW + MAX_LIFETIME + 2 * 86_400
    bad = restamp(blob[:1] + far.to_bytes(8, "big") + blob[HEADER_BYTES:])
    with pytest.raises(DropExpiryTooFarError, match="180 days"):
        check_drop(bad, NOW)


def test_seal_refuses_an_expiry_outside_the_lifetime() -> None:
    _, key = KEYS[Suite.X25519]
    for expiry in (NOW, NOW - 1, NOW + MAX_LIFETIME + 1):
        with pytest.raises(ValueError, match="expiry"):
            seal(report(), key, expiry, NOW)


def test_seal_refuses_an_expired_report_key() -> None:
    _, key = KEYS[Suite.X25519]
    with pytest.raises(ReportKeyExpiredError):
        seal(report(), key, key.not_after + 10, key.not_after + 1)


@pytest.mark.parametrize(
    ("name", "bad_report", "message"),
    [
        ("text", Report("가" * (TEXT_MAX_BYTES // 3 + 1), (), "AAAAAAAA"), "text"),
        (
            "file-count",
            Report("", tuple(Attachment(f"{i}", "text/plain") for i in range(9)), "AAAAAAAA"),
            f"limit of {ATTACHMENTS_MAX}",
        ),
        (
            "total-size",
            Report(
                "",
                (
                    Attachment("a", "application/octet-stream", bytes(ATTACHMENTS_MAX_BYTES)),
                    Attachment("b", "application/octet-stream", b"x"),
                ),
                "AAAAAAAA",
            ),
            "files come to",
        ),
    ],
)
def test_report_over_the_caps_refused_before_sealing(
    name: str, bad_report: Report, message: str
) -> None:
    with pytest.raises(ReportTooLargeError) as caught:
        seal(bad_report, KEYS[Suite.X25519][1], EXPIRY, NOW)
    assert message in one_line(caught.value)


def test_report_at_the_caps_fills_the_largest_class() -> None:
    private, key = KEYS[Suite.MLKEM768_X25519]
    each = ATTACHMENTS_MAX_BYTES // ATTACHMENTS_MAX
    attachments = tuple(
        Attachment(
            f"file{i}.bin",
            "application/octet-stream",
            bytes([i]) * each,
        )
        for i in range(ATTACHMENTS_MAX)
    )
    full = Report("가" * (TEXT_MAX_BYTES // 3), attachments, "ABCDEFGH")
    blob = seal(full, key, EXPIRY, NOW, stamp_bits=1)
    assert len(blob) == MAX_DROP_BYTES
    assert open_drop(blob, [private], stamp_bits=1) == full


def test_bad_receipt_refused() -> None:
    with pytest.raises(ValueError):
        make_receipt(b"1234")
    with pytest.raises(FormatError, match="receipt code"):
        seal(Report("x", (), "abcdefgh"), KEYS[Suite.X25519][1], EXPIRY, NOW)


def test_size_classes_hide_the_exact_length() -> None:
    _, key = KEYS[Suite.MLKEM768_X25519]
    short = seal(report("짧다"), key, EXPIRY, NOW, stamp_bits=1)
    longer = seal(report("길다 " * 300), key, EXPIRY, NOW, stamp_bits=1)
    assert len(short) == len(longer) == SIZE_CLASSES[0]
    bigger = seal(report("더 길다 " * 3000), key, EXPIRY, NOW, stamp_bits=1)
    assert len(bigger) == SIZE_CLASSES[1]


def test_decrypted_but_malformed_report_is_a_content_error() -> None:
    private, key = KEYS[Suite.X25519]
    header = bytes([1]) + EXPIRY.to_bytes(8, "big")
    plaintext_bytes = SIZE_CLASSES[0] - HEADER_BYTES - STAMP_BYTES - key.suite.enc_bytes - 16
    cases = {
        "length-beyond-the-plaintext": b"\xff\xff\xff\xff",
        "not-a-report": (3).to_bytes(4, "big") + b"\x81\xa1x",
        "padding-not-zero": (1).to_bytes(4, "big") + b"\xc0" + b"\x01",
    }
    for start in cases.values():
        plaintext = start + bytes(plaintext_bytes - len(start))
        sealed = key.suite.hpke_suite().encrypt(
            plaintext, key.hpke_public_key(), info=b"meshdrop/v1/drop\0" + header
        )
        blob = restamp(header + sealed + bytes(8), bits=1)
        with pytest.raises(DropContentError) as caught:
            open_drop(blob, [private], stamp_bits=1)
        one_line(caught.value)


def test_stamp_cost_counted_in_attempts() -> None:
    """The stamp's cost as a count of attempts, never as time: deterministic for fixed
    bodies, on average 2 ** bits (docs/FORMAT.md, "The stamp"). Many bodies at 10 bits
    pin the average; a few at STAMP_BITS show the real difficulty is in the same law."""
    small = [find_stamp(b"body %d" % i, bits=10)[1] for i in range(300)]
    assert 0.8 * 2**10 < statistics.mean(small) < 1.25 * 2**10
    real = [find_stamp(b"body %d" % i)[1] for i in range(4)]
    assert 2**STAMP_BITS / 8 < statistics.mean(real) < 2**STAMP_BITS * 4
    for i, count in enumerate(real):
        body = b"body %d" % i
        nonce = (count - 1).to_bytes(STAMP_BYTES, "big")
        digest = drops._stamp_digest(hashlib.sha256(body).digest(), nonce)
        assert drops._stamp_ok(digest, STAMP_BITS)


@settings(max_examples=25, deadline=None)
@given(
    text=st.text(max_size=300),
    files=st.lists(
        st.tuples(st.text(min_size=1, max_size=40), st.binary(max_size=2000)),
        max_size=ATTACHMENTS_MAX,
    ),
    receipt=st.binary(min_size=5, max_size=5),
    suite=st.sampled_from(list(Suite)),
)
def test_hypothesis_round_trip(
    text: str, files: list[tuple[str, bytes]], receipt: bytes, suite: Suite
) -> None:
    private, key = KEYS[suite]
    original = Report(
        text,
        tuple(Attachment(n, "application/octet-stream", d) for n, d in files),
        make_receipt(receipt),
    )
    blob = seal(original, key, EXPIRY, NOW, stamp_bits=2)
    check_drop(blob, NOW, stamp_bits=2)
    assert open_drop(blob, [keypair(suite)[0], private], stamp_bits=2) == original


def test_drop_and_report_key_errors_exit_with_their_family_codes() -> None:
    """Not wired into a command yet: the codes the CLI will exit with (README's table)."""
    from meshdrop import errors

    codes = {
        errors.DropTruncatedError: 3,
        errors.DropOversizedError: 3,
        errors.DropVersionError: 3,
        errors.DropExpiredError: 3,
        errors.DropExpiryTooFarError: 3,
        errors.DropStampError: 3,
        errors.DropContentError: 3,
        errors.ReportKeySuiteError: 3,
        errors.SignedObjectKindError: 3,
        errors.SignedObjectSignerError: 4,
        errors.SignedObjectPublisherError: 4,
        errors.ReportKeyExpiredError: 4,
        errors.ReportTooLargeError: 2,
    }
    assert {kind: kind.exit_code for kind in codes} == codes
