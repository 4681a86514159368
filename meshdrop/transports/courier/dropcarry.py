"""Drops (sealed reports) on a stick: `export` copies the drops the node holds into the
courier folder's ``drops/`` sub-folder, and `import` (and the stick watcher) takes those
it finds there through the one ingest path for drops, ``DropStore.add``.

A drop file is named by its id: ``drops/<64 hex digits of the drop id>.drop`` (FORMAT.md
section 15). Export writes the drops newest first (by arrival at this node), after the
bundles, while they fit in the room the bundles left (free space less the reserve, and
--max-bytes) and while the stick's drops total at most ``DROPS_QUOTA``; a drop already on
the stick (same name, same size) is not written again, and one past its expiry is
removed. Import reads each file once (links, devices and files over the largest drop
size are refused unopened) and reports each refusal in one line; the rest go in.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from meshdrop.core.drops import HEADER_BYTES
from meshdrop.errors import DropExpiredError, MeshdropError, StoreError
from meshdrop.fs import TEMP_PREFIX, atomic_write, os_error_message
from meshdrop.store.drops import DROPS_QUOTA, FROM_STICK, DropStore, read_drop_file
from meshdrop.transports.courier.layout import DROP_SUFFIX, DROPS_FOLDER
from meshdrop.transports.courier.outcome import Report, Status

MAX_DROP_FILES = 2 * (DROPS_QUOTA // (16 * 1024))  # entries of drops/ looked at
MAX_REFUSAL_LINES = 20  # drops refused one line each, up to this; then a count
_NAME = re.compile(r"([0-9a-f]{64})\.drop")


def drop_file_name(ident: bytes) -> str:
    return ident.hex() + DROP_SUFFIX


@dataclass
class StickDrop:
    path: Path
    drop_id: bytes  # from the name: only a hint until the bytes are checked
    size: int


@dataclass
class DropExport:
    written: int = 0
    written_bytes: int = 0
    already_there: int = 0
    left_out: int = 0
    removed: int = 0  # past their expiry
    problems: list[str] = field(default_factory=list)

    def describe(self, dry_run: bool) -> str:
        verb = "would be written" if dry_run else "written"
        line = f"drops: {self.written} {verb} ({self.written_bytes} bytes), "
        line += f"{self.already_there} already there, {self.left_out} left out for want of room"
        if self.removed:
            line += f", {self.removed} past their expiry removed"
        return line


def find_drops_folder(courier: Path) -> Path | None:
    """The courier folder's ``drops`` sub-folder (any case: FAT may show capitals), or
    None; a link is never followed."""
    try:
        with os.scandir(courier) as entries:
            for entry in entries:
                if entry.name.lower() == DROPS_FOLDER and entry.is_dir(follow_symlinks=False):
                    return Path(entry.path)
    except OSError:
        return None
    return None


def scan_drops(folder: Path) -> tuple[list[StickDrop], int]:
    """The drop files in ``folder`` (regular files named as drops, by name), and how many
    other entries were passed over (at most ``MAX_DROP_FILES`` entries are looked at)."""
    found: list[StickDrop] = []
    skipped = 0
    try:
        with os.scandir(folder) as entries:
            for seen, entry in enumerate(entries):
                if seen >= MAX_DROP_FILES:
                    skipped += 1
                    break
                match = _NAME.fullmatch(entry.name.lower())
                try:
                    regular = entry.is_file(follow_symlinks=False)
                    size = entry.stat(follow_symlinks=False).st_size if regular else 0
                except OSError:
                    regular = False
                if match is None or not regular:
                    skipped += 1
                    continue
                found.append(StickDrop(Path(entry.path), bytes.fromhex(match.group(1)), size))
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"reading {folder}")) from exc
    found.sort(key=lambda d: d.path.name.lower())
    return found, skipped


def export_drops(
    drops: DropStore,
    courier: Path,
    room: int,
    now: int,
    dry_run: bool = False,
    on_written: Callable[[Path], None] = lambda path: None,
) -> DropExport:
    """Copy the held drops into ``courier``/drops/ as the module says, within ``room``
    bytes of new writes; ``on_written`` is told each file written (the export's
    read-back samples it)."""
    result = DropExport()
    folder = find_drops_folder(courier) or courier / DROPS_FOLDER
    on_stick: dict[bytes, int] = {}
    if folder.is_dir():
        if not dry_run:
            _remove_temps(folder)
        for stick_drop in scan_drops(folder)[0]:
            if _expired(stick_drop.path, now):
                result.removed += 1
                if not dry_run:
                    _unlink(stick_drop.path, result)
            else:
                on_stick[stick_drop.drop_id] = stick_drop.size

    def write(ident: bytes) -> bool:
        return _write(drops, folder, ident, result, on_written)

    fill_drops(drops, on_stick, room, now, result, None if dry_run else write)
    return result


def fill_drops(
    drops: DropStore,
    on_stick: dict[bytes, int],
    room: int,
    now: int,
    result: DropExport,
    write: Callable[[bytes], bool] | None,
) -> None:
    """Choose the held drops to copy (``on_stick``: the sizes of those already there, by
    id) and ``write`` each (None: a dry run), as the module says."""
    total = sum(on_stick.values())
    for stored in drops.held():
        if on_stick.get(stored.drop_id) == stored.size:
            result.already_there += 1
            continue
        if stored.expiry <= now:
            continue
        if result.written_bytes + stored.size > room or total + stored.size > DROPS_QUOTA:
            result.left_out += 1
            continue
        if write is not None and not write(stored.drop_id):
            continue
        result.written += 1
        result.written_bytes += stored.size
        total += stored.size


def _write(
    drops: DropStore,
    folder: Path,
    ident: bytes,
    result: DropExport,
    on_written: Callable[[Path], None],
) -> bool:
    blob = drops.read(ident)
    if blob is None:
        return False  # acknowledged or evicted meanwhile
    path = folder / drop_file_name(ident)
    try:
        folder.mkdir(exist_ok=True)
        atomic_write(path, blob)
    except OSError as exc:
        result.problems.append(os_error_message(exc, f"writing a drop into {folder}"))
        return False
    on_written(path)
    return True


def _expired(path: Path, now: int) -> bool:
    try:
        with path.open("rb") as handle:
            header = handle.read(HEADER_BYTES)
    except OSError:
        return False
    return header_expired(header, now)


def header_expired(header: bytes, now: int) -> bool:
    """Whether a drop whose first bytes are ``header`` is past its expiry."""
    return len(header) == HEADER_BYTES and int.from_bytes(header[1:], "big") <= now


def _unlink(path: Path, result: DropExport) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        result.problems.append(os_error_message(exc, f"removing {path.name}"))


def _remove_temps(folder: Path) -> None:
    """Temp files an export cut short left in drops/ (fs.atomic_write's)."""
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.name.startswith(TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    path.unlink()


def import_drops(drops: DropStore, courier: Path, now: int) -> list[Report]:
    """Take the drops in ``courier``/drops/ through ``DropStore.add``: a report line per
    refused drop (up to ``MAX_REFUSAL_LINES``), and one line of counts."""
    folder = find_drops_folder(courier)
    if folder is None:
        return []
    found, _skipped = scan_drops(folder)
    items = [(f"{folder.name}/{d.path.name}", partial(read_drop_file, d.path)) for d in found]
    return take_drops(drops, items, folder.name, now)


def take_drops(
    drops: DropStore, items: Sequence[tuple[str, Callable[[], bytes]]], where: str, now: int
) -> list[Report]:
    """Each drop of ``items`` (a label and how to read its bytes) through ``DropStore.add``,
    reported as ``import_drops`` says (``where`` names them together)."""
    reports: list[Report] = []
    taken = already = expired = refused = 0
    for label, read in items:
        try:
            stored = drops.add(read(), now, FROM_STICK)
        except DropExpiredError:
            expired += 1
            continue
        except MeshdropError as exc:
            refused += 1
            if refused <= MAX_REFUSAL_LINES:
                reports.append(Report([label], Status.REFUSED, str(exc), exit_code=exc.exit_code))
            continue
        if stored is None:
            already += 1
        else:
            taken += 1
    if refused > MAX_REFUSAL_LINES:
        more = refused - MAX_REFUSAL_LINES
        reports.append(Report([], Status.REFUSED, f"{more} more drops refused"))
    if taken or already:
        detail = f"{taken} drops (sealed reports) taken in to pass on"
        if already:
            detail += f", {already} already held or delivered"
        reports.append(Report([where], Status.IMPORTED, detail))
    if expired:
        reports.append(Report([where], Status.SKIPPED, f"{expired} drops past their expiry"))
    return reports
