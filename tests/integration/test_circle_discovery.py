"""Circle discovery with real python-zeroconf on 127.0.0.1 (docs/PROTOCOL.md, "Circle
discovery"): members of a circle find each other through `_http._tcp` announcements that
carry only a token; everyone else (another circle, a printer, malformed TXT, a token
replayed from outside the window) is ignored; and nothing announced names the app or
repeats across starts. Every test here is in the "mdns" xdist group (conftest.py): two
tests on the loopback at once would see each other's announcements."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from meshdrop.core import circles
from meshdrop.core.circles import Circle, CircleSecret
from meshdrop.transports.lan.circlediscovery import (
    SERVICE_TYPE,
    CircleDiscovery,
    CircleService,
    parse_token,
    token_path,
)
from meshdrop.transports.lan.protocol import Address

pytestmark = pytest.mark.xdist_group("mdns")

WAIT = 30.0  # seconds: the bound on every wait for an announcement to be seen
DAY = float(circles.EPOCH_SECONDS)
LOOPBACK = "127.0.0.1"
APP_NAMES = re.compile(rb"meshdrop|mdrop", re.IGNORECASE)


def new_circle(name: str) -> Circle:
    return circles.new_circle(name, CircleSecret.generate(), int(time.time()))


@dataclass
class Member:
    """A CircleDiscovery on the loopback and what it reported."""

    discovery: CircleDiscovery
    found: dict[str, tuple[Circle, list[Address]]] = field(default_factory=dict)
    gone: list[tuple[Circle, str]] = field(default_factory=list)
    resolved: set[str] = field(default_factory=set)  # every other `_http._tcp` service

    def knows(self, other: Member, circle: Circle) -> bool:
        index = [s.circle for s in other.discovery.services].index(circle)
        seen = self.found.get(other.discovery.instances[index])
        return seen is not None and seen[0] == circle

    def has_resolved(self, other: Member) -> bool:
        return set(other.discovery.instances) <= self.resolved


def member(services: list[CircleService], clock: Callable[[], float] = time.time) -> Member:
    def on_found(circle: Circle, name: str, addresses: list[Address]) -> None:
        made.found[name] = (circle, addresses)

    def on_gone(circle: Circle, name: str) -> None:
        made.gone.append((circle, name))
        made.found.pop(name, None)

    # No lag: an epoch changes at midnight exactly, so the clocks below decide alone.
    made = Member(CircleDiscovery(LOOPBACK, services, on_found, on_gone, clock=clock, lag=0))
    mdns = made.discovery._mdns
    report = mdns.on_resolved

    def spy(name: str, addresses: list[Address], properties: dict[bytes, bytes | None]) -> None:
        made.resolved.add(name)
        report(name, addresses, properties)

    mdns.on_resolved = spy
    return made


@asynccontextmanager
async def running(*members: Member) -> AsyncIterator[None]:
    try:
        await asyncio.gather(*[one.discovery.start() for one in members])
        yield
    finally:
        for one in members:
            await one.discovery.close()


@asynccontextmanager
async def announced(*infos: AsyncServiceInfo) -> AsyncIterator[AsyncZeroconf]:
    """Other devices' `_http._tcp` services (a printer, a NAS, a forger), registered
    with a zeroconf of their own."""
    zc = AsyncZeroconf(interfaces=[LOOPBACK])
    try:
        # Each registration probes the names first: all at once rather than one by one.
        announcing = await asyncio.gather(*[zc.async_register_service(i) for i in infos])
        await asyncio.gather(*announcing)
        yield zc
    finally:
        await zc.async_unregister_all_services()
        await zc.async_close()


def device(label: str, properties: dict[bytes, bytes | None], port: int = 80) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"{label}.{SERVICE_TYPE}",
        port=port,
        properties=properties,
        server=f"{label.lower().replace(' ', '-')}.local.",
        parsed_addresses=[LOOPBACK],
    )


def token_txt(secret: CircleSecret, epoch: int) -> dict[bytes, bytes | None]:
    token = circles.make_token(secret, epoch, secrets.token_bytes(circles.NONCE_BYTES))
    return {b"path": token_path(token).encode()}


async def until(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT} s waiting for {what}")
        await asyncio.sleep(0.05)


async def resolve(zc: AsyncZeroconf, name: str) -> AsyncServiceInfo:
    info = AsyncServiceInfo(SERVICE_TYPE, name)
    assert await info.async_request(zc.zeroconf, 3000), f"{name} did not resolve"
    return info


def test_two_members_of_one_circle_find_each_other_and_see_a_goodbye() -> None:
    circle = new_circle("friends")
    a = member([CircleService(circle, 40001)])
    b = member([CircleService(circle, 40002)])

    async def scenario() -> None:
        async with running(a, b):
            await until(lambda: a.knows(b, circle) and b.knows(a, circle), "members to meet")
            assert a.found[b.discovery.instances[0]] == (circle, [(LOOPBACK, 40002)])
            assert b.found[a.discovery.instances[0]] == (circle, [(LOOPBACK, 40001)])
            assert not a.resolved & set(a.discovery.instances), "resolved its own service"
            await b.discovery.close()
            await until(lambda: a.gone, "the goodbye")
            assert a.gone == [(circle, b.discovery.instances[0])]

    asyncio.run(scenario())


def test_only_members_of_a_shared_circle_are_reported_one_service_per_circle() -> None:
    x, y, z = new_circle("x"), new_circle("y"), new_circle("z")
    both = member([CircleService(x, 40011), CircleService(y, 40012)])
    in_y = member([CircleService(y, 40013)])
    in_z = member([CircleService(z, 40014)])

    async def scenario() -> None:
        async with running(both, in_y, in_z):
            await until(lambda: both.knows(in_y, y) and in_y.knows(both, y), "the y members")
            await until(
                lambda: all(m.has_resolved(o) for m in (both, in_y, in_z)
                            for o in (both, in_y, in_z) if m is not o),
                "every service to be resolved by every node",
            )  # fmt: skip
            x_instance = both.discovery.instances[0]
            assert set(both.found) == {in_y.discovery.instances[0]}
            assert set(in_y.found) == {both.discovery.instances[1]}, f"{x_instance} reported"
            assert in_z.found == {}

    asyncio.run(scenario())


def test_ordinary_http_services_and_malformed_txt_are_ignored() -> None:
    circle, stranger = new_circle("ours"), new_circle("theirs")
    epoch = circles.epoch_of(time.time())
    path = token_txt(circle.current.secret, epoch)[b"path"] or b""
    others: dict[str, dict[bytes, bytes | None]] = {
        "Office Printer": {b"txtvers": b"1", b"rp": b"ipp/print", b"path": b"/"},
        "NAS": {b"path": b"/"},
        "empty TXT": {},
        "path without a value": {b"path": None},
        "binary path": {b"path": b"\xff\xfe\x00/"},
        "a short token": {b"path": path[:-2]},
        "an upper-case token": {b"path": path.upper()},
        "a token and another key": {b"path": path, b"rp": b"x"},
        "a token under another key": {b"p": path},
        "a random token": {b"path": token_path(secrets.token_bytes(16)).encode()},
        "another circle's token": token_txt(stranger.current.secret, epoch),
    }
    infos = [device(label, txt, 631 + i) for i, (label, txt) in enumerate(others.items())]
    control = device("control", token_txt(circle.current.secret, epoch), 40021)
    watcher = member([CircleService(circle, 40020)])

    async def scenario() -> None:
        async with running(watcher), announced(*infos, control):
            names = {info.name for info in infos}
            await until(lambda: control.name in watcher.found, "the control service")
            await until(lambda: names <= watcher.resolved, "every device to be resolved")
            assert set(watcher.found) == {control.name}

    asyncio.run(scenario())


def test_a_token_replayed_from_outside_the_window_is_ignored() -> None:
    circle = new_circle("ours")
    secret = circle.current.secret
    epoch = circles.epoch_of(time.time())
    replays = [
        device("three days old", token_txt(secret, epoch - 3)),
        device("three days ahead", token_txt(secret, epoch + 3)),
    ]
    edges = [
        device("two days old", token_txt(secret, epoch - 2)),
        device("two days ahead", token_txt(secret, epoch + 2)),
    ]
    watcher = member([CircleService(circle, 40030)])

    async def scenario() -> None:
        async with running(watcher), announced(*replays, *edges):
            await until(lambda: {i.name for i in edges} <= set(watcher.found), "the edges")
            await until(lambda: {i.name for i in replays} <= watcher.resolved, "the replays")
            assert set(watcher.found) == {i.name for i in edges}

    asyncio.run(scenario())


def test_clocks_two_days_apart_meet_and_three_days_apart_do_not() -> None:
    circle = new_circle("skewed")
    now = time.time()
    on_time = member([CircleService(circle, 40041)], clock=lambda: now)
    ahead_2 = member([CircleService(circle, 40042)], clock=lambda: now + 2 * DAY)
    ahead_3 = member([CircleService(circle, 40043)], clock=lambda: now + 3 * DAY)

    async def scenario() -> None:
        async with running(on_time, ahead_2, ahead_3):
            await until(
                lambda: on_time.knows(ahead_2, circle) and ahead_2.knows(on_time, circle)
                and ahead_2.knows(ahead_3, circle) and ahead_3.knows(ahead_2, circle),
                "the members within two days of each other",
            )  # fmt: skip
            await until(
                lambda: on_time.has_resolved(ahead_3) and ahead_3.has_resolved(on_time),
                "the members three days apart to resolve each other",
            )
            assert not on_time.knows(ahead_3, circle)
            assert not ahead_3.knows(on_time, circle)

    asyncio.run(scenario())


def test_an_epoch_change_reannounces_with_a_token_of_the_new_epoch() -> None:
    circle = new_circle("days")
    secret = circle.current.secret
    start = time.time()
    clock = [start]
    changing = member([CircleService(circle, 40051)], clock=lambda: clock[0])
    peer = member([CircleService(circle, 40052)], clock=lambda: start)
    name = changing.discovery.instances[0]
    epoch = circles.epoch_of(start)

    async def announced_epoch(zc: AsyncZeroconf) -> int | None:
        token = parse_token((await resolve(zc, name)).properties)
        assert token is not None
        recognised = circles.recognise([secret], token, start)
        return None if recognised is None else recognised.epoch

    async def scenario() -> None:
        async with running(changing, peer), announced() as observer:
            await until(lambda: peer.knows(changing, circle), "the peer to find the node")
            assert await announced_epoch(observer) == epoch
            await changing.discovery.refresh(start + 60)  # same day: nothing to do
            clock[0] = start + DAY
            await changing.discovery.refresh(clock[0])
            assert changing.discovery.epoch == epoch + 1
            seen: list[int | None] = []

            async def watch() -> None:
                while (value := await announced_epoch(observer)) != epoch + 1:
                    seen.append(value)
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(watch(), WAIT)
            assert peer.knows(changing, circle)
            assert not peer.gone

    asyncio.run(scenario())


def test_two_starts_share_no_instance_name_host_name_or_txt_value() -> None:
    circle = new_circle("private")

    async def one_start(observer: AsyncZeroconf) -> tuple[str, str, bytes]:
        node = member([CircleService(circle, 40061)])
        async with running(node):
            name = node.discovery.instances[0]
            info = await resolve(observer, name)
            assert info.server is not None
            txt = info.text or b""
            return name, info.server, txt

    async def scenario() -> list[tuple[str, str, bytes]]:
        async with announced() as observer:
            return [await one_start(observer), await one_start(observer)]

    first, second = asyncio.run(scenario())
    for what, one, other in zip(("instance", "host", "TXT"), first, second, strict=True):
        assert one != other, f"the {what} repeated across starts: {one!r}"
    for name, host, txt in (first, second):
        assert re.fullmatch(r"[0-9a-f]{12}\._http\._tcp\.local\.", name)
        assert re.fullmatch(r"[0-9a-f]{12}\.local\.", host)
        assert re.fullmatch(rb"\x26path=/[0-9a-f]{32}", txt), txt


class Capture(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        self.packets.append(data)


def mdns_listener() -> socket.socket:
    """A socket that receives every mDNS packet multicast on the loopback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("224.0.0.251", 5353))
    membership = socket.inet_aton("224.0.0.251") + socket.inet_aton(LOOPBACK)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.setblocking(False)
    return sock


def test_the_packets_on_the_air_name_nothing_but_a_generic_http_service() -> None:
    circle = new_circle("quiet")
    a = member([CircleService(circle, 40071)])
    b = member([CircleService(circle, 40072)])

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        transport, capture = await loop.create_datagram_endpoint(Capture, sock=mdns_listener())
        try:
            async with running(a, b):
                await until(lambda: a.knows(b, circle) and b.knows(a, circle), "members to meet")
            await asyncio.sleep(0.5)  # the goodbyes
        finally:
            transport.close()
        return capture.packets

    packets = asyncio.run(scenario())
    # Other processes on this machine may use mDNS on the loopback too: judge the packets
    # that carry our names (announcements, answers, goodbyes).
    labels = [d.discovery.labels[0].encode() for d in (a, b)]
    ours = [p for p in packets if any(label in p for label in labels)]
    assert len(ours) >= 2, f"captured {len(packets)} packets, none of ours"
    for packet in ours:
        assert not APP_NAMES.search(packet), packet
        service_labels = set(re.findall(rb"(?<=[\x01-\x3f])_[A-Za-z0-9-]+", packet))
        assert service_labels <= {b"_http", b"_tcp", b"_services", b"_dns-sd", b"_udp"}, packet
