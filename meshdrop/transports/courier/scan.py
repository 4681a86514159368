"""Listing a courier folder without trusting it: only the top level, never following a
link, never opening what is not a regular file, and with a cap on how many entries are
looked at, so a stick with a million junk files costs bounded time and memory."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from meshdrop.fs import TEMP_PREFIX, describe_kind
from meshdrop.transports.courier.layout import (
    BUNDLE_SUFFIX,
    DROPS_FOLDER,
    PUB_SUFFIX,
    WANT_FILE,
    part_number,
)

MAX_ENTRIES = 1_000_000  # entries of one courier folder looked at
MAX_NAME = 255


@dataclass
class Scan:
    folder: Path
    bundles: list[Path] = field(default_factory=list)  # .mdrop files and parts, by name
    publishers: list[Path] = field(default_factory=list)
    want: Path | None = None
    temps: list[Path] = field(default_factory=list)  # our own leftovers from a cut export
    not_regular: list[tuple[Path, str]] = field(default_factory=list)  # ours by name only
    skipped: int = 0  # entries that are not meshdrop files
    capped: bool = False  # stopped at MAX_ENTRIES


def kind_of(name: str) -> str | None:
    lower = name.lower()
    if lower.startswith(TEMP_PREFIX):
        return "temp"
    if lower.startswith("."):
        return None
    if lower.endswith(BUNDLE_SUFFIX) or part_number(lower) is not None:
        return "bundle"
    if lower.endswith(PUB_SUFFIX):
        return "pub"
    if lower == WANT_FILE:
        return "want"
    if lower == DROPS_FOLDER:
        return "drops"
    return None


def scan_folder(folder: Path, max_entries: int = MAX_ENTRIES) -> Scan:
    scan = Scan(folder)
    seen = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            seen += 1
            if seen > max_entries:
                scan.capped = True
                break
            kind = kind_of(entry.name) if len(entry.name) <= MAX_NAME else None
            if kind is None:
                scan.skipped += 1
                continue
            path = Path(entry.path)
            if kind == "want":  # whatever it is: reading it refuses all but a small file
                scan.want = path
                continue
            if kind == "drops":  # read by dropcarry.py
                continue
            try:
                regular = entry.is_file(follow_symlinks=False)
                if not regular:
                    mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                scan.skipped += 1
                continue
            if not regular:
                if kind != "temp" and not stat.S_ISDIR(mode):
                    scan.not_regular.append((path, describe_kind(mode)))
                else:
                    scan.skipped += 1
            elif kind == "bundle":
                scan.bundles.append(path)
            elif kind == "pub":
                scan.publishers.append(path)
            else:
                scan.temps.append(path)
    for found in (scan.bundles, scan.publishers, scan.temps):
        found.sort(key=lambda p: (p.name.lower(), p.name))
    scan.not_regular.sort()
    return scan
