"""`meshdrop node`: find peers on the local network and sync with them, until stopped
(`meshdrop status`, asking the running node what it is doing, is in status.py)."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from meshdrop.cli.common import (
    emit_json,
    home_path,
    human_size,
    plural,
    printable,
    withdrawal_line,
)
from meshdrop.cli.reader import (
    check_reports_over_http,
    checked_reader_code,
    https_option,
    https_port_option,
    node_reader_over_tls,
    reader_code_option,
    reports_over_http_option,
    run_node_with_tls_reader,
)
from meshdrop.cli.sealing import (
    install_panic_signal,
    key_file_option,
    open_store_keys,
    panic_signal_option,
)
from meshdrop.cli.status import status
from meshdrop.store.models import Withdrawal

if TYPE_CHECKING:
    from aiohttp import web

    from meshdrop.transports.courier.exporter import ExportOptions
    from meshdrop.transports.lan.events import Emit, Event


def register(cli: click.Group) -> None:
    cli.add_command(node)
    cli.add_command(status)  # from status.py: node and status go together


def _say(as_json: bool, urls: list[str], reader: bool) -> Emit:
    def say(event: Event) -> None:
        shown: Mapping[str, object] = event
        readers: list[str] = []
        if event["event"] == "listening" or event["event"] == "addresses":
            urls[:] = event["urls"]  # what the reader's share page shows
            if reader:
                readers = [f"{u}/" for u in event["urls"]]
                shown = {**event, "reader": readers}
        if as_json:
            emit_json(shown)
            return
        line = describe(event)
        if line:
            click.echo(line)
        if reader and event["event"] == "listening":
            click.echo("readers: open " + ", ".join(readers) + " in a phone's browser")

    return say


OPEN_PORT = 8470
QUIET_PORT = 8080  # not meshdrop's own: a quiet node's reader looks like any web page
MODE_WORDS = {
    "open": "open: anyone on this network can see this node, list what it holds and fetch "
    "it (for a public place; to sync only with people you know: meshdrop circle new NAME)",
    "quiet": "quiet: syncing only with members of {circles}, encrypted; this node announces "
    "nothing that names it (--open to serve everyone as well)",
    "open+circles": "open (--open): anyone on this network can see this node, list what it "
    "holds and fetch it; members of {circles} also reach it encrypted",
}
PEER_STATE_WORDS = {"introduced": "reached us (said hello first); pulling from it too"}


def describe(event: Event) -> str | None:
    """One line for a person, or None for events only scripts care about."""
    if event["event"] == "listening":
        urls = ", ".join(event["urls"])
        api = f"peer API at {event['peer_api']}" if event["peer_api"] else "no open peer API"
        return (
            f"listening on {urls} ({api}); "
            f"{plural(event['bundles'], 'bundle')} of "
            f"{plural(event['publishers'], 'trusted publisher')}"
        )
    if event["event"] == "mode":
        return MODE_WORDS[event["mode"]].format(circles=", ".join(event["circles"]))
    if event["event"] == "peer":
        state = PEER_STATE_WORDS.get(event["state"], event["state"])
        return f"peer {event['peer']}: {state}"
    if event["event"] == "sync":
        if not event["bundles"] and not event["publishers"] and event["complete"]:
            return None
        done = "" if event["complete"] else " (incomplete; will retry)"
        return (
            f"synced with {event['peer']}: {plural(event['bundles'], 'bundle')}, "
            f"{plural(event['publishers'], 'publisher update')}, "
            f"{human_size(event['bytes'])}{done}"
        )
    if event["event"] == "bundle":
        replaced = f" (replaces v{event['replaced']})" if event["replaced"] else ""
        return (
            f"got {event['name']} v{event['version']}{replaced}, {human_size(event['size'])}, "
            f"from {event['peer']}"
        )
    if event["event"] == "publisher":
        return f"publisher {event['publisher']} updated to record v{event['version']}"
    if event["event"] == "withdrawn":
        where = f", from {event['peer']}" if "peer" in event else ""
        withdrawal = Withdrawal(
            event["name"],
            event["version"],
            event["publisher"],
            event["signer"],
            event["reason"],
            event["revoked_at"],
        )
        return withdrawal_line(withdrawal) + where
    if event["event"] == "refused":
        where = f" from {event['peer']}" if "peer" in event else ""
        return f"refused{where}: {printable(event['reason'])}"
    if event["event"] == "bad-peer":
        banned = "; ignoring it for a while" if event["banned"] else ""
        return f"peer {event['peer']} misbehaved: {printable(event['reason'])}{banned}"
    if event["event"] == "addresses":
        return "addresses changed; now at " + ", ".join(event["urls"])
    if event["event"] == "error":
        return f"error with {event.get('peer', '?')}: {printable(event['reason'])}"
    if event["event"] == "no-discovery":
        return f"mDNS is unavailable here ({event['reason']}); only --peer peers are synced"
    if event["event"] == "stopped":
        return "stopped"
    return None


@click.command(
    epilog="Example: meshdrop --home ~/node node --bind 127.0.0.1 --port 0 --peer 10.0.0.5:8470"
)
@click.option(
    "--bind",
    metavar="ADDRESS",
    help="Address to serve and discover on, and no other. 127.0.0.1 keeps everything "
    "(HTTP and mDNS) on this machine; 0.0.0.0 serves every interface. Default: one "
    "private network's address (the Wi-Fi, never mobile data), followed as it changes.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="TCP port of the reader (and, in the open mesh, of the peer API); 0 picks a free "
    "one. Default: 8470 for an open node, 8080 (a port countless devices serve web pages "
    "on) for a quiet node in a circle.",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="HOST:PORT",
    help="A peer to sync with even where multicast does not work (repeatable).",
)
@click.option(
    "--no-discovery",
    is_flag=True,
    help="Neither advertise this node nor look for others with mDNS (use --peer).",
)
@click.option(
    "--open",
    "open_mesh",
    is_flag=True,
    help="In a circle, also serve and announce the open peer API, to anyone on the "
    "network (a library, a shelter). A node in no circle is always open.",
)
@click.option(
    "--circle-port",
    "circle_ports",
    multiple=True,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="The port of the listener for a circle, in 'circle ls' order (repeatable; "
    "default: a new random port at each start). Fix one so that members can name this "
    "node with --peer where multicast does not pass.",
)
@click.option(
    "--no-reader",
    is_flag=True,
    help="Serve peers only, not the reader's pages for phone browsers.",
)
@click.option(
    "--name",
    help="What the reader's pages call this library (default: Library). No page names "
    "the software.",
)
@reader_code_option
@https_option
@https_port_option
@reports_over_http_option
@click.option(
    "--watch-root",
    "watch_roots",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Where sticks appear, for the stick watcher (repeatable; default /media, "
    "/run/media, /mnt and, under Termux, /storage).",
)
@click.option("--no-watch", is_flag=True, help="Do not watch for sticks and SD cards.")
@click.option(
    "--allow-drive",
    "allowed",
    multiple=True,
    help="Also fill this drive (a label or path) although it has no courier folder.",
)
@click.option("--stick-max-bytes", help="Most the bundles may take on a stick, e.g. 8G.")
@click.option(
    "--stick-reserve", default="16M", show_default=True, help="Free space to leave on a stick."
)
@key_file_option
@panic_signal_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event, for scripts.")
@click.pass_context
def node(
    ctx: click.Context,
    bind: str | None,
    port: int | None,
    peers: tuple[str, ...],
    no_discovery: bool,
    open_mesh: bool,
    circle_ports: tuple[int, ...],
    no_reader: bool,
    name: str | None,
    reader_code: str | None,
    https: bool,
    https_port: int | None,
    reports_over_http: bool,
    watch_roots: tuple[Path, ...],
    no_watch: bool,
    allowed: tuple[str, ...],
    stick_max_bytes: str | None,
    stick_reserve: str,
    key_file: Path | None,
    panic_signal: bool,
    as_json: bool,
) -> None:
    """Run this node on the local network until Ctrl-C (or SIGTERM): find other nodes
    (mDNS), serve them this node's verified bundles, fetch the newest version of every
    bundle of the publishers this node trusts, and serve the reader's pages to phone
    browsers on the same address.

    Prints where it listens and a line per sync. Bundles arrive only when every byte
    verified; an interrupted transfer resumes where it stopped, from any peer. It also
    runs the stick watcher (see 'meshdrop watch'): a stick with a courier folder that
    appears under a watched folder is imported from, then topped up.

    In a circle ('meshdrop circle'), the node is quiet: it syncs only with the circle's
    members, over TLS, on a port of its own, and announces nothing that names it.
    --open serves everyone as well."""
    from meshdrop.cli.courier import export_options
    from meshdrop.transports.lan.interfaces import parse_peer
    from meshdrop.transports.lan.node import Node, NodeConfig

    home = home_path(ctx)
    code = checked_reader_code(reader_code)
    if code is not None and no_reader:
        from meshdrop.errors import UsageError

        raise UsageError("--reader-code (or MESHDROP_READER_CODE) has no use with --no-reader")
    if https and no_reader:
        from meshdrop.errors import UsageError

        raise UsageError("--https has no use with --no-reader (it is for the reader's pages)")
    if https_port is not None and not https:
        from meshdrop.errors import UsageError

        raise UsageError("--https-port has no use without --https")
    if reports_over_http and no_reader:
        from meshdrop.errors import UsageError

        raise UsageError("--reports-over-http has no use with --no-reader")
    check_reports_over_http(reports_over_http, https)
    open_store_keys(home, key_file)  # a locked store: asked on the terminal, or exit 10
    if panic_signal:
        install_panic_signal(home)
    from meshdrop.store.circles import CircleStore

    book = CircleStore(home).load()
    book.require_intact()  # a damaged circle file must not turn a quiet node open
    circles = tuple(stored.circle for stored in book.circles)
    background: tuple[Callable[[], Awaitable[None]], ...] = ()
    if not no_watch:
        options = export_options((), (), stick_max_bytes, stick_reserve, None, False)
        background = (_stick_watcher(home, watch_roots, allowed, options, as_json),)
    config = NodeConfig(
        home=home,
        bind=None if bind is None else _check_bind(bind),
        port=port if port is not None else QUIET_PORT if circles and not open_mesh else OPEN_PORT,
        peers=tuple(parse_peer(p) for p in peers),
        discovery=not no_discovery,
        background=background,
        circles=circles,
        circle_ports=circle_ports,
        open_mesh=open_mesh,
    )
    urls: list[str] = []
    hook = None if no_reader or https else _reader_hook(home, urls, name, code, reports_over_http)
    say = _say(as_json, urls, reader=hook is not None)
    tls_reader = node_reader_over_tls(home, https_port, name, code, as_json) if https else None
    if tls_reader is not None:
        say = tls_reader.follow(say)
    node = Node(config, say, hook=hook)
    import asyncio

    asyncio.run(_run(node, tls_reader))


STICK_INTERVAL = 5.0  # seconds between looks for sticks


def _stick_watcher(
    home: Path,
    roots: tuple[Path, ...],
    allowed: tuple[str, ...],
    options: ExportOptions,
    as_json: bool,
) -> Callable[[], Awaitable[None]]:
    """The node's stick watcher: the same work as 'meshdrop watch', on a thread of its
    own (imports and exports block), every STICK_INTERVAL seconds."""
    from time import time

    from meshdrop.cli.courier import handle_drive
    from meshdrop.store.store import Store
    from meshdrop.transports.courier.blindfolder import keys_of_home
    from meshdrop.transports.courier.watch import Watcher, default_roots

    # The blind folders of the circles the node is in when it starts.
    watcher = Watcher(list(roots) or default_roots(), allowed, keys_of_home(home, int(time())))

    def look() -> None:
        drives = watcher.poll()
        if drives:
            with Store(home) as store:
                for drive in drives:
                    handle_drive(store, drive.path, drive.courier, options, as_json, True)

    async def job() -> None:
        import asyncio

        while True:
            await asyncio.to_thread(look)
            await asyncio.sleep(STICK_INTERVAL)

    return job


def _reader_hook(
    home: Path,
    urls: list[str],
    name: str | None = None,
    code: str | None = None,
    reports_over_http: bool = False,
) -> Callable[[web.Application], None]:
    """The reader's pages on the node's own server (see meshdrop/reader/__init__.py);
    its share page shows the node's current LAN addresses."""
    from meshdrop.reader.app import install_reader

    def shared() -> list[str]:
        return [f"{u}/" for u in urls if not _is_loopback_url(u)]

    def hook(app: web.Application) -> None:
        install_reader(app, home, shared, name, code, reports_over_http=reports_over_http)

    return hook


def _is_loopback_url(url: str) -> bool:
    import ipaddress

    host = url.split("//", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return ipaddress.ip_address(host).is_loopback


def _check_bind(bind: str) -> str:
    import ipaddress

    from meshdrop.errors import UsageError

    try:
        ipaddress.ip_address(bind)
    except ValueError as exc:
        raise UsageError(f"--bind {bind!r} is not an IP address (like 127.0.0.1)") from exc
    return bind


async def _run(node: Any, tls_reader: Any = None) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if tls_reader is not None:
        await run_node_with_tls_reader(node, tls_reader, stop)
        return
    await node.run(stop)
