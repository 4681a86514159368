"""Filling a courier folder from the store, and topping it up on later runs: reads what the
stick holds (``stickstate.py``), asks ``exportplan.py`` what to write, and writes it.

An older version is replaced by writing the new one first, and only then removing the
old one, so a pulled stick always holds a complete copy of what it held. Every file is
written under a temporary name, fsynced and renamed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from meshdrop.core.bundle import parse_publisher_file
from meshdrop.core.trust import advance_state
from meshdrop.errors import MeshdropError, StoreError
from meshdrop.fs import DurableBatch, atomic_write, open_regular_file, read_exactly
from meshdrop.store.export import (
    ChunkReader,
    load_exportable,
    publisher_file,
    write_bundle_data,
)
from meshdrop.store.models import StoredBundle
from meshdrop.store.store import Store
from meshdrop.transports.courier.exportplan import (
    BundleWrite,
    Done,
    ExportReport,
    plan_export,
    report,
    select_bundles,
)
from meshdrop.transports.courier.layout import DEFAULT_PART_SIZE, publisher_file_name
from meshdrop.transports.courier.parts import refs_in_range
from meshdrop.transports.courier.scan import scan_folder
from meshdrop.transports.courier.stickstate import StickState, read_stick
from meshdrop.transports.courier.want import Want, read_want

DEFAULT_RESERVE = 16 * 1024 * 1024
MAX_PUB_BYTES = 16 * 1024 * 1024
BATCH_BYTES = 64 * 1024 * 1024  # written before each sync: bounds what a pulled stick loses
BATCH_FILES = 256


@dataclass(frozen=True)
class ExportOptions:
    publishers: tuple[str, ...] = ()  # fingerprints or unique starts
    names: tuple[str, ...] = ()  # shell-style globs
    max_bytes: int | None = None
    reserve: int = DEFAULT_RESERVE
    part_size: int = DEFAULT_PART_SIZE
    check: bool = False  # re-read every copy already on the stick


@dataclass
class ExportSummary:
    reports: list[ExportReport] = field(default_factory=list)
    publishers_written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.done is Done.FAILED for r in self.reports)


class ExportProgress(Protocol):
    """Told about bytes written and bundles finished (the CLI draws a bar from it)."""

    def start(self, total_bytes: int, total_bundles: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def bundle_done(self) -> None: ...


class _Silent:
    def start(self, total_bytes: int, total_bundles: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def bundle_done(self) -> None:
        pass


class CourierExport:
    def __init__(
        self, store: Store, options: ExportOptions, progress: ExportProgress | None = None
    ) -> None:
        self.store = store
        self.options = options
        self.progress: ExportProgress = progress or _Silent()

    def run(self, folder: Path) -> ExportSummary:
        summary = ExportSummary()
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot make the courier folder {folder} ({exc.strerror})") from exc
        for temp in _remove_temps(folder):
            summary.notes.append(f"removed {temp}, left by an export that was cut short")
        stick = read_stick(folder, self.options.check)
        want = self._want(stick, summary)
        fingerprints = self._publishers()
        summary.publishers_written = self._write_publishers(folder, fingerprints)
        plan = plan_export(
            (load_exportable(self.store, b) for b in self._select(fingerprints, want)),
            stick,
            part_size=self.options.part_size,
            max_bytes=self.options.max_bytes,
            reserve=self.options.reserve,
            free=_free_space(folder),
        )
        summary.reports.extend(plan.reports)
        self.progress.start(sum(w.size for w in plan.writes), len(plan.writes))
        with ChunkReader(self.store) as reader:
            self._write_all(folder, plan.writes, reader, summary)
        return summary

    # Choosing

    def _publishers(self) -> list[str]:
        trusted = [p.fingerprint for p in self.store.trust_list()]
        if not self.options.publishers:
            return trusted
        chosen = {self.store.resolve_publisher(p).fingerprint for p in self.options.publishers}
        return sorted(chosen)

    def _want(self, stick: StickState, summary: ExportSummary) -> Want | None:
        if stick.want_path is None:
            return None
        try:
            return read_want(stick.want_path)
        except MeshdropError as exc:
            summary.notes.append(f"ignored the want file: {exc}")
            return None

    def _select(self, fingerprints: list[str], want: Want | None) -> list[StoredBundle]:
        ids = {state.fingerprint: pid for pid, state in self.store.trusted().items()}
        return select_bundles(
            self.store.list_bundles(), set(fingerprints), self.options.names, want, ids
        )

    # Writing

    def _write_all(
        self,
        folder: Path,
        writes: list[BundleWrite],
        reader: ChunkReader,
        summary: ExportSummary,
    ) -> None:
        """Write the bundles' files in batches (many small bundles, or one big one, per
        sync). Only once a batch is durable are the copies it supersedes removed: the stick
        always holds a complete copy of what it held."""
        batch = DurableBatch()
        written: list[tuple[BundleWrite, ExportReport | None]] = []
        batch_bytes = 0
        try:
            for write in writes:
                failure = self._write(folder, write, reader, batch)
                written.append((write, failure))
                batch_bytes += write.size
                self.progress.bundle_done()
                if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_FILES:
                    self._commit(folder, batch, written, summary)
                    written, batch_bytes = [], 0
            self._commit(folder, batch, written, summary)
        finally:
            batch.abort()  # what is left after an error: temp files only

    def _write(
        self, folder: Path, write: BundleWrite, reader: ChunkReader, batch: DurableBatch
    ) -> ExportReport | None:
        """Write the bundle's files into the batch; a report if that failed."""
        item = write.item
        refs = item.manifest.chunk_refs()
        started: list[int] = []
        try:
            for file in write.to_write:
                fd = batch.create(folder / file.name)
                started.append(fd)
                write_bundle_data(
                    reader,
                    item,
                    fd,
                    head=file.head,
                    refs=refs_in_range(refs, file.start, file.end),
                    progress=self.progress.advance,
                )
        except MeshdropError as exc:
            for fd in started:
                batch.discard(fd)
            return report(item, Done.FAILED, str(exc), write.size, write.names)
        return None

    def _commit(
        self,
        folder: Path,
        batch: DurableBatch,
        written: list[tuple[BundleWrite, ExportReport | None]],
        summary: ExportSummary,
    ) -> None:
        try:
            batch.commit()
        except MeshdropError as exc:
            for write, failure in written:
                summary.reports.append(
                    failure or report(write.item, Done.FAILED, str(exc), write.size, write.names)
                )
            return
        for write, failure in written:
            summary.reports.append(failure or self._finish(folder, write, summary))

    def _finish(self, folder: Path, write: BundleWrite, summary: ExportSummary) -> ExportReport:
        for name in write.superseded:
            try:
                (folder / name).unlink()
                summary.removed.append(name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                summary.notes.append(f"could not remove {name} ({exc.strerror})")
        detail = ", ".join(write.names)
        if write.done is Done.REPLACED and write.superseded:
            detail += " (removed " + ", ".join(write.superseded) + ")"
        return report(write.item, write.done, detail, write.size, write.names)

    def _write_publishers(self, folder: Path, fingerprints: list[str]) -> list[str]:
        """Each trusted publisher's verified chain, unless the stick carries a newer valid
        chain of it already (which must travel on: it may hold a revocation)."""
        written = []
        for fingerprint in fingerprints:
            data = publisher_file(self.store, fingerprint)
            target = folder / publisher_file_name(fingerprint)
            existing = _read_small(target)
            if existing == data or self._stick_newer(fingerprint, existing):
                continue
            atomic_write(target, data)
            written.append(target.name)
        return written

    def _stick_newer(self, fingerprint: str, existing: bytes | None) -> bool:
        if existing is None:
            return False
        state = self.store.publisher_state(fingerprint)
        try:
            chain = parse_publisher_file(existing, "a publisher file on the stick")
        except MeshdropError:
            return False
        newer, _problem = advance_state(state, chain)
        return newer.version > state.version


def _read_small(path: Path) -> bytes | None:
    try:
        fd = open_regular_file(path)
    except MeshdropError:
        return None
    try:
        return read_exactly(fd, MAX_PUB_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


def _remove_temps(folder: Path) -> list[str]:
    removed = []
    for path in scan_folder(folder).temps:
        try:
            path.unlink()
            removed.append(path.name)
        except OSError:
            pass
    return removed


def _free_space(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0
