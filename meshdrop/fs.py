"""Crash-safe file writing, shared by everything that writes: a temp file in the same
folder, fsync, rename over the target, fsync the folder. A kill at any moment leaves
either the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import ssl
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from meshdrop.errors import FormatError, StoreError, UsageError

TEMP_PREFIX = ".tmp-"
NAME_MAX = 255  # bytes in a file name on ext4, btrfs and XFS (docs/FORMAT.md section 9.1)
FSYNC_THREADS = 8


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name_for(name: str) -> str:
    """A fresh temp name for a file called ``name``: the prefix, a random part, then as
    much of ``name`` as keeps the whole within NAME_MAX bytes (cut between characters)."""
    prefix = f"{TEMP_PREFIX}{secrets.token_hex(6)}-"
    raw = os.fsencode(name)
    cut = NAME_MAX - len(prefix)
    if len(raw) > cut:
        while cut > 0 and raw[cut] & 0xC0 == 0x80:  # the first byte cut off continues a char
            cut -= 1
        raw = raw[:cut]
    return prefix + os.fsdecode(raw)


def temp_path_for(target: Path) -> Path:
    return target.with_name(temp_name_for(target.name))


def os_error_message(exc: OSError, doing: str) -> str:
    if exc.errno == errno.ENOSPC:
        return f"the disk is full while {doing}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write while {doing} ({exc.strerror})"
    return f"{exc.strerror or exc} while {doing}"


@contextlib.contextmanager
def atomic_writer(target: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file to write; on clean exit it replaces ``target`` atomically and
    durably (a DurableBatch of one). On any error the temp file is removed and ``target``
    is untouched."""
    batch = DurableBatch()
    fd = batch.create(target, mode)
    try:
        with os.fdopen(fd, "wb", closefd=False) as handle:
            yield handle
        batch.commit()
    except OSError as exc:
        batch.abort()
        raise StoreError(os_error_message(exc, f"writing {target}")) from exc
    except BaseException:
        batch.abort()
        raise


class DurableBatch:
    """Many files made crash-safely together: each is written under a temp name beside
    its target; ``commit`` fsyncs them all, then renames each over its target, then fsyncs
    each folder once. The guarantee is atomic_writer's (a file under its final name is
    whole and durable) for one journal commit per batch instead of two per file; fsync,
    not syncfs, so that it holds on every file system a stick may use."""

    def __init__(self) -> None:
        self._files: dict[int, tuple[Path, Path]] = {}  # fd -> (temp, target)

    def __len__(self) -> int:
        return len(self._files)

    def create(self, target: Path, mode: int = 0o644) -> int:
        """A descriptor to write ``target``'s new content to (from its start)."""
        temp = temp_path_for(target)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"writing {target}")) from exc
        self._files[fd] = (temp, target)
        return fd

    def discard(self, fd: int) -> None:
        """Drop one file of the batch: its temp file goes, its target stays as it was."""
        temp, _ = self._files.pop(fd)
        os.close(fd)
        temp.unlink(missing_ok=True)

    def commit(self) -> None:
        """Make every file of the batch durable under its final name. On failure each
        target is either as it was or whole and new, and the error names the file."""
        files = list(self._files.items())
        doing = ""
        try:
            errors = fsync_all([fd for fd, _ in files])
            for error, (_, (_, target)) in zip(errors, files, strict=True):
                if error is not None:
                    doing = f"writing {target}"
                    raise error
            for fd, (temp, target) in files:
                doing = f"writing {target}"
                temp.replace(target)
                del self._files[fd]
                os.close(fd)
            for folder in {target.parent for _, (_, target) in files}:
                doing = f"writing into {folder}"
                fsync_dir(folder)
        except OSError as exc:
            self.abort()
            raise StoreError(os_error_message(exc, doing)) from exc

    def abort(self) -> None:
        for fd in list(self._files):
            with contextlib.suppress(OSError):
                self.discard(fd)


def fsync_all(fds: list[int]) -> list[OSError | None]:
    """fsync each descriptor; several at once when there are several, so the device
    takes their flushes together (500 small files on a stick: about a tenth faster here).
    The error of each, in order."""

    def one(fd: int) -> OSError | None:
        try:
            os.fsync(fd)
        except OSError as exc:
            return exc
        return None

    if len(fds) < 2:
        return [one(fd) for fd in fds]
    with ThreadPoolExecutor(min(FSYNC_THREADS, len(fds)), "fsync") as pool:
        return list(pool.map(one, fds))


def atomic_write(target: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_writer(target, mode) as handle:
        handle.write(data)


def describe_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISLNK: "a symbolic link",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a device",
        stat.S_ISBLK: "a device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def reading_error(exc: OSError, message: str) -> UsageError | StoreError:
    """A file that cannot be read: the disk's fault (an I/O error: README, exit code 7)
    or the file's (not there, not allowed: a usage error)."""
    return StoreError(message) if exc.errno == errno.EIO else UsageError(message)


def open_regular_file(path: Path) -> int:
    """Open ``path`` for reading only if it is a regular file, without following a
    symlink and without blocking on a FIFO."""
    try:
        info = os.lstat(path)
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no such file") from exc
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: is {describe_kind(info.st_mode)}, not a file to read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise reading_error(exc, f"{path}: cannot open ({exc.strerror})") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{path}: changed into something that is not a file while opening")
    os.set_blocking(fd, True)
    return fd


def read_exactly(fd: int, size: int) -> bytes:
    parts = []
    remaining = size
    while remaining:
        part = os.read(fd, min(remaining, 8 * 1024 * 1024))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def read_small_file(path: Path, limit: int, what: str) -> bytes:
    """All of a small regular file (a publisher file, a key), refusing links, FIFOs and
    devices, and anything over ``limit`` bytes."""
    fd = open_regular_file(path)
    try:
        data = read_exactly(fd, limit + 1)
    except OSError as exc:
        raise reading_error(exc, f"cannot read {path} ({exc.strerror})") from exc
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FormatError(f"{path} is too large to be a {what}")
    return data


# Where memfd_create is missing: a memory file system (a 0600 file, removed at once).
MEMORY_FOLDER = Path("/dev/shm")  # noqa: S108


def load_cert_chain_from_memory(context: ssl.SSLContext, pem: bytes) -> None:
    """``context.load_cert_chain`` of ``pem`` (a certificate, then its key): OpenSSL reads
    only paths, so the clear key goes through an anonymous memory file (memfd), or where
    there is none a 0600 file on a memory file system removed at once, never through a
    disk. OSError (ENOSYS) if the system has neither; ssl.SSLError for a bad PEM."""
    try:
        fd = os.memfd_create("k", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        _load_through_memory_folder(context, pem)
        return
    try:
        _write_all(fd, pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _load_through_memory_folder(context: ssl.SSLContext, pem: bytes) -> None:
    if not MEMORY_FOLDER.is_dir():
        raise OSError(errno.ENOSYS, f"this system has neither memfd_create nor {MEMORY_FOLDER}")
    fd, name = tempfile.mkstemp(dir=MEMORY_FOLDER)
    try:
        _write_all(fd, pem)
        context.load_cert_chain(name)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            Path(name).unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
