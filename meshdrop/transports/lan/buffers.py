"""Chunk buffers for the sync: at most a fixed number of chunks in memory, each received
into a buffer that is reused (a fresh 1 MiB object per chunk costs an allocation and
first-touch page faults; see bulkio.py)."""

from __future__ import annotations

import asyncio
import mmap
from typing import Any

from meshdrop.bulkio import new_buffer


class ChunkBuffers:
    def __init__(self, count: int) -> None:
        self._slots = asyncio.Semaphore(count)
        self._free: list[mmap.mmap] = []

    async def acquire(self) -> mmap.mmap:
        """A buffer of a whole chunk; waits while ``count`` are in use."""
        await self._slots.acquire()
        return self._free.pop() if self._free else new_buffer()

    def release(self, buffer: mmap.mmap) -> None:
        """Give ``buffer`` back. Only once nothing reads or writes it any more: not the
        socket (the request ended or its connection was aborted), not a store thread."""
        self._free.append(buffer)
        self._slots.release()

    def release_after(self, buffer: mmap.mmap, task: asyncio.Future[Any] | None) -> None:
        """Give ``buffer`` back when ``task`` (which uses it) is done, or now if None."""
        if task is None or task.done():
            self.release(buffer)
        else:
            task.add_done_callback(lambda _: self.release(buffer))
