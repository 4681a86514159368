"""What a courier folder already holds, read before an export without trusting it: the
header and envelope of each bundle file or part, and whether it is complete (with
``check``, every chunk re-hashed). A file that is not ours, cannot be read or is damaged
counts as absent, so the bundle it claims to be is written again; it is never removed
for that."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from meshdrop.core.manifest import parse_manifest, verify_chunk
from meshdrop.errors import FormatError, MeshdropError
from meshdrop.transports.courier.parts import PartHeader, refs_in_range
from meshdrop.transports.courier.reader import CourierFile, open_courier_file
from meshdrop.transports.courier.scan import scan_folder


@dataclass(frozen=True)
class StickFile:
    name: str
    manifest_hash: bytes
    publisher: bytes
    bundle: str
    version: int
    part: PartHeader | None
    complete: bool  # the right size (and, with check, every chunk verified)
    size: int  # of this file
    data_size: int  # of the whole bundle's data section


@dataclass
class StickState:
    """The bundle files found in a courier folder, by file name."""

    files: dict[str, StickFile] = field(default_factory=dict)
    # Every name the scan found that is a bundle file or part by its name, readable or
    # not: a new copy written under one of them is a repair, not a first copy.
    names: frozenset[str] = frozenset()
    want_path: Path | None = None

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


def read_stick(folder: Path, check: bool) -> StickState:
    scan = scan_folder(folder)
    files = {}
    for path in scan.bundles:
        found = look_at(path.name, partial(open_courier_file, path), check)
        if found is not None:
            files[path.name] = found
    names = frozenset([p.name for p in scan.bundles] + [p.name for p, _kind in scan.not_regular])
    return StickState(files, names, scan.want)


def look_at(name: str, opener: Callable[[], CourierFile], check: bool) -> StickFile | None:
    """What the file ``name`` (opened by ``opener``) holds, or None if it is unreadable."""
    try:
        with opener() as source:
            manifest = parse_manifest(source.envelope.manifest_bytes, name)
            digest = hashlib.sha256(source.envelope.manifest_bytes).digest()
            try:
                complete = source.missing_bytes(manifest) == 0
            except FormatError:
                complete = False
            if complete and check:
                start, end = source.data_range(manifest)
                for ref in refs_in_range(manifest.chunk_refs(), start, end):
                    verify_chunk(ref, source.read_chunk(ref, start))
            return StickFile(
                name,
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
        return None  # as if absent (see the module docstring)
