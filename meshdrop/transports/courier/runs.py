"""A courier run as a whole, for any front end to report on: which of the paths given to
`import` are courier folders, importing one, exporting into one and counting what was
written, and the want file that tells the next node what this one lacks."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshdrop.errors import UsageError
from meshdrop.store.drops import DropStore
from meshdrop.store.store import Store
from meshdrop.transports.courier.blindexport import BlindMedium
from meshdrop.transports.courier.blindfolder import BlindKey, find_blind_folder
from meshdrop.transports.courier.blindimport import import_blind
from meshdrop.transports.courier.dropcarry import import_drops
from meshdrop.transports.courier.exporter import (
    CourierExport,
    ExportOptions,
    ExportProgress,
    ExportSummary,
)
from meshdrop.transports.courier.exportplan import Done
from meshdrop.transports.courier.importer import CourierImport
from meshdrop.transports.courier.layout import (
    DEFAULT_PART_SIZE,
    WANT_FILE,
    find_courier_folder,
    part_number,
)
from meshdrop.transports.courier.medium import Medium
from meshdrop.transports.courier.outcome import ProgressSink, Report
from meshdrop.transports.courier.want import MAX_HAVE, Want, stream_id, write_want

WRITTEN = (Done.WRITTEN, Done.REPLACED, Done.REPAIRED)


@dataclass(frozen=True)
class CourierSource:
    """What one courier import reads: a courier folder whole, or only ``files``, part
    files of bundles (given by name, or found in a folder that is no courier folder); a
    blind folder when ``key`` is set."""

    folder: Path
    files: tuple[Path, ...] = ()
    key: bytes | None = field(default=None, repr=False)


def split_courier_paths(
    paths: Iterable[Path], keys: Sequence[BlindKey] = ()
) -> tuple[list[CourierSource], tuple[Path, ...]]:
    """(courier folders, blind folders that one of ``keys`` opens, and part files among or
    inside ``paths``; the paths the plain importer reads: every path that is none of
    those)."""
    couriers: list[CourierSource] = []
    others: list[Path] = []
    loose: dict[Path, list[Path]] = {}  # part files by their folder: one import each
    for path in paths:
        folder = find_courier_folder(path)
        blind = find_blind_folder(path, keys)
        if folder is not None:
            couriers.append(CourierSource(folder))
        if blind is not None:
            couriers.append(CourierSource(blind[0], key=blind[1].key))
        if folder is not None or blind is not None:
            continue
        if part_number(path.name) is not None and not path.is_dir():
            loose.setdefault(path.parent, []).append(path)
        else:
            for part in _part_files_below(path):
                loose.setdefault(part.parent, []).append(part)
            others.append(path)
    couriers += [CourierSource(folder, tuple(files)) for folder, files in loose.items()]
    return couriers, tuple(others)


def _part_files_below(path: Path) -> list[Path]:
    """Part files (``pack --part-size`` writes them) in the folder ``path`` and below, as
    the plain importer searches for .mdrop files: links not followed, hidden files not."""
    if not path.is_dir() or path.is_symlink():
        return []
    found = []
    for folder, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        found += [
            Path(folder) / name
            for name in sorted(files)
            if part_number(name) is not None and not name.startswith(".")
        ]
    return found


def import_courier(
    store: Store, source: CourierSource, progress: ProgressSink | None = None
) -> list[Report]:
    """Import a courier folder, or the part files ``split_courier_paths`` found."""
    if source.key is not None:
        return import_blind(store, source.folder, source.key, progress)
    importer = CourierImport(store, progress)
    if source.files:
        return importer.run_files(list(source.files))
    reports = importer.run(source.folder)
    return reports + import_drops(DropStore(store.home), source.folder, store.now())


@dataclass(frozen=True)
class ExportResult:
    """An export's summary, and how many bundles came to each end."""

    summary: ExportSummary
    written: int  # written, replacing an older version, or written again
    written_bytes: int  # what was written now (parts already on the stick not counted)
    already_there: int
    left_out: int
    left_out_bytes: int
    failed: int
    exit_code: int  # 0, or the code of the first error that made a bundle fail

    @property
    def ok(self) -> bool:
        return not self.failed


def export_to(
    store: Store, folder: Path, options: ExportOptions, progress: ExportProgress | None = None
) -> ExportResult:
    """Export into the courier folder ``folder`` (blind if ``options.blind_key``) and count
    what was done."""
    medium: Medium | None = None
    if options.blind_key is not None:
        medium = BlindMedium(folder, options.blind_key, options.part_size)
    return tally_export(CourierExport(store, options, progress, medium).run(folder))


def tally_export(summary: ExportSummary) -> ExportResult:
    counts = Counter(report.done for report in summary.reports)
    codes = [r.exit_code or 1 for r in summary.reports if r.done is Done.FAILED]
    return ExportResult(
        summary,
        written=sum(counts[done] for done in WRITTEN),
        written_bytes=sum(r.written_bytes for r in summary.reports if r.done in WRITTEN),
        already_there=counts[Done.ALREADY_THERE],
        left_out=counts[Done.LEFT_OUT],
        left_out_bytes=sum(r.size for r in summary.reports if r.done is Done.LEFT_OUT),
        failed=counts[Done.FAILED],
        exit_code=codes[0] if codes else 0,
    )


def want_from_store(store: Store, publishers: Iterable[str], now: int) -> Want:
    """What the store holds of its trusted publishers (hashed names and versions), and the
    publishers (fingerprints or unique starts) it asks for first."""
    ids = {s.fingerprint: pid for pid, s in store.trusted().items()}
    wanted = frozenset(ids[store.resolve_publisher(p).fingerprint] for p in publishers)
    have: dict[bytes, int] = {}
    for b in store.list_bundles(include_hidden=True)[:MAX_HAVE]:
        if b.publisher in ids:
            sid = stream_id(ids[b.publisher], b.name)
            have[sid] = max(have.get(sid, 0), b.version)
    return Want(now, have, wanted)


def write_want_file(folder: Path, want: Want, key: bytes | None = None) -> tuple[Path, int]:
    """Write ``want`` into the courier folder ``folder``, made if need be (sealed in a
    blind folder for ``key``); returns the file's path and size."""
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make {folder} ({exc.strerror})") from exc
    if key is not None:
        medium = BlindMedium(folder, key, DEFAULT_PART_SIZE)
        medium.prepare()
        data = want.encode()
        medium.write_small(WANT_FILE, data)
        return folder, len(data)
    path = folder / WANT_FILE
    return path, write_want(path, want)
