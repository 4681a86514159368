"""Filling a courier folder from the store, and topping it up on later runs: reads what the
stick holds (``stickstate.py``), asks ``exportplan.py`` what to write, and writes it.

An older version is replaced by writing the new one first, and only then removing the
old one, so a pulled stick always holds a complete copy of what it held. Every file is
written under a temporary name, fsynced and renamed; once all is synced, samples of each
are read back from the stick (readback.py): a stick that returns other bytes is named.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from meshdrop.core.bundle import parse_publisher_file
from meshdrop.core.manifest import ChunkRef
from meshdrop.core.trust import advance_state
from meshdrop.errors import MeshdropError, StoreError
from meshdrop.fs import (
    DurableBatch,
    fsync_dir,
    os_error_message,
)
from meshdrop.store.crashpoints import crash_point
from meshdrop.store.drops import DropStore
from meshdrop.store.export import (
    ChunkReader,
    load_exportable,
    publisher_file,
)
from meshdrop.store.models import StoredBundle
from meshdrop.store.store import Store
from meshdrop.transports.courier.dropcarry import DropExport
from meshdrop.transports.courier.exportplan import (
    BundleWrite,
    Done,
    ExportReport,
    FileToWrite,
    plan_export,
    report,
    select_bundles,
)
from meshdrop.transports.courier.layout import DEFAULT_PART_SIZE, publisher_file_name
from meshdrop.transports.courier.medium import Medium, OpenMedium
from meshdrop.transports.courier.parts import refs_in_range
from meshdrop.transports.courier.readback import SampledBatch, fake_capacity_error
from meshdrop.transports.courier.scan import scan_folder
from meshdrop.transports.courier.stickstate import StickState
from meshdrop.transports.courier.want import Want

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
    dry_run: bool = False  # decide and report, write nothing
    blind_key: bytes | None = field(default=None, repr=False)  # write a blind folder


@dataclass
class ExportSummary:
    reports: list[ExportReport] = field(default_factory=list)
    publishers_written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    drops: DropExport | None = None  # the drops (sealed reports) copied, after the bundles
    dry_run: bool = False
    free: int = 0  # bytes free on the stick before writing
    synced: bool = False  # everything written is on the device: safe to remove

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
        self,
        store: Store,
        options: ExportOptions,
        progress: ExportProgress | None = None,
        medium: Medium | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.progress: ExportProgress = progress or _Silent()
        self.medium = medium

    def run(self, folder: Path) -> ExportSummary:
        """Export into ``folder``; with ``dry_run``, only decide, and write nothing."""
        summary = ExportSummary(dry_run=self.options.dry_run)
        medium = self.medium = self.medium or OpenMedium(folder)
        if not summary.dry_run:
            medium.prepare()
        exists = folder.is_dir()
        temps = scan_folder(folder).temps if exists else []
        for temp in temps if summary.dry_run else _remove_temps(temps):
            verb = "would remove" if summary.dry_run else "removed"
            summary.notes.append(f"{verb} {temp.name}, left by an export that was cut short")
        stick = medium.read_stick(self.options.check) if exists else StickState()
        want = self._want(stick, summary)
        fingerprints = self._publishers()
        new_publishers = self._publishers_to_write(fingerprints)
        summary.publishers_written = [name for name, _ in new_publishers]
        summary.free = _free_space(folder if exists else folder.parent)
        plan = plan_export(
            (load_exportable(self.store, b) for b in self._select(fingerprints, want)),
            stick,
            part_size=medium.part_size(self.options.part_size),
            on_disk=medium.on_disk,
            max_bytes=self.options.max_bytes,
            reserve=self.options.reserve,
            free=summary.free,
        )
        summary.reports.extend(plan.reports)
        planned = sum(w.size for w in plan.writes)
        if summary.dry_run:
            summary.reports.extend(_planned(write) for write in plan.writes)
            self._drops(folder, summary, planned)
            return summary
        for name, data in new_publishers:
            medium.write_small(name, data)
        self.progress.start(sum(w.size for w in plan.writes), len(plan.writes))
        with ChunkReader(self.store) as reader:
            self._write_all(folder, plan.writes, reader, summary)
        self._drops(folder, summary, planned)
        if not summary.failed:
            _sync(folder)
            summary.synced = True
        self._check_read_back(summary)
        return summary

    def _check_read_back(self, summary: ExportSummary) -> None:
        """Raise if the stick returns other bytes than were written to it (the files
        that do are removed: what is left reads back as written)."""
        assert self.medium is not None
        bad = self.medium.readback.check()
        if not bad:
            return
        summary.synced = False
        removed = 0
        for path in bad:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        with contextlib.suppress(StoreError):
            _sync(bad[0].parent)
        raise fake_capacity_error(bad, removed)

    def _drops(self, folder: Path, summary: ExportSummary, planned: int) -> None:
        """The held drops, in the room the bundles left (dropcarry.py)."""
        room = summary.free - self.options.reserve - planned
        if self.options.max_bytes is not None:
            room = min(room, self.options.max_bytes - planned)
        drops = DropStore(self.store.home)
        assert self.medium is not None
        done = self.medium.export_drops(drops, max(0, room), self.store.now(), summary.dry_run)
        summary.drops = done
        if done.written or done.already_there or done.left_out or done.removed:
            summary.notes.append(done.describe(summary.dry_run))
        summary.notes.extend(done.problems)

    # Choosing

    def _publishers(self) -> list[str]:
        trusted = [p.fingerprint for p in self.store.trust_list()]
        if not self.options.publishers:
            return trusted
        chosen = {self.store.resolve_publisher(p).fingerprint for p in self.options.publishers}
        return sorted(chosen)

    def _want(self, stick: StickState, summary: ExportSummary) -> Want | None:
        assert self.medium is not None
        try:
            return self.medium.read_want(stick)
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
        """Write the bundles' files in batches (many small bundles per sync), and commit
        each part of a split bundle on its own: a pulled stick keeps every part finished
        before it. Only once a bundle's files are all durable are the copies it supersedes
        removed: the stick always holds a complete copy of what it held."""
        assert self.medium is not None
        batch = SampledBatch(self.medium.readback)
        waiting: list[tuple[BundleWrite, ExportReport | None]] = []  # reported at commit
        batch_bytes = 0
        try:
            for write in writes:
                failure: ExportReport | None = None
                refs = write.item.manifest.chunk_refs() if write.to_write else []
                for file in write.to_write:
                    failure = self._write_file(folder, write, file, refs, reader, batch)
                    if failure is not None:
                        break
                    batch_bytes += file.size
                    if file.part or batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_FILES:
                        problem = self._commit(folder, batch, waiting, summary)
                        waiting, batch_bytes = [], 0
                        if problem is not None:
                            failure = _failed(write, problem)
                            break
                waiting.append((write, failure))
                self.progress.bundle_done()
            self._commit(folder, batch, waiting, summary)
        finally:
            batch.abort()  # what is left after an error: temp files only

    def _write_file(
        self,
        folder: Path,
        write: BundleWrite,
        file: FileToWrite,
        refs: list[ChunkRef],
        reader: ChunkReader,
        batch: DurableBatch,
    ) -> ExportReport | None:
        """Write one file of the bundle into the batch; a report if that failed (files of
        the bundle written before it stay: each is whole)."""
        item = write.item
        point = f"courier-export-part-{file.part}"

        def advance(nbytes: int) -> None:
            self.progress.advance(nbytes)
            crash_point(point)

        assert self.medium is not None
        try:
            self.medium.write_file(
                batch, file, item, reader, refs_in_range(refs, file.start, file.end), advance
            )
        except MeshdropError as exc:
            return _failed(write, exc)
        return None

    def _commit(
        self,
        folder: Path,
        batch: DurableBatch,
        waiting: list[tuple[BundleWrite, ExportReport | None]],
        summary: ExportSummary,
    ) -> MeshdropError | None:
        """Make the batch durable and report the bundles whose files were all in it; the
        error if that failed."""
        try:
            batch.commit()
        except MeshdropError as exc:
            for write, failure in waiting:
                summary.reports.append(failure or _failed(write, exc))
            return exc
        for write, failure in waiting:
            summary.reports.append(failure or self._finish(folder, write, summary))
        return None

    def _finish(self, folder: Path, write: BundleWrite, summary: ExportSummary) -> ExportReport:
        assert self.medium is not None
        for file in write.to_write:
            self.medium.written(file.name)
        for name in write.superseded:
            try:
                self.medium.remove(name)
                summary.removed.append(name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                summary.notes.append(f"could not remove {name} ({exc.strerror})")
        detail = ", ".join(write.names)
        if write.done is Done.REPLACED and write.superseded:
            detail += " (removed " + ", ".join(write.superseded) + ")"
        return _written_report(write, detail)

    def _publishers_to_write(self, fingerprints: list[str]) -> list[tuple[str, bytes]]:
        """Each trusted publisher's verified chain, unless the stick carries a newer valid
        chain of it already (which must travel on: it may hold a revocation)."""
        assert self.medium is not None
        writes = []
        for fingerprint in fingerprints:
            data = publisher_file(self.store, fingerprint)
            name = publisher_file_name(fingerprint)
            existing = self.medium.existing(name, MAX_PUB_BYTES)
            if existing == data or self._stick_newer(fingerprint, existing):
                continue
            writes.append((name, data))
        return writes

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


def _remove_temps(temps: list[Path]) -> list[Path]:
    removed = []
    for path in temps:
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def _failed(write: BundleWrite, exc: MeshdropError) -> ExportReport:
    failed = report(write.item, Done.FAILED, str(exc), write.size, write.names)
    failed.exit_code = exc.exit_code
    return failed


def _planned(write: BundleWrite) -> ExportReport:
    """What a dry run says of a bundle it would write."""
    return _written_report(write, ", ".join(write.names))


def _written_report(write: BundleWrite, detail: str) -> ExportReport:
    to_write = write.to_write
    if write.keep:
        kept = len(write.keep)
        detail += f" (kept {kept} {'part' if kept == 1 else 'parts'} already on the stick)"
    done = report(write.item, write.done, detail, write.size, write.names)
    done.written_files = [f.name for f in to_write]
    done.written_bytes = sum(f.size for f in to_write)
    return done


def _sync(folder: Path) -> None:
    """Make what the export did durable: the files and renames are (DurableBatch), but
    not the removals; and a removable drive's own cache is flushed only by a sync. A
    sync that fails is the export's failure: the stick may not hold what was written."""
    try:
        fsync_dir(folder)
        os.sync()
    except OSError as exc:
        raise StoreError(
            os_error_message(exc, f"syncing {folder}")
            + ": the stick may not hold what was written; do not remove it, run export again"
        ) from exc


def _free_space(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0
