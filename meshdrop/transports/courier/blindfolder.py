"""Blind courier folders on a stick: the keys this node can open them with, finding the
folder of a circle (by its marker, a file whose name only a member can compute), and
listing a blind folder without trusting it (the caps and refusals of scan.py).

A member finds a folder with one ``lstat`` per (folder, key): the stick's root and each
folder in it, at most MAX_FOLDERS, for the current key of each circle and the keys it
retired less than GRACE_SECONDS ago (sticks sealed before a rekey are still in transit).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshdrop.core.blind import InnerHeader, Kind, blind_key, looks_blind, marker_name
from meshdrop.core.circles import Circle
from meshdrop.errors import MeshdropError
from meshdrop.fs import TEMP_PREFIX, describe_kind
from meshdrop.store.circles import CircleBook, CircleStore
from meshdrop.transports.courier.blindfile import BlindReader, open_blind
from meshdrop.transports.courier.reader import CourierFile, open_courier_source
from meshdrop.transports.courier.scan import MAX_ENTRIES, MAX_NAME

GRACE_SECONDS = 30 * 86_400  # a retired key still opens sticks this long after a rekey
MAX_FOLDERS = 1024  # entries of a stick's root looked at for a blind folder
DEFAULT_FOLDER = "backup"
NOMEDIA = ".nomedia"


@dataclass(frozen=True)
class BlindKey:
    key: bytes
    circle: str  # the owner's name for the circle: for messages on this node only
    generation: int
    current: bool


def circle_keys(book: CircleBook, now: int) -> list[BlindKey]:
    """Every key that opens a blind folder for this node: each circle's current key and
    those retired within GRACE_SECONDS."""
    keys = []
    for stored in book.circles:
        circle = stored.circle
        for generation in circle.generations:
            current = generation is circle.current
            if current or (generation.retired or 0) + GRACE_SECONDS >= now:
                keys.append(
                    BlindKey(blind_key(generation.secret), circle.name, generation.number, current)
                )
    return keys


def blind_key_of(circle: Circle) -> bytes:
    """The key a blind folder for ``circle`` is written with now (its current one)."""
    return blind_key(circle.current.secret)


def keys_of_home(home: Path, now: int) -> list[BlindKey]:
    """The keys of the circles of ``home`` (damaged circle files are passed over)."""
    store = CircleStore(home)
    if not store.file_names():
        return []
    return circle_keys(store.load(), now)


def _marker(folder: Path, key: bytes) -> Path | None:
    name = marker_name(key)
    for candidate in (name, name.upper()):
        path = folder / candidate
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                return path
        except OSError:
            continue
    return None


def is_blind_folder(folder: Path, key: bytes) -> bool:
    """Whether ``folder`` holds the marker of ``key`` (and it opens under it)."""
    marker = _marker(folder, key)
    if marker is None:
        return False
    try:
        with open_blind(marker, key) as reader:
            return reader.header.kind is Kind.MARKER
    except (MeshdropError, OSError):
        return False


def find_blind_folder(path: Path, keys: Sequence[BlindKey]) -> tuple[Path, BlindKey] | None:
    """The blind folder ``path`` is or holds for one of ``keys``, and its key."""
    if not keys or not _is_real_dir(path):
        return None
    candidates = [path]
    try:
        with os.scandir(path) as entries:
            for seen, entry in enumerate(entries):
                if seen >= MAX_FOLDERS:
                    break
                if entry.is_dir(follow_symlinks=False):
                    candidates.append(Path(entry.path))
    except OSError:
        pass
    for folder in candidates:
        for key in keys:
            if is_blind_folder(folder, key.key):
                return folder, key
    return None


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class BlindEntry:
    path: Path
    header: InnerHeader

    @property
    def name(self) -> str:
        return self.header.name


@dataclass
class BlindScan:
    """A blind folder listed: each file that opened, by its inner name."""

    folder: Path
    key: bytes
    entries: list[BlindEntry] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)  # did not open: why
    temps: list[Path] = field(default_factory=list)
    not_regular: list[tuple[Path, str]] = field(default_factory=list)
    skipped: int = 0
    capped: bool = False

    def of_kind(self, *kinds: Kind) -> list[BlindEntry]:
        return [e for e in self.entries if e.header.kind in kinds]

    def by_name(self) -> dict[str, BlindEntry]:
        """Each inner name's entry (of two files claiming one name, the first listed)."""
        found: dict[str, BlindEntry] = {}
        for entry in self.entries:
            found.setdefault(entry.name, entry)
        return found

    def open(self, entry: BlindEntry) -> BlindReader:
        return open_blind(entry.path, self.key, entry.name or entry.path.name)

    def open_courier(self, entry: BlindEntry) -> CourierFile:
        return open_courier_source(self.open(entry), Path(entry.name))


def scan_blind(folder: Path, key: bytes, max_entries: int = MAX_ENTRIES) -> BlindScan:
    """Open the inner header of every blind-named regular file in ``folder`` (links,
    FIFOs and devices are never opened; at most ``max_entries`` entries are looked at)."""
    scan = BlindScan(folder, key)
    with os.scandir(folder) as listing:
        for seen, entry in enumerate(listing):
            if seen >= max_entries:
                scan.capped = True
                break
            name = entry.name
            path = Path(entry.path)
            if len(name) > MAX_NAME:
                scan.skipped += 1
                continue
            if name.startswith(TEMP_PREFIX):
                scan.temps.append(path)
                continue
            if not looks_blind(name):
                scan.skipped += name != NOMEDIA
                continue
            try:
                regular = entry.is_file(follow_symlinks=False)
                mode = 0 if regular else entry.stat(follow_symlinks=False).st_mode
            except OSError:
                scan.skipped += 1
                continue
            if not regular:
                scan.not_regular.append((path, describe_kind(mode)))
                continue
            try:
                with open_blind(path, key) as reader:
                    header = reader.header
            except (MeshdropError, OSError) as exc:
                scan.refused.append(
                    (path, str(exc) if isinstance(exc, MeshdropError) else "cannot be read")
                )
                continue
            if header.kind is not Kind.MARKER:
                scan.entries.append(BlindEntry(path, header))
    scan.entries.sort(key=lambda e: (e.name, e.path.name))
    scan.refused.sort()
    scan.temps.sort()
    scan.not_regular.sort()
    return scan
