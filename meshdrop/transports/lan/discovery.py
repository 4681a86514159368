"""mDNS/DNS-SD for the open mesh: advertise this node, browse for others (the shared
zeroconf machinery, interface pinning and address checks are in mdns.py).

What a node says about itself is as little as works: one service type, an instance name
and an SRV host name that are random on every start (never the machine's name), and a
TXT record holding only the protocol version and a short inventory digest. Everything a
peer announces is untrusted: names, addresses and TXT are parsed defensively and capped.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from zeroconf.asyncio import AsyncServiceInfo

from meshdrop.core.inventory import MARK_BYTES
from meshdrop.transports.lan.mdns import (
    Mdns,
    acceptable_peer_address,
    is_loopback,
    is_wildcard,
    own_addresses,
)
from meshdrop.transports.lan.protocol import PROTOCOL_VERSION, Address

# Where they were before mdns.py: node.py and liveness.py import them from here.
__all__ = [
    "SERVICE_TYPE",
    "Discovery",
    "Found",
    "Gone",
    "acceptable_peer_address",
    "is_loopback",
    "is_wildcard",
    "own_addresses",
    "parse_txt",
]

SERVICE_TYPE = "_meshdrop._tcp.local."

Found = Callable[[str, list[Address], "bytes | None"], None]
Gone = Callable[[str], None]


def parse_txt(properties: dict[bytes, bytes | None]) -> bytes | None:
    """The inventory digest from a TXT record of our protocol version, else None."""
    if properties.get(b"v") != str(PROTOCOL_VERSION).encode():
        return None
    raw = properties.get(b"d")
    if raw is None or len(raw) != 2 * MARK_BYTES:
        return None
    try:
        return bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


class Discovery:
    def __init__(
        self,
        bind: str,
        port: int,
        on_found: Found,
        on_gone: Gone,
        on_addresses: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.bind = bind
        self.port = port
        self.on_found = on_found
        self.instance = f"{secrets.token_hex(8)}.{SERVICE_TYPE}"
        self.host = f"md-{secrets.token_hex(8)}.local."
        self._digest = bytes(MARK_BYTES)
        self._mdns = Mdns(
            bind, SERVICE_TYPE, self._announcements, self._resolved, on_gone, on_addresses
        )

    @property
    def addresses(self) -> list[str]:
        return self._mdns.addresses

    def _announcements(self, addresses: list[str]) -> Sequence[AsyncServiceInfo]:
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            self.instance,
            port=self.port,
            properties={"v": str(PROTOCOL_VERSION), "d": self._digest.hex()},
            server=self.host,
            parsed_addresses=addresses,
        )
        return [info]

    def _resolved(
        self, name: str, addresses: list[Address], properties: dict[bytes, bytes | None]
    ) -> None:
        self.on_found(name, addresses, parse_txt(properties))

    async def start(self, digest: bytes) -> None:
        self._digest = digest
        await self._mdns.start()

    async def update_digest(self, digest: bytes) -> None:
        """Re-announce the TXT record with a new inventory digest."""
        if digest == self._digest or not self._mdns.running:
            return
        self._digest = digest
        await self._mdns.reannounce()

    async def watch_addresses(self) -> None:
        """Run until cancelled: when this machine's addresses change, rescan interfaces,
        re-announce with the new addresses and browse afresh."""
        await self._mdns.watch_addresses()

    async def requery(self, announce: bool = True) -> None:
        """Ask the network afresh for every peer (browse anew) rather than wait for
        announcements or record expiry (up to an hour), and with ``announce`` announce
        this node again: after a network change, or while no peer answers (a link that
        came back)."""
        await self._mdns.requery(announce)

    async def close(self) -> None:
        """Say goodbye (so peers drop this node at once) and stop."""
        await self._mdns.close()
