"""Connection caps, eviction, complaint throttling, the network choice and the commit's
EMFILE handling: the pure decisions as tables, and the guard on a real aiohttp server
on 127.0.0.1 (that aiohttp's handler still marks idle connections as assumed)."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from dataclasses import dataclass

import pytest
from aiohttp import web

from meshdrop.errors import OutOfDescriptorsError, StoreError
from meshdrop.store.ingest import out_of_descriptors
from meshdrop.transports.lan.interfaces import (
    IFF_LOOPBACK,
    IFF_MULTICAST,
    IFF_POINTOPOINT,
    IFF_UP,
    Interface,
    address_rank,
    choose_address,
)
from meshdrop.transports.lan.limits import (
    HEAD_TIMEOUT,
    PEER_KEEPALIVE,
    Admit,
    ConnectionLimits,
    ConnectionTable,
    Refuse,
    Throttle,
    idle_expired,
)
from meshdrop.transports.lan.serverguard import ConnectionGuard, GuardedSite, plain_errors

# Connection limits


@pytest.mark.parametrize(
    ("descriptors", "total", "per_address"),
    [
        (1024, 768, 64),  # the common default: 256 left for files and the node's own sync
        (256, 128, 64),  # few: half kept free
        (40, 20, 20),
        (10, 16, 16),  # never below a handful
        (1 << 20, 1024, 64),  # many: a LAN node needs no more
    ],
)
def test_connection_caps_leave_descriptors_for_the_rest(
    descriptors: int, total: int, per_address: int
) -> None:
    assert ConnectionLimits.for_descriptors(descriptors) == ConnectionLimits(total, per_address)


@dataclass(frozen=True)
class Conn:
    name: str
    busy: bool = False


def table(total: int = 4, per_address: int = 2) -> ConnectionTable[Conn]:
    return ConnectionTable(ConnectionLimits(total, per_address), lambda c: not c.busy)


def test_under_the_caps_every_connection_is_admitted() -> None:
    t = table()
    assert t.admit(Conn("a1"), "a") == Admit()
    assert t.admit(Conn("b1"), "b") == Admit()
    assert len(t) == 2 and t.count("a") == 1


def test_past_the_per_address_cap_the_oldest_idle_of_that_address_makes_room() -> None:
    t = table(total=10, per_address=2)
    a1, a2, b1 = Conn("a1"), Conn("a2"), Conn("b1")
    for conn, address in ((a1, "a"), (b1, "b"), (a2, "a")):
        t.admit(conn, address)
    assert t.admit(Conn("a3"), "a") == Admit(evict=a1)
    assert t.count("a") == 2 and t.count("b") == 1


def test_busy_connections_are_never_closed_for_room() -> None:
    t = table(total=10, per_address=2)
    t.admit(Conn("a1", busy=True), "a")
    a2 = Conn("a2")
    t.admit(a2, "a")
    assert t.admit(Conn("a3"), "a") == Admit(evict=a2)
    t2 = table(total=10, per_address=1)
    t2.admit(Conn("a1", busy=True), "a")
    assert t2.admit(Conn("a2"), "a") == Refuse()
    assert t2.count("a") == 1


def test_past_the_total_cap_the_address_holding_most_gives_way() -> None:
    t = table(total=4, per_address=3)
    flood = [Conn(f"f{i}") for i in range(3)]
    reader = Conn("r1")
    t.admit(reader, "reader")
    for conn in flood:
        t.admit(conn, "stranger")
    assert t.admit(Conn("r2"), "reader") == Admit(evict=flood[0])
    assert t.count("reader") == 2 and t.count("stranger") == 2


def test_past_the_total_cap_with_everyone_busy_the_new_one_is_refused() -> None:
    t = table(total=2, per_address=2)
    t.admit(Conn("a", busy=True), "a")
    t.admit(Conn("b", busy=True), "b")
    assert t.admit(Conn("c"), "c") == Refuse()
    assert len(t) == 2


def test_a_removed_connection_frees_its_place_and_unknown_ones_are_ignored() -> None:
    t = table(total=1, per_address=1)
    a = Conn("a", busy=True)
    t.admit(a, "a")
    t.remove(a)
    t.remove(a)
    t.remove(Conn("never"))
    assert len(t) == 0 and t.admit(Conn("b", busy=True), "b") == Admit()


# Throttled complaints


def test_a_kind_of_complaint_is_said_once_per_interval_with_the_count_held_back() -> None:
    throttle = Throttle(interval=60)
    assert throttle.allow("accept", 0.0) == 0
    assert [throttle.allow("accept", t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert throttle.allow("other", 3.0) == 0  # another kind is said at once
    assert throttle.allow("accept", 60.0) == 3
    assert throttle.allow("accept", 61.0) is None


# The network chosen without --bind

UP_MULTICAST = IFF_UP | IFF_MULTICAST
WIFI = Interface("wlan0", ("192.168.1.20", "fe80::1"), UP_MULTICAST)
MOBILE = Interface("rmnet0", ("100.64.12.7",), IFF_UP | IFF_POINTOPOINT)
PUBLIC = Interface("eth1", ("203.0.113.5",), UP_MULTICAST)
LOOPBACK = Interface("lo", ("127.0.0.1", "::1"), IFF_UP | IFF_LOOPBACK)
LINK_LOCAL = Interface("usb0", ("169.254.3.4",), UP_MULTICAST)
ULA_ONLY = Interface("wlan1", ("fd12::5", "fe80::2"), UP_MULTICAST)
DOWN = Interface("eth0", ("10.0.0.9",), IFF_MULTICAST)
NO_MULTICAST = Interface("eth2", ("10.1.0.9",), IFF_UP)
VPN = Interface("tun0", ("10.8.0.2",), IFF_UP | IFF_MULTICAST | IFF_POINTOPOINT)


@pytest.mark.parametrize(
    ("interfaces", "route", "chosen"),
    [
        ([LOOPBACK, MOBILE, WIFI], "100.64.12.7", "192.168.1.20"),  # a phone: the Wi-Fi
        ([LOOPBACK, PUBLIC, WIFI], None, "192.168.1.20"),  # a public address never
        ([LOOPBACK, MOBILE], "100.64.12.7", None),  # mobile data only: nothing
        ([LOOPBACK], None, None),
        ([LINK_LOCAL, WIFI], None, "192.168.1.20"),  # RFC 1918 before link-local
        ([LINK_LOCAL, WIFI], "169.254.3.4", "169.254.3.4"),  # ... unless mDNS goes there
        ([LINK_LOCAL], None, "169.254.3.4"),
        ([ULA_ONLY, LOOPBACK], None, "fd12::5"),  # a unique local IPv6 address
        ([ULA_ONLY, LINK_LOCAL], None, "169.254.3.4"),  # IPv4 first
        ([DOWN, NO_MULTICAST, VPN, WIFI], "10.8.0.2", "192.168.1.20"),  # unusable links
        ([Interface("x", ("10.2.0.1",), None)], None, "10.2.0.1"),  # flags unknown
    ],
)
def test_the_node_serves_one_private_address_of_a_multicast_interface(
    interfaces: list[Interface], route: str | None, chosen: str | None
) -> None:
    assert choose_address(interfaces, route) == chosen


@pytest.mark.parametrize(
    ("address", "rank"),
    [
        ("10.0.0.1", 0),
        ("172.16.5.5", 0),
        ("172.32.0.1", None),
        ("192.168.0.1", 0),
        ("169.254.1.1", 1),
        ("fd00::1", 2),
        ("100.64.0.1", None),  # carrier-grade NAT
        ("203.0.113.1", None),  # documentation, "private" to Python's ipaddress
        ("8.8.8.8", None),
        ("fe80::1", None),
        ("127.0.0.1", None),
        ("not an address", None),
    ],
)
def test_address_ranks(address: str, rank: int | None) -> None:
    assert address_rank(address) == rank


# The commit path out of descriptors


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        (OSError(errno.EMFILE, "Too many open files"), True),
        (OSError(errno.ENFILE, "Too many open files in system"), True),
        (OSError(errno.ENOSPC, "No space left on device"), False),
        (StoreError("disk full"), False),
        (sqlite3.OperationalError("database is locked"), False),
    ],
)
def test_a_commit_out_of_descriptors_is_told_apart_by_type(
    error: BaseException, temporary: bool
) -> None:
    found = out_of_descriptors(error)
    assert (found is not None) == temporary
    if temporary:
        assert isinstance(found, OutOfDescriptorsError) and isinstance(found, StoreError)


def test_an_emfile_behind_a_store_error_counts_too() -> None:
    wrapped = StoreError("Too many open files while importing x")
    wrapped.__cause__ = OSError(errno.EMFILE, "Too many open files")
    assert isinstance(out_of_descriptors(wrapped), OutOfDescriptorsError)


# The guard on a real aiohttp server


async def _guarded_server(limits: ConnectionLimits) -> tuple[web.AppRunner, ConnectionGuard]:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application(middlewares=[plain_errors])
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    guard = ConnectionGuard(limits)
    await GuardedSite(runner, "127.0.0.1", 0, guard, keepalive_timeout=15.0).start()
    return runner, guard


async def _get(port: int, path: str = "/") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def test_idle_connections_past_the_cap_make_room_for_a_request() -> None:
    async def scenario() -> None:
        runner, guard = await _guarded_server(ConnectionLimits(total=8, per_address=8))
        port = runner.addresses[0][1]
        try:
            idle = []
            for _ in range(20):  # never a byte sent
                idle.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.2)
            assert len(guard.table) <= 8
            answer = await _get(port)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hi")
            assert guard.evicted >= 12
            missing = await _get(port, "/missing")
            assert missing.startswith(b"HTTP/1.1 404") and missing.endswith(b"\r\n\r\nNot found\n")
            for _, writer in idle:
                writer.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_aiohttp_marks_a_connection_waiting_for_its_head_idle_and_one_answered_busy() -> None:
    """serverguard reads RequestHandler._waiter: pin what it means in this aiohttp."""

    async def scenario() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def slow(_: web.Request) -> web.Response:
            started.set()
            await release.wait()
            return web.Response(text="done")

        app = web.Application()
        app.router.add_get("/slow", slow)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        guard = ConnectionGuard(ConnectionLimits(total=8, per_address=8))
        await GuardedSite(runner, "127.0.0.1", 0, guard, keepalive_timeout=15.0).start()
        port = runner.addresses[0][1]
        try:
            _, quiet = await asyncio.open_connection("127.0.0.1", port)
            quiet.write(b"GET /slow HT")  # half a head
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.sleep(0.1)
            states = sorted(c.idle() for c in guard.table)
            assert states == [False, True]
            release.set()
            quiet.close()
            writer.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_idle_time_allowed_is_short_for_strangers_and_long_for_peers() -> None:
    assert not idle_expired(HEAD_TIMEOUT - 0.1, peer=False)
    assert idle_expired(HEAD_TIMEOUT, peer=False)
    assert not idle_expired(HEAD_TIMEOUT * 4, peer=True)
    assert idle_expired(PEER_KEEPALIVE, peer=True)


def test_the_sweep_closes_an_idle_strangers_connection_and_keeps_an_idle_peers() -> None:
    """A connection that carried a peer API request stays open between a peer's rare
    pings (one connection per peer); any other idle one is closed after HEAD_TIMEOUT.
    The sweep is given its clock, so no test waits 15 s."""

    async def scenario() -> None:
        app = web.Application()
        runner = web.AppRunner(app, access_log=None)
        guard = ConnectionGuard(ConnectionLimits(total=8, per_address=8))

        async def peer(request: web.Request) -> web.Response:
            guard.mark_peer(request.transport)
            return web.Response(text="peer")

        async def page(_: web.Request) -> web.Response:
            return web.Response(text="page")

        app.router.add_get("/peer", peer)
        app.router.add_get("/page", page)
        await runner.setup()
        await GuardedSite(runner, "127.0.0.1", 0, guard, keepalive_timeout=600.0).start()
        port = runner.addresses[0][1]
        try:
            kept = {}
            for path in ("/peer", "/page"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await asyncio.wait_for(reader.readuntil(path[1:].encode()), 10)
                kept[path] = (reader, writer)
            await asyncio.sleep(0.1)
            assert guard.status()["peers"] == 1
            guard.sweep(1000.0)  # both seen idle now
            guard.sweep(1000.0 + HEAD_TIMEOUT + 1)
            assert await asyncio.wait_for(kept["/page"][0].read(), 10) == b""  # closed
            assert len(guard.table) == 1 and guard.status()["closed_idle"] == 1
            guard.sweep(1000.0 + PEER_KEEPALIVE - 1)
            assert len(guard.table) == 1
            guard.sweep(1000.0 + PEER_KEEPALIVE + 1)
            assert await asyncio.wait_for(kept["/peer"][0].read(), 10) == b""
            for _, writer in kept.values():
                writer.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
