"""`meshdrop read`: the phone-browser reader on its own, before (or without) the LAN node."""

from __future__ import annotations

import os

import click

from meshdrop.cli.common import home_path

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
@reader_code_option
@click.pass_context
def read(
    ctx: click.Context, bind: str, port: int, name: str | None, reader_code: str | None
) -> None:
    """Serve the verified bundles of this node to web browsers until Ctrl-C.

    Prints the address to open. Only verified, current bundles are shown; nothing is
    logged about who read what."""
    import asyncio

    from meshdrop.reader.serve import serve

    code = checked_reader_code(reader_code)
    home = home_path(ctx)
    asyncio.run(serve(home, bind, port, announce=click.echo, name=name, access_code=code))
