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
    plural,
    printable,
    progress_bar,
    read_publisher_file,
    withdrawal_line,
    withdrawal_reason,
)
from meshdrop.errors import MeshdropError, StoreError, UsageError
from meshdrop.store.models import ImportResult, Outcome, PartialImport, StoredBundle


def register(cli: click.Group) -> None:
    cli.add_command(import_bundles)
    cli.add_command(list_bundles)
    cli.add_command(get)
    cli.add_command(fsck)
    cli.add_command(remove)


IMPORTABLE_SUFFIXES = (".mdrop", ".pub", ".drop")


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
    keys, revocations); they never make it trust a new one. Drop files (*.drop: sealed
    reports) are checked and kept to pass on. One line per file: imported,
    already had, or refused with the reason; then one line per stored bundle that a new
    publisher record withdrew. A bad file never stops the others.

    Exit status: for one file, that file's own code (3 malformed, 4 signature or
    untrusted, 5 data mismatch, 6 older version or a second copy of one, 7 store);
    for several inputs (several paths, a folder, a stick), 1 if any was refused; 7
    whenever the store itself failed (a full disk)."""
    from meshdrop.cli.courier import import_couriers
    from meshdrop.store.batchimport import BatchImport, FileResult

    codes: list[int] = []  # the exit code of each input that was refused

    def report_all(results: list[FileResult]) -> None:
        for result in results:
            assert result.outcome is not None
            _report_outcome(as_json, result.path, result.outcome)
            if isinstance(result.outcome, MeshdropError):
                codes.append(result.outcome.exit_code)

    with open_store(ctx) as store:
        seen, failed, paths = import_couriers(store, paths, as_json, quiet)  # sticks
        codes += failed
        single = seen == 0 and len(paths) == 1 and not paths[0].is_dir()
        with BatchImport(store) as batch:
            for path in find_bundle_files(paths):
                seen += 1
                if path.suffix == ".drop":  # a sealed report: the drops' own ingest path
                    codes += _import_drop(as_json, store.home, path)
                    continue
                if path.suffix == ".pub":  # may change what the bundles after it need
                    report_all(batch.finish())
                    try:
                        outcome: ImportResult | MeshdropError = store.update_publisher(
                            read_publisher_file(path), str(path)
                        )
                    except MeshdropError as exc:
                        outcome = exc
                    report_all([FileResult(path, outcome)])
                    continue
                size = path.lstat().st_size if path.exists() else 0
                with progress_bar(size, path.name, quiet) as advance:
                    report_all(batch.add(path, advance))
            report_all(batch.finish())
    if seen == 0:
        raise UsageError("no .mdrop files found in " + ", ".join(str(p) for p in paths))
    ctx.exit(import_exit_code(codes, single))


def _import_drop(as_json: bool, home: Path, path: Path) -> list[int]:
    from meshdrop.cli.reports import import_drop_file

    try:
        outcome, detail = import_drop_file(home, path)
    except MeshdropError as exc:
        _report(as_json, path, "refused", str(exc), exit_code=exc.exit_code)
        return [exc.exit_code]
    _report(as_json, path, outcome, detail)
    return []


def import_exit_code(codes: list[int], single: bool) -> int:
    """README's rule: the store's own failure (7) whatever the inputs; one input file
    exits with its own code; several exit 1 if any was refused."""
    if StoreError.exit_code in codes:
        return StoreError.exit_code
    if single and codes:
        return codes[0]
    return 1 if codes else 0


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
    withdrawn = result.withdrawn if result else ()
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
                withdrawn=withdrawn,
            )
        )
        return
    detail = detail.removeprefix(f"{path}: ")  # errors about the file often name it too
    line = f"{printable(str(path))}: {outcome}: {printable(detail)}"
    click.echo(line, err=outcome == "refused")
    for withdrawal in withdrawn:
        click.echo(withdrawal_line(withdrawal))


@click.command("ls", epilog="Example: meshdrop --home ~/node ls --all")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per bundle (the summary is left out)."
)
@click.option(
    "--all", "show_all", is_flag=True, help="Also expired, withdrawn and partly imported bundles."
)
@click.pass_context
def list_bundles(ctx: click.Context, as_json: bool, show_all: bool) -> None:
    """List the verified bundles in the store, newest first. Expired bundles (kept until
    you delete them), withdrawn ones (signed by a key the publisher reported compromised,
    or after it retired the key) and partial imports (a stick or a sync cut short: what
    verified is kept for the rest) are not listed unless --all; a last line counts them."""
    with open_store(ctx) as store:
        bundles = store.list_bundles(include_hidden=True)
        partial = store.partial_imports()
        home = store.home.absolute()
    listed = [b for b in bundles if show_all or b.state == "ok"]
    hidden = [b for b in bundles if b.state != "ok"]
    if as_json:
        for b in listed:
            emit_json({**b.to_json(), "reason": hidden_reason(b)})
        for p in partial if show_all else []:
            emit_json(_partial_json(p))
        return
    for b in listed:
        click.echo(_bundle_line(b))
    for p in partial if show_all else []:
        click.echo(
            f"{printable(p.name):<24} v{p.version:<11} {human_size(p.size):>10}  "
            f"(partial import: {human_size(p.stored)} of {human_size(p.size)} stored, "
            f"{human_size(p.missing)} missing)"
        )
    if not listed and not (show_all and partial):
        what = "no bundles to read" if hidden or partial else "no bundles"
        click.echo(f"{what} in {printable(str(home))}")
    if not show_all and (hidden or partial):
        click.echo(not_listed_line(hidden, partial))


def _bundle_line(b: StoredBundle) -> str:
    line = (
        f"{printable(b.name):<24} v{b.version:<11} {human_size(b.size):>10}  "
        f"{plural(b.file_count, 'file'):>11}  "
        f"{format_time(b.created)}  {printable(b.title)}  [{printable(b.publisher_name)}]"
    )
    reason = hidden_reason(b)
    if b.state == "expired":
        line += f"  ({reason})"
    elif reason:
        line += f"  ({b.state}: {reason})"
    if b.equivocated:
        line += "  (two copies of this version signed: see 'trust show')"
    return line


def hidden_reason(bundle: StoredBundle) -> str | None:
    """Why a stored bundle is not listed (None if it is)."""
    if bundle.state == "expired":
        return f"expired on {format_time(bundle.expires)}"
    if bundle.state == "withdrawn":
        if bundle.withdrawal is None:  # its key's revocation is no longer in the chain
            return "signed by a revoked key"
        return withdrawal_reason(bundle.withdrawal)
    return None


def not_listed_line(hidden: list[StoredBundle], partial: list[PartialImport]) -> str:
    """'not listed: 2 withdrawn (302.0 MiB), 1 partial import (...)', the non-zero parts."""
    parts = []
    for state in ("withdrawn", "expired"):
        some = [b for b in hidden if b.state == state]
        if some:
            parts.append(f"{len(some)} {state} ({human_size(sum(b.size for b in some))})")
    if partial:
        stored = sum(p.stored for p in partial)
        size = sum(p.size for p in partial)
        parts.append(
            f"{plural(len(partial), 'partial import')} ({human_size(stored)} of "
            f"{human_size(size)} stored, {human_size(size - stored)} missing)"
        )
    return f"not listed: {', '.join(parts)}; 'meshdrop ls --all' shows them"


def _partial_json(partial: PartialImport) -> dict[str, object]:
    return {
        "publisher": partial.publisher,
        "name": partial.name,
        "version": partial.version,
        "size": partial.size,
        "stored": partial.stored,
        "missing": partial.missing,
        "state": "partial",
        "reason": f"partial: {partial.stored} of {partial.size} bytes stored",
    }


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
@click.option("--json", "as_json", is_flag=True, help="What was written, as one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def get(
    ctx: click.Context,
    name: str,
    path: str | None,
    output: Path,
    publisher: str | None,
    as_json: bool,
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
            count, size = 1, entry.size
        else:
            with progress_bar(bundle.size, name, quiet) as advance:
                count = write_bundle(store, bundle, output, advance)
            target, size = output, bundle.size
    if as_json:
        emit_json(
            {
                "path": str(target),
                "files": count,
                "bytes": size,
                "name": bundle.name,
                "version": bundle.version,
                "publisher": bundle.publisher,
            }
        )
    elif path is not None:
        click.echo(f"wrote {printable(str(target))} ({human_size(size)})")
    else:
        click.echo(
            f"wrote {plural(count, 'file')} of {printable(name)} v{bundle.version} "
            f"({human_size(size)}) to {printable(str(output))}"
        )


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
        click.echo(
            f"checked {plural(report.chunks_checked, 'chunk')}: {report.damaged_chunks} damaged"
        )
        for name in damaged:
            verb = "dropped" if repair else "damaged"
            click.echo(f"{verb}: {name}")
        if repair:
            click.echo(
                f"removed {plural(report.orphans_removed, 'unused chunk')} and "
                f"{plural(report.temp_files_removed, 'leftover temporary file')}"
            )
        elif damaged:
            click.echo("run 'meshdrop fsck --repair' to drop them, then import them again")
    ctx.exit(0 if report.clean else 1)


@click.command("rm", epilog="Example: meshdrop --home ~/node rm news --json")
@click.argument("name")
@click.option("--publisher", help="Fingerprint (or its start) when several publishers use NAME.")
@click.option("--json", "as_json", is_flag=True, help="What was removed, as one JSON object.")
@click.pass_context
def remove(ctx: click.Context, name: str, publisher: str | None, as_json: bool) -> None:
    """Delete bundle NAME from this node (expired ones too). The node still refuses older
    versions of it afterwards."""
    with open_store(ctx) as store:
        bundle = store.find_bundle(name, publisher)
        store.remove_bundle(bundle)
    if as_json:
        emit_json(
            {
                "removed": bundle.name,
                "version": bundle.version,
                "publisher": bundle.publisher,
                "bytes": bundle.size,
                "files": bundle.file_count,
            }
        )
        return
    click.echo(f"removed {printable(name)} v{bundle.version} ({human_size(bundle.size)})")
