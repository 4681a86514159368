"""A courier run as a whole, for any front end to report on: which of the paths given to
`import` are courier folders, importing one, exporting into one and counting what was
written, and the want file that tells the next node what this one lacks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from meshdrop.errors import UsageError
from meshdrop.store.store import Store
from meshdrop.transports.courier.exporter import (
    CourierExport,
    ExportOptions,
    ExportProgress,
    ExportSummary,
)
from meshdrop.transports.courier.exportplan import Done
from meshdrop.transports.courier.importer import CourierImport, ProgressSink, Report
from meshdrop.transports.courier.layout import WANT_FILE, find_courier_folder, part_number
from meshdrop.transports.courier.want import MAX_HAVE, Want, stream_id, write_want

WRITTEN = (Done.WRITTEN, Done.REPLACED, Done.REPAIRED)


def split_courier_paths(paths: Iterable[Path]) -> tuple[list[Path], tuple[Path, ...]]:
    """(courier folders among or inside ``paths``, the other paths)."""
    couriers: list[Path] = []
    others: list[Path] = []
    for path in paths:
        folder = find_courier_folder(path)
        if folder is None and part_number(path.name) is not None and not path.is_dir():
            folder = path  # a single part file given by name
        (couriers if folder is not None else others).append(folder or path)
    return couriers, tuple(others)


def import_courier(
    store: Store, source: Path, progress: ProgressSink | None = None
) -> list[Report]:
    """Import a courier folder, or the one part file ``split_courier_paths`` gave for it."""
    importer = CourierImport(store, progress)
    return importer.run(source) if source.is_dir() else importer.run_files([source])


@dataclass(frozen=True)
class ExportResult:
    """An export's summary, and how many bundles came to each end."""

    summary: ExportSummary
    written: int  # written, replacing an older version, or written again
    written_bytes: int
    already_there: int
    left_out: int
    failed: int

    @property
    def ok(self) -> bool:
        return not self.failed


def export_to(
    store: Store, folder: Path, options: ExportOptions, progress: ExportProgress | None = None
) -> ExportResult:
    """Export into the courier folder ``folder`` and count what was done."""
    return tally_export(CourierExport(store, options, progress).run(folder))


def tally_export(summary: ExportSummary) -> ExportResult:
    counts = Counter(report.done for report in summary.reports)
    return ExportResult(
        summary,
        written=sum(counts[done] for done in WRITTEN),
        written_bytes=sum(r.size for r in summary.reports if r.done in WRITTEN),
        already_there=counts[Done.ALREADY_THERE],
        left_out=counts[Done.LEFT_OUT],
        failed=counts[Done.FAILED],
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


def write_want_file(folder: Path, want: Want) -> tuple[Path, int]:
    """Write ``want`` into the courier folder ``folder``, made if need be; returns the
    file's path and size."""
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make {folder} ({exc.strerror})") from exc
    path = folder / WANT_FILE
    return path, write_want(path, want)
