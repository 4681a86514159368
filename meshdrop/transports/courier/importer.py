"""Importing a courier folder: every intact bundle goes in, one report per bundle.

Each file on the stick is opened read-only and read once: its header and envelope, then
every chunk the store lacks, verified and stored as it is read (the store's accept,
store_chunk and commit). A bundle whose chunks are all present commits; one that is short
of parts or has damaged bytes stays in staging with what verified, so the next stick that
brings the rest completes it without copying again. Nothing on the stick is modified.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from meshdrop.core.manifest import ChunkRef
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import (
    BlindFileError,
    FormatError,
    IntegrityError,
    MeshdropError,
    MissingChunksError,
    OlderVersionError,
    StoreError,
    UntrustedPublisherError,
)
from meshdrop.fs import read_small_file
from meshdrop.store import staging
from meshdrop.store.ingest import Committed, IngestSession
from meshdrop.store.models import ImportResult, Outcome
from meshdrop.store.store import Store
from meshdrop.transports.courier.leftover import describe_leftover
from meshdrop.transports.courier.outcome import ProgressSink, Report, Silent, Status
from meshdrop.transports.courier.parts import refs_in_range
from meshdrop.transports.courier.reader import CourierFile, open_courier_file
from meshdrop.transports.courier.scan import MAX_ENTRIES, Scan, scan_folder

# Chunk writes wait on fsync more than on the CPU: more threads than cores keep a stick
# and the disk busy (hashlib and file I/O release the GIL).
WORKERS = min(16, max(8, 2 * (os.cpu_count() or 2)))
MAX_JUNK_REPORTS = 20  # files that are not bundles at all: reported one by one up to this
MIB = 1024 * 1024


@dataclass
class _Group:
    """Every file seen of one bundle (one signed manifest)."""

    files: list[str] = field(default_factory=list)
    verified: VerifiedManifest | None = None
    result: ImportResult | None = None
    name: str | None = None
    version: int | None = None
    publisher: str | None = None
    refusal: tuple[Status, str, int] | None = None  # status, why, exit code
    part_count: int = 0
    parts_seen: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    ready: bool = False  # complete, waiting in the next commit batch

    @property
    def committed(self) -> bool:
        return self.result is not None or self.ready


@dataclass
class _Copied:
    damaged: int = 0
    unreadable: int = 0
    truncated: int = 0


class CourierImport:
    def __init__(self, store: Store, progress: ProgressSink | None = None) -> None:
        self.store = store
        self.progress: ProgressSink = progress or Silent()
        self.groups: dict[bytes, _Group] = {}
        self.reports: list[Report] = []
        self.junk = 0
        self._advanced = 0
        self.session = IngestSession(store)
        self._ready: dict[int, _Group] = {}  # id(verified) -> its group, waiting to commit

    def run(self, folder: Path) -> list[Report]:
        return self._run(scan_folder(folder))

    def run_files(self, paths: list[Path]) -> list[Report]:
        """Import bundle files and parts given one by one (not a whole folder)."""
        return self._run(Scan(Path(), bundles=list(paths)))

    # How a file of the folder is read (blindimport.py reads blind files)

    def _label(self, path: Path) -> str:
        return path.name

    def _open(self, path: Path) -> CourierFile:
        return open_courier_file(path)

    def _read_small(self, path: Path, limit: int, what: str) -> bytes:
        return read_small_file(path, limit, what)

    def _run(self, scan: Scan) -> list[Report]:
        staging.prune(self.store.db, self.store.accept)
        sizes = {p: _size(p) for p in scan.bundles + scan.publishers}
        self.progress.start(sum(sizes.values()), len(sizes))
        for path in scan.publishers:
            self.reports.append(self._publisher(path))
            self.progress.advance(sizes[path])
            self.progress.file_done()
        with self.session, ThreadPoolExecutor(WORKERS, thread_name_prefix="courier") as pool:
            for path in scan.bundles:
                self._advanced = 0
                self._bundle_file(pool, path)
                self.progress.advance(max(0, sizes[path] - self._advanced))
                self.progress.file_done()
            self._flush()
        for path, kind in scan.not_regular:
            self.reports.append(
                Report([path.name], Status.REFUSED, f"is {kind}, not a bundle file; not opened")
            )
        for group in self.groups.values():
            self.reports.append(self._finish(group))
        for path in scan.temps:
            left = describe_leftover(path, self.store.trusted(), self.store.now())
            self.reports.append(
                Report(
                    [path.name],
                    Status.CUT_SHORT,
                    left.detail,
                    left.name,
                    left.version,
                    left.publisher,
                )
            )
        if self.junk > MAX_JUNK_REPORTS:
            more = self.junk - MAX_JUNK_REPORTS
            self.reports.append(
                Report([], Status.REFUSED, f"{more} more files are not meshdrop bundles")
            )
        self._summary(scan)
        return self.reports

    # One file

    def _publisher(self, path: Path) -> Report:
        try:
            data = self._read_small(path, 16 * MIB, "publisher file")
            result = self.store.update_publisher(data, self._label(path))
        except UntrustedPublisherError:
            return Report([self._label(path)], Status.NOT_TRUSTED, "left alone")
        except MeshdropError as exc:
            return Report([self._label(path)], Status.REFUSED, str(exc), exit_code=exc.exit_code)
        if result.outcome is Outcome.PUBLISHER_UPDATED:
            detail = f"{result.name} record v{result.version} (was v{result.replaced_version})"
            status = Status.PUBLISHER_UPDATED
        else:
            detail = f"{result.name} record v{result.version}"
            status = Status.PUBLISHER_KNOWN
        return Report(
            [self._label(path)],
            status,
            detail,
            result.name,
            result.version,
            result.publisher,
            withdrawn=result.withdrawn,
        )

    def _bundle_file(self, pool: ThreadPoolExecutor, path: Path) -> None:
        try:
            source = self._open(path)
        except MeshdropError as exc:
            self.junk += 1
            if self.junk <= MAX_JUNK_REPORTS:
                self.reports.append(
                    Report([self._label(path)], Status.REFUSED, str(exc), exit_code=exc.exit_code)
                )
            return
        with source:
            key = hashlib.sha256(source.envelope.manifest_bytes).digest()
            group = self.groups.setdefault(key, _Group())
            group.files.append(self._label(path))
            if source.part is not None:
                group.part_count = max(group.part_count, source.part.count)
            if group.committed:
                return  # a duplicate or an extra part of a bundle already imported
            try:
                accepted = self.session.accept(source.envelope)
            except OlderVersionError as exc:
                group.refusal = (Status.OLDER, str(exc), exc.exit_code)
                return
            except MeshdropError as exc:
                group.refusal = (Status.REFUSED, str(exc), exc.exit_code)
                return
            if isinstance(accepted, ImportResult):
                group.result = accepted
                group.name, group.version = accepted.name, accepted.version
                group.publisher = accepted.publisher
                return
            self._copy_in(pool, group, source, accepted)

    def _copy_in(
        self,
        pool: ThreadPoolExecutor,
        group: _Group,
        source: CourierFile,
        verified: VerifiedManifest,
    ) -> None:
        m = verified.manifest
        group.verified = verified
        group.name, group.version = m.name, m.version
        group.publisher = verified.state.fingerprint
        if len(group.files) > 1:
            self._flush()  # name the chunks earlier parts staged: they count as present
        try:
            start, end = source.data_range(m)
            short = source.missing_bytes(m)
        except FormatError as exc:
            group.problems.append(f"{source.path.name}: {exc}")
            return
        try:
            missing = {r.digest for r in self.session.needed(verified)}
        except StoreError as exc:  # the free-space floor: nothing of it is written
            group.refusal = (Status.REFUSED, str(exc), exc.exit_code)
            group.verified = None
            return
        wanted: list[ChunkRef] = []
        for ref in refs_in_range(m.chunk_refs(), start, end):
            if ref.digest in missing:
                wanted.append(ref)
                missing.discard(ref.digest)
        present = end - start - short  # data bytes this file really has
        readable = [r for r in wanted if r.offset - start + r.size <= present]
        copied = self._copy(pool, source, readable, start)
        copied.truncated = len(wanted) - len(readable)
        part = source.part.number if source.part else 0
        if short:
            group.problems.append(f"{source.path.name} is truncated ({_mib(short)} missing)")
        if copied.damaged:
            group.problems.append(
                f"{source.path.name} has {copied.damaged} damaged chunks (bytes changed)"
            )
        if copied.unreadable:
            n = copied.unreadable
            group.problems.append(
                f"{source.path.name}: {n} {'chunk' if n == 1 else 'chunks'} could not be read"
                " (the stick gave a read error)"
            )
        if not (short or copied.damaged or copied.unreadable):
            group.parts_seen.add(part)
        if missing or copied.damaged or copied.unreadable or copied.truncated:
            return  # chunks are still to come (from another part, or another stick)
        group.ready = True
        self._ready[id(verified)] = group
        self._settle(self.session.complete(verified))

    def _flush(self) -> None:
        """Name every staged chunk (one file-system sync for the lot), then commit the
        complete bundles together."""
        self._settle(self.session.flush())

    def _settle(self, done: list[Committed]) -> None:
        for item in done:
            group, verified, result = (
                self._ready.pop(id(item.verified)),
                item.verified,
                item.outcome,
            )
            group.ready = False
            if isinstance(result, MissingChunksError):
                continue  # reported incomplete, what verified kept in staging
            if isinstance(result, MeshdropError):  # the commit failed (a full disk): say so
                group.refusal = (Status.REFUSED, str(result), result.exit_code)
                group.verified = None
                continue
            group.result = result
            staging.unstage(self.store.db, staging.manifest_hash(verified))
            group.verified = None

    def _copy(
        self, pool: ThreadPoolExecutor, source: CourierFile, refs: list[ChunkRef], start: int
    ) -> _Copied:
        """Read each chunk once, verify it and store it, a few in flight at a time."""
        copied = _Copied()

        def work(ref: ChunkRef) -> tuple[Path | None, str]:
            try:
                data = source.read_chunk(ref, start)  # this thread's buffer
            except OSError:
                return None, "unreadable"
            except BlindFileError:  # a blind file's segment failed authentication
                return None, "damaged"
            try:
                return self.session.put(ref, data), ""
            except IntegrityError:
                return None, "damaged"

        pending: deque[tuple[Future[tuple[Path | None, str]], int]] = deque()

        def finish_oldest() -> None:
            future, size = pending.popleft()
            _temp, problem = future.result()
            if problem == "damaged":
                copied.damaged += 1
            elif problem:
                copied.unreadable += 1
            self._advanced += size
            self.progress.advance(size)

        try:
            for ref in refs:
                pending.append((pool.submit(work, ref), ref.size))
                while len(pending) > 2 * WORKERS:
                    finish_oldest()
            while pending:
                finish_oldest()
        except StoreError:
            for future, _ in pending:
                future.cancel()
            raise
        return copied

    # Reports

    def _finish(self, group: _Group) -> Report:
        def report(status: Status, detail: str) -> Report:
            return Report(group.files, status, detail, group.name, group.version, group.publisher)

        title = f"{group.name} v{group.version}" if group.name else ""
        if group.result is not None:
            result = group.result
            if result.outcome is Outcome.ALREADY_HAD:
                return report(Status.ALREADY_HAD, title)
            detail = title
            if result.replaced_version is not None:
                detail += f" (replaces v{result.replaced_version})"
            if group.problems:
                detail += f" (ignored: {'; '.join(group.problems)})"
            status = Status.REPLACED if result.outcome is Outcome.REPLACED else Status.IMPORTED
            done = report(status, detail)
            done.withdrawn = result.withdrawn
            return done
        if group.verified is not None:
            return report(Status.INCOMPLETE, self._incomplete(group, group.verified))
        if group.refusal is not None:
            status, why, code = group.refusal
            refused = report(status, why)
            refused.exit_code = code
            return refused
        return report(Status.REFUSED, "; ".join(group.problems) or "nothing could be read")

    def _incomplete(self, group: _Group, verified: VerifiedManifest) -> str:
        staging.stage(self.store.db, verified)
        still = self.store.missing_chunks(verified)
        facts = []
        if group.part_count:
            absent = [str(n) for n in range(1, group.part_count + 1) if n not in group.parts_seen]
            if absent:
                facts.append(f"parts missing or damaged: {', '.join(absent)} of {group.part_count}")
        facts += group.problems
        facts.append(
            f"{_mib(sum(r.size for r in still))} in {len(still)} chunks still needed; "
            "what verified is kept for the next stick"
        )
        return f"{group.name} v{group.version}: " + "; ".join(facts)

    def _summary(self, scan: Scan) -> None:
        if scan.skipped:
            self.reports.append(
                Report([], Status.SKIPPED, f"{scan.skipped} entries that are not meshdrop files")
            )
        if scan.capped:
            self.reports.append(
                Report(
                    [],
                    Status.REFUSED,
                    f"the courier folder holds more than {MAX_ENTRIES} entries; "
                    "the rest were not looked at",
                )
            )


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"
