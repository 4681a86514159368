"""Checking what a peer offers before any of a bundle's data is asked for (docs/PROTOCOL.md
6.2 and 6.3 steps 1 to 3): a publisher file against the digest it was listed under, and
an envelope against the manifest hash, the store's trust (``accept``) and the slot and
version it was listed under. Whose fault a refusal is decides whether the peer is
penalised (6.4). The sync loop (engine.py) fetches; this module judges.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshdrop.core.bundle import Envelope
from meshdrop.core.inventory import Entry, offered_slot
from meshdrop.core.keys import Domain, verify
from meshdrop.core.trust import PublisherState
from meshdrop.core.verify import VerifiedManifest, signing_publishers
from meshdrop.errors import (
    FormatError,
    MeshdropError,
    RollbackError,
    SignatureError,
    TrustError,
)
from meshdrop.store.models import Outcome
from meshdrop.transports.lan.errors import PeerMisbehaved
from meshdrop.transports.lan.events import PublisherEvent, emit_withdrawals
from meshdrop.transports.lan.peers import Peer
from meshdrop.transports.lan.protocol import Address
from meshdrop.transports.lan.storeio import Checked, Offered
from meshdrop.transports.lan.transfer import TransferHost


@dataclass
class SyncOutcome:
    complete: bool = True
    bundles: int = 0
    publishers: int = 0
    refused: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


def forged(envelope: Envelope, states: Mapping[bytes, PublisherState]) -> bool:
    """Whether a refused envelope is one no honest peer could hold: of a publisher not
    asked about, with a bad signature, or signed by a key its own chain does not
    delegate. (An expired bundle, or one a newer record revoked, is no one's fault.)"""
    try:
        if not signing_publishers(envelope, states):
            return True
        return not verify(
            envelope.signer, envelope.signature, Domain.MANIFEST, envelope.manifest_bytes
        )
    except MeshdropError:
        return True


async def fetch_publisher(
    host: TransferHost,
    peer: Peer,
    address: Address,
    publisher: bytes,
    entry: Entry,
    outcome: SyncOutcome,
) -> None:
    data = await host.client.publisher_file(address, publisher)
    if hashlib.sha256(data).digest() != entry.digest:
        raise PeerMisbehaved(f"peer {peer.label} sent another publisher file than it listed")
    try:
        result = await host.storeio.update_publisher(data, f"a publisher file from {peer.label}")
    except MeshdropError as exc:
        host.refused(entry.digest, peer, str(exc))
        outcome.refused += 1
        if isinstance(exc, (FormatError, SignatureError, TrustError)):
            host.penalise(peer, str(exc))
        return
    if result.outcome is Outcome.PUBLISHER_UPDATED:
        outcome.publishers += 1
        host.totals.publishers += 1
        host.emit(
            PublisherEvent(
                event="publisher",
                peer=peer.label,
                publisher=result.publisher,
                version=result.version,
            )
        )
        emit_withdrawals(host.emit, result.withdrawn, peer.label)


async def accept_envelope(
    host: TransferHost,
    peer: Peer,
    entry: Entry,
    states: Mapping[bytes, PublisherState],
    outcome: SyncOutcome,
    data: bytes,
) -> Checked | None:
    """The envelope ``data`` a peer sent for ``entry``, checked on a store thread with the
    other envelopes of its turn (``StoreIO.check_offers``): accepted (its ``accepted`` is
    the verified manifest, with the chunks missing here), or None if refused (penalising
    the peer where it is its fault) or already held here."""
    try:
        checked = await host.offer_checks.call(
            Offered(data, entry.digest, f"an envelope from {peer.label}")
        )
    except (FormatError, TypeError, ValueError) as exc:
        raise PeerMisbehaved(str(exc)) from exc
    if not checked.as_listed:
        raise PeerMisbehaved(f"peer {peer.label} sent another envelope than it listed")
    refusal = checked.refusal
    if refusal is not None:
        outcome.refused += 1
        envelope = checked.envelope
        if not isinstance(refusal, RollbackError) and await asyncio.to_thread(
            forged, envelope, states
        ):
            # The peer's fault, not the manifest's: an honest peer may offer the same
            # manifest hash with a good envelope, so nothing is remembered about it.
            host.penalise(peer, str(refusal))
        else:
            host.refused(entry.digest, peer, str(refusal))
        return None
    accepted = checked.accepted
    if not isinstance(accepted, VerifiedManifest):
        return None  # already held here
    m = accepted.manifest
    slot = offered_slot(m.publisher, m.name, entry.partial)
    if slot != entry.slot or m.version != entry.version:
        raise PeerMisbehaved(
            f"peer {peer.label} listed a bundle under another name or version than its own"
        )
    return checked
