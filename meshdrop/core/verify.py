"""The one place a signature turns untrusted bytes into something the node may believe.

Only :func:`verify_envelope` makes a :class:`VerifiedManifest`; the store, the reader
and the peer server take nothing else. Checks run cheapest and least-parsing first: the
manifest is parsed only after its signature verified, from the exact bytes signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshdrop.core.bundle import Envelope
from meshdrop.core.keys import Domain, format_fingerprint, key_id, verify
from meshdrop.core.manifest import Manifest, parse_manifest
from meshdrop.core.records import PublisherRecord, Signer, parse_record, peek_record
from meshdrop.core.trust import PublisherState, advance_state, describe_time
from meshdrop.errors import MeshdropError, SignatureError, TrustError, UntrustedPublisherError

_TOKEN = object()

__all__ = ["VerifiedManifest", "describe_time", "signing_publishers", "verify_envelope"]


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


def _claimed_publishers(envelope: Envelope) -> list[bytes]:
    """The publisher ids the envelope's readable records claim (unverified), those whose
    record delegates the envelope's signing key first, each once."""
    claims: dict[bytes, bool] = {}
    for signed in envelope.records:
        record = peek_record(signed)
        if record is not None:
            delegates = record.signer(envelope.signer) is not None
            claims[record.publisher] = claims.get(record.publisher, False) or delegates
    return sorted(claims, key=lambda publisher: not claims[publisher])


def _candidates(
    envelope: Envelope, trusted: Mapping[bytes, PublisherState]
) -> list[tuple[PublisherState, str | None]]:
    """Each trusted publisher that could have signed the envelope, with its chain advanced
    by the envelope's records and why it could not advance further: those the readable
    records claim, then those whose pinned chain already delegates the signing key. What
    applies is decided by trust and by the manifest's signature, never by which record
    comes first, so records anyone may add (junk, another publisher's) change nothing."""
    claimed = [p for p in _claimed_publishers(envelope) if p in trusted]
    known = sorted(
        p
        for p, state in trusted.items()
        if p not in claimed and state.signer(envelope.signer) is not None
    )
    return [advance_state(trusted[p], envelope.records) for p in claimed + known]


def signing_publishers(
    envelope: Envelope, trusted: Mapping[bytes, PublisherState]
) -> list[PublisherState]:
    """The trusted chains (advanced by the envelope's records) that delegate the
    envelope's signing key: the publishers that may have signed it."""
    reached = _candidates(envelope, trusted)
    return [state for state, _ in reached if state.signer(envelope.signer) is not None]


def _not_delegated(
    envelope: Envelope, reached: list[tuple[PublisherState, str | None]]
) -> MeshdropError:
    if not reached:
        claimed = _claimed_publishers(envelope)
        if claimed:
            return UntrustedPublisherError(
                f"signed by publisher {format_fingerprint(claimed[0])}, "
                "which this node does not trust"
            )
        return UntrustedPublisherError(
            f"signed with key {key_id(envelope.signer)}, which no publisher this node trusts "
            "has delegated (and the bundle carries no readable publisher record)"
        )
    state, problem = reached[0]
    if problem is not None:
        return TrustError(f"the bundle's signing key cannot be checked: {problem}")
    try:
        state.delegation(envelope.signer)
    except MeshdropError as exc:
        unreadable = _first_unreadable(envelope)
        if unreadable is None:
            return exc
        return type(exc)(
            f"{exc} (a publisher record the bundle carries was left out: {unreadable})"
        )
    raise AssertionError("a chain without the key delegates it")  # pragma: no cover


def _first_unreadable(envelope: Envelope) -> MeshdropError | None:
    """Why the first record that does not parse was left out: the likely reason a key
    seems undelegated."""
    for signed in envelope.records:
        try:
            parse_record(signed.record_bytes)
        except MeshdropError as exc:
            return exc
    return None


def verify_envelope(
    envelope: Envelope, trusted: Mapping[bytes, PublisherState], now: int
) -> VerifiedManifest:
    """``now`` is the node's effective time (never earlier than its clock floor)."""
    reached = _candidates(envelope, trusted)
    delegating = [state for state, _ in reached if state.signer(envelope.signer) is not None]
    if not delegating:
        raise _not_delegated(envelope, reached)
    # One publisher delegating the key is the rule; several (a key shared between two
    # trusted publishers) are told apart by the publisher the signed manifest names.
    chosen: PublisherState | None = delegating[0] if len(delegating) == 1 else None
    if chosen is not None:
        chosen.delegation(envelope.signer)
    if not verify(envelope.signer, envelope.signature, Domain.MANIFEST, envelope.manifest_bytes):
        raise SignatureError("the manifest signature does not verify (the bundle was altered)")
    manifest = parse_manifest(envelope.manifest_bytes)
    if chosen is None:
        chosen = next((s for s in delegating if s.publisher == manifest.publisher), None)
        if chosen is not None:
            chosen.delegation(envelope.signer)
    if chosen is None or manifest.publisher != chosen.publisher:
        raise SignatureError("the manifest names another publisher than the one that signed it")
    signer = chosen.check_signer(envelope.signer, manifest.name, manifest.created)
    check_not_expired(manifest, now)
    return VerifiedManifest(_TOKEN, manifest, envelope, chosen, signer)


def check_not_expired(manifest: Manifest, now: int) -> None:
    if manifest.expires is not None and manifest.expires < now:
        raise TrustError(f"bundle {manifest.name!r} expired on {describe_time(manifest.expires)}")
