"""The `meshdrop` command: one place where errors become a line and an exit code."""

from __future__ import annotations

import errno
import os
import sys
import traceback

import click

from meshdrop import __version__
from meshdrop.cli import (
    bundles,
    circle,
    courier,
    lan,
    node,
    publisher,
    reader,
    reports,
    sealing,
    trust,
)
from meshdrop.cli.globalopts import rearrange
from meshdrop.errors import MeshdropError, StoreError
from meshdrop.fs import os_error_message
from meshdrop.store.db import damaged_error, disk_error

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70
DISK_FAULT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)


class MeshdropGroup(click.Group):
    """The root group: global options are accepted before or after the subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rearrange(self, args))


@click.group(
    cls=MeshdropGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Example: meshdrop --home ~/node import /media/stick/meshdrop\n\n"
    "--home, --json and --quiet may also follow the subcommand: meshdrop ls --home ~/node",
)
@click.option(
    "--home",
    envvar="MESHDROP_HOME",
    type=click.Path(file_okay=False),
    help="The node's store folder (default: the user data folder; env MESHDROP_HOME).",
)
@click.version_option(__version__, prog_name="meshdrop")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """meshdrop: signed content bundles that travel by Wi-Fi and by hand, never by internet.

    Publishers make keys and pack folders into signed bundles; node owners pin publishers
    they trust, import bundles and read what verified."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home


publisher.register(cli)
bundles.register(cli)
node.register(cli)
trust.register(cli)
reader.register(cli)
courier.register(cli)
lan.register(cli)
circle.register(cli)
reports.register(cli)
sealing.register(cli)


def main() -> None:
    try:
        code = cli.main(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except MeshdropError as exc:
        if os.environ.get("MESHDROP_DEBUG"):
            # The cause a user's message wraps (an OSError, a codec error), chained.
            traceback.print_exception(exc, file=sys.stderr)
        click.echo(f"meshdrop: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("meshdrop: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group named alone: its help
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, like every other error: the problem, then where to read more.
        where = exc.ctx.command_path if exc.ctx else "meshdrop"
        click.echo(f"{where}: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("meshdrop: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:
        if exc.errno in DISK_FAULT_ERRNOS:  # the disk failed: a store or disk fault (README)
            doing = f"using {exc.filename}" if exc.filename else "using the disk"
            click.echo(f"meshdrop: {os_error_message(exc, doing)}", err=True)
            sys.exit(StoreError.exit_code)
        click.echo(f"meshdrop: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    except Exception as exc:
        # A sealed index's page that fails its check, found after the store opened; or
        # SQLite's full, read-only or failing disk.
        damaged = damaged_error(exc, "the store's index") or disk_error(exc, "the store's index")
        if damaged is not None:
            click.echo(f"meshdrop: {damaged}", err=True)
            sys.exit(damaged.exit_code)
        if os.environ.get("MESHDROP_DEBUG"):
            raise
        click.echo(
            f"meshdrop: internal error ({type(exc).__name__}: {exc}); "
            "run again with MESHDROP_DEBUG=1 for details",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
