"""What goes wrong on the LAN, one family per fault: a peer that cannot be reached (or is
too slow) is not the same as a peer that sent something it must not have."""

from __future__ import annotations

import errno
import os

from meshdrop.errors import NetworkError

EXIT_NETWORK = NetworkError.exit_code
__all__ = [
    "EXIT_NETWORK",
    "CircleTLSError",
    "NetworkError",
    "PeerBusy",
    "PeerMisbehaved",
    "PeerNotFound",
    "PeerUnreachable",
    "cannot_listen",
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


class CircleTLSError(NetworkError):
    """A circle's TLS cannot be set up on this device: a clock too far off to write in a
    certificate, a temporary folder that cannot hold the node's key for a moment."""


def cannot_listen(address: str, exc: OSError) -> NetworkError:
    """The error for a server socket that could not be opened (the reader's, the node's)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    hint = "; choose another --port" if exc.errno == errno.EADDRINUSE else ""
    return NetworkError(f"cannot listen on {address}: {reason.lower()}{hint}")
