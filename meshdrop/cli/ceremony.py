"""The `publisher` commands for root-key holders and node owners' first contact: make a
root key on one's own machine, sign and combine proposals, print the publisher's card."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meshdrop.cli.common import emit_json, plural, printable
from meshdrop.cli.keyprompts import (
    JSON_HELP,
    WEAK_PASSPHRASE_HELP,
    KeyPassphrase,
    ask_passphrase,
)
from meshdrop.errors import UsageError


def register(group: click.Group) -> None:
    for command in (publisher_keygen, publisher_sign, publisher_combine, publisher_card):
        group.add_command(command)


@click.command("keygen", epilog="Example: meshdrop publisher keygen /media/ana-stick/ana-root.key")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--unencrypted", is_flag=True, help="Store the key without a passphrase (tests).")
@click.option("--weak-passphrase", is_flag=True, help=WEAK_PASSPHRASE_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def publisher_keygen(out: Path, unencrypted: bool, weak_passphrase: bool, as_json: bool) -> None:
    """Make one root key on a key holder's own machine: OUT (the private key, keep it
    offline) and OUT with .pubkey (its public key, for 'rotate-root --new-root'). OUT's
    folder is made if missing."""
    from meshdrop.core.keys import key_id
    from meshdrop.publish.rootkeys import make_root_key

    sealing = KeyPassphrase(unencrypted, weak_passphrase, "the new root key")
    public, pubkey = make_root_key(out, sealing.get)
    if as_json:
        emit_json({"action": "made", "key": key_id(public), "files": [str(out), str(pubkey)]})
        return
    click.echo(f"made root key {key_id(public)}")
    click.echo(f"keep offline: {out}")
    click.echo(f"give the publisher: {pubkey}")


@click.command(
    "sign",
    epilog="Example: meshdrop publisher sign rotate.proposal --key /media/ana-stick/ana-root.key",
)
@click.argument("proposal_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your root key file.",
)
@click.option(
    "--publisher",
    "current",
    type=click.Path(path_type=Path),
    help="The publisher's current publisher.pub (or folder), to show what the proposal changes.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask before signing.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def publisher_sign(
    proposal_file: Path, key_file: Path, current: Path | None, yes: bool, as_json: bool
) -> None:
    """Add your root key's signature to PROPOSAL_FILE, in place.

    Prints everything the proposed record says (and, with --publisher, what it changes)
    so you know what you sign; asks before signing when run in a terminal."""
    from meshdrop.core.keys import key_id
    from meshdrop.core.proposal import check_next
    from meshdrop.publish.keystore import read_publisher_source
    from meshdrop.publish.lifecycle import (
        add_signature,
        change_lines,
        read_proposal,
        read_root_key,
        record_lines,
    )

    proposal = read_proposal(proposal_file)
    info = read_root_key(key_file)
    record = proposal.record
    say = _stderr_echo if as_json else click.echo
    say(f"proposal {proposal_file}: publisher record version {record.version}")
    for line in record_lines(record):
        say(f"  {printable(line)}")
    if current is not None:
        state = read_publisher_source(current)
        check_next(state, proposal, str(current))
        if info.public not in state.current.roots and info.public not in record.roots:
            raise UsageError(
                f"key {info.id} is not a root key of publisher {record.name!r}, "
                "neither now nor in the proposal"
            )
        say(f"changes from version {state.version}:")
        for line in change_lines(state.current, record):
            say(f"  {printable(line)}")
    elif info.public not in record.roots:
        say(
            f"note: key {info.id} is not among this record's root keys; its signature "
            "counts only if it is a current root key"
        )
    already = proposal.signed_by(info.public)
    if not already:
        if not yes and sys.stdin.isatty():
            click.confirm(f"Sign this with root key {info.id}?", abort=True, err=True)
        proposal = add_signature(proposal_file, proposal, info, ask_passphrase)
    count = plural(len(proposal.signatures), "signature")
    if as_json:
        emit_json(
            {
                "action": "already signed" if already else "signed",
                "key": key_id(info.public),
                "fingerprint": record.fingerprint,
                "name": record.name,
                "version": record.version,
                "signatures": len(proposal.signatures),
                "files": [str(proposal_file)],
            }
        )
    elif already:
        click.echo(f"already signed with root key {info.id}; nothing to do")
    else:
        click.echo(f"signed with root key {info.id}; {proposal_file} now holds {count}")


def _stderr_echo(line: str) -> None:
    click.echo(line, err=True)


@click.command(
    "combine",
    epilog="Example: meshdrop publisher combine ana.proposal ben.proposal --publisher ~/keys/news",
)
@click.argument(
    "proposal_files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--publisher",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The publisher folder whose publisher.pub gets the new record.",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def publisher_combine(proposal_files: tuple[Path, ...], folder: Path, as_json: bool) -> None:
    """Merge the signatures in copies of one proposal and, only if enough of the current
    root keys and enough of the proposal's own root keys signed, publish the record."""
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.lifecycle import change_lines, combine

    publisher = load_publisher(folder)
    updated, counts = combine(publisher, proposal_files)
    record = updated.current
    changes = change_lines(publisher.current, record)
    pub = folder / "publisher.pub"
    if as_json:
        emit_json(
            {
                "action": "published",
                "fingerprint": record.fingerprint,
                "name": record.name,
                "version": record.version,
                "changes": changes,
                "ignored_signatures": counts.ignored,
                "files": [str(pub)],
            }
        )
        return
    click.echo(f"published version {record.version} of {printable(record.name)!r}:")
    for line in changes:
        click.echo(f"  {printable(line)}")
    if counts.ignored:
        ignored = plural(counts.ignored, "signature")
        click.echo(f"ignored {ignored} that are not valid signatures by root keys")
    click.echo(f"give node owners the new {pub}")


@click.command("card", epilog="Example: meshdrop publisher card ~/keys/news -o news-card")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the card: OUT.svg and OUT.png (default: SOURCE's folder/card).",
)
@click.option("--terminal", is_flag=True, help="Also draw the QR code here in the terminal.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def publisher_card(source: Path, out: Path | None, terminal: bool, as_json: bool) -> None:
    """Write a printable card for the publisher in SOURCE (a publisher folder or its
    publisher.pub): its name, its whole fingerprint and a QR code of the fingerprint
    (card.svg; card.png holds the QR code alone). Node owners compare it with what
    'trust add' shows, or pass it: 'meshdrop trust add publisher.pub --card card.svg'."""
    from meshdrop.publish.card import card_qr, write_card
    from meshdrop.publish.keystore import read_publisher_source

    state = read_publisher_source(source)
    if out is None:
        out = (source if source.is_dir() else source.parent) / "card"
    record = state.current
    files = write_card(record.name, record.fingerprint, out)
    if as_json:
        emit_json(
            {
                "action": "written",
                "fingerprint": record.fingerprint,
                "name": record.name,
                "version": record.version,
                "files": [str(files.svg), str(files.png)],
            }
        )
        return
    click.echo(f"card of {printable(record.name)} ({record.fingerprint})")
    click.echo(f"wrote {files.svg} (print this) and {files.png} (the QR code)")
    if terminal or sys.stdout.isatty():
        card_qr(record.fingerprint).terminal(out=sys.stdout, compact=True)
