"""Deciding what an export writes, from what the store offers and what the stick holds:
no I/O here, so every choice can be tested with values made in memory.

Bundles go in order (what the want file says the destination lacks, then the
publisher's priority, then newest). A complete copy already on the stick is left alone,
a newer version on the stick wins, an older version is replaced and a damaged or
cut-short copy is written again. What does not fit in --max-bytes, or in the free space
less the reserve, is left out and reported.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from meshdrop.store.export import ExportableBundle
from meshdrop.store.models import StoredBundle
from meshdrop.transports.courier.layout import bundle_file_name, part_file_name
from meshdrop.transports.courier.parts import (
    encode_part_header,
    fitting_part_size,
    plan_parts,
)
from meshdrop.transports.courier.stickstate import StickState
from meshdrop.transports.courier.want import Want


class Done(Enum):
    WRITTEN = "written"
    REPLACED = "written, replacing an older version"
    REPAIRED = "written again (the copy on the stick was damaged or incomplete)"
    ALREADY_THERE = "already there"
    STICK_NEWER = "the stick has a newer version"
    LEFT_OUT = "left out"
    FAILED = "failed"


@dataclass
class ExportReport:
    name: str
    version: int
    publisher: str
    done: Done
    detail: str
    size: int  # of the bundle's copy on the stick (all its files)
    files: list[str] = field(default_factory=list)
    written_files: list[str] = field(default_factory=list)  # of files, those written now
    written_bytes: int = 0
    exit_code: int = 0  # of the error that made it fail

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "publisher": self.publisher,
            "outcome": self.done.value,
            "detail": self.detail,
            "size": self.size,
            "files": self.files,
            "written_files": self.written_files,
            "written_bytes": self.written_bytes,
            "exit_code": self.exit_code,
        }


def report(
    item: ExportableBundle, done: Done, detail: str, size: int, files: list[str]
) -> ExportReport:
    b = item.bundle
    return ExportReport(b.name, b.version, b.publisher, done, detail, size, files)


class FileToWrite(NamedTuple):
    name: str
    head: bytes  # the .mdrop header and envelope, or a part header and the envelope
    start: int  # the range of the bundle's data section this file carries
    end: int
    part: int = 0  # the part number; 0 for a whole .mdrop file

    @property
    def size(self) -> int:
        return len(self.head) + self.end - self.start


@dataclass(frozen=True)
class BundleWrite:
    """One bundle to write: its files, and what it makes useless on the stick."""

    item: ExportableBundle
    files: tuple[FileToWrite, ...]
    keep: frozenset[str]  # of those files, the ones already on the stick, intact
    superseded: tuple[str, ...]  # removed once the new copy is durable
    done: Done

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]

    @property
    def to_write(self) -> list[FileToWrite]:
        return [f for f in self.files if f.name not in self.keep]


@dataclass
class ExportPlan:
    writes: list[BundleWrite] = field(default_factory=list)
    # What needs no writing, in the order decided: already there, the stick newer, left out.
    reports: list[ExportReport] = field(default_factory=list)


def select_bundles(
    bundles: Iterable[StoredBundle],
    publishers: Collection[str],
    globs: Sequence[str],
    want: Want | None,
    publisher_ids: Mapping[str, bytes],
) -> list[StoredBundle]:
    """The bundles of ``publishers`` (fingerprints) whose names match one of ``globs``
    (all if none), in the order they are written. ``publisher_ids`` maps fingerprints to
    the ids the want file names publishers by."""
    chosen = [
        b
        for b in bundles
        if b.publisher in publishers
        and (not globs or any(fnmatch.fnmatchcase(b.name, g) for g in globs))
    ]

    def order(b: StoredBundle) -> tuple[int, int, int, int, str]:
        if want is None:
            return (0, 0, -b.priority, -b.created, b.name)
        publisher = publisher_ids.get(b.publisher, b"")
        lacks = want.lacks(publisher, b.name, b.version)
        wanted = publisher in want.publishers
        return (0 if lacks else 1, 0 if wanted else 1, -b.priority, -b.created, b.name)

    return sorted(chosen, key=order)


def plan_export(
    items: Iterable[ExportableBundle],
    stick: StickState,
    *,
    part_size: int,
    max_bytes: int | None,
    reserve: int,
    free: int,
    on_disk: Callable[[int], int] = int,
) -> ExportPlan:
    """What to write of ``items`` (in the order given), with ``free`` bytes free on the
    stick now. --max-bytes counts what the stick's copies take, kept ones included.
    ``on_disk``: what a file of a size takes on the stick (a blind folder pads it)."""
    plan = ExportPlan()
    candidates: list[BundleWrite] = []
    used = 0
    for item in items:
        bundle = item.bundle
        present = stick.complete_copy(item.manifest_hash, bundle.size)
        if present is not None:
            size = sum(on_disk(stick.files[n].size) for n in present)
            used += size
            plan.reports.append(report(item, Done.ALREADY_THERE, ", ".join(present), size, present))
            continue
        newer = stick.newest_complete(item.publisher_id, bundle.name)
        if newer > bundle.version:
            plan.reports.append(report(item, Done.STICK_NEWER, f"the stick has v{newer}", 0, []))
            continue
        candidates.append(_lay_out(item, stick, part_size))
    free -= reserve
    for write in candidates:
        needed = sum(on_disk(f.size) for f in write.to_write)
        whole = sum(on_disk(f.size) for f in write.files)
        if max_bytes is not None and used + whole > max_bytes:
            detail = (
                f"does not fit in --max-bytes ({_mib(whole)} needed, "
                f"{_mib(max(0, max_bytes - used))} left)"
            )
            plan.reports.append(report(write.item, Done.LEFT_OUT, detail, write.size, []))
            continue
        if needed > free:
            detail = (
                f"not enough free space ({_mib(needed)} needed, {_mib(max(0, free))} "
                f"free beyond the {_mib(reserve)} reserve)"
            )
            plan.reports.append(report(write.item, Done.LEFT_OUT, detail, write.size, []))
            continue
        used += whole
        free -= needed
        free += sum(on_disk(stick.files[n].size) for n in write.superseded if n in stick.files)
        plan.writes.append(write)
    return plan


def _lay_out(item: ExportableBundle, stick: StickState, part_size: int) -> BundleWrite:
    """The files of ``item``: one .mdrop file, or parts of at most ``part_size`` bytes."""
    m = item.manifest
    digest = item.manifest_hash
    if item.file_size <= part_size:
        files = [FileToWrite(bundle_file_name(m.name, digest), item.head(), 0, m.size)]
    else:
        files = [
            FileToWrite(
                part_file_name(m.name, digest, part.number),
                encode_part_header(part) + item.envelope,
                part.start,
                part.start + part.length,
                part.number,
            )
            for part in plan_parts(
                m, len(item.envelope), fitting_part_size(part_size, item.file_size)
            )
        ]
    keep = set()
    for f in files:
        there = stick.files.get(f.name)
        if (
            there is not None
            and there.complete
            and there.manifest_hash == digest
            and there.size == f.size
            and (there.part.start if there.part else 0) == f.start
        ):
            keep.add(f.name)
    older = stick.older_copies(m.publisher, m.name, m.version, digest)
    names = {f.name for f in files}
    superseded = tuple(n for n in older if n not in names)
    if any(stick.files[n].version < m.version for n in older):
        done = Done.REPLACED
    elif names & stick.names or older:
        done = Done.REPAIRED
    else:
        done = Done.WRITTEN
    return BundleWrite(item, tuple(files), frozenset(keep), superseded, done)


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"
