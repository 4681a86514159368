"""mDNS/DNS-SD with python-zeroconf's asyncio API: advertise this node, browse for others.

What a node says about itself is as little as works: one service type, an instance name
and an SRV host name that are random on every start (never the machine's name), and a
TXT record holding only the protocol version and a short inventory digest. Everything a
peer announces is untrusted: names, addresses and TXT are parsed defensively and capped.

Bound to one address (``--bind 127.0.0.1``), zeroconf uses only that interface, so
nothing leaves the loopback. Bound to every interface, the node watches its addresses
and re-announces and re-browses when they change (a laptop that joined another Wi-Fi).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
from collections.abc import Callable
from typing import Any

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from meshdrop.core.inventory import MARK_BYTES
from meshdrop.transports.lan.protocol import PROTOCOL_VERSION, Address

SERVICE_TYPE = "_meshdrop._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
MAX_NAMES = 256  # services tracked at once; a flood of fake announcements stops here
MAX_RESOLVING = 8
ADDRESS_POLL = 5.0

Found = Callable[[str, list[Address], "bytes | None"], None]
Gone = Callable[[str], None]


def is_wildcard(bind: str) -> bool:
    return bind in ("", "0.0.0.0", "::")  # noqa: S104 (a comparison, not a bind)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def own_addresses(bind: str) -> list[str]:
    """The addresses to advertise: the bound one, or every non-loopback address (IPv4
    only unless bound to "::"; IPv6 link-local ones need a scope and are left out)."""
    if not is_wildcard(bind):
        return [bind]
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                address = ipaddress.ip_address(ip.ip)
            elif bind == "::":
                address = ipaddress.ip_address(ip.ip[0])
            else:
                continue
            if address.is_loopback or address.is_unspecified:
                continue
            if address.version == 6 and address.is_link_local:
                continue
            found.append(str(address))
    return sorted(set(found))


def acceptable_peer_address(bind: str, host: str) -> bool:
    """Which announced addresses this node will contact: only loopback ones when confined
    to loopback; otherwise no loopback, multicast or unspecified address (a hostile
    announcement must not point the node at its own local services); only IPv4 when
    bound to an IPv4 address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.is_multicast or address.is_unspecified:
        return False
    if address.version == 6 and address.is_link_local:
        return False  # needs a scope id an announcement cannot be trusted to give
    if is_loopback(bind):
        return address.is_loopback
    if address.is_loopback:
        return False
    if bind == "::":
        return True
    family = 4 if is_wildcard(bind) else ipaddress.ip_address(bind).version
    return address.version == family


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
        self.on_gone = on_gone
        self.on_addresses = on_addresses
        self.instance = f"{secrets.token_hex(8)}.{SERVICE_TYPE}"
        self.host = f"md-{secrets.token_hex(8)}.local."
        self.addresses = own_addresses(bind)
        self._digest = bytes(MARK_BYTES)
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._names: set[str] = set()
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._slots = asyncio.Semaphore(MAX_RESOLVING)
        self._background: set[asyncio.Task[Any]] = set()

    def _make_zeroconf(self) -> AsyncZeroconf:
        if is_wildcard(self.bind):
            version = IPVersion.All if self.bind == "::" else IPVersion.V4Only
            return AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=version)
        return AsyncZeroconf(interfaces=[self.bind])

    def _make_info(self) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            self.instance,
            port=self.port,
            properties={"v": str(PROTOCOL_VERSION), "d": self._digest.hex()},
            server=self.host,
            parsed_addresses=self.addresses,
        )

    async def start(self, digest: bytes) -> None:
        self._digest = digest
        self._zc = self._make_zeroconf()
        self._info = self._make_info()
        # Registration probes for name conflicts, then announces: let it finish on its own.
        self._keep(await self._zc.async_register_service(self._info))
        self._browse()

    def _browse(self) -> None:
        assert self._zc is not None
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change]
        )

    def _keep(self, awaitable: Any) -> None:
        async def wait() -> None:
            with contextlib.suppress(Exception):
                await awaitable

        task = asyncio.ensure_future(wait())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_change(
        self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name == self.instance or service_type != SERVICE_TYPE:
            return
        if state_change is ServiceStateChange.Removed:
            self._names.discard(name)
            self.on_gone(name)
            return
        if name not in self._names and len(self._names) >= MAX_NAMES:
            return
        self._names.add(name)
        if name in self._resolving:
            self._again.add(name)
            return
        task = asyncio.ensure_future(self._resolve(name))
        self._resolving[name] = task

        def done(_: asyncio.Future[None]) -> None:
            self._resolving.pop(name, None)
            if name in self._again:
                self._again.discard(name)
                self._on_change(zeroconf, service_type, name, ServiceStateChange.Updated)

        task.add_done_callback(done)

    async def _resolve(self, name: str) -> None:
        if self._zc is None:
            return
        async with self._slots:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            try:
                if not await info.async_request(self._zc.zeroconf, RESOLVE_TIMEOUT_MS):
                    return
            except Exception:  # whatever a hostile record triggers, ignore it
                return
        port = info.port
        if port is None or not 0 < port < 65536:
            return
        hosts = [h for h in info.parsed_addresses() if acceptable_peer_address(self.bind, h)]
        if hosts:
            self.on_found(name, [(h, port) for h in hosts[:8]], parse_txt(info.properties))

    async def update_digest(self, digest: bytes) -> None:
        """Re-announce the TXT record with a new inventory digest."""
        if digest == self._digest or self._zc is None:
            return
        self._digest = digest
        self._info = self._make_info()
        self._keep(await self._zc.async_update_service(self._info))

    async def watch_addresses(self) -> None:
        """Run until cancelled: when this machine's addresses change, rescan interfaces,
        re-announce with the new addresses and browse afresh."""
        if not is_wildcard(self.bind):
            return
        while True:
            await asyncio.sleep(ADDRESS_POLL)
            current = await asyncio.to_thread(own_addresses, self.bind)
            if current == self.addresses or self._zc is None:
                continue
            self.addresses = current
            await self._zc.async_update_interfaces()
            self._info = self._make_info()
            self._keep(await self._zc.async_update_service(self._info))
            await self.requery(announce=False)
            if self.on_addresses is not None:
                self.on_addresses(current)

    async def requery(self, announce: bool = True) -> None:
        """Ask the network afresh for every peer (browse anew) rather than wait for
        announcements or record expiry (up to an hour), and with ``announce`` announce
        this node again: after a network change, or while no peer answers (a link that
        came back)."""
        if self._zc is None:
            return
        if announce and self._info is not None:
            self._keep(await self._zc.async_update_service(self._info))
        if self._browser is not None:
            await self._browser.async_cancel()
        self._names.clear()
        self._browse()

    async def close(self) -> None:
        """Say goodbye (so peers drop this node at once) and stop."""
        for task in list(self._resolving.values()):
            task.cancel()
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.async_cancel()
        if self._zc is not None:
            with contextlib.suppress(Exception):
                await self._zc.async_unregister_all_services()
            with contextlib.suppress(Exception):
                await self._zc.async_close()
            self._zc = None
        for task in list(self._background):
            task.cancel()
