"""Publisher records: who a publisher is and which keys may sign for it.

A record is versioned and signed by a threshold of its root keys. The publisher's
identity (its fingerprint) is fixed by record 1's root keys and threshold; record N+1 is
valid only if a threshold of record N's roots and a threshold of its own roots signed it,
so a node that pinned record 1 can follow any later rotation one step at a time.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core import codec
from meshdrop.core.keys import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Domain,
    check_public_key,
    format_fingerprint,
    key_id,
    public_bytes,
    sign,
    verify,
)
from meshdrop.core.schema import Fields
from meshdrop.errors import FormatError, MeshdropError, SignatureError, TrustError

RECORD_TYPE = "meshdrop-publisher"
RECORD_FORMAT = 1
MAX_RECORD_BYTES = 64 * 1024
MAX_KEYS = 64
MAX_CHAIN = 256  # records a node will walk (and a file may carry) in one go
MAX_NAME_CHARS = 100
MAX_TIME = 253_402_300_799  # 9999-12-31 23:59:59 UTC: every date library can show it

_RECORD_LIMITS = codec.Limits(max_bytes=MAX_RECORD_BYTES, max_depth=4, max_items=4096)
_ID_PREFIX = b"meshdrop/v1/publisher-id\0"


def publisher_id(roots: Iterable[bytes], threshold: int) -> bytes:
    """The publisher's permanent identity, from its first record's root keys."""
    return hashlib.sha256(_ID_PREFIX + codec.pack([sorted(set(roots)), threshold])).digest()


@dataclass(frozen=True)
class Signer:
    key: bytes
    not_before: int
    expires: int
    scope: tuple[str, ...] = ("*",)

    @property
    def id(self) -> str:
        return key_id(self.key)

    def valid_at(self, when: int) -> bool:
        return self.not_before <= when <= self.expires


class Reason(Enum):
    RETIRED = "retired"  # what it signed before ``at`` stays valid
    COMPROMISED = "compromised"  # everything it ever signed is withdrawn


@dataclass(frozen=True)
class Revocation:
    key: bytes
    reason: Reason
    at: int

    @property
    def id(self) -> str:
        return key_id(self.key)


@dataclass(frozen=True)
class PublisherRecord:
    publisher: bytes
    name: str
    version: int
    created: int
    roots: tuple[bytes, ...]
    threshold: int
    signers: tuple[Signer, ...]
    revoked: tuple[Revocation, ...] = ()
    raw: bytes = field(repr=False, compare=False, default=b"")

    @property
    def fingerprint(self) -> str:
        return format_fingerprint(self.publisher)

    def to_value(self) -> dict[str, codec.Value]:
        return {
            "type": RECORD_TYPE,
            "format": RECORD_FORMAT,
            "publisher": self.publisher,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "roots": sorted(self.roots),
            "threshold": self.threshold,
            "signers": [
                {
                    "key": s.key,
                    "not_before": s.not_before,
                    "expires": s.expires,
                    "scope": list(s.scope),
                }
                for s in self.signers
            ],
            "revoked": [{"key": r.key, "reason": r.reason.value, "at": r.at} for r in self.revoked],
        }

    def signer(self, key: bytes) -> Signer | None:
        return next((s for s in self.signers if s.key == key), None)


@dataclass(frozen=True)
class SignedRecord:
    """A record's exact bytes and the root signatures over them."""

    record_bytes: bytes
    signatures: tuple[tuple[bytes, bytes], ...]  # (root public key, signature)

    def to_value(self) -> dict[str, codec.Value]:
        return {
            "record": self.record_bytes,
            "signatures": [{"key": k, "sig": s} for k, s in self.signatures],
        }

    def encode(self) -> bytes:
        return codec.pack(self.to_value())


@functools.lru_cache(maxsize=1024)
def parse_record(data: bytes) -> PublisherRecord:
    """Parse (and cache: records are immutable and met again and again) a record."""
    what = "the publisher record"
    fields = Fields(codec.unpack(data, _RECORD_LIMITS, what), what)
    if fields.text("type", 40) != RECORD_TYPE or fields.integer("format", 0, 2**16) != 1:
        raise FormatError(f"{what} is not a meshdrop v1 publisher record")
    roots = tuple(fields.bytes_list("roots", PUBLIC_KEY_BYTES, 1, MAX_KEYS))
    for i, root in enumerate(roots):
        check_public_key(root, f"root key {i + 1} of {what}")
    if len(set(roots)) != len(roots) or list(roots) != sorted(roots):
        raise FormatError(f"{what} lists its root keys out of order or twice")
    threshold = fields.integer("threshold", 1, len(roots))
    signers = []
    for i, item in enumerate(fields.map_list("signers", 0, MAX_KEYS)):
        sf = Fields(item, f"signing key {i + 1} of {what}")
        key = check_public_key(sf.binary("key", PUBLIC_KEY_BYTES), sf.what)
        scope = tuple(sf.text_list("scope", 1, 32, 100))
        signers.append(
            Signer(
                key,
                sf.integer("not_before", 0, MAX_TIME),
                sf.integer("expires", 0, MAX_TIME),
                scope,
            )
        )
        sf.done()
    if len({s.key for s in signers}) != len(signers):
        raise FormatError(f"{what} lists a signing key twice")
    revoked = _parse_revoked(fields.map_list("revoked", 0, MAX_KEYS * 4), what)
    if {r.key for r in revoked} & {s.key for s in signers}:
        raise FormatError(f"{what} lists a key both as signing and as revoked")
    record = PublisherRecord(
        publisher=fields.binary("publisher", 32),
        name=fields.text("name", MAX_NAME_CHARS, min_chars=1),
        version=fields.integer("version", 1, 2**63 - 1),
        created=fields.integer("created", 0, MAX_TIME),
        roots=roots,
        threshold=threshold,
        signers=tuple(signers),
        revoked=revoked,
        raw=data,
    )
    fields.done()
    return record


def _parse_revoked(items: Sequence[object], what: str) -> tuple[Revocation, ...]:
    revoked = []
    for i, item in enumerate(items):
        rf = Fields(item, f"revocation {i + 1} of {what}")
        key = rf.binary("key", PUBLIC_KEY_BYTES)
        reason_text = rf.text("reason", 20)
        try:
            reason = Reason(reason_text)
        except ValueError as exc:
            raise FormatError(f"{rf.what} has an unknown reason {reason_text!r}") from exc
        revoked.append(Revocation(key, reason, rf.integer("at", 0, MAX_TIME)))
        rf.done()
    if len({r.key for r in revoked}) != len(revoked):
        raise FormatError(f"{what} revokes a key twice")
    return tuple(revoked)


def parse_signed_record(value: codec.Value, what: str = "a publisher record") -> SignedRecord:
    fields = Fields(value, what)
    record_bytes = fields.binary("record", None, max_len=MAX_RECORD_BYTES)
    sigs = []
    for i, item in enumerate(fields.map_list("signatures", 1, MAX_KEYS)):
        sf = Fields(item, f"signature {i + 1} of {what}")
        sigs.append((sf.binary("key", PUBLIC_KEY_BYTES), sf.binary("sig", SIGNATURE_BYTES)))
        sf.done()
    fields.done()
    return SignedRecord(record_bytes, tuple(sigs))


def _threshold_met(signed: SignedRecord, roots: Sequence[bytes], threshold: int) -> bool:
    # A key listed twice, or two signatures by one key, count once.
    good = {
        key
        for key, sig in signed.signatures
        if key in roots and verify(key, sig, Domain.PUBLISHER_RECORD, signed.record_bytes)
    }
    return len(good) >= threshold


def verify_first_record(signed: SignedRecord) -> PublisherRecord:
    record = parse_record(signed.record_bytes)
    if record.version != 1:
        raise TrustError("the publisher's chain of records does not start at version 1")
    if record.publisher != publisher_id(record.roots, record.threshold):
        raise SignatureError("the publisher record's identity does not match its root keys")
    if not _threshold_met(signed, record.roots, record.threshold):
        raise SignatureError(
            f"publisher record 1 of {record.fingerprint} lacks "
            f"{record.threshold} valid root signatures"
        )
    return record


def verify_next_record(current: PublisherRecord, signed: SignedRecord) -> PublisherRecord:
    """Record current.version + 1, signed by a threshold of the current roots and of its own."""
    record = parse_record(signed.record_bytes)
    if record.publisher != current.publisher:
        raise TrustError("a publisher record of another publisher was mixed into the chain")
    if record.version != current.version + 1:
        raise TrustError(
            f"the publisher's record chain jumps from version {current.version} to {record.version}"
        )
    if not _threshold_met(signed, current.roots, current.threshold):
        raise SignatureError(
            f"publisher record {record.version} is not signed by enough of the previous root keys"
        )
    if not _threshold_met(signed, record.roots, record.threshold):
        raise SignatureError(
            f"publisher record {record.version} is not signed by enough of its own root keys"
        )
    return record


def peek_record(signed: SignedRecord) -> PublisherRecord | None:
    """Parse without verifying (to sort candidates); None if it fails to parse or to check,
    whatever the reason (a bad key is as much junk as a bad byte)."""
    try:
        return parse_record(signed.record_bytes)
    except MeshdropError:
        return None


def parse_signed_records(items: Sequence[object], what: str) -> tuple[SignedRecord, ...]:
    """The signed records of a list that parse; the rest are skipped. Records travel
    unsigned by the manifest beside it, so anyone on the way can add junk: junk must not
    stop what the good records prove."""
    records = []
    for i, item in enumerate(items):
        try:
            records.append(parse_signed_record(item, f"publisher record {i + 1} in {what}"))
        except MeshdropError:
            continue
    return tuple(records)


def sign_record(record: PublisherRecord, root_keys: Sequence[Ed25519PrivateKey]) -> SignedRecord:
    """Encode ``record`` and sign it with each of ``root_keys``."""
    raw = codec.pack(record.to_value())
    sigs = tuple((public_bytes(k), sign(k, Domain.PUBLISHER_RECORD, raw)) for k in root_keys)
    return SignedRecord(raw, sigs)
