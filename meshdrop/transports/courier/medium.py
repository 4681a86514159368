"""How an export reads and writes its courier folder: an open folder (the files under
their own names, FORMAT.md section 15) or a blind one (blindexport.py, section 25). The
exporter decides the same way for both; only this says where the bytes go."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from meshdrop.core.manifest import ChunkRef
from meshdrop.errors import MeshdropError, StoreError
from meshdrop.fs import (
    DurableBatch,
    atomic_write,
    open_regular_file,
    os_error_message,
    read_exactly,
)
from meshdrop.store.drops import DropStore
from meshdrop.store.export import ChunkReader, ExportableBundle, Progress, write_bundle_data
from meshdrop.transports.courier.dropcarry import DropExport, export_drops
from meshdrop.transports.courier.exportplan import FileToWrite
from meshdrop.transports.courier.readback import ReadBack
from meshdrop.transports.courier.stickstate import StickState, read_stick
from meshdrop.transports.courier.want import Want, read_want


class Medium(Protocol):
    folder: Path
    readback: ReadBack  # every file written, to read back once all is synced

    def prepare(self) -> None:
        """Make the folder (and what marks it) before the first write."""

    def read_stick(self, check: bool) -> StickState: ...

    def read_want(self, stick: StickState) -> Want | None:
        """The want file the stick holds, None if none; raises MeshdropError if bad."""

    def existing(self, name: str, limit: int) -> bytes | None:
        """The small file ``name`` already there (None if absent, unreadable or bigger
        than ``limit``)."""

    def write_small(self, name: str, data: bytes) -> None: ...

    def write_file(
        self,
        batch: DurableBatch,
        file: FileToWrite,
        item: ExportableBundle,
        reader: ChunkReader,
        refs: list[ChunkRef],
        progress: Progress,
    ) -> None:
        """Write one bundle file into ``batch`` (discarded again if that fails)."""

    def written(self, name: str) -> None:
        """The file ``name`` was committed: what it replaces may go."""

    def remove(self, name: str) -> None:
        """Remove the file ``name`` (FileNotFoundError if it is not there)."""

    def part_size(self, wanted: int) -> int:
        """The size of the open files to cut bundles into, for files of ``wanted`` bytes."""

    def on_disk(self, size: int) -> int:
        """What a file of ``size`` bytes takes in the folder."""

    def export_drops(self, drops: DropStore, room: int, now: int, dry_run: bool) -> DropExport: ...


class OpenMedium:
    """Today's readable folder: every file under its own name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.readback = ReadBack()

    def prepare(self) -> None:
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"making the folder {self.folder}")) from exc

    def read_stick(self, check: bool) -> StickState:
        return read_stick(self.folder, check)

    def read_want(self, stick: StickState) -> Want | None:
        return None if stick.want_path is None else read_want(stick.want_path)

    def existing(self, name: str, limit: int) -> bytes | None:
        try:
            fd = open_regular_file(self.folder / name)
        except MeshdropError:
            return None
        try:
            data = read_exactly(fd, limit + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        return data if len(data) <= limit else None

    def write_small(self, name: str, data: bytes) -> None:
        atomic_write(self.folder / name, data)
        self.readback.add(self.folder / name)

    def write_file(
        self,
        batch: DurableBatch,
        file: FileToWrite,
        item: ExportableBundle,
        reader: ChunkReader,
        refs: list[ChunkRef],
        progress: Progress,
    ) -> None:
        fd = batch.create(self.folder / file.name)
        try:
            write_bundle_data(reader, item, fd, head=file.head, refs=refs, progress=progress)
        except BaseException:
            batch.discard(fd)
            raise

    def written(self, name: str) -> None:
        pass

    def remove(self, name: str) -> None:
        (self.folder / name).unlink()

    def part_size(self, wanted: int) -> int:
        return wanted

    def on_disk(self, size: int) -> int:
        return size

    def export_drops(self, drops: DropStore, room: int, now: int, dry_run: bool) -> DropExport:
        return export_drops(drops, self.folder, room, now, dry_run, self.readback.add)
