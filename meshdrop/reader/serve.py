"""Running the reader on its own (``meshdrop read``), until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from meshdrop.errors import MeshdropError, NetworkError
from meshdrop.reader.app import Reader, install_reader, make_reader_app
from meshdrop.reader.tlscert import (
    ReaderCertificate,
    grouped,
    reader_certificate,
    server_context,
    share_link,
)
from meshdrop.transports.lan.errors import cannot_listen
from meshdrop.transports.lan.events import Emit, Event
from meshdrop.transports.lan.limits import ConnectionLimits
from meshdrop.transports.lan.serverguard import (
    ConnectionGuard,
    GuardedSite,
    plain_errors,
    quiet_exceptions,
    quiet_server,
    raise_descriptor_limit,
)

log = logging.getLogger("meshdrop.reader")

ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 (names, compared with --bind)


def url_for(host: str, port: int, scheme: str = "http") -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/"


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
    https: bool = False,
    reports_over_http: bool = False,
) -> None:
    """Serve until stopped, with the node's bounds: connections capped below the raised
    descriptor limit, idle ones closed, errors answered and logged briefly (serverguard);
    every browser asked first for ``access_code`` if one is given. With ``https``, only
    over TLS, with the certificate kept under ``home`` (tlscert.py)."""
    quiet_server()
    quiet_exceptions(asyncio.get_running_loop())
    # Before the first line is printed: whoever reads it may stop the reader at once.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    guard = ConnectionGuard(ConnectionLimits.for_descriptors(raise_descriptor_limit()))
    shared: list[str] = []
    hosts = share_hosts(bind)
    tls: ssl.SSLContext | None = None
    fingerprint: str | None = None
    if https:
        certificate, tls = await asyncio.to_thread(certificate_and_context, home, hosts)
        fingerprint = certificate.fingerprint
        if certificate.made:
            announce(f"made a new certificate for the reader ({certificate.made})")
    scheme = "https" if https else "http"
    app = make_reader_app(
        home,
        share_urls=lambda: shared,
        name=name,
        access_code=access_code,
        fingerprint=fingerprint,
        reports_over_http=reports_over_http,
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    try:
        await runner.setup()
        site = reader_site(runner, bind or None, port, guard, tls)
        try:
            await site.start()
        except OSError as exc:
            raise cannot_listen(f"{bind}:{port}", exc) from exc
        actual = runner.addresses[0][1]
        shared.extend(url_for(host, actual, scheme) for host in hosts)
        shown = "127.0.0.1" if bind in ANY_ADDRESS else bind
        announce(f"meshdrop reader on {url_for(shown, actual, scheme)} (Ctrl-C stops)")
        for url in shared:
            announce(f"others on this network: {url}")
        if fingerprint is not None:
            announce(f"certificate fingerprint (SHA-256): {grouped(fingerprint)}")
            for url in shared:
                announce(f"share link (checks it): {share_link(url, fingerprint)}")
        if access_code is not None:
            announce("browsers are asked for the reader code first")
        await stop.wait()
    finally:
        await runner.cleanup()


def certificate_and_context(
    home: Path, hosts: list[str]
) -> tuple[ReaderCertificate, ssl.SSLContext]:
    """The reader's certificate for ``hosts`` and a server context with it (both read
    files: run on a thread, off the event loop)."""
    certificate = reader_certificate(home, hosts)
    return certificate, server_context(certificate)


def reader_site(
    runner: web.BaseRunner,
    host: str | None,
    port: int,
    guard: ConnectionGuard,
    tls: ssl.SSLContext | None,
) -> GuardedSite:
    if tls is not None:
        return GuardedSite(
            runner, host, port, guard, tls=tls, keepalive_timeout=15.0, access_log=None
        )
    return GuardedSite(runner, host, port, guard, keepalive_timeout=15.0, access_log=None)


ServingCallback = Callable[[list[str], str, str | None], None]


class NodeReaderOverTLS:
    """The reader beside ``meshdrop node --https``: on a TLS listener of its own (the
    node's plain server then serves no reader page), at the node's address, following it
    when the node moves to another network. ``serving(urls, fingerprint, made)`` is told
    each time it starts serving somewhere (``made``: why a new certificate was made)."""

    def __init__(
        self,
        home: Path,
        port: int,
        serving: ServingCallback,
        name: str | None = None,
        access_code: str | None = None,
    ) -> None:
        self.home = home
        self.port = port
        self.serving = serving
        self.name = name
        self.access_code = access_code
        self.shared: list[str] = []
        self.reader: Reader | None = None
        self.runner: web.AppRunner | None = None
        self.site: GuardedSite | None = None
        self.bind: str | None = None
        self.node_bind: Callable[[], str] | None = None
        self._moving = asyncio.Lock()

    async def start(self, node_bind: Callable[[], str]) -> None:
        """Serve at the node's address, ``node_bind()``, now and whenever it reports new
        addresses (raises NetworkError if the port is taken at start)."""
        app = web.Application(client_max_size=64 * 1024, middlewares=[plain_errors])
        self.reader = install_reader(
            app, self.home, lambda: self.shared, self.name, self.access_code
        )
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        self.guard = ConnectionGuard(ConnectionLimits.for_descriptors(raise_descriptor_limit()))
        await self.runner.setup()
        self.node_bind = node_bind
        await self.move(node_bind())

    async def move(self, bind: str) -> None:
        """Serve at ``bind`` instead (the same port), with a certificate covering it."""
        assert self.runner is not None and self.reader is not None, "start() first"
        async with self._moving:
            if bind == self.bind:
                return
            hosts = share_hosts(bind)
            certificate, context = await asyncio.to_thread(
                certificate_and_context, self.home, hosts
            )
            site = reader_site(self.runner, bind or None, self.port, self.guard, context)
            try:
                await site.start()
            except OSError as exc:
                error = cannot_listen(f"{bind}:{self.port}", exc)
                raise NetworkError(str(error).replace("--port", "--https-port")) from exc
            if self.site is not None:
                await self.site.stop()
            self.site, self.bind = site, bind
            self.port = int(self.runner.addresses[0][1])  # the one port chosen at start
            self.reader.fingerprint = certificate.fingerprint
            self.shared[:] = [url_for(host, self.port, "https") for host in hosts]
            shown = self.shared or [url_for(bind, self.port, "https")]
            self.serving(shown, certificate.fingerprint, certificate.made)

    def follow(self, emit: Emit) -> Emit:
        """``emit`` that also moves the reader when the node reports new addresses."""
        moves: set[asyncio.Task[None]] = set()

        def followed(event: Event) -> None:
            emit(event)
            if event["event"] == "addresses" and self.node_bind is not None:
                task = asyncio.get_running_loop().create_task(self._move_quietly(self.node_bind()))
                moves.add(task)
                task.add_done_callback(moves.discard)

        return followed

    async def _move_quietly(self, bind: str) -> None:
        try:
            await self.move(bind)
        except MeshdropError as exc:
            log.error("reader: %s", exc)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
