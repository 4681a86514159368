"""The SSL contexts of one circle (docs/PROTOCOL.md, "Circle transport"): TLS 1.3 only,
both sides show a certificate issued by the circle's CA, and each side trusts only the
circle's CAs of the epochs in its window. Nothing here reads the clock: callers pass
``now``, so a clock that is off is simulated by passing another time."""

from __future__ import annotations

import os
import ssl

from cryptography.hazmat.primitives import serialization

from meshdrop.core.circles import CircleSecret, epoch_of, window
from meshdrop.fs import load_cert_chain_from_memory
from meshdrop.transports.lan.circlecerts import Leaf, circle_ca, issue_leaf
from meshdrop.transports.lan.errors import CircleTLSError

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME, which Python's ssl has no name for: OpenSSL would
# check validity against the system clock, while the window rule (the CAs trusted) is
# computed from the ``now`` the caller gives, the one clock this module knows.
NO_CHECK_TIME = 0x200000


class CircleTLS:
    """The TLS side of one node in one circle (one generation of its secret).

    ``server_context()`` is made once and serves a listening socket for as long as the
    node runs: its SNI callback hands every new handshake the contexts of the node's
    current epoch, which ``refresh(now)`` replaces when the epoch changes (a fresh leaf,
    the new window's CAs). ``client_context()`` is the current epoch's; ask for it again
    for every new connection.

    Making one and ``refresh`` block (keys are made and handed to OpenSSL through a
    memory file): call them outside the event loop, e.g. with ``asyncio.to_thread``.
    """

    def __init__(self, secret: CircleSecret, now: float) -> None:
        self._secret = secret
        self._epoch = epoch_of(now)
        self._server, self._client = _contexts(secret, now)
        self._front = self._server
        self._front.sni_callback = self._hand_current

    @property
    def epoch(self) -> int:
        """The epoch of the node's current leaf certificate."""
        return self._epoch

    def server_context(self) -> ssl.SSLContext:
        """The context to listen with (the same object for the node's whole run)."""
        return self._front

    def client_context(self) -> ssl.SSLContext:
        """The context to connect to a member with, for the current epoch."""
        return self._client

    def refresh(self, now: float) -> bool:
        """Re-issue the leaf and the trusted CAs if ``now`` is in another epoch than the
        current leaf's; True when it did. Handshakes already done keep their keys."""
        epoch = epoch_of(now)
        if epoch == self._epoch:
            return False
        server, client = _contexts(self._secret, now)
        self._server, self._client, self._epoch = server, client, epoch
        return True

    def _hand_current(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _: ssl.SSLContext
    ) -> None:
        # Called by OpenSSL on every ClientHello, server name or not. The verify mode,
        # flags and options stay those of the front context (identical by construction);
        # the certificate and the trusted CAs come from the context set here.
        current = self._server
        if connection.context is not current:
            connection.context = current


def _contexts(secret: CircleSecret, now: float) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context for the epoch of ``now``, sharing one new leaf."""
    epoch = epoch_of(now)
    authorities = [circle_ca(secret, each) for each in window(now)]
    own = next(ca for ca in authorities if ca.epoch == epoch)
    trusted = "".join(
        ca.certificate.public_bytes(serialization.Encoding.PEM).decode() for ca in authorities
    )
    server = _context(ssl.PROTOCOL_TLS_SERVER, trusted)
    server.num_tickets = 0  # TLS 1.3 tickets, sent by a server even with OP_NO_TICKET
    client = _context(ssl.PROTOCOL_TLS_CLIENT, trusted)
    _load_leaf(issue_leaf(own), (server, client))
    return server, client


def _context(protocol: int, trusted: str) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    # Members are named by nothing but their CA: there is no host name to check.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT | NO_CHECK_TIME
    # A resumption ticket travels in clear in the next ClientHello and would link the
    # two connections; a full handshake costs a millisecond.
    context.options |= ssl.OP_NO_TICKET
    context.load_verify_locations(cadata=trusted)
    return context


def _load_leaf(leaf: Leaf, contexts: tuple[ssl.SSLContext, ...]) -> None:
    """Load ``leaf`` into ``contexts``, its key handed to OpenSSL through memory, never
    through a disk (fs.load_cert_chain_from_memory)."""
    key_pem = leaf.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = leaf.certificate.public_bytes(serialization.Encoding.PEM) + key_pem
    try:
        for context in contexts:
            load_cert_chain_from_memory(context, pem)
    except ssl.SSLError:
        raise
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise CircleTLSError(
            f"cannot hand the circle's TLS key to TLS in memory: {reason}"
        ) from exc
