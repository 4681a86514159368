"""Moving big amounts of chunk data with few copies and no allocation per chunk.

Reads go into buffers that are reused (a fresh 1 MiB bytes object per chunk costs an
allocation and, on a VM, first-touch page faults). Long writes start their writeback as
they go, so that the sync that makes them durable finds little left to do. (O_DIRECT
writes were tried for both import and export: no faster here than this, and they keep
what was just written out of the page cache, which the next export or peer then reads.)
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading

BUFFER_SIZE = 1024 * 1024  # the format's chunk size (core/manifest.py CHUNK_SIZE)
WRITEBACK_STEP = 32 * 1024 * 1024

_local = threading.local()


def new_buffer() -> mmap.mmap:
    """A buffer of BUFFER_SIZE bytes (anonymous memory: page-aligned, never moved)."""
    return mmap.mmap(-1, BUFFER_SIZE)


def read_reusable(fd: int, offset: int, size: int) -> memoryview:
    """``size`` bytes at ``offset`` (fewer only at the end of the file), in this thread's
    reusable buffer. The view is valid until this thread's next call: use it, do not keep
    it."""
    if size > BUFFER_SIZE:
        return memoryview(os.pread(fd, size, offset))
    buffer: mmap.mmap | None = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = new_buffer()
    view = memoryview(buffer)[:size]
    got = 0
    while got < size:
        more = os.preadv(fd, [view[got:]], offset + got)
        if not more:
            break
        got += more
    return view[:got]


def read_file_into(path: str | os.PathLike[str], buffer: mmap.mmap, size: int) -> memoryview | None:
    """The content of ``path`` in ``buffer`` if it is a file of exactly ``size`` bytes
    (at most BUFFER_SIZE), else None."""
    if size > BUFFER_SIZE:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if os.fstat(fd).st_size != size:
            return None
        view = memoryview(buffer)[:size]
        got = os.preadv(fd, [view], 0)
    finally:
        os.close(fd)
    return view if got == size else None


def write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Ask the kernel to start writing the file (or ``length`` bytes at ``offset``) out
    now, so that a sync later finds little left to do. Only a hint: skipped where
    unsupported."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def drop_cached(path: str | os.PathLike[str]) -> None:
    """Let the kernel drop a file's pages from its cache (they must be clean: written out
    and synced), so that the next chunks written reuse that memory instead of touching
    fresh memory for each (which costs more than the copy on some virtual machines).
    Only a hint: skipped where unsupported."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            start_writeback(fd)  # on clean pages, POSIX_FADV_DONTNEED drops them
        finally:
            os.close(fd)


class SequentialWriter:
    """Writes a new file from its start, starting its writeback every WRITEBACK_STEP
    bytes. The caller fsyncs and closes the descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._written = 0
        self._flushed = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        write_all(self.fd, view)
        self._written += len(view)
        if self._written - self._flushed >= WRITEBACK_STEP:
            start_writeback(self.fd, self._flushed, self._written - self._flushed)
            self._flushed = self._written
