"""Node-owner commands: trust publishers, import bundles, list, get and check them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click

from meshdrop.cli.common import (
    emit_json,
    format_time,
    human_size,
    import_line,
    open_store,
    printable,
    progress_bar,
    read_publisher_file,
)
from meshdrop.errors import MeshdropError, UsageError
from meshdrop.store.models import ImportResult, Outcome


def register(cli: click.Group) -> None:
    cli.add_command(import_bundles)
    cli.add_command(list_bundles)
    cli.add_command(get)
    cli.add_command(fsck)
    cli.add_command(remove)


IMPORTABLE_SUFFIXES = (".mdrop", ".pub")


def find_bundle_files(paths: tuple[Path, ...]) -> Iterator[Path]:
    """Each path given, and every bundle (*.mdrop) and publisher file (*.pub) below each
    folder given, without following symbolic links. Explicit paths are yielded as given
    so that import reports on them."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, files in os.walk(path, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    if name.endswith(IMPORTABLE_SUFFIXES) and not name.startswith("."):
                        yield Path(folder) / name
        else:
            yield path


@click.command("import", epilog="Example: meshdrop --home ~/node import news.mdrop /media/stick")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per bundle.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def import_bundles(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, quiet: bool) -> None:
    """Import bundle files, or folders of them (searched recursively), or a courier
    folder or a stick that holds one (see 'meshdrop export'; only the courier folder is read).

    Publisher files (*.pub) found there update publishers this node already trusts (new
    keys, revocations); they never make it trust a new one. One line per file: imported,
    already had, or refused with the reason. A bad file never stops the others; the exit
    status is non-zero if anything was refused."""
    from meshdrop.cli.courier import import_couriers
    from meshdrop.store.batchimport import BatchImport, FileResult

    def report_all(results: list[FileResult]) -> int:
        for result in results:
            assert result.outcome is not None
            _report_outcome(as_json, result.path, result.outcome)
        return sum(isinstance(r.outcome, MeshdropError) for r in results)

    with open_store(ctx) as store:
        seen, refused, paths = import_couriers(store, paths, as_json, quiet)  # sticks
        with BatchImport(store) as batch:
            for path in find_bundle_files(paths):
                seen += 1
                if path.suffix == ".pub":  # may change what the bundles after it need
                    refused += report_all(batch.finish())
                    try:
                        outcome: ImportResult | MeshdropError = store.update_publisher(
                            read_publisher_file(path), str(path)
                        )
                    except MeshdropError as exc:
                        outcome = exc
                    refused += report_all([FileResult(path, outcome)])
                    continue
                size = path.lstat().st_size if path.exists() else 0
                with progress_bar(size, path.name, quiet) as advance:
                    refused += report_all(batch.add(path, advance))
            refused += report_all(batch.finish())
    if seen == 0:
        raise UsageError("no .mdrop files found in " + ", ".join(str(p) for p in paths))
    ctx.exit(1 if refused else 0)


def _report_outcome(as_json: bool, path: Path, outcome: ImportResult | MeshdropError) -> None:
    if isinstance(outcome, MeshdropError):
        _report(as_json, path, "refused", str(outcome), exit_code=outcome.exit_code)
        return
    detail = f"{outcome.name} v{outcome.version}"
    if outcome.outcome is Outcome.PUBLISHER_UPDATED:
        detail = f"{outcome.name} record v{outcome.version} (was v{outcome.replaced_version})"
    elif outcome.outcome is Outcome.ALREADY_HAD and path.suffix == ".pub":
        detail = f"{outcome.name} record v{outcome.version}"
    elif outcome.outcome is Outcome.REPLACED_TWIN:
        detail += (
            " (another bundle was signed as the same version: most likely a stolen signing "
            "key; see 'meshdrop trust show')"
        )
    elif outcome.replaced_version is not None:
        detail += f" (replaces v{outcome.replaced_version})"
    _report(as_json, path, outcome.outcome.value, detail, outcome)


def _report(
    as_json: bool,
    path: Path,
    outcome: str,
    detail: str,
    result: ImportResult | None = None,
    exit_code: int = 0,
) -> None:
    if as_json:
        emit_json(
            import_line(
                [str(path)],
                outcome,
                detail,
                name=result.name if result else None,
                version=result.version if result else None,
                publisher=result.publisher if result else None,
                exit_code=exit_code,
            )
        )
        return
    detail = detail.removeprefix(f"{path}: ")  # errors about the file often name it too
    line = f"{printable(str(path))}: {outcome}: {printable(detail)}"
    click.echo(line, err=outcome == "refused")


@click.command("ls", epilog="Example: meshdrop --home ~/node ls --json")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per bundle.")
@click.option("--all", "show_all", is_flag=True, help="Also expired and withdrawn bundles.")
@click.pass_context
def list_bundles(ctx: click.Context, as_json: bool, show_all: bool) -> None:
    """List the verified bundles in the store, newest first. Expired bundles (kept until
    you delete them) and withdrawn ones (signed by a key the publisher reported
    compromised) are hidden unless --all."""
    with open_store(ctx) as store:
        bundles = store.list_bundles(include_hidden=show_all)
    if as_json:
        for b in bundles:
            emit_json(b.to_json())
        return
    for b in bundles:
        click.echo(
            f"{b.name:<24} v{b.version:<11} {human_size(b.size):>10}  {b.file_count:>5} files  "
            f"{format_time(b.created)}  {printable(b.title)}  [{printable(b.publisher_name)}]"
            + ("" if b.state == "ok" else f"  ({b.state})")
            + ("  (two copies of this version signed: see 'trust show')" if b.equivocated else "")
        )
    if not bundles:
        click.echo("no bundles stored yet")


@click.command(epilog="Example: meshdrop --home ~/node get news articles/passport.html -o p.html")
@click.argument("name")
@click.argument("path", required=False)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write: a file for one PATH, a new folder for a whole bundle.",
)
@click.option("--publisher", help="Fingerprint (or its start) when several publishers use NAME.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def get(
    ctx: click.Context,
    name: str,
    path: str | None,
    output: Path,
    publisher: str | None,
    quiet: bool,
) -> None:
    """Write verified content out: one file of bundle NAME, or the whole bundle as a folder.

    A whole bundle appears under OUTPUT only once all of it is written and synced. If get
    is interrupted (killed, power cut), a folder named .tmp-...-OUTPUT may be left beside
    OUTPUT: it is an incomplete copy, safe to delete."""
    from meshdrop.store.extract import find_file, write_bundle, write_file

    with open_store(ctx) as store:
        bundle = store.find_bundle(name, publisher)
        if path is not None:
            entry = find_file(store, bundle, path)
            with progress_bar(entry.size, path.rsplit("/", 1)[-1], quiet) as advance:
                target = write_file(store, bundle, entry, output, advance)
            click.echo(f"wrote {target} ({human_size(entry.size)})")
            return
        with progress_bar(bundle.size, name, quiet) as advance:
            count = write_bundle(store, bundle, output, advance)
    click.echo(f"wrote {count} files of {name} v{bundle.version} to {output}")


@click.command(epilog="Example: meshdrop --home ~/node fsck --repair")
@click.option("--repair", is_flag=True, help="Drop damaged bundles and leftover files.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def fsck(ctx: click.Context, repair: bool, as_json: bool, quiet: bool) -> None:
    """Re-verify every stored chunk against its hash and report damage. Exits non-zero if
    damage remains (without --repair)."""
    with open_store(ctx) as store:
        total = sum(b.size for b in store.list_bundles())
        with progress_bar(total, "checking", quiet) as advance:
            report = store.fsck(repair, advance)
    damaged = report.damaged_bundles or []
    if as_json:
        emit_json(
            {
                "chunks_checked": report.chunks_checked,
                "damaged_chunks": report.damaged_chunks,
                "damaged_bundles": damaged,
                "dropped_bundles": report.dropped_bundles,
                "orphans_removed": report.orphans_removed,
                "temp_files_removed": report.temp_files_removed,
            }
        )
    else:
        click.echo(f"checked {report.chunks_checked} chunks: {report.damaged_chunks} damaged")
        for name in damaged:
            verb = "dropped" if repair else "damaged"
            click.echo(f"{verb}: {name}")
        if repair:
            click.echo(
                f"removed {report.orphans_removed} unused chunks and "
                f"{report.temp_files_removed} leftover temporary files"
            )
        elif damaged:
            click.echo("run 'meshdrop fsck --repair' to drop them, then import them again")
    ctx.exit(0 if report.clean else 1)


@click.command("rm", epilog="Example: meshdrop --home ~/node rm news")
@click.argument("name")
@click.option("--publisher", help="Fingerprint (or its start) when several publishers use NAME.")
@click.pass_context
def remove(ctx: click.Context, name: str, publisher: str | None) -> None:
    """Delete bundle NAME from this node (expired ones too). The node still refuses older
    versions of it afterwards."""
    with open_store(ctx) as store:
        bundle = store.find_bundle(name, publisher)
        store.remove_bundle(bundle)
    click.echo(f"removed {name} v{bundle.version}")
