"""Node-owner commands about circles: make one, join one with its invite, list, show,
leave and re-key them (README "Circles"; the derivations in docs/PROTOCOL.md)."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshdrop.cli.common import confirm_step, emit_json, format_time, home_path, printable
from meshdrop.errors import UsageError

if TYPE_CHECKING:
    import segno

    from meshdrop.core.circles import Circle, CircleSecret
    from meshdrop.store.circles import CircleStore

QR_FILE_MODE = 0o600  # the QR code is the secret itself
INVITE_WARNING = (
    "Keep this code secret: it is the circle's key. Hand it over in person only (read it "
    "out or show the QR code), never by message, e-mail or a photo that is backed up."
)


def register(cli: click.Group) -> None:
    cli.add_command(circle)


@click.group(epilog="Example: meshdrop --home ~/node circle new dorm")
def circle() -> None:
    """Circles: groups of nodes whose owners share a secret, handed over in person. Inside
    a circle, nodes announce nothing a watcher on the Wi-Fi can recognise and talk only
    with each other, encrypted."""


def _store(ctx: click.Context) -> CircleStore:
    from meshdrop.store.circles import CircleStore

    return CircleStore(home_path(ctx))


def _now() -> int:
    return int(time.time())


qr_file_options = [
    click.option(
        "--png",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the invite's QR code to this PNG file (a secret too: mode 0600).",
    ),
    click.option(
        "--svg",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the invite's QR code to this SVG file (a secret too: mode 0600).",
    ),
]


def with_qr_files(command: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(qr_file_options):
        command = option(command)
    return command


@circle.command("new", epilog="Example: meshdrop --home ~/node circle new dorm --png dorm.png")
@click.argument("name")
@with_qr_files
@click.option("--json", "as_json", is_flag=True, help="One JSON object (with the invite code).")
@click.pass_context
def circle_new(
    ctx: click.Context, name: str, png: Path | None, svg: Path | None, as_json: bool
) -> None:
    """Make a new circle called NAME (a label for you; it is never sent anywhere) and
    print its invite code, as letters and as a QR code. Give the invite, in person, to
    each node owner who should join."""
    from meshdrop.core.circles import CircleSecret

    _check_qr_folders(png, svg)
    made = _store(ctx).add(name, CircleSecret.generate(), _now())
    written = _write_qr_files(made.current.secret, png, svg)
    if as_json:
        emit_json(_invite_json("made", made, written))
        return
    click.echo(f"made circle {printable(made.name)} (id {made.id})")
    _show_invite(made.current.secret, qr=True, written=written)


@circle.command(
    "join",
    epilog="Example: meshdrop --home ~/node circle join ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23-"
    "4567-ABCD-EFA --name dorm\n\nWithout CODE the code is asked for on the terminal (or "
    "read from standard input), so that it stays out of the shell's history.",
)
@click.argument("code", nargs=-1)
@click.option("--name", help="Your name for the circle (default: circle- and its id's start).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object saying what was done.")
@click.pass_context
def circle_join(ctx: click.Context, code: tuple[str, ...], name: str | None, as_json: bool) -> None:
    """Join a circle with the invite CODE its owner handed you (any case; spaces and dashes
    do not matter)."""
    from meshdrop.core.circles import circle_id

    secret = _read_invite(code)
    chosen = name if name is not None else f"circle-{circle_id(secret)[:8]}"
    joined = _store(ctx).add(chosen, secret, _now())
    if as_json:
        emit_json(_summary("joined", joined))
        return
    click.echo(f"joined circle {printable(joined.name)} (id {joined.id})")
    click.echo("members' nodes find each other on the network once they run 'meshdrop node'")


@circle.command("ls", epilog="Example: meshdrop --home ~/node circle ls --json")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per circle.")
@click.pass_context
def circle_ls(ctx: click.Context, as_json: bool) -> None:
    """List the circles this node is in (never their invites: see 'circle show'). A
    damaged circle file is named on stderr and the command exits 7; the others are listed."""
    book = _store(ctx).load()
    for stored in book.circles:
        if as_json:
            emit_json(_summary(None, stored.circle))
        else:
            current = stored.circle.current
            click.echo(
                f"{printable(stored.circle.name)}  id {stored.circle.id}  generation "
                f"{current.number} since {format_time(current.created)}"
            )
    if not book.circles and not book.damaged and not as_json:
        click.echo(
            "not in any circle: make one with 'meshdrop circle new NAME' or join one with "
            "'meshdrop circle join CODE'"
        )
    book.require_intact()


@circle.command("show", epilog="Example: meshdrop --home ~/node circle show dorm --qr")
@click.argument("name")
@click.option("--qr", is_flag=True, help="Draw the invite as a QR code on the terminal too.")
@with_qr_files
@click.option("--json", "as_json", is_flag=True, help="One JSON object (with the invite code).")
@click.pass_context
def circle_show(
    ctx: click.Context, name: str, qr: bool, png: Path | None, svg: Path | None, as_json: bool
) -> None:
    """Show a circle: its id, its key's generations and its current invite code (to hand
    to a new member in person)."""
    _check_qr_folders(png, svg)
    shown = _store(ctx).load().find(name).circle
    written = _write_qr_files(shown.current.secret, png, svg)
    if as_json:
        emit_json(_invite_json(None, shown, written))
        return
    current = shown.current
    click.echo(f"circle      {printable(shown.name)}")
    click.echo(f"id          {shown.id}")
    click.echo(f"generation  {current.number}, since {format_time(current.created)}")
    for old in shown.retired:
        click.echo(
            f"retired     generation {old.number}, {format_time(old.created)} to "
            f"{format_time(old.retired)} (kept for sticks sealed before the rekey)"
        )
    _show_invite(current.secret, qr=qr, written=written)


@circle.command("leave", epilog="Example: meshdrop --home ~/node circle leave dorm --yes")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object saying what was done.")
@click.pass_context
def circle_leave(ctx: click.Context, name: str, yes: bool, as_json: bool) -> None:
    """Leave a circle: its key (every generation) is removed from this node, which then
    no longer finds or talks with its members. To come back you need an invite again."""
    store = _store(ctx)
    found = store.load().find(name).circle
    confirm_step(
        f"Leave the circle {printable(found.name)} and remove its key from this node?",
        yes,
        "not left: nobody can confirm here (no terminal); pass --yes to leave the circle",
    )
    left = store.leave(found.name)
    if as_json:
        emit_json(_summary("left", left))
        return
    click.echo(f"left circle {printable(left.name)} (id {left.id}); its key is removed")


@circle.command(
    "rekey",
    epilog="Example: meshdrop --home ~/node circle rekey dorm\n\n"
    "A member whose node is already in the circle takes the new invite with: "
    "meshdrop --home ~/node circle rekey dorm --code NEW-INVITE-CODE",
)
@click.argument("name")
@click.option(
    "--code",
    metavar="CODE",
    help="Take this new invite (from the member who re-keyed) instead of making one.",
)
@with_qr_files
@click.option("--json", "as_json", is_flag=True, help="One JSON object (with the invite code).")
@click.pass_context
def circle_rekey(
    ctx: click.Context,
    name: str,
    code: str | None,
    png: Path | None,
    svg: Path | None,
    as_json: bool,
) -> None:
    """Give a circle a new key and print its invite: to remove a member, or when an
    invite may have leaked. Every member must then take the new invite; whoever does not
    get it (a removed member) loses access. The old key is kept, retired, for sticks that
    were sealed before."""
    from meshdrop.core.circles import decode_invite
    from meshdrop.store.circles import shell_word

    secret = decode_invite(code) if code is not None else None
    _check_qr_folders(png, svg)
    rekeyed = _store(ctx).rekey(name, _now(), secret)
    written = _write_qr_files(rekeyed.current.secret, png, svg)
    if as_json:
        emit_json(_invite_json("adopted" if code else "rekeyed", rekeyed, written))
        return
    number = rekeyed.current.number
    if code is not None:
        click.echo(
            f"circle {printable(rekeyed.name)} now uses the new invite (generation {number}, "
            f"id {rekeyed.id}); the old key is kept for sticks sealed before"
        )
        for path in written:
            click.echo(f"wrote the invite's QR code to {path}: delete it once it has been shown")
        return
    click.echo(f"re-keyed circle {printable(rekeyed.name)}: generation {number}, id {rekeyed.id}")
    _show_invite(rekeyed.current.secret, qr=True, written=written)
    click.echo(
        "Every member must now take this invite: on a node already in the circle with "
        f"'meshdrop circle rekey {shell_word(printable(rekeyed.name))} --code CODE', on a new "
        "one with 'meshdrop circle join CODE'. Nodes talk only with the new key: whoever does "
        "not get the invite (a removed member) has lost access."
    )


def _read_invite(words: tuple[str, ...]) -> CircleSecret:
    from meshdrop.core.circles import decode_invite

    if words:
        return decode_invite(" ".join(words))
    if sys.stdin.isatty():
        return decode_invite(str(click.prompt("Invite code", err=True)))
    return decode_invite(sys.stdin.readline())


def _qr(secret: CircleSecret) -> segno.QRCode:
    import segno

    from meshdrop.core.circles import encode_invite

    # The bare code, nothing naming the app; in QR alphanumeric mode it fits version 3.
    return segno.make(encode_invite(secret), error="m", micro=False)


def _check_qr_folders(*paths: Path | None) -> None:
    """Before anything is changed: each QR code file can be written where asked."""
    for path in paths:
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"{path.parent}: no such folder for the QR code file {path.name}")


def _write_qr_files(secret: CircleSecret, png: Path | None, svg: Path | None) -> list[str]:
    from meshdrop.fs import atomic_write

    written: list[str] = []
    for path, kind in ((png, "png"), (svg, "svg")):
        if path is None:
            continue
        qr = _qr(secret)
        image = io.BytesIO()
        if kind == "png":
            qr.save(image, kind="png", scale=8)
        else:
            qr.save(image, kind="svg", scale=8, svgclass=None, lineclass=None)
        atomic_write(path, image.getvalue(), QR_FILE_MODE)
        written.append(str(path))
    return written


def _show_invite(secret: CircleSecret, qr: bool, written: list[str]) -> None:
    from meshdrop.core.circles import encode_invite

    click.echo(f"invite code: {encode_invite(secret)}")
    if qr:
        drawing = io.StringIO()
        _qr(secret).terminal(out=drawing, compact=True)
        click.echo(drawing.getvalue(), nl=False)
    for path in written:
        click.echo(f"wrote the invite's QR code to {path}: delete it once it has been shown")
    click.echo(INVITE_WARNING)


def _summary(action: str | None, shown: Circle) -> dict[str, object]:
    current = shown.current
    info: dict[str, object] = {
        "name": shown.name,
        "id": shown.id,
        "generation": current.number,
        "created": current.created,
        "retired": [
            {"generation": g.number, "id": g.secret.id, "created": g.created, "retired": g.retired}
            for g in shown.retired
        ],
    }
    if action is not None:
        info["action"] = action
    return info


def _invite_json(action: str | None, shown: Circle, written: list[str]) -> dict[str, object]:
    from meshdrop.core.circles import encode_invite

    return {
        **_summary(action, shown),
        "invite": encode_invite(shown.current.secret),
        "files": written,
    }
