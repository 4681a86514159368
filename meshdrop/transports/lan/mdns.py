"""The mDNS machinery both kinds of discovery share: one python-zeroconf instance pinned to
the network the node serves on, that announces this node's own services of one type,
browses that type, resolves what others announce (bounded, defensively) and follows this
machine's addresses. What a service says (TXT) and who counts as a peer is decided by its
users: the open mesh's discovery (discovery.py) and circle discovery (circlediscovery.py).

Bound to one address (``--bind 127.0.0.1``), zeroconf uses only that interface, so
nothing leaves the loopback. Bound to every interface, the node watches its addresses
and re-announces and re-browses when they change (a laptop that joined another Wi-Fi).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from meshdrop.transports.lan.protocol import Address

RESOLVE_TIMEOUT_MS = 3000
MAX_NAMES = 256  # services tracked at once; a flood of fake announcements stops here
MAX_RESOLVING = 8
MAX_ADDRESSES = 8  # per announced service
ADDRESS_POLL = 5.0

# Builds this node's own announcements for the given addresses of this machine.
Announcements = Callable[[list[str]], Sequence[AsyncServiceInfo]]
# Another node's resolved service: its instance name, the addresses this node would
# contact (never empty) and its TXT properties, unparsed.
Resolved = Callable[[str, list[Address], dict[bytes, bytes | None]], None]
Removed = Callable[[str], None]


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


def make_zeroconf(bind: str) -> AsyncZeroconf:
    """A zeroconf instance on the interface of ``bind`` only, or on every interface
    (IPv4 only unless bound to "::") when bound to every address."""
    if is_wildcard(bind):
        version = IPVersion.All if bind == "::" else IPVersion.V4Only
        return AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=version)
    return AsyncZeroconf(interfaces=[bind])


class Mdns:
    """Announce ``announcements(addresses)`` and browse ``service_type``: every other
    instance of it is resolved (at most ``MAX_RESOLVING`` at once, ``MAX_NAMES`` tracked)
    and handed to ``on_resolved`` if it gives a valid port and an address this node would
    contact. This node's own instances are never resolved."""

    def __init__(
        self,
        bind: str,
        service_type: str,
        announcements: Announcements,
        on_resolved: Resolved,
        on_removed: Removed,
        on_addresses: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.bind = bind
        self.service_type = service_type
        self.announcements = announcements
        self.on_resolved = on_resolved
        self.on_removed = on_removed
        self.on_addresses = on_addresses
        self.addresses = own_addresses(bind)
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._own: set[str] = set()
        self._names: set[str] = set()
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._slots = asyncio.Semaphore(MAX_RESOLVING)
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        return self._zc is not None

    async def start(self) -> None:
        self._zc = make_zeroconf(self.bind)
        infos = list(self.announcements(self.addresses))
        self._own.update(info.name for info in infos)
        # Registration probes for name conflicts (all at once: a second each), then
        # announces: let the announcing finish on its own.
        registered = [self._zc.async_register_service(info) for info in infos]
        for announcing in await asyncio.gather(*registered):
            self._keep(announcing)
        self._browse()

    async def reannounce(self) -> None:
        """Announce afresh what ``announcements`` builds now (same instance names)."""
        if self._zc is None:
            return
        for info in self.announcements(self.addresses):
            self._keep(await self._zc.async_update_service(info))

    def _browse(self) -> None:
        assert self._zc is not None
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, self.service_type, handlers=[self._on_change]
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
        if name in self._own or service_type != self.service_type:
            return
        if state_change is ServiceStateChange.Removed:
            self._names.discard(name)
            self.on_removed(name)
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
            info = AsyncServiceInfo(self.service_type, name)
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
            self.on_resolved(name, [(h, port) for h in hosts[:MAX_ADDRESSES]], info.properties)

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
            await self.reannounce()
            await self.requery(announce=False)
            if self.on_addresses is not None:
                self.on_addresses(current)

    async def requery(self, announce: bool = True) -> None:
        """Ask the network afresh for every service (browse anew) rather than wait for
        announcements or record expiry (up to an hour), and with ``announce`` announce
        this node again."""
        if self._zc is None:
            return
        if announce:
            await self.reannounce()
        if self._browser is not None:
            await self._browser.async_cancel()
        self._names.clear()
        self._browse()

    async def close(self) -> None:
        """Say goodbye (so peers drop this node at once) and stop; safe after a failed
        or partial start."""
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
