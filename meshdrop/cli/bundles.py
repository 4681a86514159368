"""Commands on bundle files, with no store: pack a folder into a signed bundle, verify
bundles against publisher files, inspect one."""

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
    printable,
    progress_bar,
)
from meshdrop.core.keys import format_fingerprint
from meshdrop.errors import MeshdropError, UsageError

if TYPE_CHECKING:
    pass


def register(cli: click.Group) -> None:
    cli.add_command(pack)
    cli.add_command(verify)
    cli.add_command(inspect)


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
    from meshdrop.publish.pack import pack_folder
    from meshdrop.publish.scan import scan_folder

    try:
        check_bundle_name(name)
    except MeshdropError as exc:
        raise UsageError(f"--name: {exc}") from exc
    created_at = _creation_time(created)
    expires_at = parse_time(expires, "--expires") if expires else None
    if expires_at is not None and expires_at <= created_at:
        raise UsageError("--expires must be after the creation time")
    folder = load_publisher(publisher_dir)
    key, _signer = folder.load_signer(
        passphrase_from_env_or_prompt, created_at, signer_id, bundle_name=name
    )
    total = sum(f.size for f in scan_folder(src))
    with progress_bar(total, f"packing {name}", quiet) as advance:
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
    from meshdrop.publish.keystore import read_trust_files
    from meshdrop.store.ingest import verify_bundle_file

    trusted = read_trust_files(trust_files)
    failures = 0
    for path in files:
        try:
            manifest = verify_bundle_file(path, trusted, int(time.time())).manifest
        except MeshdropError as exc:
            failures += 1
            if as_json:
                emit_json({"file": str(path), "ok": False, "error": str(exc)})
            else:
                click.echo(f"{printable(str(path))}: FAILED: {printable(str(exc))}", err=True)
            continue
        if as_json:
            emit_json(
                {"file": str(path), "ok": True, "name": manifest.name, "version": manifest.version}
            )
        else:
            click.echo(f"{printable(str(path))}: OK ({manifest.name} v{manifest.version})")
    ctx.exit(1 if failures else 0)


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
    and the whole bundle verifies. Without --trust only the signature's self-consistency
    (under the key the file itself names) and the file's size are checked: every field is
    only what the file claims."""
    from meshdrop.core.keys import key_id
    from meshdrop.publish.keystore import read_trust_files
    from meshdrop.store.bundlefile import read_self_signed
    from meshdrop.store.ingest import verify_bundle_file

    if trust_files:
        verified = verify_bundle_file(file, read_trust_files(trust_files), int(time.time()))
        manifest, status, signer = verified.manifest, "verified", verified.signer.id
        fingerprint, publisher_name = verified.state.fingerprint, verified.state.current.name
    else:
        checked = read_self_signed(file)
        manifest, status, signer = checked.manifest, "UNVERIFIED", key_id(checked.signer)
        fingerprint = format_fingerprint(manifest.publisher)
        publisher_name = checked.claimed_publisher_name or "(unknown)"
    info = {
        "status": status,
        "signature": "verified" if status == "verified" else "self-consistent",
        "signer": signer,
        "publisher": fingerprint,
        "publisher_name": publisher_name,
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
    if status == "verified":
        click.echo("status      verified")
    else:
        click.echo("status      UNVERIFIED: the publisher is not checked; use --trust")
        click.echo(f"signature   self-consistent: by key {signer}, unchecked against any publisher")
    click.echo(f"publisher   {printable(publisher_name)} ({fingerprint})")
    click.echo(f"bundle      {manifest.name} v{manifest.version}: {printable(manifest.title)}")
    if manifest.description:
        click.echo(f"about       {printable(manifest.description)}")
    click.echo(f"language    {manifest.language}, priority {manifest.priority}")
    click.echo(
        f"created     {format_time(manifest.created)}, expires {format_time(manifest.expires)}"
    )
    click.echo(f"size        {human_size(manifest.size)} in {len(manifest.files)} files")
    for f in manifest.files:
        click.echo(f"  {human_size(f.size):>10}  {f.media_type:<24} {printable(f.path)}")
