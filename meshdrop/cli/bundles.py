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
    outcome_exit_code,
    parse_time,
    passphrase_from_env_or_prompt,
    plural,
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
@click.option(
    "--part-size",
    help="Write the bundle as parts of at most this size (e.g. 512M) if it is bigger: "
    "OUTPUT's name with .p001, .p002... (default: parts of 512M only for a bundle of "
    "4 GiB or more, which FAT32 cannot hold as one file).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
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
    part_size: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Pack the folder SRC into one signed bundle file, or into parts a stick can hold
    (--part-size; `meshdrop import` takes the parts, or the folder holding them).

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
    largest = _part_size(part_size)
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
    written = _split_if_needed(output, part_size is not None, largest)
    if as_json:
        emit_json(
            {
                "files": [str(p) for p in written],
                "name": manifest.name,
                "version": manifest.version,
                "file_count": len(manifest.files),
                "size": manifest.size,
            }
        )
        return
    where = str(output) if written == [output] else _parts_text(written)
    click.echo(
        f"packed {where}: {manifest.name} v{manifest.version}, "
        f"{plural(len(manifest.files), 'file')}, {human_size(manifest.size)}"
    )


def _part_size(text: str | None) -> int:
    from meshdrop.cli.courier import parse_size
    from meshdrop.transports.courier.layout import DEFAULT_PART_SIZE, FAT32_MAX_FILE

    size = parse_size(text, "--part-size") if text else DEFAULT_PART_SIZE
    if not 1024 * 1024 < size <= FAT32_MAX_FILE:
        raise UsageError(f"--part-size must be more than 1 MiB and less than 4 GiB, not {text}")
    return size


def _split_if_needed(output: Path, asked: bool, part_size: int) -> list[Path]:
    """The files the bundle ends up in: ``output``, or its parts if it is bigger than
    ``part_size`` (asked for) or than FAT32 can hold (by default)."""
    from meshdrop.transports.courier.layout import FAT32_MAX_FILE
    from meshdrop.transports.courier.split import split_bundle_file, stale_parts

    if output.stat().st_size <= (part_size if asked else FAT32_MAX_FILE):
        return [output]
    parts = split_bundle_file(output, part_size)
    for name in stale_parts(output, len(parts)):
        click.echo(
            f"note: {printable(name)} is left from an earlier pack; it is not part of this bundle",
            err=True,
        )
    return parts


def _parts_text(parts: list[Path]) -> str:
    if len(parts) <= 3:
        return ", ".join(str(p) for p in parts)
    return f"{parts[0]} ... {parts[-1].name} ({plural(len(parts), 'part')})"


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
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def verify(
    ctx: click.Context,
    files: tuple[Path, ...],
    trust_files: tuple[Path, ...],
    as_json: bool,
    quiet: bool,
) -> None:
    """Check that each bundle FILE is intact and signed by a trusted publisher.

    One line per file, OK or FAILED with the reason. Exits 0 if every file verifies; for
    one FILE, the code of its failure (3 malformed, 4 signature or trust, 5 altered data);
    for several, 1 if any failed (each --json line carries its own exit_code)."""
    from meshdrop.publish.keystore import read_trust_files
    from meshdrop.store.ingest import verify_bundle_file

    trusted = read_trust_files(trust_files)
    codes: list[int] = []
    for path in files:
        try:
            with progress_bar(_file_size(path), path.name, quiet) as advance:
                verified = verify_bundle_file(path, trusted, int(time.time()), advance)
        except MeshdropError as exc:
            codes.append(exc.exit_code)
            if as_json:
                emit_json(
                    {"file": str(path), "ok": False, "error": str(exc), "exit_code": exc.exit_code}
                )
            else:
                click.echo(f"{printable(str(path))}: FAILED: {printable(str(exc))}", err=True)
            continue
        manifest = verified.manifest
        if as_json:
            emit_json(
                {
                    "file": str(path),
                    "ok": True,
                    "name": manifest.name,
                    "version": manifest.version,
                    "exit_code": 0,
                }
            )
        else:
            click.echo(f"{printable(str(path))}: OK ({manifest.name} v{manifest.version})")
    ctx.exit(outcome_exit_code(codes, len(files)))


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
        now = int(time.time())
        verified = verify_bundle_file(file, read_trust_files(trust_files), now)
        manifest, status, signer = verified.manifest, "verified", verified.signer.id
        fingerprint, publisher_name = verified.state.fingerprint, verified.state.current.name
        signer_state = verified.state.key_state(verified.signer.key, now)
    else:
        checked = read_self_signed(file)
        manifest, status, signer = checked.manifest, "UNVERIFIED", key_id(checked.signer)
        fingerprint = format_fingerprint(manifest.publisher)
        publisher_name = checked.claimed_publisher_name or "(unknown)"
        signer_state = "unchecked"
    info = {
        "status": status,
        "signature": "verified" if status == "verified" else "self-consistent",
        "signer": signer,
        "signer_state": signer_state,
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
        click.echo(f"signature   verified: by key {signer} ({signer_state})")
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
    click.echo(f"size        {human_size(manifest.size)} in {plural(len(manifest.files), 'file')}")
    for f in manifest.files:
        click.echo(f"  {human_size(f.size):>10}  {f.media_type:<24} {printable(f.path)}")
