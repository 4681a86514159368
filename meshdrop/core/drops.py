"""Drops: reports sealed with HPKE (RFC 9180, base mode) to one report key, padded to a
size class and stamped with a proof of work (docs/FORMAT.md, "Drops").

    offset  size     field
    0       1        version (1)
    1       8        expiry, Unix seconds, u64 big-endian
    9       n        HPKE enc || AES-256-GCM ciphertext (n = size class - 17)
    9 + n   8        stamp nonce

Every relaying node runs ``check_drop`` (length, version, expiry, stamp) with no key.
Nothing in the clear names the recipient: a recipient tries each of its keys
(``open_drop``), at the cost of one decapsulation per drop per key. The padding is
inside the ciphertext, so the clear length says nothing but the size class.

Pure: ``now`` is passed in; the HPKE ephemeral key is the only randomness drawn here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from meshdrop.core.reportkeys import ReportKey, ReportPrivateKey
from meshdrop.core.reports import Report, decode_report, encode_report
from meshdrop.errors import (
    DropContentError,
    DropExpiredError,
    DropExpiryTooFarError,
    DropOversizedError,
    DropStampError,
    DropTruncatedError,
    DropVersionError,
    ReportKeyExpiredError,
    ReportTooLargeError,
)

DROP_VERSION = 1
HEADER_BYTES = 9
STAMP_BYTES = 8
KiB, MiB = 1024, 1024 * 1024
SIZE_CLASSES = (16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 16 * MiB)
MAX_DROP_BYTES = SIZE_CLASSES[-1]
# Leading zero bits of the stamp hash: 2**17 SHA-256 tries on average, about 0.17 s in
# CPython on the reference machine (docs/FORMAT.md, "The stamp").
STAMP_BITS = 17
MAX_LIFETIME = 180 * 86_400  # the furthest expiry a sealer may set
CLOCK_SLACK = 86_400  # what a relaying node allows a sealer's clock to run ahead
_LENGTH_BYTES = 4  # the report's length, first thing in the plaintext
_TAG_BYTES = 16  # AES-256-GCM
_INFO_PREFIX = b"meshdrop/v1/drop\0"
_STAMP_PREFIX = b"meshdrop/v1/drop-stamp\0"


@dataclass(frozen=True)
class CheckedDrop:
    """What a node without the key knows of a drop that passed ``check_drop``."""

    drop_id: bytes
    expiry: int
    size: int


def drop_id(blob: bytes) -> bytes:
    """SHA-256 of the whole drop: the name by which nodes deduplicate and acks delete."""
    return hashlib.sha256(blob).digest()


def size_class(sealed_bytes: int) -> int:
    """The smallest size class a drop of ``sealed_bytes`` of HPKE output fits in."""
    needed = HEADER_BYTES + sealed_bytes + STAMP_BYTES
    for size in SIZE_CLASSES:
        if needed <= size:
            return size
    raise ReportTooLargeError(f"the sealed report needs {needed} bytes, over {MAX_DROP_BYTES}")


def _info(header: bytes) -> bytes:
    return _INFO_PREFIX + header


def _stamp_digest(body_hash: bytes, nonce: bytes) -> bytes:
    return hashlib.sha256(_STAMP_PREFIX + body_hash + nonce).digest()


def _stamp_ok(digest: bytes, bits: int) -> bool:
    return int.from_bytes(digest[:8], "big") >> (64 - bits) == 0


def find_stamp(body: bytes, bits: int = STAMP_BITS) -> tuple[bytes, int]:
    """The first nonce (counting up from 0) that stamps ``body`` (the drop without its
    last 8 bytes), and how many nonces were tried."""
    start = hashlib.sha256(_STAMP_PREFIX + hashlib.sha256(body).digest())
    for counter in range(2**64):
        nonce = counter.to_bytes(STAMP_BYTES, "big")
        attempt = start.copy()
        attempt.update(nonce)
        if _stamp_ok(attempt.digest(), bits):
            return nonce, counter + 1
    raise AssertionError("unreachable: some nonce stamps every body")


def seal(
    report: Report, key: ReportKey, expiry: int, now: int, stamp_bits: int = STAMP_BITS
) -> bytes:
    """The drop of ``report`` sealed to ``key``, living until ``expiry``."""
    if now > key.not_after:
        raise ReportKeyExpiredError("the publisher's report key has expired")
    if not now < expiry <= now + MAX_LIFETIME:
        raise ValueError(f"a drop's expiry must lie within {MAX_LIFETIME} seconds from now")
    encoded = encode_report(report)
    suite = key.suite
    size = size_class(suite.enc_bytes + _LENGTH_BYTES + len(encoded) + _TAG_BYTES)
    plain_bytes = size - HEADER_BYTES - STAMP_BYTES - suite.enc_bytes - _TAG_BYTES
    plaintext = bytearray(plain_bytes)
    plaintext[:_LENGTH_BYTES] = len(encoded).to_bytes(_LENGTH_BYTES, "big")
    plaintext[_LENGTH_BYTES : _LENGTH_BYTES + len(encoded)] = encoded
    header = bytes([DROP_VERSION]) + expiry.to_bytes(8, "big")
    sealed = suite.hpke_suite().encrypt(bytes(plaintext), key.hpke_public_key(), info=_info(header))
    body = header + sealed
    nonce, _ = find_stamp(body, stamp_bits)
    drop = body + nonce
    assert len(drop) == size
    return drop


def _check_structure(blob: bytes, stamp_bits: int) -> int:
    """Length, version and stamp; the expiry (not judged here)."""
    size = len(blob)
    if size > MAX_DROP_BYTES:
        raise DropOversizedError(f"the drop is {size} bytes, over the limit of {MAX_DROP_BYTES}")
    if size not in SIZE_CLASSES:
        raise DropTruncatedError(
            f"the drop is {size} bytes, not one of the drop sizes (cut short?)"
        )
    if blob[0] != DROP_VERSION:
        raise DropVersionError(f"the drop is of version {blob[0]}, which this meshdrop cannot read")
    body_hash = hashlib.sha256(memoryview(blob)[:-STAMP_BYTES]).digest()
    if not _stamp_ok(_stamp_digest(body_hash, blob[-STAMP_BYTES:]), stamp_bits):
        raise DropStampError("the drop's stamp does not check: it was altered or never stamped")
    return int.from_bytes(blob[1:HEADER_BYTES], "big")


def check_drop(blob: bytes, now: int, stamp_bits: int = STAMP_BITS) -> CheckedDrop:
    """What every node checks before storing or relaying a drop, without any key."""
    expiry = _check_structure(blob, stamp_bits)
    if now >= expiry:
        raise DropExpiredError("the drop has expired")
    if expiry > now + MAX_LIFETIME + CLOCK_SLACK:
        raise DropExpiryTooFarError(
            f"the drop claims to live longer than the limit of {MAX_LIFETIME // 86_400} days"
        )
    return CheckedDrop(drop_id(blob), expiry, len(blob))


def open_drop_with_key(
    blob: bytes, private_keys: Sequence[ReportPrivateKey], stamp_bits: int = STAMP_BITS
) -> tuple[Report, ReportPrivateKey] | None:
    """The report in ``blob`` and the key that opened it, or None if it is sealed to none
    of ``private_keys`` (or altered and stamped again: AEAD cannot tell those apart).
    The expiry is not judged: a recipient may open what it received in time."""
    _check_structure(blob, stamp_bits)
    header, sealed = blob[:HEADER_BYTES], blob[HEADER_BYTES:-STAMP_BYTES]
    for key in private_keys:
        try:
            plaintext = key.suite.hpke_suite().decrypt(sealed, key.hpke_key(), info=_info(header))
        except (InvalidTag, ValueError):
            continue
        return _unpad(plaintext), key
    return None


def open_drop(
    blob: bytes, private_keys: Sequence[ReportPrivateKey], stamp_bits: int = STAMP_BITS
) -> Report | None:
    opened = open_drop_with_key(blob, private_keys, stamp_bits)
    return None if opened is None else opened[0]


def _unpad(plaintext: bytes) -> Report:
    length = int.from_bytes(plaintext[:_LENGTH_BYTES], "big")
    end = _LENGTH_BYTES + length
    if end > len(plaintext):
        raise DropContentError("the report inside the drop claims more bytes than it holds")
    if plaintext[end:] != bytes(len(plaintext) - end):
        raise DropContentError("the report inside the drop has padding that is not zero")
    return decode_report(plaintext[_LENGTH_BYTES:end])
