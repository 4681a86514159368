"""Node-owner commands about trust: pin, list, show and remove publishers."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meshdrop.cli.common import (
    confirm_step,
    emit_json,
    format_time,
    open_store,
    printable,
    read_publisher_file,
    withdrawal_line,
)
from meshdrop.core.keys import key_id
from meshdrop.errors import UsageError


def register(cli: click.Group) -> None:
    cli.add_command(trust)


@click.group()
def trust() -> None:
    """Pin, list and remove the publishers this node trusts."""


@trust.command(
    "add",
    epilog="Example: meshdrop --home ~/node trust add publisher.pub "
    "--fingerprint ASLU-HMNE-CURD-DX4C-3U5P-NDIM-PCS6-CGVD",
)
@click.argument("pub", type=click.Path(path_type=Path))
@click.option(
    "--fingerprint",
    "told",
    metavar="FINGERPRINT",
    help="The whole fingerprint the publisher gave you; the file is refused if it differs.",
)
@click.option(
    "--card",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The publisher's card (its .svg): take the fingerprint to check from it.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask: trust without a fingerprint check.")
@click.option(
    "--allow-same-name",
    is_flag=True,
    help="Trust it even though a trusted publisher has a name that reads the same.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object saying what was done.")
@click.pass_context
def trust_add(
    ctx: click.Context,
    pub: Path,
    told: str | None,
    card: Path | None,
    yes: bool,
    allow_same_name: bool,
    as_json: bool,
) -> None:
    """Trust the publisher in PUB (a publisher.pub). Check its fingerprint first: pass
    the one the publisher gave you in person or over a channel you trust (--fingerprint,
    or --card with their card), or compare it when asked in the terminal."""
    from meshdrop.core.trust import check_fingerprint, pin_publisher_file
    from meshdrop.publish.card import read_card_fingerprint

    if told is not None and card is not None:
        raise UsageError("give --fingerprint or --card, not both")
    if card is not None:
        told = read_card_fingerprint(card)
    data = read_publisher_file(pub)
    state, _ignored = pin_publisher_file(data, str(pub))
    if told is not None:
        check_fingerprint(told, state.fingerprint)
    with open_store(ctx) as store:
        if state.publisher not in store.trusted():
            if not allow_same_name:
                store.check_name_is_new(state)
            if told is None:
                _ask_to_trust(state.current.name, state.fingerprint, yes)
        result = store.trust_add(data, str(pub), fingerprint=told, allow_same_name=allow_same_name)
    record = result.state.current
    if as_json:
        emit_json(
            {
                "action": "added" if result.added else "updated",
                "fingerprint": record.fingerprint,
                "name": record.name,
                "version": record.version,
                "file": str(pub),
                "checked": "card" if card else "fingerprint" if told else None,
                "ignored": result.ignored,
                "withdrawn": [w.to_json() for w in result.withdrawn],
            }
        )
        return
    verb = "now trusting" if result.added else "already trusted"
    click.echo(f"{verb} {printable(record.name)!s} (publisher record version {record.version})")
    click.echo(f"fingerprint: {record.fingerprint}")
    if result.ignored is not None:
        click.echo(f"note: later records in {pub} were left out: {printable(result.ignored)}")
    for withdrawal in result.withdrawn:
        click.echo(withdrawal_line(withdrawal))


def _ask_to_trust(name: str, fingerprint: str, yes: bool) -> None:
    """The first-contact check when no fingerprint was given: show it and ask."""
    if not yes and sys.stdin.isatty():
        click.echo(f"publisher:   {printable(name)}", err=True)
        click.echo(f"fingerprint: {fingerprint}", err=True)
        click.echo(
            "Compare every group with the fingerprint the publisher gave you in person or "
            "over a channel you trust.",
            err=True,
        )
    confirm_step(
        f"Trust {printable(name)}?",
        yes,
        "not trusted: nobody can check the fingerprint here (no terminal); pass "
        "--fingerprint with the one the publisher gave you (or --card), or --yes to trust "
        "without a check",
    )


@trust.command("ls", epilog="Example: meshdrop --home ~/node trust ls --json")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per publisher.")
@click.pass_context
def trust_ls(ctx: click.Context, as_json: bool) -> None:
    """List trusted publishers."""
    with open_store(ctx) as store:
        publishers = store.trust_list()
    for p in publishers:
        if as_json:
            emit_json(
                {
                    "fingerprint": p.fingerprint,
                    "name": p.name,
                    "version": p.version,
                    "added": p.added,
                    "updated": p.updated,
                }
            )
        else:
            click.echo(f"{p.fingerprint}  {printable(p.name)} (record v{p.version})")
    if not publishers and not as_json:
        click.echo("no trusted publishers yet: add one with 'meshdrop trust add publisher.pub'")


@trust.command("show", epilog="Example: meshdrop --home ~/node trust show K7Q2-M3XD --json")
@click.argument("fingerprint")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.pass_context
def trust_show(ctx: click.Context, fingerprint: str, as_json: bool) -> None:
    """What this node believes about a publisher, and since when: its record version,
    keys and their state, and the newest signed time seen from it (how fresh the view is)."""
    with open_store(ctx) as store:
        publisher = store.resolve_publisher(fingerprint)
        state = store.publisher_state(publisher.fingerprint)
        now = store.now()
        count = sum(1 for b in store.list_bundles() if b.publisher == publisher.fingerprint)
        twins = store.equivocations(publisher.fingerprint)
    record = state.current
    keys = [
        {"id": key_id(s.key), "expires": s.expires, "state": state.key_state(s.key, now)}
        for s in record.signers
    ] + [
        {"id": r.id, "expires": None, "state": r.reason.value} for r in state.revocations().values()
    ]
    info = {
        "fingerprint": publisher.fingerprint,
        "name": record.name,
        "version": record.version,
        "threshold": record.threshold,
        "roots": [key_id(k) for k in record.roots],
        "signers": keys,
        "trusted_since": publisher.added,
        "updated": publisher.updated,
        "newest_signed": publisher.newest_signed,
        "bundles": count,
        "equivocations": [
            {
                "name": t.name,
                "version": t.version,
                "kept": t.kept.hex(),
                "other": t.other.hex(),
                "signer": key_id(t.signer),
                "seen": t.seen,
            }
            for t in twins
        ],
    }
    if as_json:
        emit_json(info)
        return
    click.echo(f"publisher     {printable(record.name)}")
    click.echo(f"fingerprint   {publisher.fingerprint}")
    click.echo(
        f"record        version {record.version}, {record.threshold} of "
        f"{len(record.roots)} root keys"
    )
    click.echo(
        f"trusted since {format_time(publisher.added)}; last update "
        f"{format_time(publisher.updated)}"
    )
    click.echo(f"freshness     newest content signed on {format_time(publisher.newest_signed)}")
    click.echo(f"bundles       {count} shown")
    for key in keys:
        until = f", until {format_time(int(str(key['expires'])))}" if key["expires"] else ""
        click.echo(f"key           {key['id']}  {key['state']}{until}")
    for t in twins:
        click.echo(
            f"WARNING       two different bundles were signed as {t.name} v{t.version} "
            f"(seen {format_time(t.seen)}; the second by key {key_id(t.signer)}): only a holder "
            "of the publisher's signing key can do that, so it is most likely stolen; tell "
            "the publisher, who should report it compromised"
        )


@trust.command("rm", epilog="Example: meshdrop --home ~/node trust rm K7Q2-M3XD")
@click.argument("fingerprint")
@click.option("--json", "as_json", is_flag=True, help="One JSON object saying what was done.")
@click.pass_context
def trust_rm(ctx: click.Context, fingerprint: str, as_json: bool) -> None:
    """Stop trusting a publisher (by fingerprint or a unique start of it, at least 4
    characters). Its bundles are no longer listed or served; they come back if you trust
    it again."""
    with open_store(ctx) as store:
        removed = store.trust_remove(fingerprint)
    if as_json:
        emit_json(
            {
                "action": "removed",
                "fingerprint": removed.fingerprint,
                "name": removed.name,
                "version": removed.version,
            }
        )
        return
    click.echo(f"no longer trusting {printable(removed.name)} ({removed.fingerprint})")
