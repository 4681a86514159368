"""The one place a signature turns untrusted bytes into something the node may believe.

Only :func:`verify_envelope` makes a :class:`VerifiedManifest`; the store, the reader
and the peer server take nothing else. Checks run cheapest and least-parsing first: the
manifest is parsed only after its signature verified, from the exact bytes signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshdrop.core.bundle import Envelope
from meshdrop.core.keys import Domain, format_fingerprint, verify
from meshdrop.core.manifest import Manifest, parse_manifest
from meshdrop.core.records import PublisherRecord, Signer, peek_record
from meshdrop.core.trust import PublisherState, advance_state, describe_time
from meshdrop.errors import FormatError, SignatureError, TrustError

_TOKEN = object()

__all__ = ["VerifiedManifest", "claimed_publisher", "describe_time", "verify_envelope"]


@dataclass(frozen=True, init=False)
class VerifiedManifest:
    """A manifest whose signature verified against a trusted publisher. Its chunk hashes
    are the authority that every byte of data is checked against."""

    manifest: Manifest
    manifest_bytes: bytes
    envelope: Envelope
    state: PublisherState
    signer: Signer

    def __init__(
        self,
        token: object,
        manifest: Manifest,
        envelope: Envelope,
        state: PublisherState,
        signer: Signer,
    ) -> None:
        if token is not _TOKEN:
            raise TypeError("only meshdrop.core.verify can make a VerifiedManifest")
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "manifest_bytes", envelope.manifest_bytes)
        object.__setattr__(self, "envelope", envelope)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "signer", signer)

    @property
    def publisher(self) -> PublisherRecord:
        return self.state.current

    def relay_envelope(self) -> Envelope:
        """The envelope to store and pass on: the same signed manifest, carrying only the
        publisher records that verified (never what an attacker slipped in beside them)."""
        envelope = self.envelope
        return Envelope(
            envelope.manifest_bytes, envelope.signer, envelope.signature, self.state.signed
        )


def claimed_publisher(envelope: Envelope) -> bytes:
    """The publisher id an envelope claims (unverified), from its first parsable record."""
    for signed in envelope.records:
        record = peek_record(signed)
        if record is not None:
            return record.publisher
    raise FormatError("the bundle carries no readable publisher record")


def verify_envelope(
    envelope: Envelope, trusted: Mapping[bytes, PublisherState], now: int
) -> VerifiedManifest:
    """``now`` is the node's effective time (never earlier than its clock floor)."""
    publisher_id = claimed_publisher(envelope)
    known = trusted.get(publisher_id)
    if known is None:
        raise TrustError(
            f"signed by publisher {format_fingerprint(publisher_id)}, "
            "which this node does not trust"
        )
    state, problem = advance_state(known, envelope.records)
    if state.signer(envelope.signer) is None and problem is not None:
        raise TrustError(f"the bundle's signing key cannot be checked: {problem}")
    state.delegation(envelope.signer)
    if not verify(envelope.signer, envelope.signature, Domain.MANIFEST, envelope.manifest_bytes):
        raise SignatureError("the manifest signature does not verify (the bundle was altered)")
    manifest = parse_manifest(envelope.manifest_bytes)
    if manifest.publisher != state.publisher:
        raise SignatureError("the manifest names another publisher than the one that signed it")
    signer = state.check_signer(envelope.signer, manifest.name, manifest.created)
    if manifest.expires is not None and manifest.expires < now:
        raise TrustError(f"bundle {manifest.name!r} expired on {describe_time(manifest.expires)}")
    return VerifiedManifest(_TOKEN, manifest, envelope, state, signer)
