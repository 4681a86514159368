"""Filling a courier folder from the store, and topping it up on later runs.

What is on the stick is looked at first (without trusting it): a complete copy of a bundle
is left alone, an older version is replaced (the new one is written first, and only then
is the old one removed), and a damaged or cut-short copy is written again. Bundles go in
order (what the want file says the destination lacks, then the publisher's priority, then
newest) while they fit in --max-bytes and in the free space less the reserve; the rest are
reported as left out. Every file is written under a temporary name, fsynced and renamed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

from meshdrop.core.bundle import parse_publisher_file
from meshdrop.core.manifest import parse_manifest, verify_chunk
from meshdrop.core.trust import advance_state
from meshdrop.errors import FormatError, MeshdropError, StoreError
from meshdrop.fs import DurableBatch, atomic_write, open_regular_file, read_exactly
from meshdrop.store.export import (
    ChunkReader,
    ExportableBundle,
    load_exportable,
    publisher_file,
    write_bundle_data,
)
from meshdrop.store.models import StoredBundle
from meshdrop.store.store import Store
from meshdrop.transports.courier.layout import (
    DEFAULT_PART_SIZE,
    bundle_file_name,
    part_file_name,
    publisher_file_name,
)
from meshdrop.transports.courier.parts import (
    PartHeader,
    encode_part_header,
    plan_parts,
    refs_in_range,
)
from meshdrop.transports.courier.reader import open_courier_file
from meshdrop.transports.courier.scan import scan_folder
from meshdrop.transports.courier.want import Want, read_want

DEFAULT_RESERVE = 16 * 1024 * 1024
MAX_PUB_BYTES = 16 * 1024 * 1024
BATCH_BYTES = 64 * 1024 * 1024  # written before each sync: bounds what a pulled stick loses
BATCH_FILES = 256


class Done(Enum):
    WRITTEN = "written"
    REPLACED = "written, replacing an older version"
    REPAIRED = "written again (the copy on the stick was damaged or incomplete)"
    ALREADY_THERE = "already there"
    STICK_NEWER = "the stick has a newer version"
    LEFT_OUT = "left out"
    FAILED = "failed"


@dataclass(frozen=True)
class ExportOptions:
    publishers: tuple[str, ...] = ()  # fingerprints or unique starts
    names: tuple[str, ...] = ()  # shell-style globs
    max_bytes: int | None = None
    reserve: int = DEFAULT_RESERVE
    part_size: int = DEFAULT_PART_SIZE
    check: bool = False  # re-read every copy already on the stick


@dataclass
class ExportReport:
    name: str
    version: int
    publisher: str
    done: Done
    detail: str
    size: int
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "publisher": self.publisher,
            "outcome": self.done.value,
            "detail": self.detail,
            "size": self.size,
            "files": self.files,
        }


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


@dataclass
class _StickFile:
    name: str
    manifest_hash: bytes
    publisher: bytes
    bundle: str
    version: int
    part: PartHeader | None
    complete: bool  # the right size (and, with --check, every chunk verified)
    size: int  # of this file
    data_size: int  # of the whole bundle's data section


@dataclass
class _Plan:
    item: ExportableBundle
    files: list[tuple[str, bytes, int, int]]  # name, head, data start, data end
    size: int
    keep: set[str]  # names already on the stick, intact, that need no writing
    superseded: list[str]
    done: Done


class _Stick:
    """What the courier folder holds, from the headers and envelopes of its files."""

    def __init__(self, folder: Path, check: bool) -> None:
        self.folder = folder
        self.files: dict[str, _StickFile] = {}
        scan = scan_folder(folder)
        self.temps = scan.temps
        self.want_path = scan.want
        for path in scan.bundles:
            found = _look_at(path, check)
            if found is not None:
                self.files[path.name] = found

    def complete_copy(self, manifest_hash: bytes, size: int) -> list[str] | None:
        """The names of a complete copy of the bundle, if the stick has one."""
        copies = [f for f in self.files.values() if f.manifest_hash == manifest_hash]
        whole = [f for f in copies if f.part is None and f.complete]
        if whole:
            return [whole[0].name]
        covered, names = 0, []
        for f in sorted(
            (f for f in copies if f.part is not None and f.complete),
            key=lambda f: (f.part.start, f.part.length) if f.part else (0, 0),
        ):
            assert f.part is not None
            if f.part.start <= covered < f.part.start + f.part.length:
                covered = f.part.start + f.part.length
                names.append(f.name)
        return names if covered >= size else None

    def newest_complete(self, publisher: bytes, name: str) -> int:
        best = 0
        for f in self.files.values():
            if (
                f.publisher == publisher
                and f.bundle == name
                and f.version > best
                and self.complete_copy(f.manifest_hash, f.data_size) is not None
            ):
                best = f.version
        return best

    def older_copies(self, publisher: bytes, name: str, version: int, digest: bytes) -> list[str]:
        """Files of older versions of the bundle, and stray files of this version (damaged
        copies or parts of another split) that the new copy makes useless."""
        return sorted(
            f.name
            for f in self.files.values()
            if f.publisher == publisher
            and f.bundle == name
            and (f.version < version or (f.manifest_hash == digest and not f.complete))
        )


def _look_at(path: Path, check: bool) -> _StickFile | None:
    try:
        with open_courier_file(path) as source:
            manifest = parse_manifest(source.envelope.manifest_bytes, path.name)
            digest = hashlib.sha256(source.envelope.manifest_bytes).digest()
            try:
                complete = source.missing_bytes(manifest) == 0
            except FormatError:
                complete = False
            if complete and check:
                start, end = source.data_range(manifest)
                for ref in refs_in_range(manifest.chunk_refs(), start, end):
                    verify_chunk(ref, source.read_chunk(ref, start))
            return _StickFile(
                path.name,
                digest,
                manifest.publisher,
                manifest.name,
                manifest.version,
                source.part,
                complete,
                source.file_size,
                manifest.size,
            )
    except (MeshdropError, OSError):
        # Not ours, unreadable or damaged (with --check): as if absent, so a bundle it
        # claims to be is written again; the file itself is left alone.
        return None


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
            raise StoreError(f"cannot make the courier folder {folder} ({exc.strerror})") from None
        for temp in _remove_temps(folder):
            summary.notes.append(f"removed {temp}, left by an export that was cut short")
        stick = _Stick(folder, self.options.check)
        want = self._want(stick, summary)
        fingerprints = self._publishers()
        summary.publishers_written = self._write_publishers(folder, fingerprints)
        bundles = self._select(fingerprints, want)
        plans = self._plan(folder, stick, bundles, summary)
        todo = [p for p in plans if p.done is not Done.ALREADY_THERE]
        self.progress.start(sum(p.size for p in todo), len(todo))
        with ChunkReader(self.store) as reader:
            self._write_all(folder, todo, reader, summary)
        return summary

    # Choosing

    def _publishers(self) -> list[str]:
        trusted = [p.fingerprint for p in self.store.trust_list()]
        if not self.options.publishers:
            return trusted
        chosen = {self.store.resolve_publisher(p).fingerprint for p in self.options.publishers}
        return sorted(chosen)

    def _want(self, stick: _Stick, summary: ExportSummary) -> Want | None:
        if stick.want_path is None:
            return None
        try:
            return read_want(stick.want_path)
        except MeshdropError as exc:
            summary.notes.append(f"ignored the want file: {exc}")
            return None

    def _select(self, fingerprints: list[str], want: Want | None) -> list[StoredBundle]:
        allowed = set(fingerprints)
        ids = {state.fingerprint: pid for pid, state in self.store.trusted().items()}
        globs = self.options.names
        chosen = [
            b
            for b in self.store.list_bundles()
            if b.publisher in allowed
            and (not globs or any(fnmatch.fnmatchcase(b.name, g) for g in globs))
        ]

        def order(b: StoredBundle) -> tuple[int, int, int, int, str]:
            if want is None:
                return (0, 0, -b.priority, -b.created, b.name)
            publisher = ids.get(b.publisher, b"")
            lacks = want.lacks(publisher, b.name, b.version)
            wanted = publisher in want.publishers
            return (0 if lacks else 1, 0 if wanted else 1, -b.priority, -b.created, b.name)

        return sorted(chosen, key=order)

    def _plan(
        self, folder: Path, stick: _Stick, bundles: Sequence[StoredBundle], summary: ExportSummary
    ) -> list[_Plan]:
        plans: list[_Plan] = []
        candidates: list[_Plan] = []
        used = 0
        for bundle in bundles:
            item = load_exportable(self.store, bundle)
            present = stick.complete_copy(item.manifest_hash, bundle.size)
            if present is not None:
                size = sum(stick.files[n].size for n in present)
                used += size
                plans.append(_Plan(item, [], size, set(present), [], Done.ALREADY_THERE))
                summary.reports.append(
                    _report(item, Done.ALREADY_THERE, ", ".join(present), size, present)
                )
                continue
            newer = stick.newest_complete(item.publisher_id, bundle.name)
            if newer > bundle.version:
                summary.reports.append(
                    _report(item, Done.STICK_NEWER, f"the stick has v{newer}", 0, [])
                )
                continue
            candidates.append(self._layout(item, stick))
        free = _free_space(folder) - self.options.reserve
        for plan in candidates:
            needed = sum(
                end - start + len(head)
                for name, head, start, end in plan.files
                if name not in plan.keep
            )
            limit = self.options.max_bytes
            if limit is not None and used + plan.size > limit:
                summary.reports.append(
                    _report(
                        plan.item,
                        Done.LEFT_OUT,
                        f"does not fit in --max-bytes ({_mib(plan.size)} needed, "
                        f"{_mib(max(0, limit - used))} left)",
                        plan.size,
                        [],
                    )
                )
                continue
            if needed > free:
                summary.reports.append(
                    _report(
                        plan.item,
                        Done.LEFT_OUT,
                        f"not enough free space ({_mib(needed)} needed, {_mib(max(0, free))} "
                        f"free beyond the {_mib(self.options.reserve)} reserve)",
                        plan.size,
                        [],
                    )
                )
                continue
            used += plan.size
            free -= needed
            free += sum(stick.files[n].size for n in plan.superseded if n in stick.files)
            plans.append(plan)
        return plans

    def _layout(self, item: ExportableBundle, stick: _Stick) -> _Plan:
        m = item.manifest
        digest = item.manifest_hash
        if item.file_size <= self.options.part_size:
            files = [(bundle_file_name(m.name, digest), item.head(), 0, m.size)]
        else:
            files = []
            for part in plan_parts(m, len(item.envelope), self.options.part_size):
                name = part_file_name(m.name, digest, part.number)
                head = encode_part_header(part) + item.envelope
                files.append((name, head, part.start, part.start + part.length))
        keep = set()
        for name, head, start, end in files:
            there = stick.files.get(name)
            if (
                there is not None
                and there.complete
                and there.manifest_hash == digest
                and there.size == len(head) + end - start
                and (there.part.start if there.part else 0) == start
            ):
                keep.add(name)
        older = stick.older_copies(m.publisher, m.name, m.version, digest)
        superseded = [n for n in older if n not in {f[0] for f in files}]
        versions = {stick.files[n].version for n in older if stick.files[n].version < m.version}
        if versions:
            done = Done.REPLACED
        elif any(os.path.lexists(stick.folder / f[0]) for f in files) or older:
            done = Done.REPAIRED
        else:
            done = Done.WRITTEN
        size = sum(len(head) + end - start for _, head, start, end in files)
        return _Plan(item, files, size, keep, superseded, done)

    # Writing

    def _write_all(
        self, folder: Path, plans: list[_Plan], reader: ChunkReader, summary: ExportSummary
    ) -> None:
        """Write the plans' files in batches (many small bundles, or one big one, per sync).
        Only once a batch is durable are the copies it supersedes removed: the stick always
        holds a complete copy of what it held."""
        batch = DurableBatch()
        written: list[tuple[_Plan, ExportReport | None]] = []
        batch_bytes = 0
        try:
            for plan in plans:
                failure = self._write(folder, plan, reader, batch)
                written.append((plan, failure))
                batch_bytes += plan.size
                self.progress.bundle_done()
                if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_FILES:
                    self._commit(folder, batch, written, summary)
                    written, batch_bytes = [], 0
            self._commit(folder, batch, written, summary)
        finally:
            batch.abort()  # what is left after an error: temp files only

    def _write(
        self, folder: Path, plan: _Plan, reader: ChunkReader, batch: DurableBatch
    ) -> ExportReport | None:
        """Write the plan's files into the batch; a report if that failed."""
        item = plan.item
        refs = item.manifest.chunk_refs()
        started: list[int] = []
        try:
            for name, head, start, end in plan.files:
                if name in plan.keep:
                    continue
                fd = batch.create(folder / name)
                started.append(fd)
                write_bundle_data(
                    reader,
                    item,
                    fd,
                    head=head,
                    refs=refs_in_range(refs, start, end),
                    progress=self.progress.advance,
                )
        except MeshdropError as exc:
            for fd in started:
                batch.discard(fd)
            return _report(item, Done.FAILED, str(exc), plan.size, [f[0] for f in plan.files])
        return None

    def _commit(
        self,
        folder: Path,
        batch: DurableBatch,
        written: list[tuple[_Plan, ExportReport | None]],
        summary: ExportSummary,
    ) -> None:
        try:
            batch.commit()
        except MeshdropError as exc:
            for plan, failure in written:
                names = [f[0] for f in plan.files]
                summary.reports.append(
                    failure or _report(plan.item, Done.FAILED, str(exc), plan.size, names)
                )
            return
        for plan, failure in written:
            summary.reports.append(failure or self._finish(folder, plan, summary))

    def _finish(self, folder: Path, plan: _Plan, summary: ExportSummary) -> ExportReport:
        names = [f[0] for f in plan.files]
        for name in plan.superseded:
            try:
                (folder / name).unlink()
                summary.removed.append(name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                summary.notes.append(f"could not remove {name} ({exc.strerror})")
        detail = ", ".join(names)
        if plan.done is Done.REPLACED:
            detail += " (removed " + ", ".join(plan.superseded) + ")" if plan.superseded else ""
        return _report(plan.item, plan.done, detail, plan.size, names)

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


def _report(
    item: ExportableBundle, done: Done, detail: str, size: int, files: list[str]
) -> ExportReport:
    b = item.bundle
    return ExportReport(b.name, b.version, b.publisher, done, detail, size, files)


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"
