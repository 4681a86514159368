"""Crash-safe file writing, shared by everything that writes: a temp file in the same
folder, fsync, rename over the target, fsync the folder. A kill at any moment leaves
either the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from meshdrop.errors import StoreError

TEMP_PREFIX = ".tmp-"


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(target: Path) -> Path:
    return target.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{target.name}")


def os_error_message(exc: OSError, doing: str) -> str:
    if exc.errno == errno.ENOSPC:
        return f"the disk is full while {doing}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write while {doing} ({exc.strerror})"
    return f"{exc.strerror or exc} while {doing}"


@contextlib.contextmanager
def atomic_writer(target: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file to write; on clean exit it replaces ``target`` atomically and
    durably. On any error the temp file is removed and ``target`` is untouched."""
    temp = temp_path_for(target)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(target)
        fsync_dir(target.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StoreError(os_error_message(exc, f"writing {target}")) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write(target: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_writer(target, mode) as handle:
        handle.write(data)
