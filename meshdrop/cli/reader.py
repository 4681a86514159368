"""`meshdrop read`: the phone-browser reader on its own, before (or without) the LAN node."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshdrop.cli.common import home_path
from meshdrop.cli.sealing import (
    install_panic_signal,
    key_file_option,
    open_store_keys,
    panic_signal_option,
)

if TYPE_CHECKING:
    import asyncio

    from meshdrop.reader.serve import NodeReaderOverTLS
    from meshdrop.transports.lan.node import Node

READER_CODE_ENV = "MESHDROP_READER_CODE"

# Shared with `meshdrop node` (cli/lan.py).
reader_code_option = click.option(
    "--reader-code",
    metavar="CODE",
    envvar=READER_CODE_ENV,
    show_envvar=True,
    help="Ask every browser for this code (4 characters or more) before showing anything. "
    "Set it in the environment variable instead to keep it out of `ps`.",
)


https_option = click.option(
    "--https",
    is_flag=True,
    help="Serve the pages over HTTPS only, with a certificate this node makes and keeps "
    "(browsers warn once; readers check its fingerprint, shown at start and on the share "
    "page). Hides what is read from others on the Wi-Fi.",
)


reports_over_http_option = click.option(
    "--reports-over-http",
    is_flag=True,
    help="Offer the report form (write to a publisher) over plain HTTP to other devices "
    "too: only on a link you control, such as a hotspot this machine runs. Without it, "
    "and without --https, only a browser on this machine is offered the form.",
)


def check_reports_over_http(reports_over_http: bool, https: bool) -> None:
    if reports_over_http and https:
        from meshdrop.errors import UsageError

        raise UsageError("--reports-over-http has no use with --https (the form is offered)")


def register(cli: click.Group) -> None:
    cli.add_command(read)


def checked_reader_code(given: str | None) -> str | None:
    """The checked code from --reader-code or its variable, or None. A variable that is
    set but empty is refused like an empty option (click would ignore it, leaving the
    reader open to everyone)."""
    if given is None and os.environ.get(READER_CODE_ENV) == "":
        given = ""
    if given is None:
        return None
    from meshdrop.reader.accesscode import check_code

    return check_code(given)


@click.command(epilog="Example: meshdrop --home ~/node read --bind 0.0.0.0 --port 8080 --https")
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on: 0.0.0.0 lets every device on your network read.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--name",
    help="What the pages call this library (default: Library). No page names the software.",
)
@reader_code_option
@https_option
@reports_over_http_option
@key_file_option
@panic_signal_option
@click.pass_context
def read(
    ctx: click.Context,
    bind: str,
    port: int,
    name: str | None,
    reader_code: str | None,
    https: bool,
    reports_over_http: bool,
    key_file: Path | None,
    panic_signal: bool,
) -> None:
    """Serve the verified bundles of this node to web browsers until Ctrl-C.

    Prints the address to open (and with --https the certificate's fingerprint). Only
    verified, current bundles are shown; nothing is logged about who read what."""
    import asyncio

    from meshdrop.reader.serve import serve

    code = checked_reader_code(reader_code)
    check_reports_over_http(reports_over_http, https)
    home = home_path(ctx)
    open_store_keys(home, key_file)  # a locked store: asked on the terminal, or exit 10
    if panic_signal:
        install_panic_signal(home)
    asyncio.run(
        serve(
            home,
            bind,
            port,
            announce=click.echo,
            name=name,
            access_code=code,
            https=https,
            reports_over_http=reports_over_http,
        )
    )


NODE_HTTPS_PORT = 8443

https_port_option = click.option(
    "--https-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help=f"With --https: the port of the reader's HTTPS listener (default {NODE_HTTPS_PORT}; "
    "0 picks a free one). The node's own port then serves no reader page.",
)


def node_reader_over_tls(
    home: Path, port: int | None, name: str | None, code: str | None, as_json: bool
) -> NodeReaderOverTLS:
    """`meshdrop node --https`: the reader on a TLS listener of its own, whose addresses
    and certificate fingerprint are printed each time it starts serving somewhere."""
    from meshdrop.cli.common import emit_json
    from meshdrop.reader.serve import NodeReaderOverTLS
    from meshdrop.reader.tlscert import grouped, share_link

    def serving(urls: list[str], fingerprint: str, made: str | None) -> None:
        if as_json:
            emit_json(
                {"event": "reader", "urls": urls, "fingerprint": fingerprint, "new": made or ""}
            )
            return
        if made:
            click.echo(f"made a new certificate for the reader ({made})")
        click.echo("readers: open " + ", ".join(urls) + " in a phone's browser")
        click.echo(f"certificate fingerprint (SHA-256): {grouped(fingerprint)}")
        for url in urls:
            click.echo(f"share link (checks it): {share_link(url, fingerprint)}")

    chosen = NODE_HTTPS_PORT if port is None else port
    return NodeReaderOverTLS(home, chosen, serving, name=name, access_code=code)


async def run_node_with_tls_reader(
    node: Node, reader: NodeReaderOverTLS, stop: asyncio.Event
) -> None:
    """The node, then its reader at the node's address, until ``stop``."""
    await node.start()
    try:
        await reader.start(lambda: str(node.bind))
        await stop.wait()
    finally:
        await reader.close()
        await node.stop()
