"""The publisher's report-key commands: ``publisher add-report-key`` and ``publisher
retire-report-key``; ``publisher new`` makes the first key through ``make_first_key``.
Each change rebuilds FOLDER/report-keys.mdrop, to hand out like any bundle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshdrop.cli.common import emit_json, format_time, parse_time, passphrase_from_env_or_prompt
from meshdrop.cli.keyprompts import (
    JSON_HELP,
    UNENCRYPTED_HELP,
    WEAK_PASSPHRASE_HELP,
    KeyPassphrase,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from meshdrop.publish.keyfile import PassphraseProvider
    from meshdrop.publish.keystore import PublisherFolder

_SUITE_HELP = (
    "mlkem768-x25519 (default: post-quantum hybrid, for reports an adversary may store for "
    "years) or x25519 (for sealing sides without ML-KEM)."
)


def register(group: click.Group) -> None:
    group.add_command(add_report_key)
    group.add_command(retire_report_key)


def make_first_key(folder: Path, passphrase: bytes | None) -> tuple[str, Path]:
    """The first report key of a new publisher and its bundle: (key id, bundle path)."""
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.reportkeys import add_report_key as add_key
    from meshdrop.publish.reportkeys import build_bundle

    now = int(time.time())
    publisher = load_publisher(folder)
    signing_key = _signing_key(publisher, now, lambda _what: passphrase or b"")
    private, _path = add_key(publisher, signing_key, passphrase, now)
    return private.key_id.hex(), build_bundle(publisher, signing_key, now)


def _signing_key(
    publisher: PublisherFolder, now: int, provider: PassphraseProvider
) -> Ed25519PrivateKey:
    from meshdrop.core.reportkeys import REPORT_KEYS_BUNDLE

    key, _signer = publisher.load_signer(provider, now, bundle_name=REPORT_KEYS_BUNDLE)
    return key


@click.command(
    "add-report-key", epilog="Example: meshdrop publisher add-report-key ~/keys/news --days 365"
)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=730,
    show_default=True,
    help="How long writers may seal reports to it.",
)
@click.option(
    "--suite",
    type=click.Choice(["mlkem768-x25519", "x25519"]),
    default="mlkem768-x25519",
    help=_SUITE_HELP,
)
@click.option("--unencrypted", is_flag=True, help=UNENCRYPTED_HELP)
@click.option("--weak-passphrase", is_flag=True, help=WEAK_PASSPHRASE_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def add_report_key(
    folder: Path, days: int, suite: str, unencrypted: bool, weak_passphrase: bool, as_json: bool
) -> None:
    """Make a new report key (its private seed saved passphrase-protected as
    FOLDER/report-<key id>.key), sign it and rebuild FOLDER/report-keys.mdrop. Writers
    seal to the newest key their node knows; hand the bundle out like any other."""
    from meshdrop.core.reportkeys import Suite
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.reportkeys import add_report_key as add_key
    from meshdrop.publish.reportkeys import build_bundle

    now = int(time.time())
    publisher = load_publisher(folder)
    signing_key = _signing_key(publisher, now, passphrase_from_env_or_prompt)
    passphrase = KeyPassphrase(unencrypted, weak_passphrase, "the new report key").get()
    private, path = add_key(publisher, signing_key, passphrase, now, Suite(suite), days)
    bundle = build_bundle(publisher, signing_key, now)
    _say("added", private.key_id.hex(), [path, bundle], as_json)


@click.command(
    "retire-report-key",
    epilog="Example: meshdrop publisher retire-report-key ~/keys/news 3f2a9c --at 2026-12-31",
)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("key_id")
@click.option("--at", "at", help="When writers must stop sealing to it (default: now).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def retire_report_key(folder: Path, key_id: str, at: str | None, as_json: bool) -> None:
    """Retire the report key KEY_ID (its id or the start of it): nodes stop offering it
    from --at on. Its private seed stays in FOLDER for 30 days after that (drops sealed
    before can still be opened); 'meshdrop reports open' destroys it after that."""
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.reportkeys import GRACE_SECONDS, build_bundle
    from meshdrop.publish.reportkeys import retire_report_key as retire_key

    now = int(time.time())
    retire_at = parse_time(at, "--at") if at else now
    publisher = load_publisher(folder)
    signing_key = _signing_key(publisher, now, passphrase_from_env_or_prompt)
    key = retire_key(publisher, signing_key, key_id, retire_at, now)
    bundle = build_bundle(publisher, signing_key, now)
    _say("retired", key.key_id.hex(), [bundle], as_json)
    if not as_json:
        click.echo(
            f"its private key is destroyed by 'meshdrop reports open' after "
            f"{format_time(retire_at + GRACE_SECONDS)}"
        )


def _say(action: str, key_id: str, files: list[Path], as_json: bool) -> None:
    if as_json:
        emit_json({"action": action, "report_key": key_id, "files": [str(f) for f in files]})
        return
    click.echo(f"{action} report key {key_id}")
    click.echo(f"give nodes the new {files[-1]} (import it like any bundle)")
