"""The one place a signature turns untrusted bytes into something the node may believe.

Only :func:`verify_envelope` makes a :class:`VerifiedManifest`; the store, the reader
and the peer server take nothing else. Checks run cheapest and least-parsing first: the
manifest is parsed only after its signature verified, from the exact bytes signed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from meshdrop.core.bundle import Envelope
from meshdrop.core.keys import Domain, format_fingerprint, key_id, verify
from meshdrop.core.manifest import Manifest, parse_manifest
from meshdrop.core.records import (
    PublisherRecord,
    SignedRecord,
    advance,
    parse_record,
    verify_first_record,
)
from meshdrop.errors import FormatError, SignatureError, TrustError

_TOKEN = object()


def describe_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, init=False)
class VerifiedManifest:
    """A manifest whose signature verified against a trusted publisher. Its chunk hashes
    are the authority that every byte of data is checked against."""

    manifest: Manifest
    manifest_bytes: bytes
    envelope: Envelope
    publisher: PublisherRecord

    def __init__(
        self, token: object, manifest: Manifest, envelope: Envelope, publisher: PublisherRecord
    ) -> None:
        if token is not _TOKEN:
            raise TypeError("only meshdrop.core.verify can make a VerifiedManifest")
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "manifest_bytes", envelope.manifest_bytes)
        object.__setattr__(self, "envelope", envelope)
        object.__setattr__(self, "publisher", publisher)


def claimed_publisher(envelope: Envelope) -> bytes:
    """The publisher id an envelope claims (unverified), from its first parsable record."""
    for signed in envelope.records:
        try:
            return parse_record(signed.record_bytes).publisher
        except FormatError:
            continue
    raise FormatError("the bundle carries no readable publisher record")


def verify_envelope(
    envelope: Envelope, trusted: Mapping[bytes, PublisherRecord], now: int
) -> VerifiedManifest:
    publisher_id = claimed_publisher(envelope)
    current = trusted.get(publisher_id)
    if current is None:
        raise TrustError(
            f"signed by publisher {format_fingerprint(publisher_id)}, "
            "which this node does not trust"
        )
    record = advance(current, envelope.records)
    signer = record.signer(envelope.signer)
    if signer is None:
        raise TrustError(
            f"signed with key {key_id(envelope.signer)}, which publisher "
            f"{record.name!r} ({record.fingerprint}) has not delegated"
        )
    if not verify(envelope.signer, envelope.signature, Domain.MANIFEST, envelope.manifest_bytes):
        raise SignatureError("the manifest signature does not verify (the bundle was altered)")
    manifest = parse_manifest(envelope.manifest_bytes)
    if manifest.publisher != record.publisher:
        raise SignatureError("the manifest names another publisher than the one that signed it")
    if not signer.valid_at(manifest.created):
        raise TrustError(
            f"signed with key {signer.id}, which was not valid on "
            f"{describe_time(manifest.created)} "
            f"(valid {describe_time(signer.not_before)} to {describe_time(signer.expires)})"
        )
    if not any(fnmatch.fnmatchcase(manifest.name, pattern) for pattern in signer.scope):
        raise TrustError(f"key {signer.id} may not sign bundles named {manifest.name!r}")
    if manifest.expires is not None and manifest.expires < now:
        raise TrustError(f"bundle {manifest.name!r} expired on {describe_time(manifest.expires)}")
    return VerifiedManifest(_TOKEN, manifest, envelope, record)


def verify_publisher_chain(records: tuple[SignedRecord, ...]) -> PublisherRecord:
    """Verify a publisher file's chain from record 1: what ``trust add`` pins."""
    first = verify_first_record(records[0])
    return advance(first, records[1:])
