"""Discovery inside circles (docs/PROTOCOL.md, "Circle discovery"): mDNS/DNS-SD that
names nothing. Per circle the node is in, one `_http._tcp` service (the type printers,
NAS boxes, routers and TVs announce) with a random instance and host name fresh at each
start, the circle's listening port, and a TXT record holding only ``path=/<token>``: the
circle token of core/circles.py, a fresh nonce at every announcement. Members recognise
each other's tokens; every other `_http._tcp` service is ignored without a word.

The zeroconf machinery (interface pinning, bounded resolving, address checks, address
changes) is mdns.py's, shared with the open mesh's discovery.py.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zeroconf.asyncio import AsyncServiceInfo

from meshdrop.core import circles
from meshdrop.core.circles import Circle, CircleSecret
from meshdrop.transports.lan.mdns import MAX_NAMES, Mdns
from meshdrop.transports.lan.protocol import Address

SERVICE_TYPE = "_http._tcp.local."
EPOCH_CHECK = 60.0  # seconds between looks at the clock (a Pi's clock may jump when set)
# Each start moves its epoch changes this much (random, seconds) past midnight UTC, so
# that the members on a network do not all change their TXT records in the same minute.
EPOCH_LAG_MAX = 4 * 3600
_TOKEN_PATH = re.compile(rb"/([0-9a-f]{%d})" % (2 * circles.TOKEN_BYTES))


@dataclass(frozen=True)
class CircleService:
    """One circle this node is in, and the port its listener for that circle serves on.
    Only the current generation's secret is used on the LAN."""

    circle: Circle
    port: int

    @property
    def secret(self) -> CircleSecret:
        return self.circle.current.secret


Clock = Callable[[], float]


def random_label() -> str:
    """12 lower-case hex digits shaped like a randomised MAC address (locally
    administered, unicast), as devices that name themselves after their MAC do."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return raw.hex()


def token_path(token: bytes) -> str:
    return "/" + token.hex()


def parse_token(properties: dict[bytes, bytes | None]) -> bytes | None:
    """The 16-byte circle token of a TXT record of exactly one key, ``path=/`` and 32
    lower-case hex digits; None for anything else (other people's devices announce all
    sorts)."""
    if len(properties) != 1:
        return None
    value = properties.get(b"path")
    if value is None:
        return None
    match = _TOKEN_PATH.fullmatch(value)
    return bytes.fromhex(match.group(1).decode("ascii")) if match else None


class CircleDiscovery:
    """Announce every circle of ``services`` and report the members of those circles
    found on the network: ``on_found(circle, instance name, addresses)`` when a service
    shows a token of that circle (again when it re-announces), ``on_gone(circle,
    instance name)`` when it says goodbye or stops showing one. Times come from
    ``clock`` (tests pass a skewed one). A node announces tokens of the epoch of its
    clock minus ``lag`` (random below EPOCH_LAG_MAX unless given); it recognises by its
    clock."""

    def __init__(
        self,
        bind: str,
        services: Sequence[CircleService],
        on_found: Callable[[Circle, str, list[Address]], None],
        on_gone: Callable[[Circle, str], None],
        on_addresses: Callable[[list[str]], None] | None = None,
        clock: Clock = time.time,
        lag: float | None = None,
    ) -> None:
        self.bind = bind
        self.services = list(services)
        self.on_found = on_found
        self.on_gone = on_gone
        self.clock = clock
        self.labels = [random_label() for _ in self.services]
        self.lag = float(secrets.randbelow(EPOCH_LAG_MAX)) if lag is None else lag
        self.epoch = circles.epoch_of(clock() - self.lag)
        self._members: dict[str, int] = {}  # recognised instance name -> index in services
        self._mdns = Mdns(
            bind, SERVICE_TYPE, self._announcements, self._resolved, self._removed, on_addresses
        )

    @property
    def instances(self) -> list[str]:
        """This node's own instance names, one per circle, in the order of ``services``."""
        return [f"{label}.{SERVICE_TYPE}" for label in self.labels]

    @property
    def addresses(self) -> list[str]:
        return self._mdns.addresses

    def _announcements(self, addresses: list[str]) -> list[AsyncServiceInfo]:
        infos = []
        for service, label in zip(self.services, self.labels, strict=True):
            nonce = secrets.token_bytes(circles.NONCE_BYTES)
            token = circles.make_token(service.secret, self.epoch, nonce)
            infos.append(
                AsyncServiceInfo(
                    SERVICE_TYPE,
                    f"{label}.{SERVICE_TYPE}",
                    port=service.port,
                    properties={"path": token_path(token)},
                    server=f"{label}.local.",
                    parsed_addresses=addresses,
                )
            )
        return infos

    def _resolved(
        self, name: str, addresses: list[Address], properties: dict[bytes, bytes | None]
    ) -> None:
        token = parse_token(properties)
        index = None if token is None else self._recognise(token)
        before = self._members.pop(name, None)
        if before is not None and before != index:
            self.on_gone(self.services[before].circle, name)
        if index is not None and len(self._members) < MAX_NAMES:
            self._members[name] = index
            self.on_found(self.services[index].circle, name, addresses)

    def _recognise(self, token: bytes) -> int | None:
        held = [service.secret for service in self.services]
        found = circles.recognise(held, token, self.clock())
        if found is None:
            return None
        return next(i for i, secret in enumerate(held) if secret is found.secret)

    def _removed(self, name: str) -> None:
        index = self._members.pop(name, None)
        if index is not None:
            self.on_gone(self.services[index].circle, name)

    async def start(self) -> None:
        await self._mdns.start()

    async def refresh(self, now: float) -> None:
        """At an epoch change (of ``now`` minus the lag): announce every circle with a
        token of the new epoch, and resolve every service afresh (a token that was
        outside the window may be inside it now)."""
        epoch = circles.epoch_of(now - self.lag)
        if epoch == self.epoch:
            return
        self.epoch = epoch
        await self._mdns.requery(announce=True)

    async def watch_epochs(self) -> None:
        """Run until cancelled: look at the clock every minute, refresh at epoch changes."""
        while True:
            await asyncio.sleep(EPOCH_CHECK)
            await self.refresh(self.clock())

    async def watch_addresses(self) -> None:
        """Run until cancelled: follow this machine's addresses (bound to every one)."""
        await self._mdns.watch_addresses()

    async def requery(self, announce: bool = True) -> None:
        """Browse anew for every service and, with ``announce``, announce every circle
        again (each with a fresh token)."""
        await self._mdns.requery(announce)

    async def close(self) -> None:
        """Say goodbye (members drop this node at once) and stop."""
        await self._mdns.close()
