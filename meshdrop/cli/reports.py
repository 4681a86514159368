"""Reports: ``meshdrop report write`` (seal a report to a publisher, from a terminal),
``meshdrop reports open`` and ``meshdrop reports ack`` (the publisher receiving them),
and importing ``.drop`` files (``meshdrop import``)."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshdrop.cli.common import (
    emit_json,
    home_path,
    human_size,
    open_store,
    passphrase_from_env_or_prompt,
    plural,
    printable,
)
from meshdrop.errors import AttachmentError, MeshdropError, UsageError

if TYPE_CHECKING:
    from meshdrop.core.reports import Attachment
    from meshdrop.publish.inbox import Inbox

DAY = 86_400
DEFAULT_EXPIRY_DAYS = 90
DROP_SUFFIX = ".drop"
_HEX_ID = re.compile(r"[0-9a-f]{64}")


def register(cli: click.Group) -> None:
    cli.add_command(report_group)
    cli.add_command(reports_group)


def import_drop_file(home: Path, path: Path) -> tuple[str, str]:
    """Store a drop file through the one ingest path for drops: (outcome, detail), or a
    MeshdropError (a DropError saying what is wrong with it)."""
    from meshdrop.store.drops import FROM_FILE, DropStore, read_drop_file

    stored = DropStore(home).add(read_drop_file(path), int(time.time()), FROM_FILE)
    if stored is None:
        return "already had", "a drop this node holds or was told was delivered"
    return "imported", f"drop {stored.drop_id.hex()[:16]} ({human_size(stored.size)})"


# Writing


@click.group("report", epilog="Example: meshdrop report write --to 3f2a-9c41 --text 'Hello'")
def report_group() -> None:
    """Write a sealed report to a publisher (as the reader's form does)."""


@report_group.command(
    "write",
    epilog="Example: meshdrop --home ~/node report write --to 3f2a-9c41 --text-file note.txt "
    "--file photo.jpg",
)
@click.option("--to", "to", required=True, help="The publisher's fingerprint (or its start).")
@click.option("--text", help="The report's text.")
@click.option(
    "--text-file", type=click.Path(dir_okay=False, path_type=Path), help="Read the text from F."
)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Attach a photo (JPEG, PNG, WebP, GIF: cleaned of EXIF, GPS and the like) or a "
    "plain-text file (repeatable; other kinds are refused).",
)
@click.option(
    "--expires",
    "days",
    type=click.IntRange(1, 180),
    default=DEFAULT_EXPIRY_DAYS,
    show_default=True,
    help="Days the drop travels before nodes delete it.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the drop to FILE (to carry by hand) instead of into the node's store.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.pass_context
def report_write(
    ctx: click.Context,
    to: str,
    text: str | None,
    text_file: Path | None,
    files: tuple[Path, ...],
    days: int,
    out: Path | None,
    as_json: bool,
) -> None:
    """Seal a report to a publisher's report key (the newest this node knows from the
    publisher's report-keys bundle) and keep it in the node's store to travel, or write
    it to --out. The text and the files are sealed at once, in memory; print the receipt
    code: the node tells whether the report was delivered by it."""
    from meshdrop.core.drops import seal
    from meshdrop.core.reports import RECEIPT_RANDOM_BYTES, Report, check_report, make_receipt
    from meshdrop.fs import atomic_write
    from meshdrop.store.drops import HERE, DropStore
    from meshdrop.store.reportkeys import report_keys

    body = _report_text(text, text_file)
    if not body.strip() and not files:
        raise UsageError("the report is empty: give --text, --text-file or --file")
    attachments = tuple(_attachment(i, path) for i, path in enumerate(files, start=1))
    report = Report(body, attachments, make_receipt(secrets.token_bytes(RECEIPT_RANDOM_BYTES)))
    check_report(report)
    with open_store(ctx) as store:
        now = store.now()
        publisher = store.resolve_publisher(to)
        keys = report_keys(store, now).get(publisher.fingerprint)
        if not keys:
            raise UsageError(
                f"publisher {publisher.name!r} has no report key on this node: import its "
                "report-keys bundle (report-keys.mdrop) first"
            )
        blob = seal(report, keys[0], now + days * DAY, now)
        if out is not None:
            atomic_write(out, blob, 0o600)
            stored_in = str(out)
        else:
            drops = DropStore(store.home)
            drops.add(blob, now, HERE)
            drops.note_receipt(report.receipt, _drop_id(blob))
            stored_in = str(store.home)
    if as_json:
        emit_json(
            {
                "action": "sealed",
                "receipt": report.receipt,
                "drop_id": _drop_id(blob).hex(),
                "size": len(blob),
                "expires": now + days * DAY,
                "publisher": publisher.fingerprint,
                "stored": stored_in,
            }
        )
        return
    click.echo(f"sealed a report to {printable(publisher.name)} ({human_size(len(blob))})")
    click.echo(f"stored in {stored_in}")
    click.echo(f"receipt code: {report.receipt}")


def _drop_id(blob: bytes) -> bytes:
    from meshdrop.core.drops import drop_id

    return drop_id(blob)


def _report_text(text: str | None, text_file: Path | None) -> str:
    from meshdrop.core.reports import TEXT_MAX_BYTES
    from meshdrop.fs import read_small_file

    if text is not None and text_file is not None:
        raise UsageError("give --text or --text-file, not both")
    if text_file is None:
        return text or ""
    data = read_small_file(text_file, TEXT_MAX_BYTES, "report text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{text_file} is not UTF-8 text") from exc


def _attachment(number: int, path: Path) -> Attachment:
    from meshdrop.core.reports import ATTACHMENTS_MAX_BYTES, Attachment
    from meshdrop.fs import read_small_file
    from meshdrop.reader.imageclean import attachment_name, clean

    data = read_small_file(path, ATTACHMENTS_MAX_BYTES, "report attachment")
    try:
        cleaned = clean(data)
    except AttachmentError as exc:
        raise type(exc)(f"{path}: {exc}", exc.kind) from exc
    return Attachment(attachment_name(number, cleaned), cleaned.media_type, cleaned.data)


# Receiving


@click.group("reports", epilog="Example: meshdrop reports open --publisher ~/keys/news --out inbox")
def reports_group() -> None:
    """Open the reports sent to a publisher, and acknowledge them."""


@reports_group.command(
    "open",
    epilog="Example: meshdrop --home ~/node reports open --publisher ~/keys/news --out ~/inbox",
)
@click.option(
    "--publisher",
    "publisher_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The publisher folder holding the report-*.key files.",
)
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, path_type=Path),
    help="A .drop file or a folder of them (default: the drops of the node's store, --home).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write the opened reports into, one sub-folder each.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.pass_context
def reports_open(
    ctx: click.Context, publisher_dir: Path, source: Path | None, out: Path, as_json: bool
) -> None:
    """Try every drop with every report key of the publisher: each one sealed to it is
    written to --out as a sub-folder named by its drop id (report.txt, the attached files,
    meta.json); drops for others are left untouched. Retired keys' private seeds are
    destroyed first once their 30 days of grace have passed."""
    from meshdrop.publish.inbox import Inbox
    from meshdrop.publish.reportkeys import destroy_retired_seeds, load_report_seeds

    now = int(time.time())
    destroyed = destroy_retired_seeds(publisher_dir, now)
    remembered: dict[str, bytes] = {}

    def ask_once(what: str) -> bytes:
        if "passphrase" not in remembered:
            remembered["passphrase"] = passphrase_from_env_or_prompt(what)
        return remembered["passphrase"]

    seeds = load_report_seeds(publisher_dir, ask_once)
    if not seeds:
        raise UsageError(f"{publisher_dir} holds no report key (report-*.key)")
    inbox = Inbox(out, seeds, now)
    if source is not None:
        _open_files(inbox, _drop_files(source))
    else:
        _open_held(inbox, home_path(ctx))
    tally = inbox.tally
    if as_json:
        emit_json({**tally.to_json(), "destroyed_keys": [k.hex() for k in destroyed]})
        return
    for key in destroyed:
        click.echo(f"destroyed the private key of retired report key {key.hex()[:12]}")
    click.echo(tally.summary())


def _open_files(inbox: Inbox, paths: list[Path]) -> None:
    from meshdrop.store.drops import read_drop_file

    for path in paths:
        try:
            blob = read_drop_file(path)
        except MeshdropError:
            inbox.tally.damaged += 1
            continue
        inbox.open_one(blob, None)


def _open_held(inbox: Inbox, home: Path) -> None:
    from meshdrop.store.drops import DropStore

    if not (home / "drops").is_dir():
        raise UsageError(f"{home} holds no drops (is it a node's home?)")
    drops = DropStore(home)
    for held in drops.held():
        blob = drops.read(held.drop_id)
        if blob is not None:
            inbox.open_one(blob, held.arrived)


def _drop_files(source: Path) -> list[Path]:
    if not source.is_dir():
        return [source]
    return sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and (p.suffix == DROP_SUFFIX or _HEX_ID.fullmatch(p.name))
    )


@reports_group.command(
    "ack",
    epilog="Example: meshdrop reports ack --publisher ~/keys/news --opened ~/inbox",
)
@click.option(
    "--publisher",
    "publisher_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The publisher folder (its signing key signs the ack list).",
)
@click.option(
    "--opened",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The folder 'reports open' wrote to.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def reports_ack(publisher_dir: Path, opened: Path, as_json: bool) -> None:
    """Sign the list of the drops opened into --opened and rebuild the publisher's
    report-keys.mdrop with it: nodes that import the bundle delete those drops, and the
    writer's receipt code shows "delivered" on the node that sealed it."""
    from meshdrop.core.reportkeys import REPORT_KEYS_BUNDLE
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.reportkeys import build_bundle, write_ack_list

    drop_ids = _opened_ids(opened)
    if not drop_ids:
        raise UsageError(f"{opened} holds no opened report (run 'meshdrop reports open')")
    now = int(time.time())
    publisher = load_publisher(publisher_dir)
    signing_key, _ = publisher.load_signer(
        passphrase_from_env_or_prompt, now, bundle_name=REPORT_KEYS_BUNDLE
    )
    count = write_ack_list(publisher, signing_key, drop_ids, now)
    bundle = build_bundle(publisher, signing_key, now)
    if as_json:
        emit_json({"action": "acknowledged", "drops": count, "files": [str(bundle)]})
        return
    click.echo(f"acknowledged {plural(count, 'drop')}")
    click.echo(f"give nodes the new {bundle} (import it like any bundle)")


def _opened_ids(opened: Path) -> list[bytes]:
    """The drop ids of the reports in ``opened``, oldest opening first."""
    found: list[tuple[int, bytes]] = []
    for meta in opened.glob("*/meta.json"):
        if not _HEX_ID.fullmatch(meta.parent.name):
            continue
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            found.append((int(info.get("opened", 0)), bytes.fromhex(meta.parent.name)))
        except (OSError, ValueError, AttributeError) as exc:
            raise UsageError(f"{meta} cannot be read: {exc}") from exc
    return [drop_id for _, drop_id in sorted(found)]
