"""Running the reader on its own (``meshdrop read``), until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from meshdrop.reader.app import make_reader_app
from meshdrop.transports.lan.errors import cannot_listen
from meshdrop.transports.lan.limits import ConnectionLimits
from meshdrop.transports.lan.serverguard import (
    ConnectionGuard,
    GuardedSite,
    quiet_exceptions,
    quiet_server,
    raise_descriptor_limit,
)

ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 (names, compared with --bind)


def url_for(host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def lan_address() -> str | None:
    """This machine's address on its default route, or None. connect() on a UDP socket
    sends nothing: the kernel only picks the local address that route would use."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1, never a real host
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


def share_hosts(bind: str) -> list[str]:
    """Addresses others may use to reach a reader bound to ``bind``."""
    if bind in ANY_ADDRESS:
        found = lan_address()
        return [found] if found else []
    try:
        if ipaddress.ip_address(bind).is_loopback:
            return []
    except ValueError:
        if bind == "localhost":
            return []
    return [bind]


async def serve(
    home: Path,
    bind: str,
    port: int,
    announce: Callable[[str], None],
    name: str | None = None,
    access_code: str | None = None,
) -> None:
    """Serve until stopped, with the node's bounds: connections capped below the raised
    descriptor limit, idle ones closed, errors answered and logged briefly (serverguard);
    every browser asked first for ``access_code`` if one is given."""
    quiet_server()
    quiet_exceptions(asyncio.get_running_loop())
    guard = ConnectionGuard(ConnectionLimits.for_descriptors(raise_descriptor_limit()))
    shared: list[str] = []
    app = make_reader_app(home, share_urls=lambda: shared, name=name, access_code=access_code)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    try:
        await runner.setup()
        site = GuardedSite(
            runner, bind or None, port, guard, keepalive_timeout=15.0, access_log=None
        )
        try:
            await site.start()
        except OSError as exc:
            raise cannot_listen(f"{bind}:{port}", exc) from exc
        actual = runner.addresses[0][1]
        shared.extend(url_for(host, actual) for host in share_hosts(bind))
        shown = "127.0.0.1" if bind in ANY_ADDRESS else bind
        announce(f"meshdrop reader on {url_for(shown, actual)} (Ctrl-C stops)")
        for url in shared:
            announce(f"others on this network: {url}")
        if access_code is not None:
            announce("browsers are asked for the reader code first")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
