"""`meshdrop read`: the phone-browser reader on its own, before (or without) the LAN node."""

from __future__ import annotations

import click

from meshdrop.cli.common import home_path


def register(cli: click.Group) -> None:
    cli.add_command(read)


@click.command(epilog="Example: meshdrop --home ~/node read --bind 0.0.0.0 --port 8080")
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
@click.pass_context
def read(ctx: click.Context, bind: str, port: int, name: str | None) -> None:
    """Serve the verified bundles of this node to web browsers until Ctrl-C.

    Prints the address to open. Only verified, current bundles are shown; nothing is
    logged about who read what."""
    import asyncio

    from meshdrop.reader.serve import serve

    asyncio.run(serve(home_path(ctx), bind, port, announce=click.echo, name=name))
