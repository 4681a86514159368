"""Importing a blind courier folder: each blind file is decrypted as it is read (never
written out in plaintext) and then goes through exactly the code an open folder's file of
the same inner name goes through (importer.py, dropcarry.py): one verified ingest path."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from meshdrop.core.blind import Kind
from meshdrop.core.drops import MAX_DROP_BYTES
from meshdrop.errors import BlindFileError, DropOversizedError, FormatError
from meshdrop.store.drops import DropStore
from meshdrop.store.store import Store
from meshdrop.transports.courier.blindfolder import BlindEntry, BlindScan, scan_blind
from meshdrop.transports.courier.dropcarry import take_drops
from meshdrop.transports.courier.importer import MAX_JUNK_REPORTS, CourierImport
from meshdrop.transports.courier.layout import DROPS_FOLDER
from meshdrop.transports.courier.outcome import ProgressSink, Report, Status
from meshdrop.transports.courier.reader import CourierFile
from meshdrop.transports.courier.scan import Scan


class BlindImport(CourierImport):
    def __init__(self, store: Store, blind: BlindScan, progress: ProgressSink | None = None):
        super().__init__(store, progress)
        self.blind = blind
        self._inner = {e.path: e for e in blind.entries}

    def run_blind(self) -> list[Report]:
        blind = self.blind
        for path, why in blind.refused[:MAX_JUNK_REPORTS]:
            self.reports.append(
                Report([path.name], Status.REFUSED, why, exit_code=BlindFileError.exit_code)
            )
        self.junk += len(blind.refused)
        scan = Scan(
            blind.folder,
            bundles=[e.path for e in blind.of_kind(Kind.BUNDLE, Kind.PART)],
            publishers=[e.path for e in blind.of_kind(Kind.PUBLISHER)],
            temps=blind.temps,
            not_regular=blind.not_regular,
            skipped=blind.skipped,
            capped=blind.capped,
        )
        return self._run(scan)

    def _entry(self, path: Path) -> BlindEntry:
        return self._inner[path]

    def _label(self, path: Path) -> str:
        entry = self._inner.get(path)
        return path.name if entry is None else entry.name

    def _open(self, path: Path) -> CourierFile:
        return self.blind.open_courier(self._entry(path))

    def _read_small(self, path: Path, limit: int, what: str) -> bytes:
        entry = self._entry(path)
        if entry.header.length > limit:
            raise FormatError(f"{entry.name} is too large to be a {what}")
        with self.blind.open(entry) as reader:
            return reader.read_all()


def _read_drop(blind: BlindScan, entry: BlindEntry) -> bytes:
    if entry.header.length > MAX_DROP_BYTES:
        raise DropOversizedError(f"the drop is over the limit of {MAX_DROP_BYTES} bytes")
    with blind.open(entry) as reader:
        return reader.read_all()


def import_blind(
    store: Store, folder: Path, key: bytes, progress: ProgressSink | None = None
) -> list[Report]:
    """Import the blind folder ``folder`` sealed under ``key``: its bundles, publisher
    files and drops."""
    blind = scan_blind(folder, key)
    reports = BlindImport(store, blind, progress).run_blind()
    drops = [(e.name, partial(_read_drop, blind, e)) for e in blind.of_kind(Kind.DROP)]
    return reports + take_drops(DropStore(store.home), drops, DROPS_FOLDER, store.now())
