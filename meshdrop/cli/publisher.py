"""Publisher commands: make keys, pack folders into signed bundles, verify and inspect."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshdrop.cli.common import (
    emit_json,
    format_time,
    human_size,
    parse_time,
    passphrase_from_env_or_prompt,
    progress_bar,
)
from meshdrop.errors import MeshdropError, UsageError

if TYPE_CHECKING:
    from meshdrop.core.manifest import Manifest
    from meshdrop.core.trust import PublisherState


def register(cli: click.Group) -> None:
    cli.add_command(publisher_group)
    cli.add_command(pack)
    cli.add_command(verify)
    cli.add_command(inspect)


@click.group("publisher")
def publisher_group() -> None:
    """Make and show publisher keys."""


@publisher_group.command(
    "new", epilog="Example: meshdrop publisher new ~/keys/news --name 'Workers News'"
)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="The publisher's name, as readers will see it.")
@click.option(
    "--unencrypted", is_flag=True, help="Store private keys without a passphrase (tests, demos)."
)
def publisher_new(folder: Path, name: str, unencrypted: bool) -> None:
    """Create a publisher in FOLDER: a root key, a signing key and publisher.pub.

    The passphrase comes from MESHDROP_PASSPHRASE or a prompt. Give node owners
    FOLDER/publisher.pub and read them the fingerprint by a channel you trust; keep the
    root-*.key file offline."""
    from meshdrop.publish.keystore import create_publisher

    passphrase = None if unencrypted else passphrase_from_env_or_prompt("the new keys", True)
    record = create_publisher(folder, name, passphrase, int(time.time()))
    click.echo(f"created publisher {record.name!r} in {folder}")
    click.echo(f"fingerprint: {record.fingerprint}")
    click.echo(f"give node owners: {folder / 'publisher.pub'}")


@publisher_group.command("show", epilog="Example: meshdrop publisher show ~/keys/news --json")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def publisher_show(source: Path, as_json: bool) -> None:
    """Show a publisher (a publisher folder or a publisher.pub file): fingerprint, version,
    root and signing keys with their validity."""
    from meshdrop.core.bundle import parse_publisher_file
    from meshdrop.core.trust import start_state
    from meshdrop.store.bundlefile import open_regular_file, read_exactly

    path = source / "publisher.pub" if source.is_dir() else source
    fd = open_regular_file(path)
    try:
        data = read_exactly(fd, 16 * 1024 * 1024)
    finally:
        os.close(fd)
    record = start_state(parse_publisher_file(data, str(path))).current
    now = int(time.time())
    signers = [
        {
            "id": s.id,
            "not_before": s.not_before,
            "expires": s.expires,
            "scope": list(s.scope),
            "state": "valid"
            if s.valid_at(now)
            else "expired"
            if s.expires < now
            else "not yet valid",
        }
        for s in record.signers
    ]
    if as_json:
        from meshdrop.core.keys import key_id

        emit_json(
            {
                "fingerprint": record.fingerprint,
                "name": record.name,
                "version": record.version,
                "threshold": record.threshold,
                "roots": [key_id(k) for k in record.roots],
                "signers": signers,
            }
        )
        return
    click.echo(f"publisher   {record.name}")
    click.echo(f"fingerprint {record.fingerprint}")
    click.echo(
        f"record      version {record.version}, {record.threshold} of {len(record.roots)} root keys"
    )
    for s in signers:
        click.echo(
            f"signer      {s['id']}  {s['state']}, until {format_time(int(str(s['expires'])))}"
        )


@click.command(
    epilog="Example: meshdrop pack ./news --publisher ~/keys/news --name news -o news.mdrop"
)
@click.argument("src", type=click.Path(path_type=Path))
@click.option(
    "--publisher",
    "publisher_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The publisher folder made by 'publisher new'.",
)
@click.option(
    "--name", required=True, help="Bundle name: a stream whose versions supersede each other."
)
@click.option("--title", help="Title readers see (default: the name).")
@click.option("--description", default="", help="One or two sentences for readers.")
@click.option("--language", default="und", help="Language code: en, ko, mul (several)...")
@click.option(
    "--priority",
    default=0,
    type=click.IntRange(-1000, 1000),
    help="Higher spreads first when space or time is short.",
)
@click.option(
    "--version",
    "version",
    type=click.IntRange(1, 2**63 - 1),
    help="Version number (default: the creation time in Unix seconds).",
)
@click.option("--created", help="Creation time (default: SOURCE_DATE_EPOCH, else now).")
@click.option("--expires", help="Date after which nodes stop showing the bundle.")
@click.option("--signer", "signer_id", help="Key id of the signing key (default: newest valid).")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .mdrop file to write.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def pack(
    src: Path,
    publisher_dir: Path,
    name: str,
    title: str | None,
    description: str,
    language: str,
    priority: int,
    version: int | None,
    created: str | None,
    expires: str | None,
    signer_id: str | None,
    output: Path,
    quiet: bool,
) -> None:
    """Pack the folder SRC into one signed bundle file.

    With the creation time fixed (--created or SOURCE_DATE_EPOCH) the same input gives
    byte-identical output."""
    from meshdrop.core.manifest import check_bundle_name
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.pack import pack_folder, scan_folder

    check_bundle_name(name)
    created_at = _creation_time(created)
    expires_at = parse_time(expires, "--expires") if expires else None
    if expires_at is not None and expires_at <= created_at:
        raise UsageError("--expires must be after the creation time")
    folder = load_publisher(publisher_dir)
    key, _signer = folder.load_signer(
        lambda what: passphrase_from_env_or_prompt(what), created_at, signer_id
    )
    total = sum(f.size for f in scan_folder(src))
    with progress_bar(2 * total, f"packing {name}", quiet) as advance:
        manifest = pack_folder(
            src,
            output,
            signing_key=key,
            state=folder.state,
            name=name,
            version=version or created_at,
            created=created_at,
            expires=expires_at,
            title=title if title is not None else name,
            description=description,
            language=language,
            priority=priority,
            progress=advance,
        )
    click.echo(
        f"packed {output}: {manifest.name} v{manifest.version}, {len(manifest.files)} files, "
        f"{human_size(manifest.size)}"
    )


def _creation_time(created: str | None) -> int:
    if created is not None:
        return parse_time(created, "--created")
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        return parse_time(epoch, "SOURCE_DATE_EPOCH")
    return int(time.time())


def load_trust_files(paths: tuple[Path, ...]) -> dict[bytes, PublisherState]:
    from meshdrop.core.bundle import parse_publisher_file
    from meshdrop.core.trust import start_state
    from meshdrop.store.bundlefile import open_regular_file, read_exactly

    trusted = {}
    for path in paths:
        fd = open_regular_file(path)
        try:
            data = read_exactly(fd, 16 * 1024 * 1024)
        finally:
            os.close(fd)
        state = start_state(parse_publisher_file(data, str(path)))
        trusted[state.publisher] = state
    return trusted


@click.command(epilog="Example: meshdrop verify news.mdrop welcome.mdrop --trust publisher.pub")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--trust",
    "trust_files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A publisher.pub to trust (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.pass_context
def verify(
    ctx: click.Context, files: tuple[Path, ...], trust_files: tuple[Path, ...], as_json: bool
) -> None:
    """Check that each bundle FILE is intact and signed by a trusted publisher.

    Exits 0 only if every file verifies; otherwise prints one line per failing file."""
    trusted = load_trust_files(trust_files)
    failures = 0
    for path in files:
        try:
            manifest = verify_bundle_file(path, trusted)
        except MeshdropError as exc:
            failures += 1
            if as_json:
                emit_json({"file": str(path), "ok": False, "error": str(exc)})
            else:
                click.echo(f"{path}: FAILED: {exc}", err=True)
            continue
        if as_json:
            emit_json(
                {"file": str(path), "ok": True, "name": manifest.name, "version": manifest.version}
            )
        else:
            click.echo(f"{path}: OK ({manifest.name} v{manifest.version})")
    ctx.exit(1 if failures else 0)


def verify_bundle_file(path: Path, trusted: dict[bytes, PublisherState]) -> Manifest:
    from meshdrop.core.verify import verify_envelope
    from meshdrop.store.bundlefile import open_bundle_file
    from meshdrop.store.ingest import copy_missing_chunks

    with open_bundle_file(path) as source:
        verified = verify_envelope(source.envelope, trusted, int(time.time()))
        source.check_size(verified)
        copy_missing_chunks(source, verified, None)
        return verified.manifest


@click.command(epilog="Example: meshdrop inspect news.mdrop --trust publisher.pub")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--trust",
    "trust_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A publisher.pub to verify against (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def inspect(file: Path, trust_files: tuple[Path, ...], as_json: bool) -> None:
    """Show a bundle's manifest and publisher. Marked UNVERIFIED unless --trust is given
    and the whole bundle verifies."""
    from meshdrop.core.manifest import parse_manifest
    from meshdrop.core.records import parse_record
    from meshdrop.store.bundlefile import open_bundle_file

    if trust_files:
        manifest = verify_bundle_file(file, load_trust_files(trust_files))
        status = "verified"
    else:
        with open_bundle_file(file) as source:
            manifest = parse_manifest(source.envelope.manifest_bytes)
        status = "UNVERIFIED"
    with open_bundle_file(file) as source:
        newest = max(
            (parse_record(r.record_bytes) for r in source.envelope.records),
            key=lambda r: r.version,
        )
    if newest.publisher != manifest.publisher:
        raise UsageError(f"{file}: the bundle's publisher records do not match its manifest")
    info = {
        "status": status,
        "publisher": newest.fingerprint,
        "publisher_name": newest.name,
        "name": manifest.name,
        "version": manifest.version,
        "title": manifest.title,
        "description": manifest.description,
        "language": manifest.language,
        "priority": manifest.priority,
        "created": manifest.created,
        "expires": manifest.expires,
        "size": manifest.size,
        "files": [{"path": f.path, "size": f.size, "type": f.media_type} for f in manifest.files],
    }
    if as_json:
        emit_json(info)
        return
    mark = (
        "verified" if status == "verified" else "UNVERIFIED: nothing below is checked; use --trust"
    )
    click.echo(f"status      {mark}")
    click.echo(f"publisher   {newest.name} ({newest.fingerprint})")
    click.echo(f"bundle      {manifest.name} v{manifest.version}: {manifest.title}")
    if manifest.description:
        click.echo(f"about       {manifest.description}")
    click.echo(f"language    {manifest.language}, priority {manifest.priority}")
    click.echo(
        f"created     {format_time(manifest.created)}, expires {format_time(manifest.expires)}"
    )
    click.echo(f"size        {human_size(manifest.size)} in {len(manifest.files)} files")
    for f in manifest.files:
        click.echo(f"  {human_size(f.size):>10}  {f.media_type:<24} {f.path}")
