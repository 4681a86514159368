"""The sync's memory bounds.

- ChunkBuffers: at most a fixed number of chunks in memory, each received into a buffer
  that is reused (a fresh 1 MiB object per chunk costs an allocation and first-touch page
  faults; see bulkio.py).
- ByteBudget: at most so many bytes of envelopes that are not verified yet, from all
  peers together (each may be 24 MiB of whatever a peer sends until it is checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
from collections.abc import AsyncIterator
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


class ByteBudget:
    """At most ``limit`` bytes held at once. A hold takes its amount once (when it is
    known: after a response's head) and gives it back when its block ends; a take that
    does not fit waits. One larger than the whole budget takes all of it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.free = limit
        self._waiters: list[asyncio.Future[None]] = []

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[Hold]:
        held = Hold(self)
        try:
            yield held
        finally:
            held.release()

    async def _take(self, amount: int) -> int:
        amount = min(amount, self.limit)
        while self.free < amount:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self.free -= amount
        return amount

    def _give(self, amount: int) -> None:
        self.free += amount
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # each checks again whether it fits now


class Hold:
    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.amount = 0

    async def take(self, amount: int) -> None:
        assert self.amount == 0, "a hold takes once"
        self.amount = await self.budget._take(amount)

    def release(self) -> None:
        if self.amount:
            self.budget._give(self.amount)
            self.amount = 0
