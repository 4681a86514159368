"""What goes wrong on the LAN, one family per fault: a peer that cannot be reached (or is
too slow) is not the same as a peer that sent something it must not have."""

from __future__ import annotations

from meshdrop.errors import NetworkError

EXIT_NETWORK = NetworkError.exit_code
__all__ = [
    "EXIT_NETWORK",
    "NetworkError",
    "PeerBusy",
    "PeerMisbehaved",
    "PeerNotFound",
    "PeerUnreachable",
]


class PeerUnreachable(NetworkError):
    """A peer did not answer, answered too slowly, or hung up: try later or elsewhere."""


class PeerBusy(PeerUnreachable):
    """A peer said it is busy (503): try later, no penalty."""


class PeerNotFound(NetworkError):
    """A peer no longer has what it offered (replaced meanwhile): no penalty."""


class PeerMisbehaved(NetworkError):
    """A peer sent what the protocol forbids: too much, malformed, not what was asked.
    The peer is penalised; the data is fetched from someone else."""
