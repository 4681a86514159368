"""Writing verified content out of the store (`meshdrop get`): one file, or a whole bundle
as a new folder.

One file goes through fs.atomic_writer. A whole bundle is written into a temp folder beside
the output, each file under its final name (nothing outside knows the temp folder, so its
files need no temp names of their own), fsynced a group at a time; then every folder in
it is fsynced and the temp folder is renamed onto the output in one step. A kill at any
moment leaves either no output folder or a complete one; what it may leave beside the
output is a ``.tmp-…`` folder with a partial copy, which is safe to delete."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from meshdrop.bulkio import SequentialWriter
from meshdrop.core.manifest import FileEntry
from meshdrop.errors import StoreError, UsageError
from meshdrop.fs import atomic_writer, fsync_all, fsync_dir, os_error_message, temp_path_for
from meshdrop.store.crashpoints import crash_point
from meshdrop.store.models import StoredBundle
from meshdrop.store.store import Store

# A group of written files is fsynced together once it holds this many files or bytes:
# the device takes their flushes at once, and the open descriptors stay few.
SYNC_FILES = 256
SYNC_BYTES = 64 * 1024 * 1024

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Progress = Callable[[int], None]


def find_file(store: Store, bundle: StoredBundle, path: str) -> FileEntry:
    entry = next((f for f in store.manifest(bundle).files if f.path == path), None)
    if entry is None:
        raise UsageError(f"bundle {bundle.name!r} has no file {path!r}")
    return entry


def write_file(
    store: Store,
    bundle: StoredBundle,
    entry: FileEntry,
    output: Path,
    progress: Progress | None = None,
) -> Path:
    """Write one file of ``bundle`` to ``output`` (or into it, under the file's own name,
    if it is a folder), replacing it crash-safely. Returns the file written."""
    target = output / entry.path.rsplit("/", 1)[-1] if output.is_dir() else output
    with atomic_writer(target) as handle:
        for data in store.read_file(entry, bundle.name):
            handle.write(data)
            if progress:
                progress(len(data))
    return target


def write_bundle(
    store: Store, bundle: StoredBundle, output: Path, progress: Progress | None = None
) -> int:
    """Write every file of ``bundle`` into ``output``, a folder that must not exist yet
    (or be empty), all or nothing. Returns the number of files written."""
    files = store.manifest(bundle).files
    final = _new_output(output)
    temp = temp_path_for(final)
    try:
        made = _make_parents(final.parent)
        _TreeWriter(store, bundle.name, temp, output).write(files, progress)
        crash_point("get-before-rename")
        _move_into_place(temp, final, output)
        for folder in {final.parent, *(m.parent for m in made)}:
            fsync_dir(folder)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise StoreError(os_error_message(exc, f"writing {output}")) from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return len(files)


def _new_output(output: Path) -> Path:
    """``output`` made absolute, if it is free to become the bundle's folder: absent, or
    an empty folder (not a link to one)."""
    try:
        empty = stat.S_ISDIR(output.lstat().st_mode) and not any(output.iterdir())
    except FileNotFoundError:
        return output.resolve()
    except OSError as exc:
        raise UsageError(f"{output}: cannot look into it ({exc.strerror})") from exc
    if not empty:
        raise UsageError(f"{output} already exists; give a new folder")
    return output.resolve()


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and whichever of its parents are missing; those created."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir()
    return missing


def _move_into_place(temp: Path, final: Path, output: Path) -> None:
    """Rename ``temp`` onto ``final``: over an empty folder too, never over anything else
    (something may have been put there since it was checked)."""
    try:
        temp.rename(final)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise UsageError(f"{output} appeared while writing; give a new folder") from exc
        raise


class _TreeWriter:
    """Writes a bundle's files into a new folder, ``temp``, and makes them durable."""

    def __init__(self, store: Store, name: str, temp: Path, output: Path) -> None:
        self.store = store
        self.name = name
        self.temp = temp
        self.output = output  # as the user gave it, for messages
        self.folders: list[Path] = []  # every folder made, ``temp`` first
        self.group: list[tuple[int, str]] = []  # open descriptors not yet fsynced, and paths

    def write(self, files: Sequence[FileEntry], progress: Progress | None) -> None:
        made: set[Path] = set()
        try:
            self._make_folder(self.temp, made)
            group_bytes = 0
            for entry in files:
                self._write_one(entry, made, progress)
                group_bytes += entry.size
                if len(self.group) >= SYNC_FILES or group_bytes >= SYNC_BYTES:
                    self._sync_group()
                    group_bytes = 0
                    crash_point("get-after-group")
            self._sync_group()
            self._sync_folders()
        finally:
            for fd, _ in self.group:
                os.close(fd)
            self.group.clear()

    def _make_folder(self, folder: Path, made: set[Path]) -> None:
        if folder in made:
            return
        if folder != self.temp:
            self._make_folder(folder.parent, made)
        try:
            folder.mkdir()
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"writing into {self.output}")) from exc
        made.add(folder)
        self.folders.append(folder)

    def _write_one(self, entry: FileEntry, made: set[Path], progress: Progress | None) -> None:
        target = self.temp.joinpath(*entry.path.split("/"))
        self._make_folder(target.parent, made)
        try:
            fd = os.open(target, _CREATE, 0o644)
            self.group.append((fd, entry.path))
            writer = SequentialWriter(fd)
            for data in self.store.read_file(entry, self.name):
                writer.write(data)
                if progress:
                    progress(len(data))
        except OSError as exc:
            raise StoreError(self._doing(exc, entry.path)) from exc

    def _sync_group(self) -> None:
        group, self.group = self.group, []
        errors = fsync_all([fd for fd, _ in group])
        for fd, _ in group:
            os.close(fd)
        for error, (_, path) in zip(errors, group, strict=True):
            if error is not None:
                raise StoreError(self._doing(error, path))

    def _sync_folders(self) -> None:
        for start in range(0, len(self.folders), SYNC_FILES):
            fds: list[int] = []
            try:
                for folder in self.folders[start : start + SYNC_FILES]:
                    fds.append(os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
                error = next((e for e in fsync_all(fds) if e is not None), None)
            except OSError as exc:
                error = exc
            finally:
                for fd in fds:
                    os.close(fd)
            if error is not None:
                raise StoreError(os_error_message(error, f"writing into {self.output}"))

    def _doing(self, exc: OSError, path: str) -> str:
        return os_error_message(exc, f"writing {path} into {self.output}")
