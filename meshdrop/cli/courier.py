"""Courier commands: fill a stick (export), tell the next node's needs (want), watch for
sticks (watch); `import` hands courier folders and sticks to this module."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from meshdrop.cli.common import (
    bar_wanted,
    byte_bar,
    emit_json,
    human_size,
    import_line,
    open_store,
    plural,
    printable,
    withdrawal_line,
)
from meshdrop.cli.couriertarget import (
    blind_key_for,
    check_folder_name,
    courier_folder,
    drive_target,
)
from meshdrop.errors import MeshdropError, UsageError

if TYPE_CHECKING:
    from tqdm import tqdm

    from meshdrop.store.store import Store
    from meshdrop.transports.courier.exporter import ExportOptions

SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str, option: str) -> int:
    """Bytes from '4000000', '500M', '1.5GiB' (binary) or '2GB' (decimal)."""
    match = SIZE.fullmatch(text)
    if not match:
        raise UsageError(f"{option} {text!r} is not a size such as 500M, 4G or 1000000")
    number, prefix, unit = match.groups()
    base = 1000 if unit.lower() == "b" and prefix else 1024
    return int(float(number) * base ** _POWERS[prefix.lower()])


def register(cli: click.Group) -> None:
    cli.add_command(export)
    cli.add_command(want)
    cli.add_command(watch)


class CourierBar:
    """One progress bar on stderr for a whole import or export: bundles done, bytes,
    rate and time left (shown only when stderr is a terminal)."""

    def __init__(self, verb: str, quiet: bool) -> None:
        self.verb = verb
        self.quiet = quiet
        self.bar: tqdm[Any] | None = None
        self.items = 0
        self.done = 0

    def start(self, total_bytes: int, total_items: int) -> None:
        self.items = total_items
        if not bar_wanted(self.quiet):
            return
        self.bar = byte_bar(total_bytes, self._label())

    def _label(self) -> str:
        return f"{self.verb} {self.done}/{self.items} bundles"

    def advance(self, nbytes: int) -> None:
        if self.bar is not None:
            self.bar.update(nbytes)

    def _next(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_description(self._label(), refresh=False)

    def file_done(self) -> None:
        self._next()

    def bundle_done(self) -> None:
        self._next()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# Import (called by `meshdrop import` for courier folders and sticks)


def import_couriers(
    store: Store, paths: tuple[Path, ...], as_json: bool, quiet: bool
) -> tuple[int, list[int], tuple[Path, ...]]:
    """Import the courier folders among ``paths`` and print a line per report; returns
    (how many were courier folders, the exit code of each bundle that failed, the paths
    left for the plain importer)."""
    from meshdrop.transports.courier.blindfolder import keys_of_home
    from meshdrop.transports.courier.runs import import_courier, split_courier_paths

    couriers, others = split_courier_paths(paths, keys_of_home(store.home, int(time.time())))
    failed: list[int] = []
    for source in couriers:
        folder = source.folder
        bar = CourierBar("importing", quiet)
        try:
            reports = import_courier(store, source, bar)
        finally:
            bar.close()
        for report in reports:
            if report.status.failed:
                failed.append(report.code)
            if as_json:
                emit_json(
                    import_line(
                        report.files,
                        report.status.value,
                        report.detail,
                        folder=str(folder),
                        name=report.name,
                        version=report.version,
                        publisher=report.publisher,
                        exit_code=report.code,
                        withdrawn=report.withdrawn,
                    )
                )
            else:
                base = folder if folder.is_dir() else folder.parent
                where = printable(str(base / report.label)) if report.files else str(base)
                line = f"{where}: {report.status.value}: {printable(report.detail)}"
                click.echo(line, err=report.status.failed)  # like the plain import's refusals
                for withdrawal in report.withdrawn:
                    click.echo(withdrawal_line(withdrawal))
        if not reports and not as_json:
            click.echo(f"{folder}: nothing to import")
    return len(couriers), failed, others


# Export


def run_export(
    store: Store,
    folder: Path,
    options: ExportOptions,
    as_json: bool,
    quiet: bool,
) -> int:
    """Export into ``folder`` and print what happened; returns the exit code: 0 when done
    (bundles that did not fit were said so), else the code of what stopped a bundle."""
    from meshdrop.cli.exportreport import print_export
    from meshdrop.transports.courier.runs import export_to

    bar = CourierBar("exporting", quiet)
    try:
        result = export_to(store, folder, options, bar)
    finally:
        bar.close()
    print_export(result, folder, as_json)
    return result.exit_code


def export_options(
    publishers: tuple[str, ...],
    names: tuple[str, ...],
    max_bytes: str | None,
    reserve: str,
    part_size: str | None,
    check: bool,
    dry_run: bool = False,
) -> ExportOptions:
    from meshdrop.transports.courier.exporter import ExportOptions
    from meshdrop.transports.courier.layout import DEFAULT_PART_SIZE, FAT32_MAX_FILE

    size = parse_size(part_size, "--part-size") if part_size else DEFAULT_PART_SIZE
    if not 1024 * 1024 < size <= FAT32_MAX_FILE:
        raise UsageError(f"--part-size must be more than 1 MiB and less than 4 GiB, not {size}")
    return ExportOptions(
        publishers=publishers,
        names=names,
        max_bytes=parse_size(max_bytes, "--max-bytes") if max_bytes else None,
        reserve=parse_size(reserve, "--reserve"),
        part_size=size,
        check=check,
        dry_run=dry_run,
    )


@click.command(
    epilog="Example: meshdrop --home ~/node export /media/stick --max-bytes 8G --name 'news*'"
)
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--publisher", "publishers", multiple=True, help="Only this publisher (repeatable).")
@click.option(
    "--name", "names", multiple=True, help="Only bundles matching this glob (repeatable)."
)
@click.option(
    "--max-bytes", help="Most the bundles may take on DEST, e.g. 8G (copies already there count)."
)
@click.option("--reserve", default="16M", show_default=True, help="Free space to leave on DEST.")
@click.option(
    "--part-size",
    help="Split bundles bigger than this into parts of at most this size (default 512M; "
    "a stick pulled mid-export loses at most the part being written).",
)
@click.option(
    "--check", is_flag=True, help="Re-read copies already on DEST and rewrite damaged ones."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say what would be written and what does not fit; write nothing.",
)
@click.option("--circle", help="Write a blind folder for this circle (see above).")
@click.option("--open", "open_folder", is_flag=True, help="Write a readable (open) folder.")
@click.option("--folder", "folder_name", help="The blind folder's name on DEST (default: backup).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per bundle, then a summary.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def export(
    ctx: click.Context,
    dest: Path,
    publishers: tuple[str, ...],
    names: tuple[str, ...],
    max_bytes: str | None,
    reserve: str,
    part_size: str | None,
    check: bool,
    dry_run: bool,
    circle: str | None,
    open_folder: bool,
    folder_name: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write this node's bundles into a courier folder on DEST (DEST is a mounted stick
    or any folder), with its trusted publishers' files so revocations travel too.

    Blind or open: with --circle NAME the folder is blind (DEST/backup, or --folder):
    files of random names and a few sizes, encrypted for the circle, that only its
    members can find and read. A node in exactly one circle writes blind for it by
    default; a node in several must say --circle; a node in none, or with --open, writes
    the readable folder DEST/meshdrop that anyone can import.

    Run it again to top the stick up: bundles already there are skipped, older versions
    are replaced (the new one is written before the old one is removed), and damaged or
    cut-short copies are written again. What does not fit goes last: the publisher's
    priority, then the newest, decide; what the want file on the stick says the next node
    lacks goes first. Bundles over --part-size are split into parts, each written and
    synced on its own, so a stick pulled mid-export keeps every part finished before; the
    next export writes only the missing ones. It ends with "safe to remove" once all is
    synced. Exits 0 when done (even if some bundles did not fit: it says so), 2 if DEST is
    not a folder or the circle is unknown or not given, 7 if the stick is full, cannot
    be written or synced, or reads back other bytes than were written."""
    from dataclasses import replace

    options = export_options(publishers, names, max_bytes, reserve, part_size, check, dry_run)
    if folder_name is not None:
        check_folder_name(folder_name)
    with open_store(ctx) as store:
        key = blind_key_for(store.home, circle, open_folder)
        if folder_name is not None and key is None:
            raise UsageError("--folder names a blind folder: use it with a circle, not --open")
        folder = courier_folder(dest, key, folder_name)
        options = replace(options, blind_key=key)
        code = run_export(store, folder, options, as_json, quiet)
    ctx.exit(code)


# Want


@click.command(epilog="Example: meshdrop --home ~/node want /media/stick --publisher K7Q2-M3XD")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--publisher", "publishers", multiple=True, help="A publisher to ask for first (repeatable)."
)
@click.option("--circle", help="Seal it into this circle's blind folder (as export).")
@click.option("--open", "open_folder", is_flag=True, help="Write it readable (an open folder).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.pass_context
def want(
    ctx: click.Context,
    dest: Path,
    publishers: tuple[str, ...],
    circle: str | None,
    open_folder: bool,
    as_json: bool,
) -> None:
    """Write onto the stick at DEST a small summary of what this node has (and which
    publishers it asks for), so the node that fills the stick next puts what this node
    lacks first. It holds hashed names and versions only, at most 1 MiB. In a circle it
    is sealed into the circle's blind folder, as 'export' chooses."""
    from meshdrop.transports.courier.runs import want_from_store, write_want_file

    with open_store(ctx) as store:
        key = blind_key_for(store.home, circle, open_folder)
        folder = courier_folder(dest, key)
        entry = want_from_store(store, publishers, int(time.time()))
    path, size = write_want_file(folder, entry, key)
    if as_json:
        emit_json(
            {
                "path": str(path),
                "bundles": len(entry.have),
                "publishers": len(entry.publishers),
                "size": size,
            }
        )
        return
    click.echo(
        f"wrote {path}: {plural(len(entry.have), 'bundle')}, "
        f"{plural(len(entry.publishers), 'publisher')} asked for ({human_size(size)})"
    )


# Watch


@click.command(
    epilog="Example: meshdrop --home ~/node watch --max-bytes 16G --allow-drive KINGSTON"
)
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A folder where sticks appear (repeatable; default /media, /run/media, /mnt and, "
    "under Termux, /storage).",
)
@click.option("--max-bytes", help="Most the bundles may take on a stick, e.g. 8G.")
@click.option("--reserve", default="16M", show_default=True, help="Free space to leave on a stick.")
@click.option(
    "--allow-drive",
    "allowed",
    multiple=True,
    help="Also fill this drive (a label or path) although it has no courier folder.",
)
@click.option("--interval", default=5.0, show_default=True, help="Seconds between looks.")
@click.option("--part-size", hidden=True)
@click.option("--once", is_flag=True, help="Look once, handle what is there, and stop.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def watch(
    ctx: click.Context,
    roots: tuple[Path, ...],
    max_bytes: str | None,
    reserve: str,
    allowed: tuple[str, ...],
    interval: float,
    part_size: str | None,
    once: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Watch for sticks and SD cards. When one with a courier folder appears, import
    everything intact from it, then top it up with what it lacks (within --max-bytes,
    leaving --reserve free). A drive without a courier folder is never written to unless
    it is allowed with --allow-drive. Looks every --interval seconds (polling)."""
    from meshdrop.transports.courier.blindfolder import keys_of_home
    from meshdrop.transports.courier.watch import Watcher, default_roots

    options = export_options((), (), max_bytes, reserve, part_size, False)
    if interval < 0.1:
        raise UsageError("--interval must be at least 0.1 seconds")
    ok = True
    with open_store(ctx) as store:
        keys = keys_of_home(store.home, int(time.time()))
        watcher = Watcher(list(roots) or default_roots(), allowed, keys)
        while True:
            for drive in watcher.poll():
                ok = handle_drive(store, drive.path, drive.courier, options, as_json, quiet) and ok
            if once:
                break
            time.sleep(interval)
    ctx.exit(0 if ok else 1)


def handle_drive(
    store: Store,
    drive: Path,
    courier: Path | None,
    options: ExportOptions,
    as_json: bool,
    quiet: bool,
) -> bool:
    if not as_json:
        click.echo(f"stick: {printable(str(drive))}")
    try:
        failed: list[int] = []
        if courier is not None:
            _, failed, _ = import_couriers(store, (courier,), as_json, quiet)
        folder, options = drive_target(store, drive, courier, options)
        code = run_export(store, folder, options, as_json, quiet)
        ok = code == 0
        return ok and not failed
    except (MeshdropError, OSError) as exc:
        message = str(exc) if isinstance(exc, MeshdropError) else (exc.strerror or str(exc))
        if as_json:
            emit_json({"drive": str(drive), "error": message})
        else:
            click.echo(f"{printable(str(drive))}: error: {printable(message)}")
        return False
