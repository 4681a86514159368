"""Writing a blind courier folder (FORMAT.md section 25): the exporter's ``Medium`` for a
folder sealed for one circle. Each open file it is asked to write becomes one blind file
under a new random name, padded to a size class; what the folder already holds is known
by decrypting each file's inner header, so a top-up skips what is there and removes what
it replaces only once the new copy is durable."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from meshdrop.core.blind import (
    ALIGN_FROM,
    MAX_INNER,
    SEGMENT,
    InnerHeader,
    Kind,
    aligned_start,
    capacity,
    class_for,
    file_size_for,
    marker_name,
    random_name,
)
from meshdrop.core.drops import HEADER_BYTES
from meshdrop.core.manifest import ChunkRef
from meshdrop.errors import FormatError, MeshdropError, StoreError
from meshdrop.fs import DurableBatch, os_error_message
from meshdrop.store.drops import DropStore
from meshdrop.store.export import ChunkReader, ExportableBundle, Progress
from meshdrop.transports.courier.blindfile import BlindWriter
from meshdrop.transports.courier.blindfolder import (
    NOMEDIA,
    BlindEntry,
    BlindScan,
    is_blind_folder,
    scan_blind,
)
from meshdrop.transports.courier.dropcarry import (
    DropExport,
    drop_file_name,
    fill_drops,
    header_expired,
)
from meshdrop.transports.courier.exportplan import FileToWrite
from meshdrop.transports.courier.layout import DROPS_FOLDER, WANT_FILE, part_number
from meshdrop.transports.courier.readback import ReadBack, SampledBatch
from meshdrop.transports.courier.stickstate import StickState, look_at
from meshdrop.transports.courier.want import MAX_WANT_BYTES, Want, parse_want


def kind_of(name: str) -> Kind:
    """The kind of the open file ``name`` (as layout.py names them)."""
    if name.startswith(DROPS_FOLDER + "/"):
        return Kind.DROP
    if name == WANT_FILE:
        return Kind.WANT
    if name.endswith(".pub"):
        return Kind.PUBLISHER
    if part_number(name) is not None:
        return Kind.PART
    return Kind.BUNDLE


class BlindMedium:
    """A blind folder for one key; ``top`` is the biggest size class (the part size)."""

    def __init__(self, folder: Path, key: bytes, top: int) -> None:
        self.folder = folder
        self.key = key
        self.top = top
        self._scan: BlindScan | None = None
        self._taken: set[str] = set()  # names in the folder, and names given out
        self.readback = ReadBack()

    # Reading what is there

    @property
    def scan(self) -> BlindScan:
        if self._scan is None:
            self._scan = scan_blind(self.folder, self.key) if self.folder.is_dir() else None
            self._scan = self._scan or BlindScan(self.folder, self.key)
            self._taken = {e.path.name.lower() for e in self._scan.entries}
            self._taken |= {p.name.lower() for p, _ in self._scan.refused}
        return self._scan

    def _copies(self, name: str) -> list[BlindEntry]:
        return [e for e in self.scan.entries if e.name == name]

    def read_stick(self, check: bool) -> StickState:
        scan = self.scan
        files = {}
        for entry in scan.of_kind(Kind.BUNDLE, Kind.PART):
            if entry.name in files:
                continue
            found = look_at(entry.name, partial(scan.open_courier, entry), check)
            if found is not None:
                files[entry.name] = found
        names = frozenset(e.name for e in scan.of_kind(Kind.BUNDLE, Kind.PART))
        want = scan.of_kind(Kind.WANT)
        return StickState(files, names, want[0].path if want else None)

    def read_want(self, stick: StickState) -> Want | None:
        found = self.scan.of_kind(Kind.WANT)
        if not found:
            return None
        entry = found[0]
        if entry.header.length > MAX_WANT_BYTES:
            raise FormatError(f"the want file is larger than {MAX_WANT_BYTES} bytes")
        with self.scan.open(entry) as reader:
            return parse_want(reader.read_all(), WANT_FILE)

    def existing(self, name: str, limit: int) -> bytes | None:
        for entry in self._copies(name):
            if entry.header.length > limit:
                continue
            try:
                with self.scan.open(entry) as reader:
                    return reader.read_all()
            except (MeshdropError, OSError):
                continue
        return None

    # Writing

    def prepare(self) -> None:
        try:
            self.folder.mkdir(exist_ok=True)
            nomedia = self.folder / NOMEDIA
            if not nomedia.exists():
                nomedia.touch()
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"making the folder {self.folder}")) from exc
        if not is_blind_folder(self.folder, self.key):
            self._write_one(marker_name(self.key), InnerHeader(Kind.MARKER, "", 0), b"")

    def _new_name(self) -> str:
        self.scan  # noqa: B018 (the names already there are known once it is read)
        while True:
            name = random_name()
            if name not in self._taken and not (self.folder / name).exists():
                self._taken.add(name)
                return name

    def _class(self, header: InnerHeader) -> int:
        plaintext = header.begin + header.length
        return class_for(plaintext, self.top) or file_size_for(plaintext)

    def _write_one(self, name: str, header: InnerHeader, data: bytes) -> None:
        batch = SampledBatch(self.readback)
        try:
            fd = batch.create(self.folder / name)
            self._fill(batch, fd, header, [data], lambda _n: None, header.name or "a marker")
            batch.commit()
        finally:
            batch.abort()

    def _fill(
        self,
        batch: DurableBatch,
        fd: int,
        header: InnerHeader,
        pieces: Iterable[bytes | memoryview],
        progress: Progress,
        what: str,
    ) -> None:
        """Write the blind file of ``header`` holding ``pieces`` into ``fd`` (of
        ``batch``); on failure the file is discarded."""
        out: BlindWriter | None = None
        try:
            out = BlindWriter(fd, self.key, header, self._class(header))
            for piece in pieces:
                out.write(piece)
                progress(len(piece))
            out.finish()
        except BaseException as exc:
            if out is not None:
                out.abandon()  # no write of it still going when its descriptor closes
            batch.discard(fd)
            if isinstance(exc, OSError):
                raise StoreError(os_error_message(exc, f"writing {what}")) from exc
            raise

    def write_small(self, name: str, data: bytes) -> None:
        old = self._copies(name)
        self._write_one(self._new_name(), InnerHeader(kind_of(name), name, len(data)), data)
        self._forget(old)

    def write_file(
        self,
        batch: DurableBatch,
        file: FileToWrite,
        item: ExportableBundle,
        reader: ChunkReader,
        refs: list[ChunkRef],
        progress: Progress,
    ) -> None:
        header = InnerHeader(kind_of(file.name), file.name, file.size)
        if file.size >= ALIGN_FROM:  # when the aligned file still fits the top class
            start = aligned_start(header.size, len(file.head))
            if class_for(start + file.size, self.top) is not None:
                header = InnerHeader(header.kind, header.name, header.length, start)
        fd = batch.create(self.folder / self._new_name())
        pieces = itertools.chain([memoryview(file.head)], reader.chunks(item, refs))
        self._fill(batch, fd, header, pieces, progress, repr(item.bundle.name))

    def written(self, name: str) -> None:
        """The blind files that held ``name`` before this export wrote it again."""
        self._forget(self._copies(name))

    def _forget(self, entries: list[BlindEntry]) -> None:
        for entry in entries:
            with contextlib.suppress(OSError):
                entry.path.unlink()
            self.scan.entries.remove(entry)

    def remove(self, name: str) -> None:
        copies = self._copies(name)
        if not copies:
            raise FileNotFoundError(name)
        for entry in copies:
            entry.path.unlink()
            self.scan.entries.remove(entry)

    def part_size(self, wanted: int) -> int:
        return capacity(wanted)

    def on_disk(self, size: int) -> int:
        plaintext = size + MAX_INNER + (SEGMENT if size >= ALIGN_FROM else 0)
        return class_for(plaintext, self.top) or file_size_for(plaintext)

    # Drops

    def export_drops(self, drops: DropStore, room: int, now: int, dry_run: bool) -> DropExport:
        result = DropExport()
        on_stick: dict[bytes, int] = {}
        for entry in self.scan.of_kind(Kind.DROP):
            ident = bytes.fromhex(entry.name[len(DROPS_FOLDER) + 1 :].split(".")[0])
            try:
                with self.scan.open(entry) as reader:
                    expired = header_expired(bytes(reader.read_at(0, HEADER_BYTES)), now)
            except (MeshdropError, OSError):
                continue
            if not expired:
                on_stick[ident] = entry.header.length
                continue
            result.removed += 1
            if not dry_run:
                with contextlib.suppress(FileNotFoundError):
                    self.remove(entry.name)

        def write(ident: bytes) -> bool:
            blob = drops.read(ident)
            if blob is None:
                return False
            try:
                self.write_small(f"{DROPS_FOLDER}/{drop_file_name(ident)}", blob)
            except (MeshdropError, OSError) as exc:
                result.problems.append(str(exc))
                return False
            return True

        fill_drops(drops, on_stick, room, now, result, None if dry_run else write)
        return result
