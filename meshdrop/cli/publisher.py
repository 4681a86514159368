"""The `publisher` commands: make a publisher's keys and change them (signing keys,
revocation, root rotation, threshold signing on separate offline machines)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshdrop.cli.common import confirm_step, emit_json, format_time, parse_time, printable
from meshdrop.cli.keyprompts import (
    JSON_HELP,
    UNENCRYPTED_HELP,
    WEAK_PASSPHRASE_HELP,
    KeyPassphrase,
    ask_passphrase,
)

if TYPE_CHECKING:
    from meshdrop.publish.keystore import PublisherFolder
    from meshdrop.publish.lifecycle import Change


def register(cli: click.Group) -> None:
    from meshdrop.cli import ceremony, reportkeys

    ceremony.register(publisher_group)
    reportkeys.register(publisher_group)
    cli.add_command(publisher_group)


@click.group("publisher", epilog="Example: meshdrop publisher new ~/keys/news --name 'News'")
def publisher_group() -> None:
    """Make publisher keys and change them: signing keys, revocation, root rotation,
    and threshold signing by root-key holders on separate offline machines."""


_PROPOSE_HELP = (
    "Do not sign: write the proposed next record to FILE, for the root key holders to sign "
    "with 'publisher sign' and to publish with 'publisher combine'."
)


@publisher_group.command(
    "new", epilog="Example: meshdrop publisher new ~/keys/news --name 'Workers News' --roots 3"
)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="The publisher's name, as readers will see it.")
@click.option(
    "--roots",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="How many root keys to make.",
)
@click.option(
    "--threshold",
    type=click.IntRange(1, 64),
    help="How many root keys must sign each change (default: more than half).",
)
@click.option(
    "--no-reports",
    is_flag=True,
    help="Make no report key: nobody can send this publisher reports (add one later with "
    "'publisher add-report-key').",
)
@click.option("--unencrypted", is_flag=True, help=UNENCRYPTED_HELP)
@click.option("--weak-passphrase", is_flag=True, help=WEAK_PASSPHRASE_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def publisher_new(
    folder: Path,
    name: str,
    roots: int,
    threshold: int | None,
    no_reports: bool,
    unencrypted: bool,
    weak_passphrase: bool,
    as_json: bool,
) -> None:
    """Create a publisher in FOLDER: root keys, a signing key and publisher.pub.

    The passphrase comes from MESHDROP_PASSPHRASE or a prompt. Give node owners
    FOLDER/publisher.pub and read them the fingerprint by a channel you trust; keep the
    root-*.key files offline (with several, give each to a different person).

    Unless --no-reports, it also makes a report key (FOLDER/report-<key id>.key, for
    'meshdrop reports open' on the machine that receives reports) and the bundle that
    tells nodes about it, FOLDER/report-keys.mdrop: hand it out like any bundle."""
    from meshdrop.core.keys import key_id
    from meshdrop.publish.keystore import check_root_shape, create_publisher, majority

    k = majority(roots) if threshold is None else threshold
    check_root_shape(roots, k)
    passphrase = KeyPassphrase(unencrypted, weak_passphrase).get()
    record = create_publisher(folder, name, passphrase, int(time.time()), roots=roots, threshold=k)
    pub = folder / "publisher.pub"
    report_key, reports_bundle = None, None
    if not no_reports:
        from meshdrop.cli.reportkeys import make_first_key

        report_key, reports_bundle = make_first_key(folder, passphrase)
    if as_json:
        emit_json(
            {
                "action": "created",
                "fingerprint": record.fingerprint,
                "name": record.name,
                "version": record.version,
                "threshold": record.threshold,
                "roots": [key_id(r) for r in record.roots],
                "folder": str(folder),
                # Everything made: the key files, and the report-keys folder and bundle.
                "files": [str(pub), *(str(p) for p in sorted(folder.iterdir()) if p != pub)],
                "report_key": report_key,
                "report_keys_bundle": str(reports_bundle) if reports_bundle else None,
            }
        )
        return
    click.echo(f"created publisher {record.name!r} in {folder}")
    click.echo(f"fingerprint: {record.fingerprint}")
    click.echo(f"root keys: {k} of {len(record.roots)} must sign each change")
    click.echo(f"give node owners: {pub}")
    if reports_bundle is not None:
        click.echo(f"report key {report_key}: give nodes {reports_bundle} too")
    click.echo(f"print a card for them: meshdrop publisher card {folder}")


@publisher_group.command(
    "add-signer",
    epilog="Example: meshdrop publisher add-signer ~/keys/news --expires 2027-01-31 "
    "--scope 'news-*'",
)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--expires", help="Last day the key may sign (default: two years from now).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="Bundle names the key may sign, such as 'news-*' (repeatable; default: any).",
)
@click.option("--unencrypted", is_flag=True, help=UNENCRYPTED_HELP)
@click.option("--weak-passphrase", is_flag=True, help=WEAK_PASSPHRASE_HELP)
@click.option("--propose", type=click.Path(dir_okay=False, path_type=Path), help=_PROPOSE_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def publisher_add_signer(
    folder: Path,
    expires: str | None,
    scopes: tuple[str, ...],
    unencrypted: bool,
    weak_passphrase: bool,
    propose: Path | None,
    as_json: bool,
) -> None:
    """Delegate a new signing key: the next publisher record adds it, signed by the root
    keys. From then on 'meshdrop pack' signs with the newest valid key unless --signer
    names another."""
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.lifecycle import plan_add_signer

    publisher = load_publisher(folder)
    expires_at = parse_time(expires, "--expires") if expires else None
    change = plan_add_signer(publisher, int(time.time()), expires_at, scopes)
    new_keys = KeyPassphrase(unencrypted, weak_passphrase)
    _record_change(publisher, change, propose, new_keys, as_json)


@publisher_group.command(
    "revoke",
    epilog="Example: meshdrop publisher revoke ~/keys/news 3f2a9c --reason compromised",
)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("key_id")
@click.option(
    "--reason",
    required=True,
    type=click.Choice(["retired", "compromised"]),
    help="retired: what the key signed stays valid. compromised: everything it ever "
    "signed is withdrawn on every node.",
)
@click.option("--propose", type=click.Path(dir_okay=False, path_type=Path), help=_PROPOSE_HELP)
@click.option("-y", "--yes", is_flag=True, help="Do not ask before reporting a key compromised.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def publisher_revoke(
    folder: Path, key_id: str, reason: str, propose: Path | None, yes: bool, as_json: bool
) -> None:
    """Revoke the signing key KEY_ID (its id or the start of it): the next publisher
    record removes it and says why. A retired key can later be reported compromised.
    Reporting one compromised asks first (--yes for scripts): it withdraws everything the
    key signed on every node."""
    from meshdrop.core.records import Reason
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.lifecycle import plan_revoke

    publisher = load_publisher(folder)
    change = plan_revoke(publisher, key_id, Reason(reason), int(time.time()))
    if reason == Reason.COMPROMISED.value and propose is None:
        confirm_step(
            f"{change.what.capitalize()}? Everything the key ever signed is withdrawn on "
            "every node that gets this record; it cannot be undone.",
            yes,
            "reporting a key compromised withdraws everything it signed on every node, so it "
            "is asked in a terminal; nobody can answer here: pass --yes to go ahead",
        )
    _record_change(publisher, change, propose, KeyPassphrase(unencrypted=True), as_json)
    if not change.record.signers and not as_json:
        click.echo("note: no signing key is left; add one with 'meshdrop publisher add-signer'")


@publisher_group.command(
    "rotate-root",
    epilog="Example: meshdrop publisher rotate-root ~/keys/news --new-root ana.pubkey "
    "--new-root ben.pubkey --new-root kim.pubkey --threshold 2 --propose rotate.proposal",
)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--roots",
    type=click.IntRange(1, 64),
    help="How many root keys the publisher will have (default: as many as now, or as "
    "many as --new-root and --keep-root give).",
)
@click.option(
    "--threshold",
    type=click.IntRange(1, 64),
    help="How many must sign each change (default: as now if --roots is unchanged, else "
    "more than half).",
)
@click.option(
    "--new-root",
    "new_root_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A .pubkey file from 'publisher keygen' on a key holder's machine (repeatable).",
)
@click.option(
    "--keep-root",
    "keep",
    multiple=True,
    help="Key id of a current root key to keep (repeatable).",
)
@click.option("--unencrypted", is_flag=True, help=UNENCRYPTED_HELP)
@click.option("--weak-passphrase", is_flag=True, help=WEAK_PASSPHRASE_HELP)
@click.option("--propose", type=click.Path(dir_okay=False, path_type=Path), help=_PROPOSE_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def publisher_rotate_root(
    folder: Path,
    roots: int | None,
    threshold: int | None,
    new_root_files: tuple[Path, ...],
    keep: tuple[str, ...],
    unencrypted: bool,
    weak_passphrase: bool,
    propose: Path | None,
    as_json: bool,
) -> None:
    """Replace the root keys: the next record names new ones and is signed by enough of
    the current root keys AND enough of the new ones, so every node can follow. Keys made
    here are written into FOLDER; the old root-*.key files move into FOLDER/retired/."""
    from meshdrop.publish.keyfile import read_public_key_file
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.lifecycle import plan_rotate_root

    publisher = load_publisher(folder)
    new_roots = [read_public_key_file(path) for path in new_root_files]
    change = plan_rotate_root(publisher, int(time.time()), roots, threshold, new_roots, keep)
    _record_change(publisher, change, propose, KeyPassphrase(unencrypted, weak_passphrase), as_json)


def _record_change(
    publisher: PublisherFolder,
    change: Change,
    propose: Path | None,
    new_keys: KeyPassphrase,
    as_json: bool,
) -> None:
    """Sign and publish ``change`` with the root keys in the folder, or write it out as
    a proposal. Nothing is written before every check has passed."""
    from meshdrop.publish.lifecycle import (
        apply_change,
        check_proposal_target,
        new_key_files,
        propose_change,
        root_keys_to_unlock,
    )
    from meshdrop.publish.rootkeys import unlock_all

    key_files = [str(path) for path in new_key_files(publisher, change)]
    if propose is not None:
        check_proposal_target(propose)
        passphrase = new_keys.get() if change.new_keys else None
        propose_change(publisher, change, propose, passphrase)
        if as_json:
            emit_json(_change_json("proposed", publisher, change, [str(propose), *key_files]))
        else:
            _say_proposed(publisher, change, propose)
        return
    infos = root_keys_to_unlock(publisher, change)
    root_keys = unlock_all(infos, ask_passphrase)
    passphrase = new_keys.get() if change.new_keys else None
    updated = apply_change(publisher, change, root_keys, passphrase)
    pub = publisher.folder / "publisher.pub"
    if as_json:
        emit_json(_change_json("published", updated, change, [str(pub), *key_files]))
        return
    click.echo(f"published version {updated.current.version}: {change.what}")
    click.echo(f"give node owners the new {pub}")


def _change_json(
    action: str, publisher: PublisherFolder, change: Change, files: list[str]
) -> dict[str, object]:
    return {
        "action": action,
        "fingerprint": publisher.current.fingerprint,
        "name": publisher.current.name,
        "version": change.record.version,
        "change": change.what,
        "files": files,
    }


def _say_proposed(publisher: PublisherFolder, change: Change, propose: Path) -> None:
    from meshdrop.core.keys import key_id

    new_roots = [key_id(k) for k in change.record.roots if k not in publisher.current.roots]
    click.echo(f"proposed version {change.record.version}: {change.what}")
    click.echo(f"wrote {propose}: nothing is published yet")
    roots = publisher.current.roots
    click.echo(
        f"next: {publisher.current.threshold} of the current root keys "
        f"({', '.join(map(key_id, roots))}) each sign a copy with "
        f"'meshdrop publisher sign {propose} --key ROOT.key'"
    )
    if new_roots:
        click.echo(
            f"      and {change.record.threshold} of the new root keys "
            f"({', '.join(new_roots)}) sign too"
        )
    click.echo(f"then: meshdrop publisher combine COPIES... --publisher {publisher.folder}")


@publisher_group.command("show", epilog="Example: meshdrop publisher show ~/keys/news --json")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def publisher_show(source: Path, as_json: bool) -> None:
    """Show a publisher (a publisher folder or a publisher.pub file): fingerprint, version,
    root keys and threshold, signing keys with their validity and state, revocations."""
    from meshdrop.publish.keystore import read_publisher_source
    from meshdrop.publish.lifecycle import publisher_summary

    state = read_publisher_source(source)
    info = publisher_summary(state, int(time.time()), source if source.is_dir() else None)
    if as_json:
        emit_json(info)
        return
    record = state.current
    here = set(_strings(info.get("root_keys_here"))) | set(_strings(info.get("signing_keys_here")))
    mark = {True: "  (key file here)", False: ""}
    click.echo(f"publisher   {printable(record.name)}")
    click.echo(f"fingerprint {record.fingerprint}")
    click.echo(f"record      version {record.version}, made {format_time(record.created)}")
    click.echo(f"root keys   {record.threshold} of {len(record.roots)} must sign each change")
    for root in _strings(info["roots"]):
        click.echo(f"root        {root}{mark[root in here]}")
    now = int(time.time())
    for s in record.signers:
        click.echo(
            f"signer      {s.id}  {state.key_state(s.key, now)}, {format_time(s.not_before)} "
            f"to {format_time(s.expires)}, may sign {printable(', '.join(s.scope))}"
            f"{mark[s.id in here]}"
        )
    for r in state.revocations().values():
        click.echo(f"revoked     {r.id}  {r.reason.value} on {format_time(r.at)}")


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
