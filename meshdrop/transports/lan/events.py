"""What a running node reports, one typed dict per kind of event. They stay plain dicts
at the boundary: ``meshdrop node --json`` prints each as one JSON object, and scripts
and tests read ``event["event"]``; mypy tells the kinds apart by that key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, NotRequired, TypedDict

from meshdrop.store.models import Withdrawal


class ListeningEvent(TypedDict):
    event: Literal["listening"]
    urls: list[str]
    port: int
    peer_api: str
    bundles: int
    publishers: int


class AddressesEvent(TypedDict):
    event: Literal["addresses"]
    urls: list[str]


class NoDiscoveryEvent(TypedDict):
    event: Literal["no-discovery"]
    reason: str


class ModeEvent(TypedDict):
    """Who can see this node: "open" (no circle: anyone on the network), "quiet" (only
    its circles' members), "open+circles" (--open: both). ``circles``: name -> port."""

    event: Literal["mode"]
    mode: Literal["open", "quiet", "open+circles"]
    circles: dict[str, int]


class PeerEvent(TypedDict):
    event: Literal["peer"]
    peer: str
    # "introduced": it said hello to us first (a hotspot's client, a peer that found us)
    state: Literal["discovered", "introduced", "alive", "unreachable", "forgotten", "left"]


class SyncEvent(TypedDict):
    """One sync with a peer ended."""

    event: Literal["sync"]
    peer: str
    bundles: int
    publishers: int
    refused: int
    bytes: int
    complete: bool
    seconds: float


class BundleEvent(TypedDict):
    """A bundle arrived, verified and committed."""

    event: Literal["bundle"]
    peer: str
    name: str
    version: int
    publisher: str
    size: int
    replaced: int | None


class PublisherEvent(TypedDict):
    """A newer publisher chain arrived and was accepted."""

    event: Literal["publisher"]
    peer: str
    publisher: str
    version: int


class WithdrawnEvent(TypedDict):
    """A newer publisher record (a peer's publisher file, or the chain a bundle carried)
    withdrew a stored bundle: signed by a key reported compromised (``reason``
    "compromised"), or signed after its key was retired ("retired")."""

    event: Literal["withdrawn"]
    name: str
    version: int
    publisher: str
    signer: str  # the revoked key's id
    reason: str
    revoked_at: int
    peer: NotRequired[str]  # whose update brought the record


class RefusedEvent(TypedDict):
    """Something a peer offered that this node will not take (no fault of the peer's)."""

    event: Literal["refused"]
    reason: str
    peer: NotRequired[str]


class BadPeerEvent(TypedDict):
    """A peer answered what no honest peer would: a penalty, and ``banned`` once too many."""

    event: Literal["bad-peer"]
    peer: str
    reason: str
    banned: bool


class ErrorEvent(TypedDict):
    """This node's own trouble (a full disk), or a sync that failed unexpectedly."""

    event: Literal["error"]
    reason: str
    peer: NotRequired[str]


class StoppedEvent(TypedDict):
    event: Literal["stopped"]


Event = (
    ListeningEvent
    | AddressesEvent
    | NoDiscoveryEvent
    | ModeEvent
    | PeerEvent
    | SyncEvent
    | BundleEvent
    | PublisherEvent
    | WithdrawnEvent
    | RefusedEvent
    | BadPeerEvent
    | ErrorEvent
    | StoppedEvent
)
Emit = Callable[[Event], None]


def emit_withdrawals(emit: Emit, withdrawn: Iterable[Withdrawal], peer: str | None) -> None:
    """One ``withdrawn`` event per bundle a newer publisher record withdrew."""
    for w in withdrawn:
        event = WithdrawnEvent(
            event="withdrawn",
            name=w.name,
            version=w.version,
            publisher=w.publisher,
            signer=w.signer,
            reason=w.reason,
            revoked_at=w.revoked_at,
        )
        if peer is not None:
            event["peer"] = peer
        emit(event)
